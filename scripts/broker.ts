/**
 * Runs a broker: `deno task broker`. Configured by environment variables:
 *
 * - `TOKEN` (required): the shared token clients present.
 * - `PORT` (default 8787) and `HOSTNAME` (default 127.0.0.1; 0.0.0.0 serves other machines).
 * - `DATABASE_URL` (optional): serve a PostgresState on that database (the broker is then a
 *   gateway for clients that cannot reach it) instead of an in-memory LocalState.
 * - `HEARTBEAT_INTERVAL` (optional, ms, default 5000).
 *
 * Stops cleanly on SIGINT/SIGTERM: every client's locks are released and their signals aborted.
 *
 * @module
 */

import { LocalState, type StateABC } from "../mod.ts";
import { brokerHandler } from "../backends/broker.ts";

function fail(message: string): never {
  console.error(`broker: ${message}`);
  Deno.exit(2);
}

const token = Deno.env.get("TOKEN") ?? "";
if (token === "") fail("set TOKEN to the shared token clients must present");
const port = Number(Deno.env.get("PORT") ?? "8787");
if (!Number.isInteger(port) || port < 0 || port > 65535) fail("PORT must be a port number");
const hostname = Deno.env.get("HOSTNAME") ?? "127.0.0.1";
const heartbeat = Deno.env.get("HEARTBEAT_INTERVAL");
const heartbeatInterval = heartbeat === undefined ? undefined : Number(heartbeat);
if (heartbeatInterval !== undefined && !(heartbeatInterval > 0 && heartbeatInterval < 2 ** 31)) {
  fail("HEARTBEAT_INTERVAL must be a number of milliseconds > 0");
}

const databaseUrl = Deno.env.get("DATABASE_URL");
let state: StateABC;
if (databaseUrl) {
  const { PostgresState } = await import("../backends/postgres.ts");
  state = new PostgresState(databaseUrl);
} else {
  state = new LocalState({ name: "broker" });
}

const handler = brokerHandler(state, { token, heartbeatInterval });
const server = Deno.serve({
  port,
  hostname,
  onListen({ port }) {
    const backend = databaseUrl ? "PostgreSQL" : "memory";
    console.log(`broker: serving ${backend} locks on ws://${hostname}:${port}/`);
  },
}, handler);

let stopping = false;
async function stop(): Promise<void> {
  if (stopping) return;
  stopping = true;
  console.log("broker: stopping");
  await handler.close();
  await server.shutdown();
  await state.close();
}
for (const signal of ["SIGINT", "SIGTERM"] as const) Deno.addSignalListener(signal, stop);
await server.finished;
