/**
 * The client's side of one WebSocket to the broker: authenticates, multiplexes every request of
 * a {@link BrokerState} over it, and fails or loses everything it carried when it ends.
 */

import { LockFailed, type LockFailedReason, type LockLostReason } from "../../errors.ts";
import { aborted, timedOut } from "../../internal/failures.ts";
import { BaseLock } from "../../internal/base_lock.ts";
import { DeadlineTimer } from "../../internal/deadline.ts";
import { holderEntry } from "../../internal/holders.ts";
import { backendLogger } from "../../internal/log.ts";
import type { Lock, LockInfo, LockRequest } from "../../state.ts";
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

/** An acquire request, then the lock it became. */
interface AcquireEntry {
  readonly kind: "acquire";
  readonly id: number;
  readonly key: string;
  readonly request: LockRequest;
  /**
   * waiting: the caller awaits a grant. held: the caller has the lock. releasing: a release was
   * sent. abandoned: the caller has its answer (gave up, or the state closed) and only the
   * broker's final frame for this id is awaited.
   */
  phase: "waiting" | "held" | "releasing" | "abandoned";
  resolve: (lock: Lock) => void;
  reject: (error: LockFailed) => void;
  timer: DeadlineTimer | undefined;
  onAbort: (() => void) | undefined;
  lock: BrokerLock | undefined;
  released: (() => void) | undefined;
  /** Issue 12: a `fence` sent and not yet answered. */
  fencing: { resolve(token: bigint): void; reject(error: Error): void } | undefined;
}

/** A `testLock` in flight. */
interface TestEntry {
  readonly kind: "test";
  readonly id: number;
  readonly key: string;
  readonly exclusive: boolean;
  phase: "waiting" | "abandoned";
  resolve: (free: boolean) => void;
  reject: (error: LockFailed) => void;
}

/** An `inspect` in flight (issue 12). */
interface InspectEntry {
  readonly kind: "inspect";
  readonly id: number;
  readonly key: string;
  readonly exclusive: true;
  phase: "waiting" | "abandoned";
  resolve: (info: LockInfo) => void;
  reject: (error: LockFailed) => void;
}

type Entry = AcquireEntry | TestEntry | InspectEntry;

function fromWire(entries: readonly WireHolder[]) {
  return entries.map(({ exclusive, since, owner }) =>
    holderEntry(exclusive, since === undefined ? undefined : new Date(since), owner)
  );
}

/** A lock held through the broker. */
class BrokerLock extends BaseLock {
  readonly #connection: Connection;
  readonly #entry: AcquireEntry;

  constructor(connection: Connection, entry: AcquireEntry) {
    super(entry.key, entry.request.exclusive);
    this.#connection = connection;
    this.#entry = entry;
  }

  protected override unlock(): Promise<void> {
    return this.#connection.release(this.#entry);
  }

  /** The served state's token, asked for over the connection. */
  protected override fence(): Promise<bigint> {
    return this.#connection.fence(this.#entry);
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
 * What a WebSocket that failed during its handshake was told. A broker on Node refuses a
 * connection past its limits with HTTP 503, and one from an address blocked for its failed
 * authentications with 429, before the upgrade (issue 9, item 7); the WebSocket API hides the
 * status, but the errors of Deno's WebSocket ("Invalid status code: 503") and of `ws`
 * ("Unexpected server response: 503") quote it.
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
  #nextId = 1;
  #phase: "connecting" | "open" | "closing" | "ended" = "connecting";
  /** Frames to send once the broker welcomed us, in order. */
  #outbox: (() => ClientFrame)[] = [];
  #socket: WebSocketLike | undefined;
  #heartbeat: Heartbeat;
  #drained: (() => void) | undefined;

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
        const refused = this.#phase === "connecting" ? handshakeFailure(cause) : undefined;
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
        if (this.#phase === "open" || this.#phase === "closing") this.#send({ op: "ping" });
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
    return this.#phase === "ended" || this.#phase === "closing";
  }

  /** Sends an acquire request; settles with the lock or {@link LockFailed}. */
  acquire(key: string, request: LockRequest): Promise<Lock> {
    return new Promise<Lock>((resolve, reject) => {
      const entry: AcquireEntry = {
        kind: "acquire",
        id: this.#nextId++,
        key,
        request,
        phase: "waiting",
        resolve,
        reject,
        timer: undefined,
        onAbort: undefined,
        lock: undefined,
        released: undefined,
        fencing: undefined,
      };
      this.#entries.set(entry.id, entry);
      const { deadline, signal, timeout, exclusive } = request;
      if (deadline !== undefined && !request.tryOnce) {
        entry.timer = new DeadlineTimer(deadline, () => {
          this.#giveUp(entry, timedOut({ key, exclusive }, timeout));
        });
      }
      if (signal !== undefined) {
        entry.onAbort = () => {
          this.#giveUp(entry, aborted({ key, exclusive }, signal));
        };
        signal.addEventListener("abort", entry.onAbort, { once: true });
      }
      this.#send(() => ({
        op: "acquire",
        id: entry.id,
        key,
        exclusive,
        // Measured from the caller's call: the broker gets what is left of it.
        timeout: deadline === undefined
          ? undefined
          : Math.max(0, Math.ceil(deadline - performance.now())),
      }));
    });
  }

  /** Asks whether `key` is free for `exclusive`. */
  test(key: string, exclusive: boolean): Promise<boolean> {
    return new Promise<boolean>((resolve, reject) => {
      const entry: TestEntry = {
        kind: "test",
        id: this.#nextId++,
        key,
        exclusive,
        phase: "waiting",
        resolve,
        reject,
      };
      this.#entries.set(entry.id, entry);
      this.#send({ op: "test", id: entry.id, key, exclusive });
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
        phase: "waiting",
        resolve,
        reject,
      };
      this.#entries.set(entry.id, entry);
      this.#send({ op: "inspect", id: entry.id, key });
    });
  }

  /** Issue 12: the fencing token of a held lock, made by the served state. */
  fence(entry: AcquireEntry): Promise<bigint> {
    if (entry.phase !== "held" || this.#entries.get(entry.id) !== entry) {
      return Promise.reject(new Error("the lock is not held on the broker"));
    }
    return new Promise<bigint>((resolve, reject) => {
      entry.fencing = { resolve, reject };
      this.#send({ op: "fence", id: entry.id });
    });
  }

  /** A `fence` in flight gets no answer: the lock is gone (its holder knows by then). */
  #unfence(entry: AcquireEntry, message: string): void {
    const fencing = entry.fencing;
    entry.fencing = undefined;
    fencing?.reject(new Error(message));
  }

  /** Releases a held lock; resolves once the broker freed it (or the connection is gone). */
  release(entry: AcquireEntry): Promise<void> {
    if (entry.phase !== "held" || this.#entries.get(entry.id) !== entry) {
      return Promise.resolve();
    }
    entry.phase = "releasing";
    const done = new Promise<void>((resolve) => {
      entry.released = resolve;
    });
    this.#send({ op: "release", id: entry.id });
    return done;
  }

  /**
   * For the state's close: fails waiting requests, loses held locks, releases them on the broker,
   * waits for the broker to confirm everything, then closes the socket.
   */
  async close(): Promise<void> {
    if (this.#phase === "ended" || this.#phase === "closing") return;
    const ending: Ending = {
      message: "the state was closed",
      cause: undefined,
      failed: "closed",
      lost: "closed",
    };
    if (this.#phase === "connecting") {
      // Nothing was sent yet: there is nothing to undo on the broker.
      this.#end(ending, CloseCode.normal);
      return;
    }
    this.#phase = "closing";
    const held: BrokerLock[] = [];
    for (const entry of this.#entries.values()) {
      if (entry.kind !== "acquire") {
        if (entry.phase === "waiting") this.#abandon(entry, ending);
      } else if (entry.phase === "waiting") {
        this.#giveUp(
          entry,
          new LockFailed(ending.message, { ...this.#details(entry), reason: ending.failed }),
        );
      } else if (entry.phase === "held") {
        entry.phase = "abandoned";
        this.#send({ op: "release", id: entry.id });
        held.push(entry.lock!);
      }
    }
    for (const lock of held) lock.lose(ending.lost, ending.message);
    for (const entry of this.#entries.values()) {
      if (entry.kind === "acquire") this.#unfence(entry, ending.message);
    }
    if (this.#entries.size > 0) {
      await new Promise<void>((resolve) => {
        this.#drained = resolve;
      });
    }
    this.#end(ending, CloseCode.normal);
  }

  #details(entry: AcquireEntry) {
    return { key: entry.key, exclusive: entry.request.exclusive };
  }

  #lossMessage(): string {
    return this.#phase === "connecting"
      ? "the broker could not be reached"
      : "the connection to the broker was lost";
  }

  /** The ending of a connection that failed under us. */
  #loss(cause: unknown, message = this.#lossMessage()): Ending {
    return { message, cause, failed: "unreachable", lost: "disconnected" };
  }

  #send(frame: ClientFrame | (() => ClientFrame)): void {
    if (this.#phase === "connecting") {
      this.#outbox.push(typeof frame === "function" ? frame : () => frame);
      return;
    }
    if (this.#phase === "ended" || this.#socket?.readyState !== OPEN) return;
    try {
      this.#socket.send(JSON.stringify(typeof frame === "function" ? frame() : frame));
    } catch (error) {
      this.#end(this.#loss(error));
    }
  }

  #opened(): void {
    if (this.#phase !== "connecting") return;
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
    if (this.#phase === "ended") return;
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
        return this.#failed(frame.id, frame.reason, frame.message);
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
    if (this.#phase !== "connecting") return;
    if (version !== PROTOCOL_VERSION) {
      const message = `the broker speaks protocol version ${version}, not ${PROTOCOL_VERSION}`;
      this.#end(
        { message, cause: new Error(message), failed: "refused", lost: "disconnected" },
        CloseCode.normal,
      );
      return;
    }
    this.#phase = "open";
    // The broker drops clients silent for two of its intervals: ping at least that often.
    if (
      Number.isFinite(brokerInterval) && brokerInterval > 0 &&
      brokerInterval < this.#config.heartbeatInterval
    ) {
      this.#heartbeat.stop();
      this.#heartbeat = this.#startHeartbeat(brokerInterval);
    }
    log.debug("{name}: connected to {url}", { name: this.#config.name, url: this.#config.url });
    const outbox = this.#outbox;
    this.#outbox = [];
    for (const frame of outbox) this.#send(frame);
  }

  #granted(id: number): void {
    const entry = this.#entries.get(id);
    if (entry === undefined || entry.kind !== "acquire") {
      // Not ours any more: give it back rather than leave it held on the broker.
      this.#send({ op: "release", id });
      return;
    }
    // An abandoned request was cancelled: the broker releases it and answers "released".
    if (entry.phase !== "waiting") return;
    this.#settle(entry);
    entry.phase = "held";
    entry.lock = new BrokerLock(this, entry);
    entry.resolve(entry.lock);
  }

  #failed(id: number, reason: FailureReason, message: string): void {
    const entry = this.#entries.get(id);
    if (entry === undefined) return;
    if (entry.kind === "acquire" && (entry.phase === "held" || entry.phase === "releasing")) {
      // Only a malformed-release reply can get here; the lock is gone either way.
      return this.#lost(id, message);
    }
    this.#delete(entry);
    if (entry.phase !== "waiting") return;
    if (entry.kind === "acquire") this.#settle(entry);
    const details = entry.kind === "acquire"
      ? this.#details(entry)
      : { key: entry.key, exclusive: entry.exclusive as boolean };
    // A busy, timed-out or closed failure says all in its own message; the broker's message
    // would only repeat it (it is the served state's LockFailed message).
    const repeats = reason === "busy" || reason === "timeout" || reason === "closed";
    const timeout = entry.kind === "acquire" ? entry.request.timeout : undefined;
    entry.reject(
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
    if (entry.phase === "held") return this.#lost(id, "released by the broker");
    this.#delete(entry);
    entry.released?.();
  }

  #lost(id: number, message: string): void {
    const entry = this.#entries.get(id);
    if (entry === undefined || entry.kind !== "acquire") return;
    this.#delete(entry);
    if (entry.phase === "held") {
      entry.lock!.lose("disconnected", `the broker lost it: ${message}`, new Error(message));
      this.#unfence(entry, message);
    } else if (entry.phase === "waiting") {
      this.#settle(entry);
      entry.reject(
        new LockFailed(`the broker lost it: ${message}`, {
          ...this.#details(entry),
          reason: "unreachable",
        }),
      );
    }
    entry.released?.();
  }

  #tested(id: number, free: boolean): void {
    const entry = this.#entries.get(id);
    if (entry === undefined || entry.kind !== "test") return;
    this.#delete(entry);
    if (entry.phase === "waiting") entry.resolve(free);
  }

  #fenced(id: number, token: string | undefined, message: string | undefined): void {
    const entry = this.#entries.get(id);
    if (entry?.kind !== "acquire" || entry.fencing === undefined) return;
    const { resolve, reject } = entry.fencing;
    entry.fencing = undefined;
    if (token !== undefined) resolve(BigInt(token));
    else reject(new Error(`the broker could not make a fencing token: ${message}`));
  }

  #inspected(id: number, holders: WireHolder[], waiters: WireHolder[]): void {
    const entry = this.#entries.get(id);
    if (entry?.kind !== "inspect") return;
    this.#delete(entry);
    if (entry.phase === "waiting") {
      entry.resolve({ key: entry.key, holders: fromWire(holders), waiters: fromWire(waiters) });
    }
  }

  /** The caller gave up on a waiting request: answer it now, cancel it on the broker. */
  #giveUp(entry: AcquireEntry, error: LockFailed): void {
    if (entry.phase !== "waiting") return;
    this.#settle(entry);
    entry.phase = "abandoned";
    entry.reject(error);
    this.#send({ op: "cancel", id: entry.id });
  }

  #abandon(entry: TestEntry | InspectEntry, ending: Ending): void {
    entry.phase = "abandoned";
    entry.reject(
      new LockFailed(ending.message, {
        key: entry.key,
        exclusive: entry.exclusive,
        reason: ending.failed,
        cause: ending.cause,
      }),
    );
  }

  /** Stops the timer and abort listener of a request that got its answer. */
  #settle(entry: AcquireEntry): void {
    entry.timer?.cancel();
    entry.timer = undefined;
    if (entry.onAbort !== undefined) {
      entry.request.signal!.removeEventListener("abort", entry.onAbort);
      entry.onAbort = undefined;
    }
  }

  #delete(entry: Entry): void {
    this.#entries.delete(entry.id);
    if (this.#entries.size === 0) this.#drained?.();
  }

  /** The connection is over: every request it carried fails, every lock it held is lost. */
  #end(ending: Ending, code?: number): void {
    if (this.#phase === "ended") return;
    const wasConnecting = this.#phase === "connecting";
    this.#phase = "ended";
    this.#heartbeat.stop();
    this.#outbox = [];
    const entries = [...this.#entries.values()];
    this.#entries.clear();
    for (const entry of entries) {
      if (entry.kind !== "acquire") {
        if (entry.phase === "waiting") this.#abandon(entry, ending);
      } else if (entry.phase === "waiting") {
        this.#settle(entry);
        entry.reject(
          new LockFailed(ending.message, {
            ...this.#details(entry),
            reason: ending.failed,
            cause: ending.cause,
          }),
        );
      } else if (entry.phase === "held") {
        entry.lock!.lose(ending.lost, ending.message, ending.cause);
        this.#unfence(entry, ending.message);
      } else {
        this.#unfence(entry, ending.message);
        entry.released?.();
      }
    }
    this.#drained?.();
    if (entries.length > 0 || !wasConnecting) {
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
        // already closed
      }
    }
  }
}
