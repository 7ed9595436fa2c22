/**
 * Runs a broker: `deno task broker`. Configured by environment variables:
 *
 * - `TOKEN` (required): the shared token clients present.
 * - `PORT` (default 8787) and `HOSTNAME` (default 127.0.0.1; 0.0.0.0 serves other machines).
 * - `DATABASE_URL` (optional): serve a PostgresState on that database (the broker is then a
 *   gateway for clients that cannot reach it) instead of an in-memory LocalState.
 * - `HEARTBEAT_INTERVAL` (optional, ms, default 5000).
 * - Limits (optional; see the options of `brokerHandler`): `AUTH_TIMEOUT` (ms, default 10,000),
 *   `MAX_CONNECTIONS` (default 10,000), `MAX_UNAUTHENTICATED` (default 1,000),
 *   `MAX_AUTH_FAILURES` (default 10) and `AUTH_FAILURE_WINDOW` (ms, default 60,000).
 *
 * Keeps serving through floods (issue 9, item 6): when `Deno.serve` stops accepting (out of file
 * descriptors: EMFILE), it listens again on the same port, retrying with a growing delay (100 ms
 * to 2 s), while the connections it has keep being served. Deno cannot time out a request whose
 * headers never finish arriving (denoland/deno#3515), so a flood of those holds descriptors until
 * its clients give up; the broker survives it and serves again once it ends.
 *
 * Stops cleanly on SIGINT/SIGTERM: every client's locks are released and their signals aborted.
 *
 * @module
 */

import { LocalState, type StateABC } from "../mod.ts";
import { brokerHandler, type BrokerOptions } from "../backends/broker.ts";

function fail(message: string): never {
  console.error(`broker: ${message}`);
  Deno.exit(2);
}

/** A number of milliseconds, or an integer, from the environment; `undefined` if unset. */
function numberFromEnv(name: string): number | undefined {
  const text = Deno.env.get(name);
  if (text === undefined || text === "") return undefined;
  const value = Number(text);
  if (!Number.isFinite(value)) fail(`${name} must be a number, got ${JSON.stringify(text)}`);
  return value;
}

const token = Deno.env.get("TOKEN") ?? "";
if (token === "") fail("set TOKEN to the shared token clients must present");
const port = Number(Deno.env.get("PORT") ?? "8787");
if (!Number.isInteger(port) || port < 0 || port > 65535) fail("PORT must be a port number");
const hostname = Deno.env.get("HOSTNAME") ?? "127.0.0.1";
const heartbeatInterval = numberFromEnv("HEARTBEAT_INTERVAL");
if (heartbeatInterval !== undefined && !(heartbeatInterval > 0 && heartbeatInterval < 2 ** 31)) {
  fail("HEARTBEAT_INTERVAL must be a number of milliseconds > 0");
}
const options: BrokerOptions = {
  token,
  heartbeatInterval,
  authTimeout: numberFromEnv("AUTH_TIMEOUT"),
  maxConnections: numberFromEnv("MAX_CONNECTIONS"),
  maxUnauthenticated: numberFromEnv("MAX_UNAUTHENTICATED"),
  maxAuthFailures: numberFromEnv("MAX_AUTH_FAILURES"),
  authFailureWindow: numberFromEnv("AUTH_FAILURE_WINDOW"),
};

const databaseUrl = Deno.env.get("DATABASE_URL");
let state: StateABC;
if (databaseUrl) {
  const { PostgresState } = await import("../backends/postgres.ts");
  state = new PostgresState(databaseUrl);
} else {
  state = new LocalState({ name: "broker" });
}

let handler: ReturnType<typeof brokerHandler>;
try {
  handler = brokerHandler(state, options);
} catch (error) {
  fail(error instanceof Error ? error.message : String(error)); // a limit out of range
}

/**
 * Delays before listening again after the server stopped accepting: from 100 ms, doubling, up to
 * 2 s while a flood lasts, back to 100 ms once a server has been accepting for 10 s.
 */
const FIRST_RETRY = 100;
const LAST_RETRY = 2000;
const STEADY = 10_000;

let server: Deno.HttpServer | undefined;
let listeningPort = port;
let listenedOnce = false;
let retryDelay = FIRST_RETRY;
let listenedAt = 0;
let retryTimer: ReturnType<typeof setTimeout> | undefined;
let stopping = false;
const { promise: stopped, resolve: stop } = Promise.withResolvers<void>();

/** Listens, or schedules another try: a server that stops accepting is replaced, not fatal. */
function listen(): void {
  retryTimer = undefined;
  if (stopping) return;
  let current: Deno.HttpServer;
  try {
    current = Deno.serve({
      port: listeningPort,
      hostname,
      onListen({ port }) {
        listenedAt = performance.now();
        if (listenedOnce) {
          console.error(`broker: listening again on port ${port}`);
          return;
        }
        listenedOnce = true;
        listeningPort = port; // a retry takes the same port, also when PORT=0 picked it
        const backend = databaseUrl ? "PostgreSQL" : "memory";
        console.log(`broker: serving ${backend} locks on ws://${hostname}:${port}/`);
      },
      onError(error) {
        console.error("broker: a request failed:", error);
        return new Response("Internal error.\n", { status: 500, headers: { connection: "close" } });
      },
    }, handler);
  } catch (error) {
    // At start (the port taken, no permission) this is fatal; later, the flood is still on.
    if (!listenedOnce) fail(`cannot listen on ${hostname}:${port}: ${error}`);
    return retry(error);
  }
  server = current;
  current.finished.then(
    () => {
      if (!stopping) retry(new Error("the server stopped"));
    },
    (error) => retry(error),
  );
}

function retry(error: unknown): void {
  server = undefined;
  if (stopping) return;
  if (performance.now() - listenedAt >= STEADY) retryDelay = FIRST_RETRY;
  console.error(
    `broker: not accepting connections (${error}); the connections it has are still served; ` +
      `listening again in ${retryDelay} ms`,
  );
  retryTimer = setTimeout(listen, retryDelay);
  retryDelay = Math.min(retryDelay * 2, LAST_RETRY);
}

async function shutdown(): Promise<void> {
  if (stopping) return;
  stopping = true;
  console.log("broker: stopping");
  clearTimeout(retryTimer);
  try {
    await handler.close();
    await server?.shutdown();
    await state.close();
  } catch (error) {
    console.error("broker: stopping failed:", error);
  }
  stop();
}

for (const signal of ["SIGINT", "SIGTERM"] as const) Deno.addSignalListener(signal, shutdown);
listen();
await stopped;
