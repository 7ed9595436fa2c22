/**
 * `shared-state locks [--json] [KEY…]` (issue 12): who holds and who awaits locks, and since
 * when. On PostgreSQL through `listLocks` (every process on the database; without KEY every
 * advisory lock of it), on a broker through `inspect` (every client; KEYs needed, a broker cannot
 * list its keys).
 */

import process from "node:process";
import { LockFailed } from "../errors.ts";
import type { StateABC } from "../state.ts";
import { type LocksArguments, UsageError } from "./args.ts";
import {
  type BackendTarget,
  BackendUnavailable,
  chooseBackend,
  type Environment,
  missingPackage,
  openState,
} from "./backend.ts";
import { ExitCode } from "./exit_codes.ts";
import { duration, tell } from "./messages.ts";

/** One holder or waiter: a line of the table, an object of `--json`. */
export interface LockEntry {
  /** The key; `null` where it is unknown (PostgreSQL, no KEY given: see `id`). */
  key: string | null;
  /** PostgreSQL: the advisory lock id, as a decimal string. */
  id?: string;
  mode: "exclusive" | "shared";
  state: "held" | "waiting";
  /** ISO 8601: a waiter's wait start; a holder's, where the backend knows (see the help). */
  since: string | null;
  /** PostgreSQL: the backend's pid and client address. */
  pid?: number;
  client?: string;
  /** PostgreSQL: the session's `application_name`. */
  application?: string;
  /** Who, as the backend names it: a broker client's `name (broker connection N)`. */
  owner?: string;
}

/** Longest key shown in the table; `--json` has them whole. */
const SHOWN_KEY = 60;

async function postgresEntries(
  target: Extract<BackendTarget, { kind: "postgres" }>,
  keys: readonly string[],
): Promise<LockEntry[]> {
  let listLocks;
  try {
    ({ listLocks } = await import("../backends/postgres.ts"));
  } catch (error) {
    throw missingPackage(error, "postgres") ?? error;
  }
  let locks;
  try {
    locks = await listLocks(target.url, {
      namespace: target.namespace,
      keys: keys.length === 0 ? undefined : keys,
    });
  } catch (error) {
    if (error instanceof TypeError) throw new UsageError(error.message, "locks");
    throw error;
  }
  return locks.map((lock) => {
    const since = lock.since ?? (lock.granted ? lock.transactionStart : undefined);
    const entry: LockEntry = {
      key: lock.key ?? null,
      id: String(lock.id),
      mode: lock.exclusive ? "exclusive" : "shared",
      state: lock.granted ? "held" : "waiting",
      since: since?.toISOString() ?? null,
      pid: lock.pid,
    };
    if (lock.clientAddress !== undefined) entry.client = lock.clientAddress;
    if (lock.applicationName !== undefined) entry.application = lock.applicationName;
    return entry;
  });
}

async function brokerEntries(
  target: BackendTarget,
  keys: readonly string[],
): Promise<LockEntry[]> {
  if (keys.length === 0) {
    throw new UsageError(
      "a broker cannot list its keys: name them (shared-state locks KEY…)",
      "locks",
    );
  }
  let state: StateABC | undefined;
  try {
    state = await openState(target, "shared-state locks");
    const entries: LockEntry[] = [];
    for (const key of keys) {
      const { holders, waiters } = await state.inspect(key);
      for (const [list, kind] of [[holders, "held"], [waiters, "waiting"]] as const) {
        for (const holder of list) {
          const entry: LockEntry = {
            key,
            mode: holder.exclusive ? "exclusive" : "shared",
            state: kind,
            since: holder.since?.toISOString() ?? null,
          };
          if (holder.owner !== undefined) entry.owner = holder.owner;
          entries.push(entry);
        }
      }
    }
    return entries;
  } finally {
    await state?.close();
  }
}

function shownKey(entry: LockEntry): string {
  if (entry.key === null) return `(id ${entry.id})`;
  const key = entry.key.length > SHOWN_KEY ? `${entry.key.slice(0, SHOWN_KEY)}…` : entry.key;
  return /^[^\s"\\\p{Cc}]+$/u.test(key) ? key : JSON.stringify(key);
}

function shownSince(since: string | null, now: number): string {
  if (since === null) return "-";
  const time = new Date(since);
  const ago = Math.max(0, now - time.getTime());
  return `${time.toISOString().replace(/\.\d+Z$/, "Z")} (${duration(ago)} ago)`;
}

/** The table: a header, then one line per entry, columns padded. */
export function lockTable(entries: readonly LockEntry[], now: number = Date.now()): string {
  const rows = [
    ["KEY", "MODE", "STATE", "SINCE", "PID/CLIENT", "APPLICATION"],
    ...entries.map((entry) => [
      shownKey(entry),
      entry.mode,
      entry.state,
      shownSince(entry.since, now),
      entry.owner ??
        (entry.pid === undefined ? "-" : `${entry.pid}${entry.client ? ` ${entry.client}` : ""}`),
      entry.application ?? "-",
    ]),
  ];
  const widths = rows[0].map((_, column) => Math.max(...rows.map((row) => row[column].length)));
  return rows.map((row) =>
    row.map((cell, column) => column === row.length - 1 ? cell : cell.padEnd(widths[column]))
      .join("  ").trimEnd()
  ).join("\n") + "\n";
}

/**
 * `shared-state locks`: prints the table (or JSON) and resolves with the exit code.
 *
 * @throws {UsageError} no URL, a URL the backend rejects, a broker without KEY.
 * @throws {BackendUnavailable} the backend's driver package is missing.
 */
export async function listLocks(args: LocksArguments, env: Environment): Promise<number> {
  const target = chooseBackend(args.backend, env, "locks");
  let entries: LockEntry[];
  try {
    entries = target.kind === "postgres"
      ? await postgresEntries(target, args.keys)
      : await brokerEntries(target, args.keys);
  } catch (error) {
    if (error instanceof UsageError || error instanceof BackendUnavailable) throw error;
    tell(
      error instanceof LockFailed
        ? `could not inspect ${JSON.stringify(error.key)} (${error.reason}): ${
          error.message.replace(/^Could not acquire [^:]*: /, "")
        }`
        : `the backend could not be reached: ${error instanceof Error ? error.message : error}`,
    );
    return ExitCode.unavailable;
  }
  process.stdout.write(args.json ? `${JSON.stringify(entries, null, 2)}\n` : lockTable(entries));
  return ExitCode.ok;
}
