/**
 * The PostgreSQL test environment: where the server is (`DATABASE_URL`), whether to skip when it
 * does not answer (loudly) or fail (`REQUIRE_POSTGRES=1`), and queries that look at `pg_locks`.
 */

import assert from "node:assert/strict";
import process from "node:process";
import postgres from "postgres";
import { PostgresState, type PostgresStateOptions } from "../backends/postgres.ts";
import type { ConformanceOptions } from "../testing.ts";

/** The server the PostgreSQL tests use. */
export const DATABASE_URL: string = process.env.DATABASE_URL ||
  "postgres://postgres@127.0.0.1:5432/postgres";

/** A postgres.js client for looking at the server from outside the states under test. */
export function adminClient(): postgres.Sql {
  return postgres(DATABASE_URL, { max: 2, onnotice: () => {}, connect_timeout: 5 });
}

let probed: Promise<string | false> | undefined;

/**
 * `false` when the server answers, else the reason to skip (printed loudly). Throws when
 * `REQUIRE_POSTGRES=1`, so that CI fails instead of skipping.
 */
export function postgresSkip(): Promise<string | false> {
  return probed ??= (async () => {
    const sql = postgres(DATABASE_URL, { max: 1, onnotice: () => {}, connect_timeout: 3 });
    try {
      await sql`select 1`;
      return false;
    } catch (error) {
      const reason = `no PostgreSQL server answers at ${DATABASE_URL} (${String(error)})`;
      if (process.env.REQUIRE_POSTGRES === "1") {
        throw new Error(`REQUIRE_POSTGRES=1 but ${reason}`);
      }
      console.error(`\n!!!!! SKIPPING POSTGRESQL TESTS: ${reason}. Set DATABASE_URL. !!!!!\n`);
      return `SKIPPED: ${reason}`;
    } finally {
      await sql.end({ timeout: 1 }).catch(() => {});
    }
  })();
}

/**
 * The `application_name` that a test's connections carry for `name`: the name and this process's
 * id, so that test runs sharing a server (two developers, overlapping CI jobs) never count each
 * other's sessions and locks. The helpers below take the bare name.
 */
export function runName(name: string): string {
  return `${name}#${process.pid}`;
}

/**
 * A state whose connections carry `application_name`, so that tests can find its sessions in
 * `pg_stat_activity` and its locks in `pg_locks` while other test files run.
 */
export function testState(
  applicationName: string,
  options: PostgresStateOptions = {},
): PostgresState {
  return new PostgresState(DATABASE_URL, {
    ...options,
    clientOptions: {
      ...options.clientOptions,
      connection: {
        ...options.clientOptions?.connection,
        application_name: runName(applicationName),
      },
    },
  });
}

/** Advisory locks (granted or awaited) of the sessions named `applicationName`. */
export async function advisoryLocksOf(
  sql: postgres.Sql,
  applicationName: string,
): Promise<{ pid: number; mode: string; granted: boolean; id: string }[]> {
  const rows = await sql<{ pid: number; mode: string; granted: boolean; id: string }[]>`
    select l.pid, l.mode, l.granted, ((l.classid::int8 << 32) | l.objid::int8)::text as id
    from pg_locks l join pg_stat_activity a on a.pid = l.pid
    where l.locktype = 'advisory' and a.application_name = ${runName(applicationName)}`;
  // A plain array, so that `assert.deepEqual(rows, [])` compares contents, not prototypes.
  return [...rows];
}

/** Backend pids of the sessions named `applicationName`. */
export async function sessionsOf(sql: postgres.Sql, applicationName: string): Promise<number[]> {
  const rows = await sql`
    select pid from pg_stat_activity where application_name = ${runName(applicationName)}`;
  return rows.map((row) => Number(row.pid));
}

/** Waits until `check` returns true, polling the server (a test's observation, not the code's). */
export async function eventually(
  check: () => Promise<boolean>,
  what: string,
  limitMs = 10_000,
): Promise<void> {
  const until = performance.now() + limitMs;
  while (!(await check())) {
    if (performance.now() > until) throw new Error(`never happened: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** Ends the given backends from outside, as an operator or a failover would. */
export async function terminate(sql: postgres.Sql, pids: readonly number[]): Promise<void> {
  if (pids.length === 0) return;
  await sql`select pg_terminate_backend(pid) from unnest(${pids as number[]}::int[]) as pid`;
}

/** Pids of the sessions named `applicationName` that hold (granted) or await advisory locks. */
export async function lockPids(
  sql: postgres.Sql,
  applicationName: string,
  granted: boolean,
): Promise<number[]> {
  const locks = await advisoryLocksOf(sql, applicationName);
  return [...new Set(locks.filter((lock) => lock.granted === granted).map((lock) => lock.pid))];
}

/**
 * Waits until exactly `count` sessions named `applicationName` wait for an advisory lock in
 * PostgreSQL's queue (observed from outside, through `pg_locks`).
 */
export function waitingInPostgres(
  sql: postgres.Sql,
  applicationName: string,
  count: number,
  what: string,
): Promise<void> {
  return eventually(
    async () => (await lockPids(sql, applicationName, false)).length === count,
    what,
  );
}

/** Resolves with the reason once `signal` is aborted. */
export function aborted(signal: AbortSignal): Promise<unknown> {
  if (signal.aborted) return Promise.resolve(signal.reason);
  return new Promise((resolve) => {
    signal.addEventListener("abort", () => resolve(signal.reason), { once: true });
  });
}

/**
 * Fails with `what` if `promise` has not settled within `limitMs`: a guard against a hang that
 * would otherwise stall the suite, never a measurement.
 */
export async function within<T>(promise: Promise<T>, what: string, limitMs = 10_000): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const guard = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`hung: ${what}`)), limitMs);
  });
  try {
    return await Promise.race([promise, guard]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * PostgresState as the conformance suite sees it. After each test, no state made by `create` may
 * keep a key entry, and the server may hold no advisory lock of the sessions named
 * `applicationName` (closed states ended their sessions).
 */
export function postgresBackend(
  skip: string | false,
  applicationName: string,
  create: () => PostgresState,
): ConformanceOptions {
  const states = new Set<PostgresState>();
  const admin = skip ? undefined : adminClient();
  return {
    skip,
    sharedBacking: true,
    create() {
      const state = create();
      states.add(state);
      return state;
    },
    async assertClean() {
      for (const state of states) assert.equal(state.size, 0, "PostgresState kept a key entry");
      states.clear();
      assert.deepEqual(await advisoryLocksOf(admin!, applicationName), []);
    },
    async teardown() {
      await admin?.end();
    },
  };
}
