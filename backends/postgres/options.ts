/** The options of PostgresState, their defaults and their checks. */

import type { Options } from "postgres";
import {
  checkOptions,
  optionNames,
  optionRangeError,
  optionTypeError,
} from "../../internal/arguments.ts";
import type { LockMode } from "./statements.ts";

/** postgres.js connection options, as `postgres(url, options)` takes them. */
export type PostgresClientOptions = Options<Record<string, never>>;

/** Options of {@link PostgresState}. Every field is optional. */
export interface PostgresStateOptions {
  /**
   * Keeps applications that share a database apart: the same key in two namespaces is two
   * different locks. Part of the lock id ({@link advisoryLockId}). Default `""`.
   */
  namespace?: string;
  /**
   * `"session"` (default): session-level advisory locks, many on one connection. Needs a direct
   * connection or a session-mode pooler.
   *
   * `"transaction"`: each held lock is an open transaction holding `pg_advisory_xact_lock`,
   * committed on release; for transaction-mode poolers (PgBouncer `pool_mode=transaction`,
   * Supavisor port 6543, Neon `-pooler` hosts). Costs one connection per held lock.
   */
  mode?: LockMode;
  /**
   * The most database connections the state opens at once, its main connection included.
   * Requests that need another one while all are busy wait for one, within their timeout.
   * Default 10.
   */
  maxConnections?: number;
  /**
   * Milliseconds between heartbeats (`select 1`) on connections that hold locks, have a
   * transaction open or have a request in flight; a connection blocked in a lock wait is watched
   * from the main connection in `pg_stat_activity`. A heartbeat still unanswered at the next two
   * ticks declares the connection dead, its locks lost and its requests failed: on a silent
   * network every request settles within two to three intervals, and a new connection must be
   * ready within three (at least a second). `0` turns heartbeats off (a closed connection is
   * still noticed at once; postgres.js's `connect_timeout` bounds connecting). Default 5000.
   */
  heartbeatInterval?: number;
  /**
   * Milliseconds after the database granted a lock during which other requests of this process
   * may share it (shared mode) or take it over (a local successor) without a round trip. After
   * that the lock goes back to PostgreSQL between holders, so that remote waiters get their turn.
   * `0` always goes through PostgreSQL. Default 100.
   */
  handoffWindow?: number;
  /**
   * Idle spare connections kept open for the next wait or transaction, each for at most 5 s after
   * its last use. Default 4: fewer than the keys a process waits on at once make every finished
   * wait end a connection and the next wait open one (a server process each).
   */
  keepIdleConnections?: number;
  /** A name for this state in debug logs. Default `"postgres"`. */
  name?: string;
  /**
   * postgres.js options for the connections, when the state is given a URL (`ssl`,
   * `connect_timeout`, `host`, …). Pool settings (`max`, `idle_timeout`, `max_lifetime`) are
   * ignored: every connection of the state is its own client, never recycled.
   */
  clientOptions?: PostgresClientOptions;
}

/** Options with every default filled in. */
export interface ResolvedOptions {
  readonly namespace: string;
  readonly mode: LockMode;
  readonly maxConnections: number;
  readonly heartbeatInterval: number;
  readonly handoffWindow: number;
  readonly keepIdleConnections: number;
  readonly name: string;
}

const WHAT = "PostgresState options";

/** Every option, for the unknown-option check (`clientOptions` is postgres.js's own bag). */
const OPTION_NAMES = optionNames<PostgresStateOptions>({
  namespace: true,
  mode: true,
  maxConnections: true,
  heartbeatInterval: true,
  handoffWindow: true,
  keepIdleConnections: true,
  name: true,
  clientOptions: true,
});

function count(value: unknown, name: string, fallback: number, min: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== "number") throw optionTypeError(WHAT, name, "a number", value);
  if (!Number.isInteger(value) || value < min) {
    throw optionRangeError(WHAT, name, `an integer >= ${min}`, value);
  }
  return value;
}

function milliseconds(value: unknown, name: string, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== "number") throw optionTypeError(WHAT, name, "a number", value);
  if (!(value >= 0) || value > 2 ** 31 - 1) {
    throw optionRangeError(WHAT, name, "between 0 and 2^31-1 ms", value);
  }
  return value;
}

/** Validates options (TypeError/RangeError naming the bad one) and fills in defaults. */
export function resolveOptions(options: PostgresStateOptions | undefined): ResolvedOptions {
  if (options === undefined) options = {};
  checkOptions(options, OPTION_NAMES, WHAT);
  const { namespace = "", mode = "session", name = "postgres", clientOptions } = options;
  if (typeof namespace !== "string") {
    throw optionTypeError(WHAT, "namespace", "a string", namespace);
  }
  if (mode !== "session" && mode !== "transaction") {
    throw optionTypeError(WHAT, "mode", '"session" or "transaction"', mode);
  }
  if (typeof name !== "string") throw optionTypeError(WHAT, "name", "a string", name);
  if (
    clientOptions !== undefined && (typeof clientOptions !== "object" || clientOptions === null)
  ) {
    throw optionTypeError(WHAT, "clientOptions", "an object of postgres.js options", clientOptions);
  }
  return {
    namespace,
    mode,
    name,
    maxConnections: count(options.maxConnections, "maxConnections", 10, 2),
    keepIdleConnections: count(options.keepIdleConnections, "keepIdleConnections", 4, 0),
    heartbeatInterval: milliseconds(options.heartbeatInterval, "heartbeatInterval", 5000),
    handoffWindow: milliseconds(options.handoffWindow, "handoffWindow", 100),
  };
}
