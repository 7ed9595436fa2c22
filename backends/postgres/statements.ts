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
  // A missing setting is NULL, and NULL = '…' filters the row out as false does.
  return `current_setting('${MARKER_SETTING}', true) = '${marker}'`;
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

// ---- Permits (issue 13) ----

/** The channel on which a release of a permit slot tells waiters of other processes. */
export const PERMIT_CHANNEL = "shared_state_permits";

/** A permit key's slots, and which of them a request may try. */
export interface PermitTarget {
  /** The key's lock id: the payload of its notifications. */
  readonly base: bigint;
  /** The first `int4` key of every slot of the key. */
  readonly key1: number;
  /** The low 32 bits of the lock id, unsigned: slot s has second key `low + s` modulo 2^32. */
  readonly low: number;
  /** The request's limit: it may take slots 0 to limit-1. */
  readonly limit: number;
  /** Slots not to try: those this process holds (advisory locks are reentrant per session). */
  readonly skip: readonly number[];
}

/** The second `int4` key of the slot that the SQL `int8` expression `slot` names. */
function slotKey2(target: PermitTarget, slot: string): string {
  return `((${target.low} + ${slot} + 2147483648) % 4294967296 - 2147483648)::int4`;
}

/** The two keys of slot `slot` (-1: the waiters' marker), as SQL arguments. */
function slotArgs(target: PermitTarget, slot: number): string {
  const key2 = ((target.low + slot) % 2 ** 32 + 2 ** 32) % 2 ** 32;
  return `${target.key1}, ${key2 >= 2 ** 31 ? key2 - 2 ** 32 : key2}`;
}

/** Slots to try up to which a search is a CASE (cheap to plan); beyond, a recursive query. */
const CASCADE_MAX = 32;

/**
 * An expression for the first free slot, taken with `take` (a try function), or NULL if none is:
 * each slot is tried only if the ones before it were not taken, so it takes at most one slot, and
 * tries no more slots than are busy before the first free one. `start` is the condition under
 * which the search runs at all. Up to {@link CASCADE_MAX} slots it is a CASE, whose branches
 * PostgreSQL evaluates in order and no further than the first true one (a volatile function is
 * never folded ahead); beyond, a recursive query that tries one slot per step.
 */
function slotSearch(target: PermitTarget, start: string, take: string): string {
  const skip = new Set(target.skip);
  if (target.limit - skip.size <= CASCADE_MAX) {
    const branches: string[] = [];
    for (let slot = 0; slot < target.limit; slot++) {
      if (!skip.has(slot)) branches.push(`when ${take}(${slotArgs(target, slot)}) then ${slot}`);
    }
    const cascade = branches.length === 0 ? "null::int8" : `case ${branches.join(" ")} end`;
    return start === "true" ? cascade : `case when ${start} then ${cascade} end`;
  }
  const next = "s.slot + 1";
  return `(with recursive s(slot, ok) as (select -1::int8, false where ${start}` +
    ` union all select ${next}, case when ${next} = any('{${target.skip.join(",")}}'::int8[])` +
    ` then false else ${take}(${target.key1}, ${slotKey2(target, next)}) end` +
    ` from s where not s.ok and ${next} < ${target.limit})` +
    ` select slot from s where ok)`;
}

/** The SQL of one mode for permits. `marker` is the session marker (issue 9), session mode only. */
export interface PermitStatements {
  /**
   * Takes the first free slot not in `skip`, never waits. One row, column `slot` (NULL: none
   * free); in transaction mode it opens the permit's transaction, and the result before it has
   * the column `pid`.
   */
  tryPermit(target: PermitTarget, marker: string): string;
  /**
   * Waits for a slot, up to `timeout` ms (`lock_timeout`), in one statement: in session mode it
   * first joins the key's waiters (the waiters' marker, slot -1, in shared mode for the length of
   * the statement, so that releases notify) and searches once more, then, if no slot was free,
   * waits in PostgreSQL's queue for slot `slot`. One row, column `slot`: the slot taken. Errors
   * as `waitLock`.
   */
  waitPermit(
    target: PermitTarget,
    slot: number,
    timeout: number | undefined,
    marker: string,
  ): string;
  /**
   * Frees slot `slot`, then notifies {@link PERMIT_CHANNEL} (payload: the key's lock id) if anyone
   * waits for the key (holds the waiters' marker); a notification costs the releasing statement a
   * transaction id and a commit, so it is sent only then.
   */
  releaseSlot(target: PermitTarget, slot: number, marker: string): string;
  /** Whether a slot not in `skip` is free, leaving nothing taken. One boolean column `ok`. */
  probe(target: PermitTarget, marker: string): string;
}

/**
 * Notifies the key's waiters if there are any: if the waiters' marker can be taken (with
 * `tryMarker`) nobody waits, and `untake` gives it back. `true` when a notification was sent.
 */
function notifyWaiters(target: PermitTarget, tryMarker: string, untake: string): string {
  const notify = `pg_notify('${PERMIT_CHANNEL}', '${target.base}')::text = ''`;
  return `case when ${tryMarker}(${slotArgs(target, -1)}) then ${untake} else ${notify} end`;
}

/** Session-level: permits live on the session, many on one connection. */
export const sessionPermitStatements: PermitStatements = {
  tryPermit: (target, marker) =>
    `select ${slotSearch(target, ours(marker), "pg_try_advisory_lock")} as slot` +
    ` where ${ours(marker)}`,
  // Nested CASEs fix the order: our session, then lock_timeout, then the waiters' marker (a
  // transaction-level lock: it ends with the statement, however the statement ends; held
  // exclusively only for a moment by a releasing statement), then the search, then (COALESCE
  // evaluates no more than it needs) the wait for `slot`.
  waitPermit: (target, slot, timeout, marker) => {
    const start = `case when ${ours(marker)} then case when set_config('lock_timeout', ` +
      `'${lockTimeout(timeout)}', false) is not null then` +
      ` pg_advisory_xact_lock_shared(${slotArgs(target, -1)})::text = '' end end`;
    return `select coalesce(${slotSearch(target, start, "pg_try_advisory_lock")},` +
      ` case when pg_advisory_lock(${slotArgs(target, slot)})::text = '' then ${slot} end)` +
      ` as slot where ${ours(marker)}`;
  },
  // The slot is freed before the waiters are looked for: a waiter that joins after the look
  // finds the slot free in its own search.
  releaseSlot: (target, slot, marker) =>
    `select case when pg_advisory_unlock(${slotArgs(target, slot)}) is not null then ` +
    notifyWaiters(
      target,
      "pg_try_advisory_lock",
      `not pg_advisory_unlock(${slotArgs(target, -1)})`,
    ) + ` end as notified` +
    ` where ${ours(marker)}`,
  probe: (target, marker) =>
    `select case when t.slot is null then false` +
    ` else pg_advisory_unlock(${target.key1}, ${slotKey2(target, "t.slot")}) end as ok` +
    ` from (select ${slotSearch(target, ours(marker), "pg_try_advisory_lock")} as slot` +
    ` offset 0) as t where ${ours(marker)}`,
};

/** Transaction-level: each permit is a transaction on a connection of its own, as a lock is. */
export const transactionPermitStatements: PermitStatements = {
  tryPermit: (target) =>
    `begin; select ${TRANSACTION_SETTINGS}, pg_backend_pid() as pid;` +
    ` select ${slotSearch(target, "true", "pg_try_advisory_xact_lock")} as slot`,
  // Waiters in transaction mode hear no notifications (through a transaction pooler a LISTEN
  // reaches nobody), so they do not join the key's waiters.
  waitPermit: (target, slot, timeout) =>
    `select case when pg_advisory_xact_lock(${slotArgs(target, slot)})::text = ''` +
    ` then ${slot} end as slot` +
    ` where set_config('lock_timeout', '${lockTimeout(timeout)}', true) is not null`,
  // The marker is taken for the rest of the transaction, which ends at once.
  releaseSlot: (target) =>
    `select ${notifyWaiters(target, "pg_try_advisory_xact_lock", "false")} as notified; commit`,
  probe: (target) =>
    `select ${slotSearch(target, "true", "pg_try_advisory_xact_lock")} is not null as ok`,
};
