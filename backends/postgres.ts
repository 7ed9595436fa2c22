/**
 * {@link PostgresState}: named read/write locks shared by every process and machine that uses
 * the same PostgreSQL database, on its advisory locks.
 *
 * ```ts
 * import { PostgresState } from "@momotor/shared-state/postgres";
 *
 * await using state = new PostgresState(Deno.env.get("DATABASE_URL")!, { namespace: "grader" });
 * await using _lock = await state.getLock("grading/42", { timeout: 5000 });
 * // … only one worker anywhere runs this at a time …
 * ```
 *
 * @module
 */

import postgres from "postgres";
import { backendFailure } from "../internal/failures.ts";
import { backendLogger } from "../internal/log.ts";
import {
  type Lock,
  type LockRequest,
  type Permit,
  type PermitRequest,
  StateABC,
} from "../state.ts";
import {
  type AdvisoryLock,
  listAdvisoryLocks,
  type ListLocksOptions,
  type PostgresLockInfo,
} from "./postgres/inspect.ts";
import { LockTable } from "./postgres/lock_table.ts";
import {
  type PostgresStateOptions,
  type ResolvedOptions,
  resolveOptions,
} from "./postgres/options.ts";
import { SessionPool } from "./postgres/pool.ts";
import { DatabaseLocks } from "./postgres/acquisition.ts";
import { sessionMode, transactionMode } from "./postgres/modes.ts";

import { advisoryLockId } from "./postgres/lock_id.ts";
import { PermitTable } from "./postgres/permits.ts";

export { ADVISORY_LOCK_ID_SQL, advisoryLockId, advisoryPermitSlot } from "./postgres/lock_id.ts";
export type {
  AdvisoryLock,
  ListLocksOptions,
  PostgresLockHolder,
  PostgresLockInfo,
} from "./postgres/inspect.ts";
export type { PostgresClientOptions, PostgresStateOptions } from "./postgres/options.ts";
export type { LockMode } from "./postgres/statements.ts";

const log = backendLogger("postgres");

/** The shortest time a new connection is given to be ready, in milliseconds. */
const MIN_OPEN_TIMEOUT_MS = 1000;

/** A postgres.js client, `postgres(url, options)`: what {@link listLocks} takes besides a URL. */
export type PostgresClient = postgres.Sql;

/**
 * Every advisory lock held or awaited in the database, by any process, or only those of `keys`:
 * what the `shared-state locks` command shows, for finding a stuck lock. One entry per backend and
 * lock; holders first, then waiters, the longest-waiting first.
 *
 * @example
 * ```ts
 * import { listLocks } from "@momotor/shared-state/postgres";
 *
 * const url = Deno.env.get("DATABASE_URL") ?? "postgres://localhost/app";
 * for (const lock of await listLocks(url, { namespace: "grader", keys: ["grading/42"] })) {
 *   console.log(lock.key, lock.granted ? "held" : "waiting", lock.pid, lock.applicationName);
 * }
 * ```
 *
 * @param sql A connection URL (a connection is opened and ended for this call), or a postgres.js
 *   client (left open).
 * @param options The keys to look at, and their namespace.
 * @returns The locks, as {@link AdvisoryLock}s.
 * @throws {TypeError} for a bad URL or bad options.
 */
export function listLocks(
  sql: PostgresClient | string,
  options?: ListLocksOptions,
): Promise<AdvisoryLock[]> {
  return listAdvisoryLocks(sql, options);
}

function isClient(value: unknown): value is postgres.Sql {
  if (typeof value !== "function") return false;
  const options = (value as { options?: unknown }).options;
  return typeof options === "object" && options !== null && "shared" in options;
}

/**
 * Named read/write locks on PostgreSQL advisory locks, for workers on many machines that share a
 * database: per key, many shared holders or one exclusive holder.
 *
 * - Keys become 64-bit lock ids ({@link advisoryLockId}); `namespace` keeps applications apart.
 * - Requests of one process are settled in process first (PostgreSQL's advisory locks are
 *   reentrant per session), first come first served; waiting across processes happens in
 *   PostgreSQL's own fair lock queue, never in a polling loop.
 * - Uncontended locks share one connection (a thousand held locks take one connection); each
 *   request that has to wait in PostgreSQL takes a connection of its own while it waits.
 * - A dead connection aborts the `signal` of every lock held on it with `LockLost`, promptly;
 *   nothing is re-acquired behind your back, and new requests connect again.
 *
 * Give it a connection URL (the state opens and ends its own connections) or a postgres.js
 * client: the state then opens its own connections with that client's settings, one client per
 * connection, and leaves yours open.
 *
 * @example Deno
 * ```ts
 * import { PostgresState } from "@momotor/shared-state/postgres";
 *
 * const state = new PostgresState("postgres://app@db.internal/app", { namespace: "grader" });
 * await state.withLock("report", async (lock) => {
 *   await fetch("https://example.com/build", { signal: lock.signal });
 * });
 * await state.close();
 * ```
 *
 * @example With an existing postgres.js client
 * ```ts
 * import postgres from "postgres";
 * import { PostgresState } from "@momotor/shared-state/postgres";
 *
 * const sql = postgres(process.env.DATABASE_URL!);
 * const state = new PostgresState(sql, { namespace: "grader" });
 * await state.close(); // `sql` stays open
 * ```
 */
export class PostgresState extends StateABC {
  readonly #options: ResolvedOptions;
  readonly #pool: SessionPool;
  readonly #table: LockTable;
  /** Issue 13: counting semaphores on the same connections. */
  readonly #permits: PermitTable;
  readonly #template: postgres.Sql | undefined;

  /**
   * Makes a state; nothing connects before the first request.
   *
   * @param sql A connection URL (`postgres://user:password@host:port/database`), or a postgres.js
   *   client whose settings the state's own connections copy.
   * @param options Namespace, mode and tuning.
   * @throws {TypeError} for anything else, or for ill-typed options.
   * @throws {RangeError} for out-of-range numbers in the options.
   */
  constructor(sql: postgres.Sql | string, options?: PostgresStateOptions) {
    super();
    const resolved = resolveOptions(options);
    let client: postgres.Sql;
    if (typeof sql === "string") {
      // postgres.js reads an empty URL as "localhost, from the environment" and takes any scheme:
      // both are more likely a missing setting than a wish.
      if (!/^postgres(ql)?:\/\//i.test(sql)) {
        throw new TypeError(
          `not a PostgreSQL connection URL (postgres://… or postgresql://…): ${
            JSON.stringify(sql.slice(0, 40))
          }`,
        );
      }
      try {
        // Never connects: it only parses the URL and options for the state's own clients.
        client = postgres(sql, { ...options?.clientOptions, onnotice: () => {} });
      } catch (error) {
        throw new TypeError(`not a valid PostgreSQL connection URL: ${String(error)}`, {
          cause: error,
        });
      }
      this.#template = client;
    } else if (isClient(sql)) {
      client = sql;
    } else {
      throw new TypeError(
        `PostgresState needs a connection URL or a postgres.js client, got ${
          sql === null ? "null" : typeof sql
        }`,
      );
    }
    this.#options = resolved;
    const transaction = resolved.mode === "transaction";
    this.#pool = new SessionPool(
      {
        options: client.options as unknown as postgres.Options<Record<string, never>>,
        sessionSettings: !transaction,
        // A connection must be ready within the heartbeat bound too (issue 9: a server that
        // accepts and never answers), but never sooner than a slow TLS handshake and password
        // check may take; without heartbeats, postgres.js's connect_timeout decides.
        openTimeout: resolved.heartbeatInterval === 0
          ? 0
          : Math.max(MIN_OPEN_TIMEOUT_MS, 3 * resolved.heartbeatInterval),
        releases: new Set(),
      },
      {
        maxConnections: resolved.maxConnections,
        keepIdle: resolved.keepIdleConnections,
        heartbeatInterval: resolved.heartbeatInterval,
      },
    );
    const database = new DatabaseLocks(this.#pool, transaction ? transactionMode : sessionMode);
    this.#table = new LockTable({
      namespace: resolved.namespace,
      database,
      handoffWindow: resolved.handoffWindow,
      name: resolved.name,
    });
    this.#permits = new PermitTable({
      namespace: resolved.namespace,
      database,
      pool: this.#pool,
      name: resolved.name,
    });
  }

  /** The namespace of this state's lock ids. */
  get namespace(): string {
    return this.#options.namespace;
  }

  /** `"session"` or `"transaction"`. */
  get mode(): "session" | "transaction" {
    return this.#options.mode;
  }

  /** Number of keys (lock keys and permit keys) held, awaited or being settled right now. */
  get size(): number {
    return this.#table.size + this.#permits.size;
  }

  /** Number of database connections open or opening right now. */
  get connections(): number {
    return this.#pool.size;
  }

  /** Settles the request in process, then in PostgreSQL; never throws, rejects with LockFailed. */
  protected acquire(key: string, request: LockRequest): Promise<Lock> {
    try {
      return this.#table.acquire(key, request);
    } catch (error) {
      // A bug must still fail the request the documented way, never leak another error.
      return Promise.reject(
        backendFailure(
          { key, exclusive: request.exclusive },
          "unreachable",
          `internal error: ${String(error)}`,
          error,
        ),
      );
    }
  }

  /** This process's own holders first, then PostgreSQL (a try-lock that is undone at once). */
  protected probe(key: string, exclusive: boolean): Promise<boolean> {
    return this.#table.probe(key, exclusive);
  }

  /**
   * Who holds `key` and who waits for it in every process on the database (`pg_locks` with
   * `pg_stat_activity`: pid, `application_name`, client address, since when a waiter waits), this
   * state's own holders and requests one by one from its books. Other roles' sessions show their
   * address and times only to members of `pg_read_all_stats`.
   *
   * @example
   * ```ts
   * import { PostgresState } from "@momotor/shared-state/postgres";
   *
   * await using state = new PostgresState(Deno.env.get("DATABASE_URL")!);
   * const { holders, waiters } = await state.inspect("grading/42");
   * for (const holder of holders) console.log(holder.owner, holder.exclusive);
   * console.log(`${waiters.length} waiting`);
   * ```
   *
   * @param key Any string.
   * @returns The holders and waiters, and the key's lock id.
   * @throws {LockFailed} when the state is closed or the database cannot be reached.
   */
  override inspect(key: string): Promise<PostgresLockInfo> {
    return super.inspect(key) as Promise<PostgresLockInfo>;
  }

  /** Reads `pg_locks` on the main connection, and the state's own books. */
  protected override inspectKey(key: string): Promise<PostgresLockInfo> {
    return this.#table.inspect(key);
  }

  /** Fails waiters, loses held locks, ends every connection the state opened. */
  protected async shutdown(): Promise<void> {
    this.#table.close();
    this.#permits.close();
    await this.#pool.shutdown();
    await this.#template?.end({ timeout: 0 }).catch(() => {});
    log.debug("{name}: closed", { name: this.#options.name });
  }

  // ---- Permits and multi-key locks (issue 13) ----

  /** Settles the request in process, then on the key's slots in PostgreSQL. */
  protected acquirePermit(key: string, request: PermitRequest): Promise<Permit> {
    try {
      return this.#permits.acquire(key, request);
    } catch (error) {
      return Promise.reject(
        backendFailure(
          { key, exclusive: false, limit: request.limit },
          "unreachable",
          `internal error: ${String(error)}`,
          error,
        ),
      );
    }
  }

  /** This process's own holders first, then PostgreSQL (a slot search undone at once). */
  protected probePermit(key: string, limit: number): Promise<boolean> {
    return this.#permits.probe(key, limit);
  }

  /** By lock id (then by key): the one order every process using the database shares. */
  protected override lockOrder(keys: readonly string[]): readonly string[] {
    const { namespace } = this.#options;
    return keys.map((key) => ({ key, id: advisoryLockId(namespace, key) }))
      .sort((a, b) => a.id < b.id ? -1 : a.id > b.id ? 1 : a.key < b.key ? -1 : 1)
      .map(({ key }) => key);
  }
}
