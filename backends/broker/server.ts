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
import { Admission, type Refusal } from "./admission.ts";
import {
  AuthFailureLimiter,
  DEFAULT_AUTH_FAILURE_WINDOW,
  DEFAULT_MAX_AUTH_FAILURES,
} from "./auth_failures.ts";
import { checkInterval } from "./heartbeat.ts";
import {
  CloseCode,
  DEFAULT_HEARTBEAT_INTERVAL,
  DEFAULT_MAX_BUFFERED_BYTES,
  OPEN,
  type WebSocketLike,
} from "./protocol.ts";
import { Session, type SessionConfig } from "./session.ts";
import { closeSocket } from "./socket_close.ts";
import { TokenCheck } from "./token.ts";

const log = backendLogger("broker");

/** Options of {@link brokerHandler}. */
export interface BrokerOptions {
  /** The shared secret every client must present first. Must not be empty. */
  token: string;
  /**
   * The heartbeat interval in milliseconds, announced to clients in `welcome`: each client pings
   * at least this often and the broker answers (only clients ping: see heartbeat.ts). A client
   * silent for two intervals is disconnected and its locks released, so a half-open connection
   * is noticed within three intervals. Default 5000.
   */
  heartbeatInterval?: number;
  /**
   * How long a new connection may take to authenticate, in milliseconds. Default 10,000. With
   * `serveBroker` (Node), the HTTP request that opens it must arrive within this time as well.
   */
  authTimeout?: number;
  /**
   * Most connections at once, authenticated or not. Past it, a new one is refused at once, and
   * its client's requests fail with `LockFailed` at once: it gets a `refused` frame saying why
   * and close code 1013 (from `serveBroker` written with the handshake's answer, no WebSocket
   * made for it; from the handler itself, `Deno.serve` or `accept()`, on the upgraded socket). Default 10,000: keep it below the process's file-descriptor limit
   * (`ulimit -n`).
   */
  maxConnections?: number;
  /**
   * Most connections at once that have not been welcomed yet (no valid `hello` so far), refused
   * like those past `maxConnections`. Default 1,000.
   */
  maxUnauthenticated?: number;
  /**
   * Failed authentications (a wrong token, a malformed `hello`, no `hello` within `authTimeout`)
   * from one client address within `authFailureWindow` after which that address is refused for
   * `authFailureWindow` ms, its tokens no longer checked (a `refused` frame and close code
   * 4001). An IPv6 address counts with its whole /64; the broker remembers at most
   * 10,000 addresses (the least recently failing are forgotten first). Needs the client's
   * address: `Deno.serve` and `serveBroker` give it, `accept(socket, address)` takes it. Default 10.
   */
  maxAuthFailures?: number;
  /** The window of `maxAuthFailures`, and how long a block lasts, in milliseconds. Default 60,000. */
  authFailureWindow?: number;
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

/** What a server tells a handler about the connection of a request (`Deno.serve` does). */
export interface BrokerRequestInfo {
  /** The client's address; failed authentications count against its `hostname`. */
  remoteAddr?: { hostname?: string };
}

/**
 * A web-standard request handler (give it to `Deno.serve` as it is) that also accepts sockets
 * upgraded elsewhere and can be shut down.
 */
export interface BrokerHandler {
  /**
   * Upgrades a WebSocket request and serves it; any other request gets HTTP 426. A connection
   * past a limit gets a `refused` frame and is closed.
   */
  (request: Request, info?: BrokerRequestInfo): Response | Promise<Response>;
  /**
   * Serves a WebSocket that the runtime upgraded itself (Node's `ws`, Bun, Cloudflare's
   * `WebSocketPair`): it must speak the web-standard `addEventListener`/`send`/`close` API. A
   * socket past a limit gets a `refused` frame and is closed. `address` is the client's address,
   * against which failed authentications count (none are counted without it).
   */
  accept(socket: WebSocketLike, address?: string): void;
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
  maxConnections: true,
  maxUnauthenticated: true,
  maxAuthFailures: true,
  authFailureWindow: true,
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

/** {@link BrokerOptions} validated: what the sessions share, and the connection limits. */
export interface BrokerConfig extends SessionConfig {
  maxConnections: number;
  maxUnauthenticated: number;
}

/** Validates {@link BrokerOptions}. */
export function brokerConfig(state: StateABC, options: BrokerOptions): BrokerConfig {
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
    authFailures: new AuthFailureLimiter({
      maxFailures: integerOption(
        options.maxAuthFailures,
        "maxAuthFailures",
        DEFAULT_MAX_AUTH_FAILURES,
      ),
      window: checkInterval(
        options.authFailureWindow,
        WHAT,
        "authFailureWindow",
        DEFAULT_AUTH_FAILURE_WINDOW,
      ),
    }),
    maxConnections: integerOption(options.maxConnections, "maxConnections", 10_000),
    maxUnauthenticated: integerOption(options.maxUnauthenticated, "maxUnauthenticated", 1000),
  };
}

/** The client's address from a server's request info, if it gives one. */
function remoteAddress(info: BrokerRequestInfo | undefined): string | undefined {
  try {
    const hostname = info?.remoteAddr?.hostname;
    return typeof hostname === "string" ? hostname : undefined;
  } catch {
    return undefined; // a getter of a request already gone
  }
}

/** Tells an upgraded socket why it is refused, then closes it (torn down after the grace). */
function refuseSocket(socket: WebSocketLike, refusal: Refusal): void {
  const refuse = () => {
    try {
      socket.send(JSON.stringify({ op: "refused", message: refusal.message }));
    } catch {
      // Closed meanwhile: closing it below is all that is left to do.
    }
    closeSocket(socket, refusal.code, "refused");
  };
  if (socket.readyState === OPEN) refuse();
  else socket.addEventListener("open", refuse);
}

/** A broker's handler, and what `serveBroker` needs to refuse a request before upgrading it. */
export interface BrokerParts {
  /** The handler. */
  handler: BrokerHandler;
  /** Its options, validated, defaults filled in. */
  config: BrokerConfig;
  /** Why a new connection from `address` is refused now, or `undefined` if it is taken. */
  refusal(address: string | undefined): Refusal | undefined;
}

/**
 * Serves `state` to {@link BrokerState} clients over WebSocket: a web-standard handler that
 * `Deno.serve` takes as it is. Each client authenticates with the shared token; everything a
 * client holds or awaits is released when its connection ends. On Node and Bun, use `serveBroker`
 * (`@momotor/shared-state/broker/node`).
 *
 * It is meant to face the network: connections it ends are closed at the TCP level within a short
 * grace, and `maxConnections`, `maxUnauthenticated` and `maxAuthFailures` have safe defaults.
 * `Deno.serve` passes the client's address as the handler's second argument.
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
  return brokerParts(state, options).handler;
}

/** {@link brokerHandler}, with the admission check that `serveBroker` makes before upgrading. */
export function brokerParts(state: StateABC, options: BrokerOptions): BrokerParts {
  const config = brokerConfig(state, options);
  const admission = new Admission(
    config.maxConnections,
    config.maxUnauthenticated,
    config.authFailures,
  );
  const sessions = new Set<Session>();
  let closed = false;
  const events = {
    welcomed: () => admission.welcomed(),
    ended: (session: Session) => {
      if (sessions.delete(session)) admission.ended(session.welcomed);
    },
  };

  /** Serves a socket that was admitted. */
  const serve = (socket: WebSocketLike, address: string | undefined): void => {
    const session = new Session(config, socket, address, events);
    sessions.add(session);
    admission.opened();
    if (closed) session.terminate(CloseCode.goingAway, "the broker is shutting down");
  };

  const accept = (socket: WebSocketLike, address?: string): void => {
    if (typeof socket !== "object" || socket === null) {
      throw new TypeError("socket must be a WebSocket");
    }
    checkFunction(socket.addEventListener, "socket.addEventListener");
    if (address !== undefined && typeof address !== "string") {
      throw new TypeError(`address must be a string, got ${typeof address}`);
    }
    const refusal = closed ? undefined : admission.refusal(address);
    if (refusal !== undefined) {
      log.debug("refused a connection: {message}", { message: refusal.message });
      return refuseSocket(socket, refusal);
    }
    serve(socket, address);
  };

  const handler = (request: Request, info?: BrokerRequestInfo): Response => {
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
    // Read before the upgrade: Deno's info throws "Request closed" once the request is upgraded.
    const address = remoteAddress(info);
    let upgraded: { socket: WebSocketLike; response: Response };
    try {
      upgraded = deno.upgradeWebSocket(request);
    } catch (error) {
      return plainResponse(400, `Bad WebSocket upgrade: ${error}`);
    }
    // Refused after the upgrade, not with an HTTP 503: Deno.serve keeps a connection open after
    // any HTTP answer, whatever its headers say, while an upgraded one can be torn down; and a
    // browser's WebSocket (or Node 22's) hides an HTTP status, but reads a frame.
    const refusal = admission.refusal(address);
    if (refusal !== undefined) {
      log.debug("refused a connection: {message}", { message: refusal.message });
      refuseSocket(upgraded.socket, refusal);
    } else {
      serve(upgraded.socket, address);
    }
    return upgraded.response;
  };

  const complete = Object.defineProperties(handler, {
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
  return {
    handler: complete,
    config,
    refusal: (address) => (closed ? undefined : admission.refusal(address)),
  };
}
