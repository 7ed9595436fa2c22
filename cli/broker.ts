/**
 * `shared-state broker [--port P] [--hostname H]`: serves a state over WebSocket until SIGINT,
 * SIGTERM or SIGHUP. A PostgresState when `--url` or `$DATABASE_URL` is a PostgreSQL URL, else a
 * LocalState. On Deno through `Deno.serve` and `brokerHandler`, on Node through `serveBroker`.
 */

import { LocalState } from "../backends/local.ts";
import { type BrokerHandler, brokerHandler, type BrokerOptions } from "../backends/broker.ts";
import { serveBroker } from "../backends/broker_node.ts";
import type { StateABC } from "../state.ts";
import { type BrokerArguments, UsageError } from "./args.ts";
import {
  BackendUnavailable,
  type Environment,
  isPostgresUrl,
  missingPackage,
  openPostgresState,
} from "./backend.ts";
import { ExitCode } from "./exit_codes.ts";
import { tell } from "./messages.ts";
import { serveResiliently } from "./deno_server.ts";
import { catchSignals } from "./signals.ts";

/** A listening broker. */
interface Listening {
  url: string;
  close(): Promise<void>;
}

const deno = (globalThis as { Deno?: Parameters<typeof serveResiliently>[0] }).Deno;

function urlOf(hostname: string, port: number): string {
  return `ws://${hostname.includes(":") ? `[${hostname}]` : hostname}:${port}/`;
}

/**
 * The broker's options beyond the token, from the environment, as operators configure a service:
 * `HEARTBEAT_INTERVAL`, `AUTH_TIMEOUT` and `AUTH_FAILURE_WINDOW` (ms), `MAX_CONNECTIONS`,
 * `MAX_UNAUTHENTICATED` and `MAX_AUTH_FAILURES`. Unset ones keep `brokerHandler`'s defaults.
 */
export function brokerLimits(env: Environment): Omit<BrokerOptions, "token"> {
  const read = (name: string): number | undefined => {
    const text = env[name];
    if (text === undefined || text === "") return undefined;
    const value = Number(text);
    if (!Number.isFinite(value)) {
      throw new UsageError(`${name} must be a number, got ${JSON.stringify(text)}`, "broker");
    }
    return value;
  };
  const limits = {
    heartbeatInterval: read("HEARTBEAT_INTERVAL"),
    authTimeout: read("AUTH_TIMEOUT"),
    authFailureWindow: read("AUTH_FAILURE_WINDOW"),
    maxConnections: read("MAX_CONNECTIONS"),
    maxUnauthenticated: read("MAX_UNAUTHENTICATED"),
    maxAuthFailures: read("MAX_AUTH_FAILURES"),
  };
  // Left out, not `undefined`: the options are checked strictly.
  return Object.fromEntries(Object.entries(limits).filter(([, value]) => value !== undefined));
}

async function listen(
  state: StateABC,
  options: BrokerOptions,
  args: BrokerArguments,
): Promise<Listening> {
  if (deno !== undefined) {
    let handler: BrokerHandler;
    try {
      handler = brokerHandler(state, options);
    } catch (error) {
      throw new UsageError(error instanceof Error ? error.message : String(error), "broker");
    }
    let server;
    try {
      server = serveResiliently(deno, handler, args.hostname, args.port);
    } catch (error) {
      await handler.close();
      throw new BackendUnavailable(`cannot listen on ${args.hostname}:${args.port}: ${error}`, {
        cause: error,
      });
    }
    return {
      url: urlOf(args.hostname, server.port),
      async close() {
        await handler.close();
        await server.close();
      },
    };
  }
  try {
    const server = await serveBroker({
      ...options,
      state,
      port: args.port,
      hostname: args.hostname,
    });
    return { url: urlOf(args.hostname, server.port), close: server.close };
  } catch (error) {
    if (error instanceof TypeError || error instanceof RangeError) {
      throw new UsageError(error.message, "broker");
    }
    throw missingPackage(error, "ws") ??
      new BackendUnavailable(`cannot listen on ${args.hostname}:${args.port}: ${error}`, {
        cause: error,
      });
  }
}

function firstSet(...values: (string | undefined)[]): string | undefined {
  return values.find((value) => value !== undefined && value !== "");
}

/**
 * `shared-state broker`: serves until a signal, then resolves with the exit code.
 *
 * @throws {UsageError} no token, or a URL that is not PostgreSQL's.
 * @throws {BackendUnavailable} cannot listen, or a driver package is missing.
 */
export async function serveBrokerUntilStopped(
  args: BrokerArguments,
  env: Environment,
): Promise<number> {
  const token = firstSet(args.token, env.TOKEN, env.SHARED_STATE_TOKEN);
  if (token === undefined) {
    throw new UsageError(
      "no token: set TOKEN or SHARED_STATE_TOKEN (or pass --token) to the token clients present",
      "broker",
    );
  }
  if (args.url === "") throw new UsageError("--url must not be empty", "broker");
  const url = firstSet(args.url, env.DATABASE_URL);
  if (url !== undefined && !isPostgresUrl(url)) {
    throw new UsageError(
      `${args.url !== undefined ? "--url" : "DATABASE_URL"} must be a PostgreSQL URL ` +
        "(postgres://…): the broker serves PostgreSQL locks, or memory locks without a URL",
      "broker",
    );
  }
  if (url === undefined && args.namespace !== undefined) {
    throw new UsageError("--namespace is for PostgreSQL: pass --url or set DATABASE_URL", "broker");
  }

  const state = url === undefined
    ? new LocalState({ name: "broker" })
    : await openPostgresState(url, args.namespace ?? "", "shared-state broker");
  let stop!: () => void;
  const stopped = new Promise<void>((resolve) => stop = resolve);
  const stopCatching = catchSignals(() => stop());
  try {
    const server = await listen(state, { ...brokerLimits(env), token }, args);
    console.log(
      `shared-state broker: serving ${url === undefined ? "memory" : "PostgreSQL"} locks on ` +
        server.url,
    );
    await stopped;
    tell("broker stopping: releasing every client's locks");
    await server.close();
    return ExitCode.ok;
  } finally {
    await state.close();
    stopCatching();
  }
}
