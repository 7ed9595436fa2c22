/**
 * The client's side of one WebSocket to the broker: authenticates, multiplexes every request of
 * a {@link BrokerState} over it, and fails or loses everything it carried when it ends.
 */

import { LockFailed, type LockFailedReason, type LockLostReason } from "../../errors.ts";
import { BaseLock, BasePermit } from "../../internal/base_lock.ts";
import type { Requested } from "../../internal/failures.ts";
import { holderEntry } from "../../internal/holders.ts";
import { RequestWait } from "../../internal/request_wait.ts";
import { backendLogger } from "../../internal/log.ts";
import type { Lock, LockInfo, LockRequest, MultiLock, Permit, PermitRequest } from "../../state.ts";
import { Heartbeat } from "./heartbeat.ts";
import {
  type ClientFrame,
  CloseCode,
  type FailureReason,
  MAX_NAME_LENGTH,
  OPEN,
  parseServerFrame,
  PROTOCOL_VERSION,
  ProtocolError,
  type ServerFrame,
  type WebSocketLike,
  type WireHolder,
} from "./protocol.ts";

const log = backendLogger("broker");

/** A WebSocket class: the global one, or one from a package such as `ws`. */
export type WebSocketConstructor = new (url: string) => WebSocketLike;

/** What a connection needs from its state. */
export interface ConnectionConfig {
  url: string;
  token: string;
  WebSocket: WebSocketConstructor;
  heartbeatInterval: number;
  name: string;
}

/**
 * Where an acquire request stands, as the client sees it (issue 10: one explicit state each, so
 * that what a state needs is there, and nothing else).
 */
type AcquireState =
  /** The caller awaits a grant. */
  | { readonly phase: "waiting"; readonly wait: RequestWait<Holding> }
  /** The caller has the lock (or the permit, or the locks). */
  | { readonly phase: "held"; readonly lock: Holding }
  /** The caller released it; `released` settles its `release()` once the broker confirms. */
  | { readonly phase: "releasing"; readonly released: () => void }
  /**
   * The caller has its answer (it gave up, or the state closed): only the broker's final frame
   * for this id is awaited, so that the id is not reused while the broker still knows it.
   */
  | { readonly phase: "abandoned" };

/** What an acquire asks the broker for: a lock, or (issue 13) a permit or several locks. */
type Target =
  | { readonly kind: "lock"; readonly key: string; readonly exclusive: boolean }
  | { readonly kind: "permit"; readonly key: string; readonly limit: number }
  | { readonly kind: "locks"; readonly keys: readonly string[]; readonly exclusive: boolean };

/** An acquire request, then the lock it became. */
interface AcquireEntry {
  readonly kind: "acquire";
  readonly id: number;
  readonly target: Target;
  readonly request: LockRequest;
  state: AcquireState;
}

/** Where a `testLock` in flight stands. */
type TestState =
  | {
    readonly phase: "waiting";
    readonly resolve: (free: boolean) => void;
    readonly reject: (error: LockFailed) => void;
  }
  | { readonly phase: "abandoned" };

/** A `testLock` (or, issue 13, a `testPermit`: `limit` set) in flight. */
interface TestEntry {
  readonly kind: "test";
  readonly id: number;
  readonly key: string;
  readonly exclusive: boolean;
  readonly limit: number | undefined;
  state: TestState;
}

/** Where an `inspect` in flight stands (issue 12). */
type InspectState =
  | {
    readonly phase: "waiting";
    readonly resolve: (info: LockInfo) => void;
    readonly reject: (error: LockFailed) => void;
  }
  | { readonly phase: "abandoned" };

/** An `inspect` in flight (issue 12); `exclusive` only for the LockFailed it may fail with. */
interface InspectEntry {
  readonly kind: "inspect";
  readonly id: number;
  readonly key: string;
  readonly exclusive: true;
  state: InspectState;
}

type Entry = AcquireEntry | TestEntry | InspectEntry;

/** A `fence` sent for a held lock, awaiting its `fenced` (issue 12). */
interface Fence {
  readonly resolve: (token: bigint) => void;
  readonly reject: (error: Error) => void;
}

function fromWire(entries: readonly WireHolder[]) {
  return entries.map(({ exclusive, since, owner }) =>
    holderEntry(exclusive, since === undefined ? undefined : new Date(since), owner)
  );
}

/**
 * A frame to send, in JSON; or the function that writes it when it is sent, for a frame whose
 * content depends on that moment (an acquire's timeout left) and that may wait in the outbox.
 */
type Outgoing = string | (() => string);

/** Where the connection stands. */
type ConnectionState =
  /** The socket opens, or `hello` awaits `welcome`: frames wait in the outbox, in order. */
  | { readonly phase: "connecting"; readonly outbox: Outgoing[] }
  | { readonly phase: "open" }
  /**
   * The state closes: releases were sent, `drained` is called once no entry is left; `ending` is
   * why what is still carried ends, even when the socket fails meanwhile.
   */
  | { readonly phase: "closing"; readonly drained: () => void; readonly ending: Ending }
  | { readonly phase: "ended" };

/** A lock held through the broker. */
class BrokerLock extends BaseLock {
  readonly #connection: Connection;
  readonly #entry: AcquireEntry;

  constructor(connection: Connection, entry: AcquireEntry, key: string) {
    super(key, entry.request.exclusive);
    this.#connection = connection;
    this.#entry = entry;
  }

  protected override unlock(): Promise<void> {
    return this.#connection.release(this.#entry);
  }

  /** The served state's token, asked for over the connection (issue 12). */
  protected override fence(): Promise<bigint> {
    return this.#connection.fence(this.#entry);
  }
}

/** Issue 13: a permit held through the broker. */
class BrokerPermit extends BasePermit {
  readonly #connection: Connection;
  readonly #entry: AcquireEntry;

  constructor(connection: Connection, entry: AcquireEntry, key: string, limit: number) {
    super(key, limit);
    this.#connection = connection;
    this.#entry = entry;
  }

  protected unlock(): Promise<void> {
    return this.#connection.release(this.#entry);
  }
}

/**
 * Issue 13: locks on several keys held through the broker, as one request: released together,
 * lost together (its LockLost names the first key; the broker does not say which one went).
 */
class BrokerLocks extends BrokerLock implements MultiLock {
  readonly keys: readonly string[];

  constructor(connection: Connection, entry: AcquireEntry, keys: readonly string[]) {
    super(connection, entry, keys[0]);
    this.keys = Object.freeze([...keys]);
  }
}

/** What a granted acquire holds. */
type Holding = BrokerLock | BrokerPermit;

/** What a request's failures name: its key (an acquireAll's failing one, if known) and mode. */
function requestedOf(entry: Entry, failedKey?: string): Requested {
  if (entry.kind === "test") {
    return { key: entry.key, exclusive: entry.exclusive, limit: entry.limit };
  }
  if (entry.kind === "inspect") return { key: entry.key, exclusive: entry.exclusive };
  const { target } = entry;
  switch (target.kind) {
    case "lock":
      return { key: target.key, exclusive: target.exclusive };
    case "permit":
      return { key: target.key, exclusive: false, limit: target.limit };
    case "locks": {
      const key = failedKey !== undefined && target.keys.includes(failedKey)
        ? failedKey
        : target.keys[0];
      return { key, exclusive: target.exclusive };
    }
  }
}

/** The frame of an acquire, with what is left of its timeout now (measured from the call). */
function acquireFrame(id: number, target: Target, deadline: number | undefined): ClientFrame {
  const timeout = deadline === undefined
    ? undefined
    : Math.max(0, Math.ceil(deadline - performance.now()));
  switch (target.kind) {
    case "lock":
      return { op: "acquire", id, key: target.key, exclusive: target.exclusive, timeout };
    case "permit":
      return { op: "permit", id, key: target.key, limit: target.limit, timeout };
    case "locks":
      return { op: "acquireAll", id, keys: [...target.keys], exclusive: target.exclusive, timeout };
  }
}

/** Why a connection ended, as requests that it carried are told. */
interface Ending {
  message: string;
  cause: unknown;
  /** What its waiting requests fail with. */
  failed: LockFailedReason;
  /** What its held locks are lost with. */
  lost: LockLostReason;
}

/** The client's reason for a broker's `failed` frame. */
function failedReason(reason: FailureReason, timeout: number | undefined): LockFailedReason {
  switch (reason) {
    case "busy":
    case "timeout":
      return timeout === 0 ? "busy" : "timeout";
    case "cancelled":
      return "aborted";
    case "unreachable":
    case "refused":
    case "deadlock":
      return reason;
    // The broker answered, and said no: its state is closed, a limit, a request it refused.
    case "closed":
    case "limit":
    case "invalid":
      return "refused";
    default:
      return "unreachable";
  }
}

function failureMessage(entry: Entry, reason: FailureReason, message: string) {
  const timeout = entry.kind === "acquire" ? entry.request.timeout : undefined;
  switch (reason) {
    case "busy":
    case "timeout":
      if (timeout === 0 || timeout === undefined) return "it is busy (timeout 0)";
      return `timed out after ${timeout} ms`;
    case "closed":
      return "the broker's state is closed";
    case "limit":
      return `the broker refused the request: ${message}`;
    default:
      return `the broker failed: ${message}`;
  }
}

/**
 * What a WebSocket that failed during its handshake was told. The brokers of this package refuse
 * with a `refused` frame after the handshake, which every WebSocket reads; a broker of an earlier
 * version on Node refused with HTTP 503 (a limit) or 429 (a blocked address) instead, and so does
 * a broker that is shutting down. The WebSocket API hides the status, but the errors of Deno's
 * WebSocket ("Invalid status code: 503"), Bun's ("Expected 101 status code: 503") and of `ws`
 * ("Unexpected server response: 503") quote it (not those of browsers, nor of Node 22 and 24).
 */
function handshakeFailure(cause: unknown): string | undefined {
  const text = cause instanceof Error ? cause.message : String(cause);
  const status = /(?:status code|server response)\D{0,3}(503|429)\b/i.exec(text)?.[1];
  if (status === "503") {
    return "the broker refused the connection (HTTP 503): it is at a connection limit or " +
      "shutting down; try again later";
  }
  if (status === "429") {
    return "the broker refused the connection (HTTP 429): too many failed authentications " +
      "from this address; try again later";
  }
  return undefined;
}

/** One WebSocket to the broker, from connect to close. Never reused after it ends. */
export class Connection {
  readonly #config: ConnectionConfig;
  readonly #entries = new Map<number, Entry>();
  /** Issue 12: the `fence`s in flight, by the id of their held acquire. */
  readonly #fences = new Map<number, Fence>();
  /** What the broker announced in `welcome` beyond the first frames (issue 12). */
  #features: ReadonlySet<string> = new Set();
  #nextId = 1;
  #state: ConnectionState = { phase: "connecting", outbox: [] };
  #socket: WebSocketLike | undefined;
  #heartbeat: Heartbeat;

  constructor(config: ConnectionConfig) {
    this.#config = config;
    this.#heartbeat = this.#startHeartbeat(config.heartbeatInterval);
    try {
      const socket = new config.WebSocket(config.url);
      this.#socket = socket;
      socket.addEventListener("open", () => this.#opened());
      socket.addEventListener("message", (event: MessageEvent) => this.#receive(event.data));
      socket.addEventListener("close", (event: CloseEvent) => this.#closed(event));
      socket.addEventListener("error", (event: Event) => {
        const cause = (event as ErrorEvent).error ?? (event as ErrorEvent).message ?? event;
        const refused = this.#state.phase === "connecting" ? handshakeFailure(cause) : undefined;
        this.#end(
          refused === undefined
            ? this.#loss(cause)
            : { message: refused, cause, failed: "refused", lost: "disconnected" },
        );
      });
    } catch (error) {
      // Queue the ending: the caller's request is registered right after construction.
      queueMicrotask(() => this.#end(this.#loss(error, "the broker could not be reached")));
    }
  }

  /** Pings every `interval`; two intervals without a frame from the broker end the connection. */
  #startHeartbeat(interval: number): Heartbeat {
    return new Heartbeat(
      interval,
      () => {
        const { phase } = this.#state;
        if (phase === "open" || phase === "closing") this.#send({ op: "ping" });
      },
      (silentFor) =>
        this.#end(
          this.#loss(
            new Error(`heartbeat timeout after ${Math.round(silentFor)} ms`),
            `${this.#lossMessage()}: no word from it for ${Math.round(silentFor)} ms`,
          ),
          CloseCode.heartbeatTimeout,
        ),
    );
  }

  /** `true` once the connection ended: the state opens a new one for its next request. */
  get ended(): boolean {
    return this.#state.phase === "ended" || this.#state.phase === "closing";
  }

  /** Sends an acquire request; settles with the lock or {@link LockFailed}. */
  acquire(key: string, request: LockRequest): Promise<Lock> {
    const target: Target = { kind: "lock", key, exclusive: request.exclusive };
    return this.#acquire(target, request) as Promise<BrokerLock>;
  }

  /** Issue 13: sends a permit request; settles with the permit or {@link LockFailed}. */
  acquirePermit(key: string, request: PermitRequest): Promise<Permit> {
    const target: Target = { kind: "permit", key, limit: request.limit };
    return this.#acquire(target, request) as Promise<BrokerPermit>;
  }

  /** Issue 13: sends an acquireAll request for distinct `keys`; settles with them all. */
  acquireAll(keys: readonly string[], request: LockRequest): Promise<MultiLock> {
    const target: Target = { kind: "locks", keys, exclusive: request.exclusive };
    return this.#acquire(target, request) as Promise<BrokerLocks>;
  }

  #acquire(target: Target, request: LockRequest): Promise<Holding> {
    const { deadline } = request;
    const entry: AcquireEntry = {
      kind: "acquire",
      id: this.#nextId++,
      target,
      request,
      state: { phase: "abandoned" },
    };
    const wait = new RequestWait<Holding>(
      // A lock's target names its key and mode as a failure does: no object more (issue 14).
      target.kind === "lock" ? target : requestedOf(entry),
      request,
      () => this.#gaveUp(entry),
    );
    entry.state = { phase: "waiting", wait };
    this.#entries.set(entry.id, entry);
    if (deadline === undefined && target.kind === "lock") {
      // The most frequent frame, written without an object or a closure (issue 14).
      this.#write(
        `{"op":"acquire","id":${entry.id},"key":${
          JSON.stringify(target.key)
        },"exclusive":${target.exclusive}}`,
      );
      return wait.promise;
    }
    this.#write(() => JSON.stringify(acquireFrame(entry.id, target, deadline)));
    return wait.promise;
  }

  /** Asks whether `key` is free for `exclusive` (or, issue 13, for a permit of `limit`). */
  test(key: string, exclusive: boolean, limit?: number): Promise<boolean> {
    return new Promise<boolean>((resolve, reject) => {
      const entry: TestEntry = {
        kind: "test",
        id: this.#nextId++,
        key,
        exclusive,
        limit,
        state: { phase: "waiting", resolve, reject },
      };
      this.#entries.set(entry.id, entry);
      this.#send(
        limit === undefined
          ? { op: "test", id: entry.id, key, exclusive }
          : { op: "testPermit", id: entry.id, key, limit },
      );
    });
  }

  /** Issue 12: who holds and awaits `key` on the broker. */
  inspect(key: string): Promise<LockInfo> {
    return new Promise<LockInfo>((resolve, reject) => {
      const entry: InspectEntry = {
        kind: "inspect",
        id: this.#nextId++,
        key,
        exclusive: true,
        state: { phase: "waiting", resolve, reject },
      };
      this.#entries.set(entry.id, entry);
      this.#send({ op: "inspect", id: entry.id, key });
    });
  }

  /**
   * Issue 12: the fencing token of a held lock, made by the served state. A release waits for it
   * (`BaseLock.release`), so the lock stays held until the answer.
   */
  fence(entry: AcquireEntry): Promise<bigint> {
    if (entry.state.phase !== "held" || this.#entries.get(entry.id) !== entry) {
      return Promise.reject(new Error("the lock is not held on the broker"));
    }
    if (!this.#features.has("fence")) {
      // It would not answer (its error frame cannot name an id in use): say so at once.
      return Promise.reject(new Error("the broker makes no fencing tokens (an older version)"));
    }
    return new Promise<bigint>((resolve, reject) => {
      this.#fences.set(entry.id, { resolve, reject });
      this.#send({ op: "fence", id: entry.id });
    });
  }

  /** The lock of `id` is gone: a `fence` in flight gets no answer (its holder knows by then). */
  #unfence(id: number, message: string): void {
    const fence = this.#fences.get(id);
    this.#fences.delete(id);
    fence?.reject(new Error(message));
  }

  /** Releases a held lock; resolves once the broker freed it (or the connection is gone). */
  release(entry: AcquireEntry): Promise<void> {
    if (entry.state.phase !== "held" || this.#entries.get(entry.id) !== entry) {
      return Promise.resolve();
    }
    let released!: () => void;
    const done = new Promise<void>((resolve) => released = resolve);
    entry.state = { phase: "releasing", released };
    this.#write(`{"op":"release","id":${entry.id}}`);
    return done;
  }

  /**
   * For the state's close: fails waiting requests, loses held locks, releases them on the broker,
   * waits for the broker to confirm everything, then closes the socket. Never rejects.
   */
  async close(): Promise<void> {
    const { phase } = this.#state;
    if (phase === "ended" || phase === "closing") return;
    const ending: Ending = {
      message: "the state was closed",
      cause: undefined,
      failed: "closed",
      lost: "closed",
    };
    if (phase === "connecting") {
      // Nothing was sent yet: there is nothing to undo on the broker.
      this.#end(ending, CloseCode.normal);
      return;
    }
    const drained = new Promise<void>((resolve) => {
      this.#state = { phase: "closing", drained: resolve, ending };
    });
    this.#answerAll(ending, true);
    if (this.#entries.size > 0) await drained;
    this.#end(ending, CloseCode.normal);
  }

  #lossMessage(): string {
    return this.#state.phase === "connecting"
      ? "the broker could not be reached"
      : "the connection to the broker was lost";
  }

  /** The ending of a connection that failed under us. */
  #loss(cause: unknown, message = this.#lossMessage()): Ending {
    return { message, cause, failed: "unreachable", lost: "disconnected" };
  }

  /**
   * Sends a frame, or queues it while connecting. Any socket access can throw (a runtime that
   * forbids I/O from another request, a socket closed under us): that ends the connection, which
   * fails what it carried with LockFailed and LockLost, and the next request opens another.
   */
  #send(frame: ClientFrame): void {
    this.#write(JSON.stringify(frame));
  }

  /** {@link #send} for a frame in JSON already (or its writer: see {@link Outgoing}). */
  #write(frame: Outgoing): void {
    const state = this.#state;
    if (state.phase === "connecting") {
      state.outbox.push(frame);
      return;
    }
    if (state.phase === "ended") return;
    try {
      if (this.#socket?.readyState !== OPEN) return;
      this.#socket.send(typeof frame === "function" ? frame() : frame);
    } catch (error) {
      // While the state closes, the requests it still carries fail because it closes.
      const now = this.#state;
      this.#end(now.phase === "closing" ? now.ending : this.#loss(error));
    }
  }

  #opened(): void {
    if (this.#state.phase !== "connecting") return;
    try {
      const hello: ClientFrame = {
        op: "hello",
        version: PROTOCOL_VERSION,
        token: this.#config.token,
        // Issue 12: how the broker names this client to `inspect` (older brokers ignore it).
        name: this.#config.name.slice(0, MAX_NAME_LENGTH),
      };
      this.#socket!.send(JSON.stringify(hello));
    } catch (error) {
      this.#end(this.#loss(error));
    }
  }

  #closed(event: CloseEvent): void {
    const code = event.code;
    const reason = event.reason ? `: ${event.reason}` : "";
    const cause = new Error(`closed with code ${code}${reason}`);
    if (code === CloseCode.unauthorized) {
      this.#end({
        message: `the broker refused the connection${reason}`,
        cause,
        failed: "refused",
        lost: "disconnected",
      });
    } else {
      this.#end(this.#loss(cause, `${this.#lossMessage()} (code ${code}${reason})`));
    }
  }

  #receive(data: unknown): void {
    if (this.#state.phase === "ended") return;
    this.#heartbeat.heard();
    let frame: ServerFrame;
    try {
      frame = parseServerFrame(data);
    } catch (error) {
      const message = error instanceof ProtocolError ? error.message : String(error);
      this.#end(this.#loss(error, `the broker sent a malformed frame: ${message}`), 1002);
      return;
    }
    switch (frame.op) {
      case "welcome":
        this.#features = new Set(frame.features);
        return this.#welcomed(frame.version, frame.limits.heartbeatInterval);
      case "queued":
        return;
      case "refused":
        return this.#end({
          message: `the broker refused the connection: ${frame.message}`,
          cause: new Error(frame.message),
          failed: "refused",
          lost: "disconnected",
        }, CloseCode.normal);
      case "ping":
        return this.#send({ op: "pong" });
      case "pong":
        return;
      case "granted":
        return this.#granted(frame.id);
      case "failed":
        return this.#failed(frame.id, frame.reason, frame.message, frame.key);
      case "released":
        return this.#finished(frame.id);
      case "lost":
        return this.#lost(frame.id, frame.message);
      case "tested":
        return this.#tested(frame.id, frame.free);
      case "fenced":
        return this.#fenced(frame.id, frame.token, frame.message);
      case "inspected":
        return this.#inspected(frame.id, frame.holders, frame.waiters);
      case "error":
        if (frame.id === undefined) {
          log.warn("the broker reports an error: {message}", { message: frame.message });
          return;
        }
        return this.#failed(frame.id, "invalid", frame.message);
    }
  }

  #welcomed(version: number, brokerInterval: number): void {
    const state = this.#state;
    if (state.phase !== "connecting") return;
    if (version !== PROTOCOL_VERSION) {
      const message = `the broker speaks protocol version ${version}, not ${PROTOCOL_VERSION}`;
      this.#end(
        { message, cause: new Error(message), failed: "refused", lost: "disconnected" },
        CloseCode.normal,
      );
      return;
    }
    this.#state = { phase: "open" };
    // The broker drops clients silent for two of its intervals: ping at least that often.
    if (
      Number.isFinite(brokerInterval) && brokerInterval > 0 &&
      brokerInterval < this.#config.heartbeatInterval
    ) {
      this.#heartbeat.stop();
      this.#heartbeat = this.#startHeartbeat(brokerInterval);
    }
    log.debug("{name}: connected to {url}", { name: this.#config.name, url: this.#config.url });
    for (const frame of state.outbox) this.#write(frame);
  }

  #granted(id: number): void {
    const entry = this.#entries.get(id);
    if (entry === undefined || entry.kind !== "acquire") {
      // Not ours any more: give it back rather than leave it held on the broker.
      this.#send({ op: "release", id });
      return;
    }
    // An abandoned request was cancelled: the broker releases it and answers "released".
    const state = entry.state;
    if (state.phase !== "waiting") return;
    const { target } = entry;
    const lock = target.kind === "lock"
      ? new BrokerLock(this, entry, target.key)
      : target.kind === "permit"
      ? new BrokerPermit(this, entry, target.key, target.limit)
      : new BrokerLocks(this, entry, target.keys);
    entry.state = { phase: "held", lock };
    state.wait.grant(lock);
  }

  #failed(id: number, reason: FailureReason, message: string, key?: string): void {
    const entry = this.#entries.get(id);
    if (entry === undefined) return;
    const phase = entry.state.phase;
    if (phase === "held" || phase === "releasing") {
      // Only a malformed-release reply can get here; the lock is gone either way.
      return this.#lost(id, message);
    }
    this.#delete(entry);
    if (entry.state.phase !== "waiting") return;
    const details = requestedOf(entry, key);
    // A busy, timed-out or closed failure says all in its own message; the broker's message
    // would only repeat it (it is the served state's LockFailed message).
    const repeats = reason === "busy" || reason === "timeout" || reason === "closed";
    const timeout = entry.kind === "acquire" ? entry.request.timeout : undefined;
    this.#fail(
      entry,
      new LockFailed(failureMessage(entry, reason, message), {
        ...details,
        reason: failedReason(reason, timeout),
        cause: repeats ? undefined : new Error(message),
      }),
    );
  }

  #finished(id: number): void {
    const entry = this.#entries.get(id);
    if (entry === undefined || entry.kind !== "acquire") return;
    if (entry.state.phase === "held") return this.#lost(id, "released by the broker");
    this.#delete(entry);
    if (entry.state.phase === "releasing") entry.state.released();
  }

  #lost(id: number, message: string): void {
    const entry = this.#entries.get(id);
    if (entry === undefined || entry.kind !== "acquire") return;
    this.#delete(entry);
    const state = entry.state;
    entry.state = { phase: "abandoned" };
    if (state.phase === "held") {
      state.lock.lose("disconnected", `the broker lost it: ${message}`, new Error(message));
      this.#unfence(id, message);
    } else if (state.phase === "waiting") {
      state.wait.fail(
        new LockFailed(`the broker lost it: ${message}`, {
          ...requestedOf(entry),
          reason: "unreachable",
        }),
      );
    } else if (state.phase === "releasing") {
      state.released();
    }
  }

  #tested(id: number, free: boolean): void {
    const entry = this.#entries.get(id);
    if (entry === undefined || entry.kind !== "test") return;
    this.#delete(entry);
    if (entry.state.phase === "waiting") entry.state.resolve(free);
  }

  #fenced(id: number, token: string | undefined, message: string | undefined): void {
    const fence = this.#fences.get(id);
    if (fence === undefined) return;
    this.#fences.delete(id);
    if (token !== undefined) fence.resolve(BigInt(token));
    else fence.reject(new Error(`the broker could not make a fencing token: ${message}`));
  }

  #inspected(id: number, holders: WireHolder[], waiters: WireHolder[]): void {
    const entry = this.#entries.get(id);
    if (entry === undefined || entry.kind !== "inspect") return;
    this.#delete(entry);
    if (entry.state.phase !== "waiting") return;
    entry.state.resolve({ key: entry.key, holders: fromWire(holders), waiters: fromWire(waiters) });
  }

  /** The caller gave up on a waiting request (its wait failed it): cancel it on the broker. */
  #gaveUp(entry: AcquireEntry): void {
    if (entry.state.phase !== "waiting") return;
    entry.state = { phase: "abandoned" };
    this.#send({ op: "cancel", id: entry.id });
  }

  /** Fails a request that still waits; it is abandoned from then on. */
  #fail(entry: Entry, error: LockFailed): void {
    const state = entry.state;
    entry.state = { phase: "abandoned" };
    if (state.phase !== "waiting") return;
    if ("wait" in state) state.wait.fail(error);
    else state.reject(error);
  }

  /**
   * Answers every request of the connection because it ends (`ending`): waiting ones fail, held
   * locks are lost. While the broker is still there (`undo`, the state's close), what it granted
   * is released on it and what it awaits is cancelled, and each entry stays until the broker
   * confirms; otherwise every entry goes at once.
   */
  #answerAll(ending: Ending, undo: boolean): void {
    for (const entry of [...this.#entries.values()]) {
      const state = entry.state;
      if (state.phase === "releasing") {
        if (!undo) {
          this.#delete(entry);
          state.released();
        }
        continue;
      }
      if (state.phase === "waiting") {
        const details = requestedOf(entry);
        this.#fail(
          entry,
          new LockFailed(ending.message, {
            ...details,
            reason: ending.failed,
            cause: ending.cause,
          }),
        );
        if (undo && entry.kind === "acquire") this.#send({ op: "cancel", id: entry.id });
      } else if (state.phase === "held") {
        entry.state = { phase: "abandoned" };
        if (undo) this.#send({ op: "release", id: entry.id });
        state.lock.lose(ending.lost, ending.message, ending.cause);
        this.#unfence(entry.id, ending.message);
      }
      if (!undo) this.#delete(entry);
    }
  }

  #delete(entry: Entry): void {
    this.#entries.delete(entry.id);
    const state = this.#state;
    if (this.#entries.size === 0 && state.phase === "closing") state.drained();
  }

  /** The connection is over: every request it carried fails, every lock it held is lost. */
  #end(ending: Ending, code?: number): void {
    const state = this.#state;
    if (state.phase === "ended") return;
    this.#state = { phase: "ended" };
    this.#heartbeat.stop();
    const carried = this.#entries.size;
    this.#answerAll(ending, false);
    for (const id of [...this.#fences.keys()]) this.#unfence(id, ending.message);
    if (state.phase === "closing") state.drained();
    if (carried > 0 || state.phase !== "connecting") {
      log.debug("{name}: connection ended: {message}", {
        name: this.#config.name,
        message: ending.message,
      });
    }
    try {
      this.#socket?.close(code ?? CloseCode.normal);
    } catch {
      // 1002 and others may be refused by a browser's close(): the socket closes anyway.
      try {
        this.#socket?.close();
      } catch {
        // already closed, or a runtime that forbids it: the connection is over either way
      }
    }
  }
}
