/**
 * Issue 12: who holds and who awaits PostgreSQL advisory locks, read from `pg_locks` and
 * `pg_stat_activity`, for {@link PostgresState.inspect} (merged with the state's own books) and
 * for operators ({@link listLocks}, behind `shared-state locks`).
 */

import postgres from "postgres";
import { checkOptions, optionNames, optionTypeError, show } from "../../internal/arguments.ts";
import type { LockHolder, LockInfo } from "../../lock.ts";
import { advisoryLockId } from "./lock_id.ts";
import { advisoryLocks } from "./statements.ts";

/** One advisory lock (int8 form) held or awaited by one backend, as `pg_locks` shows it. */
export interface AdvisoryLock {
  /** The lock id (see `advisoryLockId`). */
  id: bigint;
  /** The key, where it is known: one of the keys asked about. */
  key?: string;
  /** `ExclusiveLock` (`true`) or `ShareLock` (`false`). */
  exclusive: boolean;
  /** `true` for a holder, `false` for a waiter. */
  granted: boolean;
  /**
   * A waiter: since when it waits (PostgreSQL 14's `waitstart`, else the start of the waiting
   * statement). PostgreSQL does not record when a lock was granted.
   */
  since?: Date;
  /** The backend's process id. */
  pid: number;
  /** Its `application_name`. */
  applicationName?: string;
  /** Its client's address; absent for a Unix socket, or for another role's session without `pg_read_all_stats`. */
  clientAddress?: string;
  /** When its session started (same role, or `pg_read_all_stats`). */
  backendStart?: Date;
  /**
   * When its current transaction started, if one is open: a transaction-mode lock was taken at
   * or after this (same role, or `pg_read_all_stats`).
   */
  transactionStart?: Date;
}

/** A holder or a waiter, as {@link PostgresState.inspect} reports it. */
export interface PostgresLockHolder extends LockHolder {
  /** The backend's pid; absent for a request of this state that waits in its local queue. */
  pid?: number;
  /** The backend's `application_name`. */
  applicationName?: string;
  /** The backend's client address, where `pg_stat_activity` shows it. */
  clientAddress?: string;
  /**
   * `true` for the holders and requests of the state asked (one entry each, from its own books:
   * several holders in the process share one database lock); `false` for other backends, one
   * entry per backend.
   */
  own: boolean;
}

/** What {@link PostgresState.inspect} answers: the lock id too, for `pg_locks`. */
export interface PostgresLockInfo extends LockInfo {
  /** The advisory lock id of the key in the state's namespace. */
  id: bigint;
  /** Every holder: other backends one entry each, this state's own one entry per local holder. */
  holders: PostgresLockHolder[];
  /** Every waiting request, the longest-waiting first where the wait start is known. */
  waiters: PostgresLockHolder[];
}

function date(value: unknown): Date | undefined {
  return typeof value === "number" && Number.isFinite(value) ? new Date(value) : undefined;
}

function text(value: unknown): string | undefined {
  return typeof value === "string" && value !== "" ? value : undefined;
}

/** A row of {@link advisoryLocks} as an {@link AdvisoryLock}, with only the known fields. */
export function parseAdvisoryLock(row: Record<string, unknown>): AdvisoryLock {
  const lock: AdvisoryLock = {
    id: BigInt(row.id as string),
    exclusive: row.exclusive === true,
    granted: row.granted === true,
    pid: Number(row.pid),
  };
  const fields: [keyof AdvisoryLock, unknown][] = [
    ["since", date(row.waiting_since)],
    ["applicationName", text(row.application_name)],
    ["clientAddress", text(row.client_address)],
    ["backendStart", date(row.backend_start)],
    ["transactionStart", date(row.transaction_start)],
  ];
  for (const [name, value] of fields) {
    if (value !== undefined) (lock as unknown as Record<string, unknown>)[name] = value;
  }
  return lock;
}

/** `grader (pid 4242, 10.0.0.5)`: who a backend is, for {@link LockHolder.owner}. */
export function ownerOf(lock: AdvisoryLock): string {
  const where = lock.clientAddress === undefined ? "" : `, ${lock.clientAddress}`;
  return `${lock.applicationName ?? "backend"} (pid ${lock.pid}${where})`;
}

/** A holder or waiter of the state asked, from its own books. */
export interface OwnEntry {
  readonly exclusive: boolean;
  readonly since?: Date;
  readonly owner?: string;
  /** The pid of the session that holds the database lock, for a holder. */
  readonly pid?: number;
}

function holder(
  exclusive: boolean,
  since: Date | undefined,
  owner: string | undefined,
  row: AdvisoryLock | undefined,
  own: boolean,
): PostgresLockHolder {
  const entry = { exclusive } as PostgresLockHolder;
  if (since !== undefined) entry.since = since;
  if (owner !== undefined) entry.owner = owner;
  if (row !== undefined) {
    entry.pid = row.pid;
    if (row.applicationName !== undefined) entry.applicationName = row.applicationName;
    if (row.clientAddress !== undefined) entry.clientAddress = row.clientAddress;
  }
  entry.own = own;
  return entry;
}

/** Longest-waiting first; those whose start is unknown last, in the order given. */
function bySince(a: LockHolder, b: LockHolder): number {
  if (a.since === undefined || b.since === undefined) {
    return a.since === undefined ? (b.since === undefined ? 0 : 1) : -1;
  }
  return a.since.getTime() - b.since.getTime();
}

/**
 * The answer of `inspect`: the other backends from `pg_locks` (one entry each), this state's own
 * holders and waiters from its books instead of its sessions' rows.
 *
 * @param own The pids of the state's sessions.
 */
export function inspection(
  key: string,
  id: bigint,
  rows: readonly AdvisoryLock[],
  own: ReadonlySet<number>,
  local: { readonly holders: readonly OwnEntry[]; readonly waiters: readonly OwnEntry[] },
): PostgresLockInfo {
  const byPid = new Map<number, AdvisoryLock>();
  for (const row of rows) if (!byPid.has(row.pid)) byPid.set(row.pid, row);
  const holders: PostgresLockHolder[] = [];
  const waiters: PostgresLockHolder[] = [];
  for (const row of rows) {
    if (own.has(row.pid)) continue;
    const entry = holder(row.exclusive, row.since, ownerOf(row), row, false);
    (row.granted ? holders : waiters).push(entry);
  }
  for (const entry of local.holders) {
    const row = entry.pid === undefined ? undefined : byPid.get(entry.pid);
    const owner = entry.owner ?? (row === undefined ? undefined : ownerOf(row));
    holders.push(holder(entry.exclusive, entry.since, owner, row, true));
  }
  for (const entry of local.waiters) {
    waiters.push(holder(entry.exclusive, entry.since, entry.owner, undefined, true));
  }
  waiters.sort(bySince);
  return { key, id, holders, waiters };
}

/** Options of {@link listLocks}. */
export interface ListLocksOptions {
  /** The namespace of `keys` (see `PostgresStateOptions.namespace`). Default `""`. */
  namespace?: string;
  /**
   * Only the locks of these keys, each then named in {@link AdvisoryLock.key}. Left out: every
   * advisory lock of the database, of any namespace or application (a lock id does not tell its
   * key).
   */
  keys?: readonly string[];
}

const LIST_OPTIONS = optionNames<ListLocksOptions>({ namespace: true, keys: true });

/** `listLocks` of the entry point (`backends/postgres.ts`), which documents it. */
export async function listAdvisoryLocks(
  sql: postgres.Sql | string,
  options: ListLocksOptions = {},
): Promise<AdvisoryLock[]> {
  checkOptions(options, LIST_OPTIONS, "listLocks options");
  const { namespace = "", keys } = options;
  if (typeof namespace !== "string") {
    throw optionTypeError("listLocks options", "namespace", "a string", namespace);
  }
  if (keys !== undefined && (!Array.isArray(keys) || keys.some((k) => typeof k !== "string"))) {
    throw optionTypeError("listLocks options", "keys", "an array of strings", keys);
  }
  const names = new Map<bigint, string>();
  for (const key of keys ?? []) names.set(advisoryLockId(namespace, key), key);
  let client: postgres.Sql;
  if (typeof sql === "string") {
    if (!/^postgres(ql)?:\/\//i.test(sql)) {
      throw new TypeError(`not a PostgreSQL connection URL: ${show(sql)}`);
    }
    client = postgres(sql, {
      max: 1,
      onnotice: () => {},
      connection: { application_name: "shared-state locks" },
    });
  } else if (typeof sql === "function") {
    client = sql;
  } else {
    throw new TypeError(
      `listLocks needs a connection URL or a postgres.js client, got ${show(sql)}`,
    );
  }
  try {
    const rows = await client.unsafe(
      advisoryLocks(keys === undefined ? undefined : [...names.keys()]),
    );
    return rows.map((row) => {
      const lock = parseAdvisoryLock(row);
      const key = names.get(lock.id);
      if (key === undefined) return lock;
      const { id, ...rest } = lock;
      return { id, key, ...rest };
    });
  } finally {
    if (client !== sql) await client.end({ timeout: 1 }).catch(() => {});
  }
}
