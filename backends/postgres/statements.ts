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
 * A select-list item that resets `name` to its value at the start of the session (a NULL value is
 * RESET for `set_config`).
 */
function resetting(name: string, since14 = false): string {
  const reset = `set_config('${name}', null, false)`;
  return since14
    ? `(select ${reset} where current_setting('server_version_num')::int >= 140000)`
    : reset;
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

/**
 * Issue 9: the custom setting in which a session-mode connection leaves a random marker on its
 * server session at open. Behind a transaction-mode pooler the server session under a connection
 * changes between statements, and the backend pid alone cannot tell (one server backend can serve
 * two of our connections in turn, and advisory locks are reentrant per backend): every session-mode
 * statement checks the marker, in the same statement, before it takes or frees anything.
 */
const MARKER_SETTING = "shared_state.session";

/** SQL that is true when the server session running it carries `marker`: it is ours. */
function ours(marker: string): string {
  return `coalesce(current_setting('${MARKER_SETTING}', true), '') = '${marker}'`;
}

/**
 * Opens a session-mode connection, first statement: leaves `marker` on the server session, only
 * if that session is fresh (no marker of another connection, no advisory lock held); a pooler that
 * hands out a used server session is refused before anything is changed on it. Columns: `pid`,
 * `started` (the backend's start, in microseconds since 1970, as text), `version`
 * (`server_version_num`), `fresh`. The subquery (`offset 0` keeps it one) reads the state before
 * the marker is set. The functions behind the views `pg_stat_activity` and `pg_locks`, not the views:
 * a new backend's first look at those costs milliseconds of catalog reads.
 */
export function markSession(marker: string): string {
  return `select b.pid, b.started, b.version, b.fresh,` +
    ` case when b.fresh then set_config('${MARKER_SETTING}', '${marker}', false) end as marker` +
    ` from (select pg_backend_pid() as pid,` +
    ` current_setting('server_version_num')::int as version,` +
    ` (select (extract(epoch from backend_start) * 1000000)::int8::text` +
    ` from pg_stat_get_activity(pg_backend_pid())) as started,` +
    ` coalesce(current_setting('${MARKER_SETTING}', true), '') = ''` +
    ` and not exists (select 1 from pg_lock_status() as l where l.pid = pg_backend_pid()` +
    ` and l.locktype = 'advisory') as fresh offset 0) as b`;
}

/**
 * Opens a session-mode connection, second statement: applies {@link SESSION_SETTINGS} only on the
 * server session that carries `marker`, so that a pooler that moved the connection after
 * {@link markSession} gets no settings of ours. No row: the connection moved.
 */
export function verifySession(marker: string): string {
  return `select ${SESSION_SETTINGS} where ${ours(marker)}`;
}

/** The heartbeat of a session-mode connection. No row: the server session changed. */
export function sessionHeartbeat(marker: string): string {
  return `select 1 as alive where ${ours(marker)}`;
}

/**
 * Frees what a session-mode connection left on its server session (its advisory locks, its
 * settings, its marker), when run on the server session that carries `marker`; no row otherwise.
 * Needed only where the server session outlives the connection: behind a pooler.
 */
export function releaseSession(marker: string): string {
  return `select pg_advisory_unlock_all() as released, ` +
    [
      resetting("statement_timeout"),
      resetting("idle_in_transaction_session_timeout"),
      resetting("idle_session_timeout", true),
      resetting("client_connection_check_interval", true),
      resetting("lock_timeout"),
      resetting("tcp_keepalives_idle"),
      resetting("tcp_keepalives_interval"),
      resetting("tcp_keepalives_count"),
      resetting(MARKER_SETTING),
    ].join(", ") + ` where ${ours(marker)}`;
}

/**
 * Ends the server backend `pid` that started at `started` (see {@link markSession}) if it has been
 * idle for at least `idleMs`, waiting up to a second for it to exit where PostgreSQL can (14+). A
 * pooler may hand an idle backend to a client at any moment, whose transaction would then fail:
 * one idle for a while is not the one it hands out next. Column `terminated`; no row: that backend
 * is gone.
 */
export function terminateIdleBackend(
  pid: number,
  started: string,
  version: number,
  idleMs: number,
): string {
  const terminate = version >= 140000
    ? "pg_terminate_backend(pid, 1000)"
    : "pg_terminate_backend(pid)";
  return `select case when state = 'idle'` +
    ` and state_change < clock_timestamp() - interval '${idleMs} milliseconds'` +
    ` then ${terminate} else false end as terminated` +
    ` from pg_stat_get_activity(${pid})` +
    ` where (extract(epoch from backend_start) * 1000000)::int8 = '${started}'::int8`;
}

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

/**
 * The statements of one mode. `marker` is the connection's session marker (issue 9), which only
 * session mode uses.
 */
export interface Statements {
  /**
   * Takes the lock if it is free, never waits. One boolean column `ok`; in transaction mode the
   * result before it has the column `pid`, the backend serving the transaction.
   */
  tryLock(id: bigint, exclusive: boolean, marker: string): string;
  /**
   * Waits for the lock in PostgreSQL's own queue, up to `timeout` ms (`lock_timeout`). One row
   * when granted; error 55P03 on timeout, 57014 on cancel, 40P01 on deadlock.
   */
  waitLock(id: bigint, exclusive: boolean, timeout: number | undefined, marker: string): string;
  /** Frees the lock. */
  unlock(id: bigint, exclusive: boolean, marker: string): string;
  /**
   * Frees whatever a failed, cancelled or abandoned wait may have left on its session: the server
   * can grant a lock just as the wait is cancelled, and report the cancel anyway.
   */
  cleanup(marker: string): string;
  /** Whether the lock could be taken now, leaving nothing taken. One boolean column `ok`. */
  probe(id: bigint, exclusive: boolean, marker: string): string;
}

/**
 * Session-level advisory locks: a lock lives until unlocked or until its session ends. A WHERE
 * clause without columns is a one-time filter that PostgreSQL checks before it computes the select
 * list: on a server session that is not ours (issue 9) nothing is taken or freed, and no row comes
 * back. Still one statement, one round trip.
 */
export const sessionStatements: Statements = {
  tryLock: (id, exclusive, marker) =>
    `select pg_try_advisory_lock${suffix(exclusive)}(${int8(id)}) as ok where ${ours(marker)}`,
  // One condition, not two joined by AND (which PostgreSQL may reorder): lock_timeout is set only
  // on our server session, before the wait.
  waitLock: (id, exclusive, timeout, marker) =>
    `select pg_advisory_lock${suffix(exclusive)}(${int8(id)}) as ok` +
    ` where case when ${ours(marker)}` +
    ` then set_config('lock_timeout', '${lockTimeout(timeout)}', false) is not null end`,
  unlock: (id, exclusive, marker) =>
    `select pg_advisory_unlock${suffix(exclusive)}(${int8(id)}) as ok where ${ours(marker)}`,
  // A waiting session holds nothing else, so freeing everything frees exactly the stray grant.
  cleanup: (marker) => `select pg_advisory_unlock_all() as released where ${ours(marker)}`,
  probe: (id, exclusive, marker) =>
    `select case when pg_try_advisory_lock${suffix(exclusive)}(${int8(id)})` +
    ` then pg_advisory_unlock${suffix(exclusive)}(${int8(id)}) else false end as ok` +
    ` where ${ours(marker)}`,
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
  cleanup: () => "rollback",
  // One statement is its own transaction: the lock ends with it.
  probe: (id, exclusive) =>
    `select pg_try_advisory_xact_lock${suffix(exclusive)}(${int8(id)}) as ok`,
};

/**
 * The `pg_locks` columns of an advisory lock id taken as one int8 (`objsubid` 1): `classid` the
 * high 32 bits, `objid` the low 32 bits, both as unsigned `oid` literals.
 */
export function lockIdColumns(id: bigint): string {
  const unsigned = BigInt.asUintN(64, id);
  return `'${unsigned >> 32n}'::oid, '${unsigned & 0xffffffffn}'::oid`;
}

/**
 * Issue 12: a fencing token is a new 64-bit transaction id (`pg_current_xact_id()`, PostgreSQL
 * 13+): the server hands them out from one counter in increasing order, and its epoch keeps them
 * increasing across wraparound and restarts. Taking one alone is not durable: a transaction that
 * wrote nothing commits without flushing, and after a crash the server could hand the same id out
 * again. So the token's transaction writes a WAL record (an empty transactional logical decoding
 * message, prefix `shared_state.fence`, which PostgreSQL lets every role write) and commits at
 * least with a local flush: its commit, and so the token, is on disk before the answer leaves the
 * server (with synchronous standbys, on them too). It is a single statement, its own implicit
 * transaction, which PostgreSQL commits before it reports the statement complete.
 */
const NEW_TOKEN = "pg_current_xact_id()::text as token," +
  " pg_logical_emit_message(true, 'shared_state.fence', '') is not null as logged," +
  " set_config('synchronous_commit', case when current_setting('synchronous_commit')" +
  " in ('off', 'local') then 'on' else current_setting('synchronous_commit') end, true)" +
  " is not null as durable";

/**
 * Session mode: a fencing token made on the session that holds the lock, so that the lock is held
 * when the id is taken (the session runs our statements in order, and a dead session runs none).
 * Column `token`; no row when the server session is not ours (issue 9).
 */
export function sessionFencingToken(marker: string): string {
  return `select ${NEW_TOKEN} where ${ours(marker)}`;
}

/**
 * Transaction mode: a lock's session is inside the lock's transaction, which must not commit, so
 * the token's transaction runs on another session and then checks, in `pg_locks`, that backend
 * `pid` still holds the lock: taken first (a subquery, `offset 0`), checked after (a subquery
 * that needs its value). Columns `token`, `held`.
 */
export function transactionFencingToken(pid: number, id: bigint, exclusive: boolean): string {
  return `select t.token, exists (select from pg_lock_status() as l where t.token is not null` +
    ` and l.locktype = 'advisory' and l.pid = ${Math.trunc(pid)} and l.granted` +
    ` and (l.classid, l.objid) = (${lockIdColumns(id)}) and l.objsubid = 1` +
    ` and l.mode = '${exclusive ? "ExclusiveLock" : "ShareLock"}') as held` +
    ` from (select ${NEW_TOKEN} offset 0) as t`;
}

/**
 * Issue 12: the advisory locks (int8 form, as PostgresState takes them) held or awaited in the
 * current database, by every backend, with what `pg_stat_activity` tells of it: `id` (text),
 * `pid`, `exclusive`, `granted`, `waiting_since` (ms since 1970: PostgreSQL 14's `waitstart`, else
 * the start of the waiting statement), `application_name`, `client_address`, `backend_start` and
 * `transaction_start` (ms; only for sessions of the same role, or with `pg_read_all_stats`).
 * Holders first, then waiters by how long they have waited. `ids` narrows it to those locks.
 */
export function advisoryLocks(ids?: readonly bigint[]): string {
  const only = ids === undefined
    ? ""
    : ids.length === 0
    ? " and false"
    : ` and (l.classid, l.objid) in (${ids.map((id) => `(${lockIdColumns(id)})`).join(", ")})`;
  const ms = (value: string) => `(extract(epoch from ${value}) * 1000)::float8`;
  return `select ((l.classid::int8 << 32) | l.objid::int8)::text as id, l.pid,` +
    ` l.mode = 'ExclusiveLock' as exclusive, l.granted,` +
    ` case when not l.granted then` +
    ` ${ms("coalesce((to_jsonb(l) ->> 'waitstart')::timestamptz, a.query_start)")}` +
    ` end as waiting_since,` +
    ` a.application_name, host(a.client_addr) as client_address,` +
    ` ${ms("a.backend_start")} as backend_start, ${ms("a.xact_start")} as transaction_start` +
    ` from pg_lock_status() as l left join lateral pg_stat_get_activity(l.pid) as a on true` +
    ` where l.locktype = 'advisory' and l.objsubid = 1` +
    ` and l.database = (select oid from pg_database where datname = current_database())${only}` +
    ` order by l.granted desc, waiting_since nulls last, l.pid`;
}

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
