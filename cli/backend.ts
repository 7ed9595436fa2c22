/**
 * Which state the CLI uses: from `--url`, `$SHARED_STATE_URL`, then `$DATABASE_URL`, a
 * PostgresState (`postgres://`, `postgresql://`) or a BrokerState (`ws://`, `wss://`, with the
 * token from `--token` or `$SHARED_STATE_TOKEN`). The backend modules are imported only when
 * chosen, so that `id`, `--help` and a broker client work without the PostgreSQL driver
 * installed (on npm, `postgres` and `ws` are optional peer dependencies).
 */

import type { WebSocketConstructor } from "../backends/broker.ts";
import type { StateABC } from "../state.ts";
import type { BackendFlags } from "./args.ts";
import { UsageError } from "./args.ts";

/** The environment variables the CLI reads. */
export type Environment = Readonly<Record<string, string | undefined>>;

/** A backend, chosen and checked, not yet connected. */
export type BackendTarget =
  | { kind: "postgres"; url: string; namespace: string }
  | { kind: "broker"; url: string; token: string };

/**
 * The backend cannot be used at all: its driver package is not installed (exit code 69, as for
 * an unreachable one).
 */
export class BackendUnavailable extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "BackendUnavailable";
  }
}

const POSTGRES_URL = /^postgres(ql)?:\/\//i;
const BROKER_URL = /^wss?:\/\//i;

/** The scheme of a URL and no more: the rest may hold a password. */
function schemeOf(url: string): string {
  return /^[a-z][a-z0-9+.-]*:/i.exec(url)?.[0] ?? JSON.stringify(url.slice(0, 12));
}

function firstSet(...values: (string | undefined)[]): string | undefined {
  return values.find((value) => value !== undefined && value !== "");
}

/** Whether `url` names a PostgreSQL database. */
export function isPostgresUrl(url: string): boolean {
  return POSTGRES_URL.test(url);
}

/**
 * The backend the flags and the environment name.
 *
 * @throws {UsageError} no URL, an unknown scheme, a broker without a token, or a flag that does
 *   not apply to the backend (so that it is not silently ignored).
 */
export function chooseBackend(
  flags: BackendFlags,
  env: Environment,
  subcommand: string,
): BackendTarget {
  if (flags.url === "") throw new UsageError("--url must not be empty", subcommand);
  const url = firstSet(flags.url, env.SHARED_STATE_URL, env.DATABASE_URL);
  if (url === undefined) {
    throw new UsageError(
      "no URL: pass --url, or set SHARED_STATE_URL or DATABASE_URL " +
        "(postgres://… for PostgreSQL, ws://… for a broker)",
      subcommand,
    );
  }
  if (POSTGRES_URL.test(url)) {
    if (flags.token !== undefined) {
      throw new UsageError(
        "--token is for a broker URL (ws://, wss://), not PostgreSQL",
        subcommand,
      );
    }
    return { kind: "postgres", url, namespace: flags.namespace ?? "" };
  }
  if (BROKER_URL.test(url)) {
    if (flags.namespace !== undefined) {
      throw new UsageError(
        "--namespace is for PostgreSQL: a broker serves the namespace it was started with " +
          "(shared-state broker --namespace NS)",
        subcommand,
      );
    }
    const token = firstSet(flags.token, env.SHARED_STATE_TOKEN);
    if (token === undefined) {
      throw new UsageError(
        "a broker URL needs its token: set SHARED_STATE_TOKEN (or pass --token)",
        subcommand,
      );
    }
    return { kind: "broker", url, token };
  }
  throw new UsageError(
    `unsupported URL scheme ${schemeOf(url)}: use postgres://, postgresql://, ws:// or wss://`,
    subcommand,
  );
}

/**
 * `error` as a {@link BackendUnavailable} if it says that the npm package `packageName` is not
 * installed, else `undefined`.
 */
export function missingPackage(
  error: unknown,
  packageName: string,
): BackendUnavailable | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  if (code !== "ERR_MODULE_NOT_FOUND" || !String(error).includes(`'${packageName}'`)) {
    return undefined;
  }
  return new BackendUnavailable(
    `the ${packageName} package is not installed: install it beside @momotor/shared-state ` +
      `(npm install ${packageName}, or npx -p @momotor/shared-state -p ${packageName} ` +
      "shared-state …)",
    { cause: error },
  );
}

/** `import()` of a module that needs an npm package which may not be installed. */
async function importNeeding<T>(load: () => Promise<T>, packageName: string): Promise<T> {
  try {
    return await load();
  } catch (error) {
    throw missingPackage(error, packageName) ?? error;
  }
}

/**
 * A PostgresState on `url`, its connections named `name` (PostgreSQL's `application_name`, so
 * that an operator sees in `pg_stat_activity` who holds what).
 *
 * @throws {UsageError} for a URL PostgresState rejects.
 * @throws {BackendUnavailable} when the `postgres` package is missing.
 */
export async function openPostgresState(
  url: string,
  namespace: string,
  name: string,
): Promise<StateABC> {
  const { PostgresState } = await importNeeding(
    () => import("../backends/postgres.ts"),
    "postgres",
  );
  try {
    return new PostgresState(url, {
      namespace,
      name,
      clientOptions: { connection: { application_name: name } },
    });
  } catch (error) {
    if (error instanceof TypeError) throw new UsageError(error.message);
    throw error;
  }
}

/** The WebSocket class for a broker client: the global one, else the `ws` package (Node 20). */
async function webSocketClass(): Promise<WebSocketConstructor | undefined> {
  const global = (globalThis as { WebSocket?: unknown }).WebSocket;
  if (global !== undefined) return undefined;
  const ws = await importNeeding(() => import("ws"), "ws");
  return (ws as unknown as { WebSocket: WebSocketConstructor }).WebSocket;
}

/**
 * Makes the state of `target`; nothing connects before its first request.
 *
 * @param target The chosen backend.
 * @param name Names the state (PostgreSQL's `application_name` of its connections).
 * @throws {UsageError} for a URL the backend rejects.
 * @throws {BackendUnavailable} when the backend's npm package is missing.
 */
export async function openState(target: BackendTarget, name: string): Promise<StateABC> {
  if (target.kind === "postgres") {
    return await openPostgresState(target.url, target.namespace, name);
  }
  const [{ BrokerState }, WebSocket] = await Promise.all([
    import("../backends/broker.ts"),
    webSocketClass(),
  ]);
  try {
    return new BrokerState(target.url, {
      token: target.token,
      name,
      ...WebSocket && { WebSocket },
    });
  } catch (error) {
    if (error instanceof TypeError) throw new UsageError(error.message);
    throw error;
  }
}
