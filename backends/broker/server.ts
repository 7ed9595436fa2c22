/**
 * The broker's server side: {@link brokerHandler}, a web-standard request handler that upgrades to
 * WebSocket and serves one state to every authenticated client.
 */

import {
  checkFunction,
  checkOptions,
  optionNames,
  optionRangeError,
  optionTypeError,
  show,
} from "../../internal/arguments.ts";
import { backendLogger } from "../../internal/log.ts";
import { StateABC } from "../../state.ts";
import { checkInterval } from "./heartbeat.ts";
import {
  CloseCode,
  DEFAULT_HEARTBEAT_INTERVAL,
  DEFAULT_MAX_BUFFERED_BYTES,
  type WebSocketLike,
} from "./protocol.ts";
import { Session, type SessionConfig } from "./session.ts";
import { TokenCheck } from "./token.ts";

const log = backendLogger("broker");

/** Options of {@link brokerHandler}. */
export interface BrokerOptions {
  /** The shared secret every client must present first. Must not be empty. */
  token: string;
  /**
   * How often, in milliseconds, the broker pings each client. A client silent for two intervals
   * is disconnected and its locks released, so a half-open connection is noticed within three
   * intervals. Default 5000.
   */
  heartbeatInterval?: number;
  /** How long a new connection may take to authenticate, in milliseconds. Default 10,000. */
  authTimeout?: number;
  /**
   * Most requests (waiting, held or being tested) one connection may have at once; more are
   * refused with a `failed` frame (reason `"limit"`). Default 10,000.
   */
  maxRequests?: number;
  /** Most UTF-16 code units the keys of one connection's requests may take in all. Default 2^25. */
  maxKeyChars?: number;
  /** Malformed frames tolerated on one connection before it is closed. Default 100. */
  maxErrors?: number;
  /**
   * Most bytes of replies queued for one connection that does not read them (where the runtime
   * reports `bufferedAmount`: Deno, `ws`); beyond, it is closed (1008) and its locks released.
   * Default 16 MiB.
   */
  maxBufferedBytes?: number;
}

/**
 * A web-standard request handler (give it to `Deno.serve` as it is) that also accepts sockets
 * upgraded elsewhere and can be shut down.
 */
export interface BrokerHandler {
  /** Upgrades a WebSocket request and serves it; any other request gets HTTP 426. */
  (request: Request): Response | Promise<Response>;
  /**
   * Serves a WebSocket that the runtime upgraded itself (Node's `ws`, Bun, Cloudflare's
   * `WebSocketPair`): it must speak the web-standard `addEventListener`/`send`/`close` API.
   */
  accept(socket: WebSocketLike): void;
  /**
   * Ends every connection (close code 1001) and releases everything its clients held; later
   * requests get HTTP 503. It does not close the served state, which belongs to the caller.
   */
  close(): Promise<void>;
  /** Number of open connections. */
  readonly connections: number;
}

interface DenoUpgrade {
  upgradeWebSocket(request: Request): { socket: WebSocketLike; response: Response };
}

const WHAT = "brokerHandler options";
/** Every option of {@link brokerHandler}, for the unknown-option check. */
export const BROKER_OPTION_NAMES: readonly string[] = optionNames<BrokerOptions>({
  token: true,
  heartbeatInterval: true,
  authTimeout: true,
  maxRequests: true,
  maxKeyChars: true,
  maxErrors: true,
  maxBufferedBytes: true,
});

function integerOption(value: unknown, name: string, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== "number") throw optionTypeError(WHAT, name, "an integer >= 1", value);
  if (!Number.isSafeInteger(value) || value < 1) {
    throw optionRangeError(WHAT, name, "an integer >= 1", value);
  }
  return value;
}

function plainResponse(status: number, text: string, headers: Record<string, string> = {}) {
  return new Response(`${text}\n`, {
    status,
    headers: { "content-type": "text/plain; charset=utf-8", ...headers },
  });
}

/** Validates {@link BrokerOptions} into what the sessions share. */
export function sessionConfig(state: StateABC, options: BrokerOptions): SessionConfig {
  if (!(state instanceof StateABC)) {
    throw new TypeError(`state must be a StateABC, got ${show(state)}`);
  }
  checkOptions(options, BROKER_OPTION_NAMES, WHAT);
  if (typeof options.token !== "string" || options.token === "") {
    throw optionTypeError(WHAT, "token", "a non-empty string", options.token);
  }
  return {
    state,
    token: new TokenCheck(options.token),
    heartbeatInterval: checkInterval(
      options.heartbeatInterval,
      WHAT,
      "heartbeatInterval",
      DEFAULT_HEARTBEAT_INTERVAL,
    ),
    authTimeout: checkInterval(options.authTimeout, WHAT, "authTimeout", 10_000),
    maxRequests: integerOption(options.maxRequests, "maxRequests", 10_000),
    maxKeyChars: integerOption(options.maxKeyChars, "maxKeyChars", 2 ** 25),
    maxErrors: integerOption(options.maxErrors, "maxErrors", 100),
    maxBufferedBytes: integerOption(
      options.maxBufferedBytes,
      "maxBufferedBytes",
      DEFAULT_MAX_BUFFERED_BYTES,
    ),
  };
}

/**
 * Serves `state` to {@link BrokerState} clients over WebSocket: a web-standard handler that
 * `Deno.serve` takes as it is. Each client authenticates with the shared token; everything a
 * client holds or awaits is released when its connection ends. On Node and Bun, use `serveBroker`
 * (`@momotor/shared-state/broker/node`).
 *
 * The state can be a `LocalState` (the broker is then the one place the locks live) or any other
 * backend, e.g. a `PostgresState` (the broker is then a gateway for clients that cannot reach the
 * database).
 *
 * @example
 * ```ts ignore
 * import { LocalState } from "@momotor/shared-state";
 * import { brokerHandler } from "@momotor/shared-state/broker";
 *
 * const handler = brokerHandler(new LocalState(), { token: Deno.env.get("TOKEN")! });
 * Deno.serve({ port: 8787 }, handler);
 * ```
 *
 * @param state The state to serve; closing it is up to the caller.
 * @param options The shared token, heartbeat and limits.
 * @returns The handler; `handler.close()` ends every connection.
 * @throws {TypeError} for a missing or empty token, a state that is not a StateABC, or an unknown
 *   or ill-typed option.
 * @throws {RangeError} for an out-of-range interval or limit.
 */
export function brokerHandler(state: StateABC, options: BrokerOptions): BrokerHandler {
  const config = sessionConfig(state, options);
  const sessions = new Set<Session>();
  let closed = false;
  const forget = (session: Session) => sessions.delete(session);

  const accept = (socket: WebSocketLike): void => {
    if (typeof socket !== "object" || socket === null) {
      throw new TypeError("socket must be a WebSocket");
    }
    checkFunction(socket.addEventListener, "socket.addEventListener");
    const session = new Session(config, socket, forget);
    sessions.add(session);
    if (closed) session.terminate(CloseCode.goingAway, "the broker is shutting down");
  };

  const handler = (request: Request): Response => {
    if (closed) return plainResponse(503, "The broker is shutting down.");
    if (request.headers.get("upgrade")?.toLowerCase() !== "websocket") {
      return plainResponse(
        426,
        "This is a shared-state broker: connect with a WebSocket (BrokerState).",
        { upgrade: "websocket" },
      );
    }
    const deno = (globalThis as { Deno?: Partial<DenoUpgrade> }).Deno;
    if (typeof deno?.upgradeWebSocket !== "function") {
      return plainResponse(
        501,
        "This runtime cannot upgrade a Request: use serveBroker (@momotor/shared-state/broker/node)" +
          " on Node and Bun, or handler.accept().",
      );
    }
    let upgraded: { socket: WebSocketLike; response: Response };
    try {
      upgraded = deno.upgradeWebSocket(request);
    } catch (error) {
      return plainResponse(400, `Bad WebSocket upgrade: ${error}`);
    }
    accept(upgraded.socket);
    return upgraded.response;
  };

  return Object.defineProperties(handler, {
    accept: { value: accept },
    close: {
      value: async (): Promise<void> => {
        closed = true;
        const ending = [...sessions].map((session) =>
          session.terminate(CloseCode.goingAway, "the broker is shutting down")
        );
        log.debug("broker closing {count} connections", { count: ending.length });
        await Promise.all(ending);
      },
    },
    connections: { get: () => sessions.size },
  }) as BrokerHandler;
}
