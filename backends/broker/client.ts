/**
 * {@link BrokerState}: the client of a broker. Every request goes over one WebSocket, opened on
 * the first request and again after a loss.
 */

import { backendFailure, type Requested } from "../../internal/failures.ts";
import { checkOptions, optionNames, optionTypeError, show } from "../../internal/arguments.ts";
import type { Lock, LockInfo, LockRequest, MultiLock, Permit, PermitRequest } from "../../state.ts";
import { StateABC } from "../../state.ts";
import { Connection, type WebSocketConstructor } from "./connection.ts";
import { checkInterval } from "./heartbeat.ts";
import { DEFAULT_HEARTBEAT_INTERVAL, MAX_KEY_LENGTH, MAX_KEYS } from "./protocol.ts";

export type { WebSocketConstructor } from "./connection.ts";

/** Options of {@link BrokerState}. */
export interface BrokerStateOptions {
  /** The broker's shared token. Must not be empty. */
  token: string;
  /**
   * The WebSocket class to use. Default: the global `WebSocket` (Deno, browsers, Node 22+, edge
   * runtimes). On Node 20, pass the one of the `ws` package: `import { WebSocket } from "ws"`.
   */
  WebSocket?: WebSocketConstructor;
  /**
   * How often, in milliseconds, the client pings the broker. After two intervals without any
   * frame from the broker the connection counts as dead: held locks are lost, waiting requests
   * fail. A half-open connection is therefore noticed within three intervals. Default 5000.
   */
  heartbeatInterval?: number;
  /**
   * A name for this state in debug logs, and for the broker's `inspect`, which names this
   * client's holders and waiters `<name> (broker connection N from ADDRESS)`.
   */
  name?: string;
}

const WHAT = "BrokerState options";
const OPTION_NAMES = optionNames<BrokerStateOptions>({
  token: true,
  WebSocket: true,
  heartbeatInterval: true,
  name: true,
});

let stateCounter = 0;

/** The refusal of a key longer than a broker takes, if it is. */
function tooLong(key: string, requested: Requested): Promise<never> | undefined {
  if (key.length <= MAX_KEY_LENGTH) return undefined;
  return Promise.reject(
    backendFailure(
      requested,
      "refused",
      `keys sent to a broker are limited to ${MAX_KEY_LENGTH} UTF-16 code units`,
    ),
  );
}

/**
 * Named read/write locks held by a broker ({@link brokerHandler} or `serveBroker`) for every
 * worker connected to it: the worker-to-broker design of Python's `momotor.shared.state`, over WebSocket. A lock lives as
 * long as the worker's connection: a worker that dies releases its locks.
 *
 * One WebSocket carries all requests; it opens on the first request. When it is lost, held locks
 * are aborted with `LockLost`, waiting requests fail with `LockFailed`, and the next request
 * connects again; nothing is re-acquired behind the caller's back. Timeouts count from the
 * call, by this process's clock.
 *
 * @example
 * ```ts ignore
 * import { BrokerState } from "@momotor/shared-state/broker";
 *
 * await using state = new BrokerState("ws://broker.internal:8787", { token: "s3cret" });
 * await state.withLock("grading/42", async (lock) => {
 *   // … lock.signal aborts if the connection to the broker is lost …
 * });
 * ```
 */
export class BrokerState extends StateABC {
  readonly #url: string;
  readonly #token: string;
  readonly #WebSocket: WebSocketConstructor;
  readonly #heartbeatInterval: number;
  readonly #name: string;
  #connection: Connection | undefined;

  /**
   * Makes a client of the broker at `url`; it connects on the first request.
   *
   * @param url The broker's `ws://` or `wss://` URL (`http(s)://` is accepted and converted).
   * @param options The shared token, and optionally the WebSocket class and heartbeat interval.
   * @throws {TypeError} for a bad URL, an empty token, no WebSocket class in this runtime, or an
   *   unknown or ill-typed option.
   * @throws {RangeError} for an out-of-range heartbeat interval.
   */
  constructor(url: string | URL, options: BrokerStateOptions) {
    super();
    checkOptions(options, OPTION_NAMES, WHAT);
    if (typeof options.token !== "string" || options.token === "") {
      throw optionTypeError(WHAT, "token", "a non-empty string", options.token);
    }
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      throw new TypeError(`url must be a ws:// or wss:// URL, got ${show(url)}`);
    }
    if (parsed.protocol === "http:") parsed.protocol = "ws:";
    else if (parsed.protocol === "https:") parsed.protocol = "wss:";
    if (parsed.protocol !== "ws:" && parsed.protocol !== "wss:") {
      throw new TypeError(`url must be a ws:// or wss:// URL, got ${show(parsed.href)}`);
    }
    const WebSocketClass = options.WebSocket ??
      (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
    if (options.WebSocket !== undefined && typeof options.WebSocket !== "function") {
      throw optionTypeError(WHAT, "WebSocket", "a WebSocket class", options.WebSocket);
    }
    if (typeof WebSocketClass !== "function") {
      throw new TypeError(
        'this runtime has no global WebSocket: pass the "WebSocket" option (the class of the ws package)',
      );
    }
    if (options.name !== undefined && typeof options.name !== "string") {
      throw optionTypeError(WHAT, "name", "a string", options.name);
    }
    this.#url = parsed.href;
    this.#token = options.token;
    this.#WebSocket = WebSocketClass;
    this.#heartbeatInterval = checkInterval(
      options.heartbeatInterval,
      WHAT,
      "heartbeatInterval",
      DEFAULT_HEARTBEAT_INTERVAL,
    );
    this.#name = options.name ?? `broker client ${++stateCounter}`;
  }

  /** The broker's URL. */
  get url(): string {
    return this.#url;
  }

  /** Sends an acquire request over the connection (opened now if there is none). */
  protected acquire(key: string, request: LockRequest): Promise<Lock> {
    if (key.length > MAX_KEY_LENGTH) {
      return Promise.reject(
        backendFailure(
          { key, exclusive: request.exclusive },
          "refused",
          `keys sent to a broker are limited to ${MAX_KEY_LENGTH} UTF-16 code units`,
        ),
      );
    }
    return this.#connect().acquire(key, request);
  }

  /** Sends a test request over the connection (opened now if there is none). */
  protected probe(key: string, exclusive: boolean): Promise<boolean> {
    if (key.length > MAX_KEY_LENGTH) {
      return Promise.reject(
        backendFailure(
          { key, exclusive },
          "refused",
          `keys sent to a broker are limited to ${MAX_KEY_LENGTH} UTF-16 code units`,
        ),
      );
    }
    return this.#connect().test(key, exclusive);
  }

  /**
   * Asks the broker who holds and awaits `key` in its served state: every client of the broker
   * (named by its `name` option), and, for a served PostgresState, every process on its database.
   */
  protected override inspectKey(key: string): Promise<LockInfo> {
    if (key.length > MAX_KEY_LENGTH) {
      return Promise.reject(
        backendFailure(
          { key, exclusive: true },
          "refused",
          `keys sent to a broker are limited to ${MAX_KEY_LENGTH} UTF-16 code units`,
        ),
      );
    }
    return this.#connect().inspect(key);
  }

  /** Releases everything on the broker, then closes the connection. */
  protected async shutdown(): Promise<void> {
    const connection = this.#connection;
    this.#connection = undefined;
    await connection?.close();
  }

  /** The open connection, or a new one after none or a lost one. */
  #connect(): Connection {
    if (this.#connection === undefined || this.#connection.ended) {
      this.#connection = new Connection({
        url: this.#url,
        token: this.#token,
        WebSocket: this.#WebSocket,
        heartbeatInterval: this.#heartbeatInterval,
        name: this.#name,
      });
    }
    return this.#connection;
  }

  // ---- Permits and multi-key locks (issue 13) ----

  /** Sends a permit request (`permit` frame) over the connection. */
  protected acquirePermit(key: string, request: PermitRequest): Promise<Permit> {
    const refusal = tooLong(key, { key, exclusive: false, limit: request.limit });
    return refusal ?? this.#connect().acquirePermit(key, request);
  }

  /** Sends a `testPermit` request over the connection. */
  protected probePermit(key: string, limit: number): Promise<boolean> {
    const refusal = tooLong(key, { key, exclusive: false, limit });
    return refusal ?? this.#connect().test(key, false, limit);
  }

  /**
   * Sends the keys in one `acquireAll` request: the broker's state takes them all or none, in
   * its own canonical order, so that every client of the broker shares that order.
   */
  protected override acquireLocks(
    keys: readonly string[],
    request: LockRequest,
  ): Promise<MultiLock> {
    const { exclusive } = request;
    if (keys.length > MAX_KEYS) {
      return Promise.reject(
        backendFailure(
          { key: keys[0], exclusive },
          "refused",
          `a broker takes at most ${MAX_KEYS} keys at once`,
        ),
      );
    }
    for (const key of keys) {
      const refusal = tooLong(key, { key, exclusive });
      if (refusal !== undefined) return refusal;
    }
    return this.#connect().acquireAll(keys, request);
  }
}
