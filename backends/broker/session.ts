/**
 * One client connection on the broker: authenticates it, then runs its requests against the
 * served state, and frees everything it held or awaited when the connection ends.
 */

import { LockFailed } from "../../errors.ts";
import { watchLoss } from "../../internal/base_lock.ts";
import { type HolderLabel, setLabel } from "../../internal/holders.ts";
import { backendLogger } from "../../internal/log.ts";
import type { LockHolder } from "../../lock.ts";
import type { StateABC } from "../../state.ts";
import { type AuthFailureLimiter, blockedMessage } from "./auth_failures.ts";
import { Heartbeat } from "./heartbeat.ts";
import {
  CloseCode,
  exceedsUtf8Bytes,
  type FailureReason,
  FEATURES,
  MAX_FRAME_BYTES,
  MAX_INSPECT_ENTRIES,
  MAX_KEY_LENGTH,
  MAX_NAME_LENGTH,
  MAX_TOKEN_LENGTH,
  OPEN,
  parseClientFrame,
  PROTOCOL_VERSION,
  ProtocolError,
  type ServerFrame,
  type WebSocketLike,
  type WireHolder,
} from "./protocol.ts";
import { closeSocket } from "./socket_close.ts";
import type { TokenCheck } from "./token.ts";

const log = backendLogger("broker");

/** What every session of one broker shares. */
export interface SessionConfig {
  state: StateABC;
  token: TokenCheck;
  heartbeatInterval: number;
  authTimeout: number;
  maxRequests: number;
  maxKeyChars: number;
  maxErrors: number;
  maxBufferedBytes: number;
  /** Failed authentications per client address, shared by every session. */
  authFailures: AuthFailureLimiter;
}

/** What a session tells its broker about its life. */
export interface SessionEvents {
  /** The client was welcomed. */
  welcomed(session: Session): void;
  /** The connection ended (once). */
  ended(session: Session): void;
}

/**
 * Where a request of this connection stands in the served state (issue 10: one explicit state
 * each, holding what that state needs).
 */
type RequestState =
  /**
   * Waiting in the served state. `controller` ends the wait (the client's cancel, or the end of
   * its connection); once `cancelled`, a grant that still arrives is released at once.
   * `answered` settles once the served state answered (and a late grant was released).
   */
  | {
    readonly phase: "waiting";
    readonly controller: AbortController;
    cancelled: boolean;
    answered: Promise<void>;
  }
  /**
   * Held; `onLost` forwards the served state's loss to the client, as a listener of the lock's
   * signal unless `watched` (the package's own locks tell it without a signal: issue 14).
   */
  | {
    readonly phase: "held";
    readonly lock: Held;
    readonly onLost: () => void;
    readonly watched: boolean;
  }
  /** Being released in the served state; `released` settles once it is. */
  | { readonly phase: "releasing"; readonly released: Promise<void> }
  /** A `testLock` in flight. */
  | { readonly phase: "testing" }
  /** An `inspect` in flight (issue 12). */
  | { readonly phase: "inspecting" };

/** What a request holds in the served state: a lock, a permit or (issue 13) several locks. */
interface Held {
  readonly signal: AbortSignal;
  release(): Promise<void>;
}

/** A request of this connection that the broker still tracks. */
interface Request {
  readonly id: number;
  /** The UTF-16 code units of its keys, counted against the connection's limit. */
  readonly chars: number;
  /** Issue 13: an `acquireAll`, whose failure names the key it could not get. */
  readonly namesKey: boolean;
  state: RequestState;
}

/**
 * Where the connection stands: `hello` until a valid hello (the auth timer runs), `checking`
 * while the token is hashed (frames that arrive meanwhile wait), `ready` (the heartbeat runs),
 * `ended` (everything it held is being released: `drained`).
 */
type SessionState =
  | { readonly phase: "hello"; readonly authTimer: ReturnType<typeof setTimeout> }
  | {
    readonly phase: "checking";
    readonly authTimer: ReturnType<typeof setTimeout>;
    readonly early: string[];
  }
  | { readonly phase: "ready"; readonly heartbeat: Heartbeat }
  | { readonly phase: "ended"; readonly drained: Promise<void> };

/** Who a request or lock is for (issue 12): its `since` is made only if `inspect` asks. */
class SessionLabel implements HolderLabel {
  constructor(readonly owner: string, readonly sinceMs: number) {}

  get since(): Date {
    return new Date(this.sinceMs);
  }
}

/** Frames that may arrive while the token is being checked, before the client saw `welcome`. */
const MAX_EARLY_FRAMES = 64;

let sessionCounter = 0;

/** The broker's side of one WebSocket. */
export class Session {
  readonly #config: SessionConfig;
  readonly #socket: WebSocketLike;
  /** The client's address, where the server told it: failed authentications count against it. */
  readonly #address: string | undefined;
  readonly #name = `connection ${++sessionCounter}`;
  /** Who this connection's requests are for, in the served state's `inspect` (issue 12). */
  #owner: string;
  readonly #requests = new Map<number, Request>();
  #keyChars = 0;
  #errors = 0;
  #state: SessionState;
  #welcomed = false;
  /** Settles once the socket is closed, or torn down after the grace (see socket_close.ts). */
  #closed: Promise<void> | undefined;
  readonly #events: SessionEvents;

  /**
   * @param config What every session of the broker shares.
   * @param socket The client's WebSocket.
   * @param address The client's address, if the server knows it.
   * @param events Told when the client is welcomed and when the connection ends.
   */
  constructor(
    config: SessionConfig,
    socket: WebSocketLike,
    address: string | undefined,
    events: SessionEvents,
  ) {
    this.#config = config;
    this.#socket = socket;
    this.#address = address;
    this.#owner = this.#ownerName(undefined);
    this.#events = events;
    socket.addEventListener("message", (event: MessageEvent) => this.#receive(event.data));
    socket.addEventListener("close", () => this.#end("the connection closed"));
    socket.addEventListener("error", () => this.#end("the connection failed"));
    const authTimer = setTimeout(() => {
      // Holding a connection open without a hello is the start of a flood: it counts as a failure.
      this.#config.authFailures.recordFailure(this.#address);
      this.terminate(CloseCode.unauthorized, "no hello in time");
    }, config.authTimeout);
    this.#state = { phase: "hello", authTimer };
    log.debug("{name}: opened", { name: this.#name });
  }

  /** `true` once the client was welcomed (and still after the connection ended). */
  get welcomed(): boolean {
    return this.#welcomed;
  }

  /**
   * Ends the connection now and releases everything it held. Resolves once released and the
   * socket closed: by the peer's answer to the close frame, or torn down after a short grace.
   */
  terminate(code: number, reason: string): Promise<void> {
    const drained = this.#end(reason);
    this.#closed ??= closeSocket(this.#socket, code, reason);
    return Promise.all([drained, this.#closed]).then(() => {});
  }

  #send(frame: ServerFrame): void {
    this.#sendText(JSON.stringify(frame));
  }

  /**
   * Sends a frame already in JSON: the most frequent ones (`granted`, `released`, `queued`) are
   * written as template strings, without an object and `JSON.stringify` (issue 14).
   */
  #sendText(text: string): void {
    if (this.#state.phase === "ended") return;
    try {
      if (this.#socket.readyState !== OPEN) return;
      this.#socket.send(text);
    } catch (error) {
      this.#end(`sending failed: ${error}`);
      return;
    }
    // A client that sends requests but does not read the replies would make them pile up here.
    if ((this.#socket.bufferedAmount ?? 0) > this.#config.maxBufferedBytes) {
      this.terminate(CloseCode.policyViolation, "replies are not being read");
    }
  }

  #receive(data: unknown): void {
    const state = this.#state;
    if (state.phase === "ended") return;
    if (state.phase === "ready") state.heartbeat.heard();
    if (typeof data !== "string") {
      this.terminate(CloseCode.unsupportedData, "only text frames are accepted");
      return;
    }
    if (exceedsUtf8Bytes(data, MAX_FRAME_BYTES)) {
      this.terminate(CloseCode.tooBig, `frames are limited to ${MAX_FRAME_BYTES} bytes`);
      return;
    }
    if (state.phase === "hello") return this.#hello(data, state.authTimer);
    if (state.phase === "checking") {
      if (state.early.length >= MAX_EARLY_FRAMES) {
        this.terminate(CloseCode.policyViolation, "too many frames before welcome");
      } else {
        state.early.push(data);
      }
      return;
    }
    this.#handle(data);
  }

  #hello(data: string, authTimer: ReturnType<typeof setTimeout>): void {
    let token: string;
    try {
      const frame = parseClientFrame(data);
      if (frame.op !== "hello") throw new ProtocolError("the first frame must be hello");
      if (frame.token.length > MAX_TOKEN_LENGTH) throw new ProtocolError("token too long");
      if (frame.version !== PROTOCOL_VERSION) {
        this.#send({ op: "refused", message: `unsupported protocol version ${frame.version}` });
        this.terminate(CloseCode.unsupportedVersion, "unsupported protocol version");
        return;
      }
      token = frame.token;
      this.#owner = this.#ownerName(frame.name);
    } catch (error) {
      this.#config.authFailures.recordFailure(this.#address);
      this.#refuse(error instanceof ProtocolError ? error.message : "malformed hello");
      return;
    }
    // Checked here as well as before the upgrade: connections opened together pass that check
    // together, and the hellos they send together must not all be tried.
    const authFailures = this.#config.authFailures;
    if (!authFailures.begin(this.#address)) {
      return this.#refuse(blockedMessage(Math.max(1000, authFailures.blockedFor(this.#address))));
    }
    const checking: SessionState = { phase: "checking", authTimer, early: [] };
    this.#state = checking;
    this.#config.token.matches(token).then(
      (valid) => {
        authFailures.end(this.#address, valid);
        if (this.#state !== checking) return;
        if (!valid) return this.#refuse("wrong token");
        this.#welcome(checking);
      },
      (error) => {
        authFailures.end(this.#address, true); // our failure, not the client's
        this.#refuse(`the token could not be checked: ${error}`);
      },
    );
  }

  #refuse(message: string): void {
    log.info("{name}: refused: {message}", { name: this.#name, message });
    this.#send({ op: "refused", message });
    this.terminate(CloseCode.unauthorized, "unauthorized");
  }

  #welcome(checking: SessionState & { phase: "checking" }): void {
    clearTimeout(checking.authTimer);
    const { heartbeatInterval, maxRequests } = this.#config;
    const heartbeat = new Heartbeat(
      heartbeatInterval,
      () => {}, // the client pings, we answer: see heartbeat.ts
      (silentFor) =>
        this.terminate(
          CloseCode.heartbeatTimeout,
          `no frame for ${Math.round(silentFor)} ms`,
        ),
    );
    this.#state = { phase: "ready", heartbeat };
    this.#welcomed = true;
    this.#events.welcomed(this);
    this.#send({
      op: "welcome",
      version: PROTOCOL_VERSION,
      limits: {
        maxFrameBytes: MAX_FRAME_BYTES,
        maxKeyLength: MAX_KEY_LENGTH,
        maxRequests,
        heartbeatInterval,
      },
      features: [...FEATURES],
    });
    log.debug("{name}: authenticated", { name: this.#name });
    for (const data of checking.early) this.#handle(data);
  }

  #handle(data: string): void {
    if (this.#state.phase !== "ready") return;
    try {
      const frame = parseClientFrame(data);
      switch (frame.op) {
        case "acquire": {
          const { key, exclusive, timeout } = frame;
          return this.#acquire(
            frame.id,
            key.length,
            false,
            (signal) => this.#config.state.getLock(key, { exclusive, timeout, signal }),
          );
        }
        case "test": {
          const { key, exclusive } = frame;
          return this.#test(
            frame.id,
            key.length,
            () => this.#config.state.testLock(key, { exclusive }),
          );
        }
        // Issue 13: served by the state's permits and multi-key locks, with the same replies.
        case "permit": {
          const { key, limit, timeout } = frame;
          return this.#acquire(
            frame.id,
            key.length,
            false,
            (signal) => this.#config.state.getPermit(key, { limit, timeout, signal }),
          );
        }
        case "testPermit": {
          const { key, limit } = frame;
          return this.#test(
            frame.id,
            key.length,
            () => this.#config.state.testPermit(key, { limit }),
          );
        }
        case "acquireAll": {
          const { keys, exclusive, timeout } = frame;
          return this.#acquire(
            frame.id,
            keys.reduce((sum, key) => sum + key.length, 0),
            true,
            (signal) => this.#config.state.getLocks(keys, { exclusive, timeout, signal }),
          );
        }
        // Issue 12: a held lock's fencing token, and who holds and awaits a key.
        case "fence":
          return this.#fence(frame.id);
        case "inspect":
          return this.#inspect(frame.id, frame.key);
        case "cancel":
          return this.#cancel(frame.id);
        case "release":
          return this.#release(frame.id);
        case "ping":
          return this.#send({ op: "pong" });
        case "pong":
          return;
        case "hello":
          throw new ProtocolError("already authenticated");
      }
    } catch (error) {
      if (error instanceof ProtocolError) return this.#protocolError(error);
      // A bug here must not take the broker down: end this connection only.
      log.error("{name}: internal error: {error}", { name: this.#name, error });
      this.terminate(CloseCode.internalError, "internal error");
    }
  }

  #protocolError(error: ProtocolError): void {
    // An id that names a live request must not end it: the request is not what was malformed.
    const id = error.id !== undefined && !this.#requests.has(error.id) ? error.id : undefined;
    this.#send({ op: "error", id, message: error.message });
    if (++this.#errors > this.#config.maxErrors) {
      this.terminate(CloseCode.policyViolation, "too many malformed frames");
    }
  }

  /** Admits a new request id with keys of `chars` code units, or explains why not. */
  #admit(id: number, chars: number): boolean {
    if (this.#requests.has(id)) {
      this.#protocolError(new ProtocolError(`id ${id} is already in use`));
      return false;
    }
    const { maxRequests, maxKeyChars } = this.#config;
    if (this.#requests.size >= maxRequests || this.#keyChars + chars > maxKeyChars) {
      this.#send({
        op: "failed",
        id,
        reason: "limit",
        message: `too many requests on one connection (at most ${maxRequests}, ` +
          `with keys of ${maxKeyChars} UTF-16 code units in all)`,
      });
      return false;
    }
    return true;
  }

  #track(request: Request): void {
    this.#requests.set(request.id, request);
    this.#keyChars += request.chars;
  }

  #forget(request: Request): void {
    if (this.#requests.get(request.id) !== request) return;
    this.#requests.delete(request.id);
    this.#keyChars -= request.chars;
  }

  /**
   * Starts a request that waits in the served state (`take`, ended by the signal) and then holds
   * what it got until released: a lock, a permit, or several locks.
   */
  #acquire(
    id: number,
    chars: number,
    namesKey: boolean,
    take: (signal: AbortSignal) => Promise<Held>,
  ): void {
    if (!this.#admit(id, chars)) return;
    const controller = new AbortController();
    const waiting: RequestState & { phase: "waiting" } = {
      phase: "waiting",
      controller,
      cancelled: false,
      answered: Promise.resolve(),
    };
    const request: Request = { id, chars, namesKey, state: waiting };
    this.#track(request);
    const since = Date.now();
    waiting.answered = take(controller.signal).then(
      (lock) => this.#granted(request, waiting, lock),
      (error) => this.#failed(request, waiting.cancelled, error),
    ).catch((error) => log.error("{name}: internal error: {error}", { name: this.#name, error }));
    // A request that must wait is acknowledged at once, so that the client's TCP segment is
    // acknowledged at once too (see heartbeat.ts). One that is granted at once already is: the
    // grant's reaction, queued by `then` above on a settled promise, runs before this microtask.
    queueMicrotask(() => {
      if (request.state === waiting && this.#requests.get(id) === request) {
        // Issue 12: the served state's `inspect` names this client as the waiter. Labelled only
        // now, as few requests wait (issue 14); nothing could inspect the state in between.
        setLabel(controller.signal, new SessionLabel(this.#owner, since));
        this.#sendText(`{"op":"queued","id":${id}}`);
      }
    });
  }

  #granted(
    request: Request,
    waiting: RequestState & { phase: "waiting" },
    lock: Held,
  ): Promise<void> | undefined {
    if (this.#state.phase === "ended" || waiting.cancelled) {
      // The client gave up (or left) while the grant was on its way: free it, leak nothing.
      this.#forget(request);
      return lock.release().then(() => {
        this.#send({ op: "failed", id: request.id, reason: "cancelled", message: "cancelled" });
      });
    }
    setLabel(lock, new SessionLabel(this.#owner, Date.now()));
    // Reads the signal only once lost: the signal of a lock never lost is never made.
    const onLost = () => this.#lost(request, lock.signal.reason);
    request.state = { phase: "held", lock, onLost, watched: true };
    // The package's own locks tell of a loss directly (at once if lost already, so the state is
    // "held" first); the others through their signal.
    if (!watchLoss(lock, onLost)) {
      request.state = { phase: "held", lock, onLost, watched: false };
      if (lock.signal.aborted) {
        onLost();
        return;
      }
      lock.signal.addEventListener("abort", onLost, { once: true });
    }
    if (request.state.phase !== "held") return;
    this.#sendText(`{"op":"granted","id":${request.id}}`);
  }

  /** Stops forwarding the loss of a held lock (it is being released). */
  #unwatch(state: RequestState & { phase: "held" }): void {
    if (state.watched) watchLoss(state.lock, undefined);
    else state.lock.signal.removeEventListener("abort", state.onLost);
  }

  #failed(request: Request, cancelled: boolean, error: unknown): void {
    this.#forget(request);
    let reason: FailureReason;
    if (cancelled) reason = "cancelled";
    else if (!(error instanceof LockFailed)) reason = "error";
    // Only the client's cancel or the end of its connection abort the served state's wait.
    else if (error.reason === "aborted") reason = "cancelled";
    else reason = error.reason;
    const message = error instanceof Error ? error.message : String(error);
    if (request.namesKey && error instanceof LockFailed) {
      this.#send({ op: "failed", id: request.id, reason, message, key: error.key });
    } else {
      this.#send({ op: "failed", id: request.id, reason, message });
    }
  }

  /** The served state took the lock away (it was closed, its connection died…). */
  #lost(request: Request, cause: unknown): void {
    if (request.state.phase !== "held") return;
    this.#forget(request);
    const message = cause instanceof Error ? cause.message : String(cause);
    this.#send({ op: "lost", id: request.id, message });
  }

  #test(id: number, chars: number, test: () => Promise<boolean>): void {
    if (!this.#admit(id, chars)) return;
    const request: Request = { id, chars, namesKey: false, state: { phase: "testing" } };
    this.#track(request);
    test().then(
      (free) => {
        this.#forget(request);
        this.#send({ op: "tested", id, free });
      },
      (error) => this.#failed(request, false, error),
    );
  }

  /** `name (broker connection N from ADDRESS)`: how `inspect` names this client (issue 12). */
  #ownerName(clientName: string | undefined): string {
    const where = `broker ${this.#name}${this.#address ? ` from ${this.#address}` : ""}`;
    return clientName === undefined ? where : `${clientName} (${where})`;
  }

  /**
   * Issue 12: the fencing token of a held lock, from the served state; answered with `fenced`.
   * A `release` right after waits for it in the served state (see `BaseLock.release`).
   */
  #fence(id: number): void {
    const state = this.#requests.get(id)?.state;
    if (state?.phase !== "held") {
      return this.#send({ op: "fenced", id, message: "the lock is not held" });
    }
    // A permit or a multi-key lock has no token: only a lock of one key.
    const lock = state.lock as Held & { fencingToken?: () => Promise<bigint> };
    if (typeof lock.fencingToken !== "function") {
      return this.#send({ op: "fenced", id, message: "only a lock of one key has a token" });
    }
    lock.fencingToken().then(
      (token) => this.#send({ op: "fenced", id, token: String(token) }),
      (error: unknown) =>
        this.#send({
          op: "fenced",
          id,
          message: error instanceof Error ? error.message : String(error),
        }),
    );
  }

  /** Issue 12: who holds and awaits `key` in the served state; answered with `inspected`. */
  #inspect(id: number, key: string): void {
    if (!this.#admit(id, key.length)) return;
    const request: Request = {
      id,
      chars: key.length,
      namesKey: false,
      state: { phase: "inspecting" },
    };
    this.#track(request);
    const wire = (entries: LockHolder[]): WireHolder[] =>
      entries.slice(0, MAX_INSPECT_ENTRIES).map(({ exclusive, since, owner }) => {
        const holder: WireHolder = { exclusive };
        if (since instanceof Date && Number.isFinite(since.getTime())) {
          holder.since = since.getTime();
        }
        if (typeof owner === "string") holder.owner = owner.slice(0, MAX_NAME_LENGTH);
        return holder;
      });
    this.#config.state.inspect(key).then(
      ({ holders, waiters }) => {
        this.#forget(request);
        this.#send({ op: "inspected", id, holders: wire(holders), waiters: wire(waiters) });
      },
      (error) => this.#failed(request, false, error),
    );
  }

  #cancel(id: number): void {
    const request = this.#requests.get(id);
    if (request === undefined) {
      // Already finished and its final frame sent; answer anyway (see heartbeat.ts), the client
      // ignores frames for ids it forgot.
      return this.#send({ op: "failed", id, reason: "cancelled", message: "already finished" });
    }
    const state = request.state;
    if (state.phase === "waiting") {
      state.cancelled = true;
      state.controller.abort(new Error("cancelled by the client"));
    } else if (state.phase === "held") {
      this.#release(id);
    }
  }

  #release(id: number): void {
    const request = this.#requests.get(id);
    if (request === undefined) {
      // Already released or lost: say so, the client may be waiting for it.
      return this.#send({ op: "released", id });
    }
    const state = request.state;
    if (state.phase === "waiting") return this.#cancel(id);
    if (state.phase !== "held") return;
    this.#unwatch(state);
    const released = state.lock.release().then(() => {
      this.#forget(request);
      this.#sendText(`{"op":"released","id":${id}}`);
    });
    request.state = { phase: "releasing", released };
  }

  /** The connection is over: drop waiting requests and release held locks, once. */
  #end(why: string): Promise<void> {
    const state = this.#state;
    if (state.phase === "ended") return state.drained;
    if (state.phase === "hello" || state.phase === "checking") clearTimeout(state.authTimer);
    if (state.phase === "ready") state.heartbeat.stop();
    const releases: Promise<void>[] = [];
    for (const request of this.#requests.values()) {
      const requestState = request.state;
      switch (requestState.phase) {
        case "waiting":
          requestState.cancelled = true;
          requestState.controller.abort(new Error("the client's connection ended"));
          releases.push(requestState.answered);
          break;
        case "releasing":
          releases.push(requestState.released);
          break;
        case "held":
          this.#unwatch(requestState);
          releases.push(requestState.lock.release());
          break;
      }
    }
    this.#requests.clear();
    this.#keyChars = 0;
    log.debug("{name}: ended ({why}), releasing {count} locks", {
      name: this.#name,
      why,
      count: releases.length,
    });
    const drained = Promise.all(releases).then(() => {});
    this.#state = { phase: "ended", drained };
    this.#events.ended(this);
    return drained;
  }
}
