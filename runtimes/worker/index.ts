/**
 * A Cloudflare Worker that uses the package as a Workers user would: bundled by wrangler from the
 * packed npm tarball, run under `wrangler dev --local` by `runtimes/workers_test.ts`, which asks
 * it one thing per request and checks the JSON answer. The Worker needs `nodejs_compat` for
 * PostgresState only (its `node:net` sockets); LocalState and BrokerState are web-standard.
 *
 * Routes (each answers `{ ok: true, ... }` or `{ ok: false, error }`):
 * - `/local`: a LocalState, with `await using`.
 * - `/broker?key=K&timeout=MS`: a BrokerState of this request, closed by `await using`.
 * - `/postgres?key=K&timeout=MS`: the same with a PostgresState.
 * - `/reuse/broker`, `/reuse/postgres`: one state kept at module scope, used by every request
 *   (what docs/runtimes.md says not to do): each request must get a lock or a `LockFailed`,
 *   never another error; `/reuse/broker/close` and `/reuse/postgres/close` close it.
 * - `/wait-until?key=K`: takes a broker lock and answers without releasing it, but hands
 *   `state.close()` to `ctx.waitUntil`, which releases it after the response.
 * - `/object/broker?key=K`, `/object/postgres?key=K`: the same as `/broker` and `/postgres`, by
 *   a Durable Object that keeps one state of each for every request it serves.
 */

import { LocalState, LockFailed, type StateABC } from "@momotor/shared-state";
import { BrokerState } from "@momotor/shared-state/broker";
import { PostgresState } from "@momotor/shared-state/postgres";

/** The variables `wrangler dev --var` passes, and the Durable Object binding. */
interface Env {
  BROKER_URL: string;
  TOKEN: string;
  DATABASE_URL: string;
  /** The PostgresState namespace, shared with the test's own state. */
  NAMESPACE: string;
  LOCKS: {
    idFromName(name: string): unknown;
    get(id: unknown): { fetch(request: Request): Promise<Response> };
  };
}

/** The part of Cloudflare's `ExecutionContext` used here. */
interface Context {
  waitUntil(promise: Promise<unknown>): void;
}

/** An error as the test sees it: whether it is a `LockFailed`, and its reason. */
function describe(error: unknown) {
  const e = error as { name?: string; reason?: string; message?: string };
  return {
    name: e?.name ?? typeof error,
    lockFailed: error instanceof LockFailed,
    reason: e?.reason,
    message: String(e?.message ?? error),
  };
}

const answer = (body: Record<string, unknown>) => Response.json(body);
const failure = (error: unknown) => answer({ ok: false, error: describe(error) });

/** Takes `key` on `state` (timeout from the query), then releases it. */
async function lockOnce(state: StateABC, url: URL): Promise<Response> {
  const key = url.searchParams.get("key") ?? "worker";
  const timeout = Number(url.searchParams.get("timeout") ?? "5000");
  const started = Date.now();
  try {
    const lock = await state.getLock(key, { timeout });
    const heldElsewhere = !(await state.testLock(key));
    await lock.release();
    return answer({ ok: true, heldElsewhere, free: await state.testLock(key) });
  } catch (error) {
    return answer({ ok: false, error: describe(error), ms: Date.now() - started });
  }
}

let keptBroker: BrokerState | undefined;
let keptPostgres: PostgresState | undefined;

function brokerState(env: Env): BrokerState {
  return new BrokerState(env.BROKER_URL, { token: env.TOKEN });
}

function postgresState(env: Env): PostgresState {
  return new PostgresState(env.DATABASE_URL, { namespace: env.NAMESPACE });
}

/**
 * A Durable Object (the plain-class form, which needs no `cloudflare:workers` import): its states
 * live as long as the object and serve every request sent to it, which a Worker's module scope
 * cannot do.
 */
export class Locks {
  readonly #broker: BrokerState;
  readonly #postgres: PostgresState;

  constructor(_state: unknown, env: Env) {
    this.#broker = brokerState(env);
    this.#postgres = postgresState(env);
  }

  fetch(request: Request): Promise<Response> {
    const url = new URL(request.url);
    return lockOnce(url.pathname === "/object/broker" ? this.#broker : this.#postgres, url);
  }
}

async function route(url: URL, env: Env, ctx: Context, request: Request): Promise<Response> {
  switch (url.pathname) {
    case "/object/broker":
    case "/object/postgres":
      return await env.LOCKS.get(env.LOCKS.idFromName("locks")).fetch(request);
    case "/local": {
      await using state = new LocalState();
      const before = await state.testLock("a");
      {
        await using _lock = await state.getLock("a", { exclusive: false });
        const sharedFree = await state.testLock("a", { exclusive: false });
        const exclusiveFree = await state.testLock("a");
        if (before !== true || sharedFree !== true || exclusiveFree !== false) {
          return answer({ ok: false, before, sharedFree, exclusiveFree });
        }
      }
      return answer({ ok: true, after: await state.testLock("a") });
    }
    case "/broker": {
      await using state = brokerState(env);
      return await lockOnce(state, url);
    }
    case "/postgres": {
      await using state = postgresState(env);
      return await lockOnce(state, url);
    }
    case "/reuse/broker":
      keptBroker ??= brokerState(env);
      return await lockOnce(keptBroker, url);
    case "/reuse/postgres":
      keptPostgres ??= postgresState(env);
      return await lockOnce(keptPostgres, url);
    case "/reuse/broker/close":
    case "/reuse/postgres/close": {
      const state = url.pathname === "/reuse/broker/close" ? keptBroker : keptPostgres;
      if (url.pathname === "/reuse/broker/close") keptBroker = undefined;
      else keptPostgres = undefined;
      try {
        await state?.close();
        return answer({ ok: true });
      } catch (error) {
        return failure(error);
      }
    }
    case "/wait-until": {
      const state = brokerState(env);
      try {
        await state.getLock(url.searchParams.get("key") ?? "worker", { timeout: 5000 });
      } catch (error) {
        await state.close();
        return failure(error);
      }
      // The lock is left held: closing the state after the response releases it.
      ctx.waitUntil(state.close());
      return answer({ ok: true });
    }
  }
  return new Response("not found\n", { status: 404 });
}

export default {
  async fetch(request: Request, env: Env, ctx: Context): Promise<Response> {
    try {
      return await route(new URL(request.url), env, ctx, request);
    } catch (error) {
      return Response.json({ ok: false, error: describe(error) }, { status: 500 });
    }
  },
};
