/**
 * The PostgreSQL subjects: PostgresState, the npm `advisory-lock` package, and the floor, raw SQL
 * through postgres.js. Each one is behind the same small {@link PgLocker} interface, and each tags
 * its connections with an `application_name` so that `pg_stat_activity` can count them.
 *
 * @module
 */

import postgres from "postgres";
import advisoryLockModule from "npm:advisory-lock@^2.0.0";
import { advisoryLockId, PostgresState } from "../backends/postgres.ts";
import type { Locker } from "./subjects.ts";

/** Named locks on PostgreSQL, plus the connections they opened. */
export interface PgLocker extends Locker {
  /** One `select 1` round trip (the floor only). */
  ping?(): Promise<void>;
  /** Ends every connection the locker opened. */
  close(): Promise<void>;
}

/** What a locker is made for. */
export interface PgSetup {
  /** The database URL. */
  url: string;
  /** The `application_name` of every connection the locker opens. */
  applicationName: string;
  /** The most critical sections that run at once in this process (one per task). */
  tasks: number;
  /**
   * `true` when the critical sections that run at once always lock distinct keys, so that raw SQL
   * may run them all on one connection (a session does not keep its own holders apart).
   */
  distinctKeys?: boolean;
}

/** A PostgreSQL lock library under test. */
export interface PgSubject {
  /** Column title. */
  name: string;
  /** How it is driven, for the notes under the table. */
  how: string;
  /** Whether it has shared (read) locks. */
  shared: boolean;
  /** Whether it is the floor (raw SQL), which alone times a bare round trip. */
  floor?: boolean;
  /**
   * The most tasks of one process it runs at once, when it needs a connection per task: a row
   * with more tasks gives it this many (and says so in its cell).
   */
  maxTasks?: number;
  /** The most locks it holds at once in the connection count, when each takes a connection. */
  maxHeld?: number;
  /** Opens a locker; connections may open lazily, on first use. */
  create(setup: PgSetup): Promise<PgLocker>;
}

/** The namespace of the benchmark's lock ids, apart from the tests' and from applications'. */
export const NAMESPACE = "shared-state-bench";

/**
 * Tasks of one process given to a subject that opens a connection per waiting task: 100 tasks
 * would take 100 connections, all that this server allows (`max_connections` 100, shared with
 * others). On one key the rate is bound by the database's hand-off, not by the number of waiters.
 */
export const CONNECTION_PER_TASK_MAX = 20;

const postgresState: PgSubject = {
  name: "PostgresState",
  how: "`getLock(key, { exclusive })` then `await lock.release()`, default options " +
    "(`handoffWindow` 100 ms, `maxConnections` 10)",
  shared: true,
  create({ url, applicationName }) {
    const state = new PostgresState(url, {
      namespace: NAMESPACE,
      clientOptions: { connection: { application_name: applicationName } },
    });
    return Promise.resolve({
      async run(key, exclusive, body) {
        const lock = await state.getLock(key, { exclusive });
        try {
          await body();
        } finally {
          await lock.release();
        }
      },
      close: () => state.close(),
    });
  },
};

type CreateMutex = (url: string) => (name: string) => { lock(): Promise<() => Promise<void>> };
// A CommonJS module whose `exports.default` is the function: Deno and Node hand over `exports`.
const createMutex = ((advisoryLockModule as unknown as { default?: CreateMutex }).default ??
  advisoryLockModule) as CreateMutex;

const advisoryLock: PgSubject = {
  name: "advisory-lock",
  how: "npm `advisory-lock` 2 (on `pg`): `await createMutex(url)(key).lock()` then the returned " +
    "unlock; exclusive only; it opens a connection for every `lock()` and ends it on unlock",
  shared: false,
  maxTasks: CONNECTION_PER_TASK_MAX,
  maxHeld: CONNECTION_PER_TASK_MAX,
  create({ url, applicationName }) {
    const target = new URL(url);
    target.searchParams.set("application_name", applicationName);
    const mutexes = new Map<string, ReturnType<ReturnType<CreateMutex>>>();
    const forKey = createMutex(target.href);
    return Promise.resolve({
      async run(key, _exclusive, body) {
        let mutex = mutexes.get(key);
        if (mutex === undefined) mutexes.set(key, mutex = forKey(key));
        const unlock = await mutex.lock();
        try {
          await body();
        } finally {
          await unlock();
        }
      },
      close: () => Promise.resolve(),
    });
  },
};

/** The lock id of a key, as PostgresState computes it, cached (hashing is not the floor's job). */
const ids = new Map<string, string>();
function lockId(key: string): string {
  let id = ids.get(key);
  if (id === undefined) ids.set(key, id = `'${advisoryLockId(NAMESPACE, key)}'::int8`);
  return id;
}

/** A postgres.js client with one connection, which is never recycled, as PostgresState's are. */
export function rawClient(url: string, applicationName: string): postgres.Sql {
  return postgres(url, {
    max: 1,
    idle_timeout: 0,
    max_lifetime: null,
    prepare: false,
    fetch_types: false,
    onnotice: () => {},
    connection: { application_name: applicationName },
  });
}

const raw: PgSubject = {
  name: "raw SQL (floor)",
  how: "postgres.js, one connection per task (one in all in the single-task rows): " +
    "`select pg_advisory_lock[_shared](id)` then `select pg_advisory_unlock[_shared](id)`, " +
    "simple protocol, ids precomputed",
  shared: true,
  floor: true,
  maxTasks: CONNECTION_PER_TASK_MAX,
  create({ url, applicationName, tasks, distinctKeys }) {
    const free = Array.from(
      { length: distinctKeys ? 1 : tasks },
      () => rawClient(url, applicationName),
    );
    const all = [...free];
    return Promise.resolve({
      async ping() {
        await all[0].unsafe("select 1");
      },
      async run(key, exclusive, body) {
        const sql = distinctKeys ? all[0] : free.pop();
        if (sql === undefined) throw new Error("more critical sections at once than tasks");
        const suffix = exclusive ? "" : "_shared";
        const id = lockId(key);
        try {
          await sql.unsafe(`select pg_advisory_lock${suffix}(${id})`);
          try {
            await body();
          } finally {
            await sql.unsafe(`select pg_advisory_unlock${suffix}(${id})`);
          }
        } finally {
          if (!distinctKeys) free.push(sql);
        }
      },
      close: async () => {
        await Promise.all(all.map((sql) => sql.end({ timeout: 1 })));
      },
    });
  },
};

/** Every PostgreSQL subject, PostgresState first (the others are compared against it). */
export const PG_SUBJECTS: readonly PgSubject[] = [postgresState, advisoryLock, raw];
