/**
 * The SQL that PostgresState sends, for both modes. Lock ids are bigints computed by us, inlined as
 * quoted `int8` literals: queries without parameters use the simple protocol, one round trip each
 * and no prepared statement (transaction poolers do not keep those).
 */

/** How locks live in the database. */
export type LockMode = "session" | "transaction";

/**
 * Milliseconds between the server's checks, during a query, that our end of the connection is
 * still there (`client_connection_check_interval`, PostgreSQL 14+): how long a wait outlives a
 * process that died while waiting.
 */
const CONNECTION_CHECK_MS = 1000;

/**
 * The server's TCP keepalive for our sessions, in seconds: idle time, then probes and the interval
 * between them. On a network that went silent, the server notices our end is gone after about 25
 * seconds instead of the system's default two hours, and ends the session: its locks are freed,
 * and a wait leaves the queue (with client_connection_check_interval). Issue 9.
 */
const KEEPALIVE = { idle: 10, interval: 5, count: 3 } as const;

/**
 * A select-list item that sets `name` for the session, or with `local` for the transaction. A
 * setting that PostgreSQL has only from version 14 on (`since14`) is set only there.
 */
function setting(name: string, value: string, local: boolean, since14 = false): string {
  const set = `set_config('${name}', '${value}', ${local})`;
  return since14
    ? `(select ${set} where current_setting('server_version_num')::int >= 140000)`
    : set;
}

/**
 * The settings a session-mode connection starts with, as select-list items. A lock holder sits
 * idle for long, and the server must not end its session for that; and a backend blocked in a lock
 * wait must notice when our process died or our network went silent, or it stays in the queue
 * until granted, ahead of everyone after it.
 */
export const SESSION_SETTINGS: string = [
  setting("statement_timeout", "0", false),
  setting("idle_in_transaction_session_timeout", "0", false),
  setting("idle_session_timeout", "0", false, true),
  setting("client_connection_check_interval", String(CONNECTION_CHECK_MS), false, true),
  setting("tcp_keepalives_idle", String(KEEPALIVE.idle), false),
  setting("tcp_keepalives_interval", String(KEEPALIVE.interval), false),
  setting("tcp_keepalives_count", String(KEEPALIVE.count), false),
].join(", ");

function int8(id: bigint): string {
  return `'${id}'::int8`;
}

function suffix(exclusive: boolean): string {
  return exclusive ? "" : "_shared";
}

/** `lock_timeout` in whole milliseconds; `0` disables it (waits for ever). */
function lockTimeout(ms: number | undefined): string {
  return ms === undefined ? "0" : String(Math.max(1, Math.ceil(ms)));
}

/** The statements of one mode. */
export interface Statements {
  /**
   * Takes the lock if it is free, never waits. One boolean column `ok`; in transaction mode the
   * result before it has the column `pid`, the backend serving the transaction.
   */
  tryLock(id: bigint, exclusive: boolean): string;
  /**
   * Waits for the lock in PostgreSQL's own queue, up to `timeout` ms (`lock_timeout`). One row
   * when granted; error 55P03 on timeout, 57014 on cancel, 40P01 on deadlock.
   */
  waitLock(id: bigint, exclusive: boolean, timeout: number | undefined): string;
  /** Frees the lock. */
  unlock(id: bigint, exclusive: boolean): string;
  /**
   * Frees whatever a failed, cancelled or abandoned wait may have left on its session: the server
   * can grant a lock just as the wait is cancelled, and report the cancel anyway.
   */
  cleanup: string;
  /** Whether the lock could be taken now, leaving nothing taken. One boolean column `ok`. */
  probe(id: bigint, exclusive: boolean): string;
}

/** Session-level advisory locks: a lock lives until unlocked or until its session ends. */
export const sessionStatements: Statements = {
  tryLock: (id, exclusive) => `select pg_try_advisory_lock${suffix(exclusive)}(${int8(id)}) as ok`,
  // The WHERE clause has no column, so it runs first, once: lock_timeout is set before the wait.
  waitLock: (id, exclusive, timeout) =>
    `select pg_advisory_lock${suffix(exclusive)}(${int8(id)}) as ok` +
    ` where set_config('lock_timeout', '${lockTimeout(timeout)}', false) is not null`,
  unlock: (id, exclusive) => `select pg_advisory_unlock${suffix(exclusive)}(${int8(id)}) as ok`,
  // A waiting session holds nothing else, so freeing everything frees exactly the stray grant.
  cleanup: "select pg_advisory_unlock_all()",
  probe: (id, exclusive) =>
    `select case when pg_try_advisory_lock${suffix(exclusive)}(${int8(id)})` +
    ` then pg_advisory_unlock${suffix(exclusive)}(${int8(id)}) else false end as ok`,
};

const TRANSACTION_SETTINGS = [
  setting("idle_in_transaction_session_timeout", "0", true),
  setting("statement_timeout", "0", true),
  setting("client_connection_check_interval", String(CONNECTION_CHECK_MS), true, true),
].join(", ");

/**
 * Transaction-level advisory locks, for transaction poolers: each lock is a transaction that
 * commits on release. `tryLock` opens the transaction; `unlock` and `cleanup` end it.
 */
export const transactionStatements: Statements = {
  // A lock's transaction sits idle for long, and its wait may outlast a role's statement_timeout:
  // neither timeout may end it. Both settings end with the transaction. The backend pid is read
  // inside the transaction: behind a transaction pooler, only for the length of a transaction is
  // the server backend ours, and a cancel aimed at another one would hit someone else's query.
  // A wait must also end when our process died (see CONNECTION_CHECK_MS).
  tryLock: (id, exclusive) =>
    `begin; select ${TRANSACTION_SETTINGS}, pg_backend_pid() as pid;` +
    ` select pg_try_advisory_xact_lock${suffix(exclusive)}(${int8(id)}) as ok`,
  waitLock: (id, exclusive, timeout) =>
    `select pg_advisory_xact_lock${suffix(exclusive)}(${int8(id)}) as ok` +
    ` where set_config('lock_timeout', '${lockTimeout(timeout)}', true) is not null`,
  unlock: () => "commit",
  cleanup: "rollback",
  // One statement is its own transaction: the lock ends with it.
  probe: (id, exclusive) =>
    `select pg_try_advisory_xact_lock${suffix(exclusive)}(${int8(id)}) as ok`,
};

/** SQLSTATEs that end a lock wait. */
export const SQLSTATE = {
  lockNotAvailable: "55P03",
  queryCanceled: "57014",
  deadlockDetected: "40P01",
  adminShutdown: "57P01",
  crashShutdown: "57P02",
} as const;

/** The SQLSTATE of a PostgreSQL error, if it is one. */
export function sqlState(error: unknown): string | undefined {
  if (typeof error !== "object" || error === null) return undefined;
  const code = (error as { code?: unknown }).code;
  return typeof code === "string" && /^[0-9A-Z]{5}$/.test(code) ? code : undefined;
}

/** Why a wait failed, in a few words for {@link LockFailed}, from the error it ended with. */
export function describeWaitError(error: unknown): string {
  switch (sqlState(error)) {
    case SQLSTATE.deadlockDetected:
      return "PostgreSQL detected a deadlock (40P01) and chose this wait to fail";
    case SQLSTATE.lockNotAvailable:
      return "PostgreSQL's lock_timeout ended the wait (55P03)";
    case SQLSTATE.queryCanceled:
      return "the wait was cancelled in PostgreSQL (57014: statement_timeout or a cancel)";
    case SQLSTATE.adminShutdown:
      return "the waiting session was terminated by the server " +
        "(57P01: pg_terminate_backend, or the server shutting down)";
    case SQLSTATE.crashShutdown:
      return "the waiting session was ended by the server (57P02: another server process crashed)";
    default:
      return `the connection to the database failed while waiting (${describeError(error)})`;
  }
}

/** A short description of any error. */
export function describeError(error: unknown): string {
  if (error instanceof Error) {
    const code = (error as { code?: unknown }).code;
    return code === undefined ? error.message : `${String(code)}: ${error.message}`;
  }
  return String(error);
}
