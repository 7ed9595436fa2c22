/**
 * The sessions of one PostgresState: a main session (uncontended locks, probes, cancels) and spare
 * sessions that each run one blocking wait or one transaction, capped, reused, and watched by a
 * heartbeat.
 */

import { append, type List, unlink } from "../../internal/intrusive_list.ts";
import { Session, type SessionTemplate } from "./session.ts";

/** Tuning of a {@link SessionPool}. */
export interface PoolOptions {
  /** The most sessions open at once, the main session included. */
  readonly maxConnections: number;
  /** Idle spare sessions kept open for the next wait; more are ended. */
  readonly keepIdle: number;
  /** Milliseconds between heartbeats of sessions that hold locks; 0 turns them off. */
  readonly heartbeatInterval: number;
}

/** Someone waiting for a spare session while the cap is reached. */
interface SessionWaiter {
  prev: SessionWaiter | undefined;
  next: SessionWaiter | undefined;
  resolve(session: Session): void;
  reject(error: unknown): void;
  signal: AbortSignal | undefined;
  onAbort: (() => void) | undefined;
}

/** How long an idle spare session stays open unused, in milliseconds. */
export const SPARE_IDLE_MS = 5_000;

/** The pool was shut down. */
export class PoolClosed extends Error {
  constructor() {
    super("the state is closed");
    this.name = "PoolClosed";
  }
}

/** Sessions of one state. */
export class SessionPool {
  readonly #template: SessionTemplate;
  readonly #options: PoolOptions;
  readonly #all = new Set<Session>();
  readonly #idle: Session[] = [];
  /** When each idle spare is ended unless taken first. */
  readonly #expiry = new Map<Session, ReturnType<typeof setTimeout>>();
  readonly #waiters: List<SessionWaiter> = { head: undefined, tail: undefined };
  #opening = 0;
  #mainSession: Session | undefined;
  #mainOpening: Promise<Session> | undefined;
  #heartbeat: ReturnType<typeof setInterval> | undefined;
  #closed = false;

  constructor(template: SessionTemplate, options: PoolOptions) {
    this.#template = template;
    this.#options = options;
  }

  /** Sessions open or opening right now (for tests and diagnostics). */
  get size(): number {
    return this.#all.size + this.#opening;
  }

  /** The main session, opened on first use and again after it died. Exempt from the cap. */
  main(): Promise<Session> {
    if (this.#closed) return Promise.reject(new PoolClosed());
    const main = this.#mainSession;
    if (main !== undefined && !main.dead) return Promise.resolve(main);
    if (this.#mainOpening === undefined) {
      const opening = this.#open().then((session) => {
        session.main = true;
        this.#mainSession = session;
        return session;
      }).finally(() => {
        if (this.#mainOpening === opening) this.#mainOpening = undefined;
      });
      this.#mainOpening = opening;
    }
    return this.#mainOpening;
  }

  /**
   * A session that holds nothing and runs nothing, for one wait or one transaction: an idle one,
   * a new one while under the cap, else the next one given back. Rejects when `signal` aborts.
   */
  take(signal?: AbortSignal): Promise<Session> {
    if (this.#closed) return Promise.reject(new PoolClosed());
    if (signal?.aborted) return Promise.reject(signal.reason);
    while (this.#idle.length > 0) {
      // The most recently used first, so that the others expire when fewer are needed.
      const session = this.#idle.pop()!;
      this.#unexpire(session);
      if (!session.dead) return Promise.resolve(session);
    }
    if (this.size < this.#options.maxConnections) return this.#open();
    return new Promise<Session>((resolve, reject) => {
      const waiter: SessionWaiter = {
        prev: undefined,
        next: undefined,
        resolve,
        reject,
        signal,
        onAbort: undefined,
      };
      if (signal !== undefined) {
        waiter.onAbort = () => {
          unlink(this.#waiters, waiter);
          reject(signal.reason);
        };
        signal.addEventListener("abort", waiter.onAbort, { once: true });
      }
      append(this.#waiters, waiter);
    });
  }

  /** Gives back a session from {@link SessionPool.take} that holds nothing any more. */
  give(session: Session): void {
    if (session.dead) return;
    if (this.#closed) {
      this.#forget(session);
      session.end();
      return;
    }
    const waiter = this.#waiters.head;
    if (waiter !== undefined) {
      this.#settle(waiter).resolve(session);
    } else if (this.#idle.length < this.#options.keepIdle) {
      this.#idle.push(session);
      this.#expire(session);
    } else {
      this.#forget(session);
      session.end();
    }
  }

  /**
   * Ends the blocking wait running on `session` with a cancel (57014), sent from the main session
   * with `pg_cancel_backend`. Resolves once the cancel was delivered; never rejects.
   */
  async cancel(session: Session): Promise<void> {
    if (session.dead || session.pid === 0) return;
    try {
      const main = await this.main();
      await main.query(`select pg_cancel_backend(${session.pid})`);
    } catch {
      // Without a main session there is no way to cancel; lock_timeout or the connection's end
      // still ends the wait.
    }
  }

  /** Ends every session. Waiters for a session fail. Never rejects. */
  async shutdown(): Promise<void> {
    this.#closed = true;
    this.#stopHeartbeat();
    for (let waiter = this.#waiters.head; waiter !== undefined; waiter = this.#waiters.head) {
      this.#settle(waiter).reject(new PoolClosed());
    }
    const sessions = [...this.#all];
    const main = this.#mainSession;
    this.#all.clear();
    this.#idle.length = 0;
    for (const timer of this.#expiry.values()) clearTimeout(timer);
    this.#expiry.clear();
    this.#mainSession = undefined;
    await this.#endWaits(sessions, main);
    await Promise.all(sessions.map((session) => session.end()));
    // Issue 9: refused connections still freeing what they left behind a pooler.
    await Promise.all(this.#template.releases);
  }

  /**
   * Ends the backends of sessions blocked in a lock wait. Such a backend does not notice that its
   * client went away: it would stay in PostgreSQL's queue until granted, ahead of every later
   * request (an exclusive one there keeps out new readers of a key only readers hold). Never
   * rejects.
   */
  async #endWaits(sessions: Session[], main: Session | undefined): Promise<void> {
    const pids = sessions.filter((s) => s.waiting && !s.dead && s.pid !== 0).map((s) => s.pid);
    if (pids.length === 0) return;
    let sender = main !== undefined && !main.dead
      ? main
      : sessions.find((s) => !s.waiting && !s.dead);
    let temporary: Session | undefined;
    if (sender === undefined) {
      // Transaction mode opens the main session only to probe or cancel: open one for this.
      try {
        sender = temporary = await Session.open(this.#template, { lost: () => {} });
      } catch {
        return;
      }
    }
    await sender.query(`select pg_terminate_backend(pid) from unnest('{${pids}}'::int[]) as pid`)
      .catch(() => {});
    await temporary?.end();
  }

  async #open(): Promise<Session> {
    this.#opening++;
    let session: Session;
    try {
      session = await Session.open(this.#template, { lost: (s) => this.#lost(s) });
    } finally {
      this.#opening--;
    }
    if (this.#closed) {
      session.end();
      throw new PoolClosed();
    }
    this.#all.add(session);
    this.#startHeartbeat();
    return session;
  }

  #lost(session: Session): void {
    if (this.#mainSession === session) this.#mainSession = undefined;
    this.#forget(session);
  }

  /** Removes a session from the books; its place may go to someone waiting for one. */
  #forget(session: Session): void {
    if (!this.#all.delete(session)) return;
    const index = this.#idle.indexOf(session);
    if (index >= 0) this.#idle.splice(index, 1);
    this.#unexpire(session);
    if (this.#all.size === 0) this.#stopHeartbeat();
    const waiter = this.#waiters.head;
    if (waiter !== undefined && !this.#closed && this.size < this.#options.maxConnections) {
      const { resolve, reject } = this.#settle(waiter);
      this.#open().then(resolve, reject);
    }
  }

  /**
   * Ends an idle spare after {@link SPARE_IDLE_MS} unused: a burst of waits reuses its
   * connections (each new one is a server process), and a quiet process gives them back.
   */
  #expire(session: Session): void {
    const timer = setTimeout(() => {
      this.#expiry.delete(session);
      this.#forget(session);
      session.end();
    }, SPARE_IDLE_MS);
    unrefTimer(timer);
    this.#expiry.set(session, timer);
  }

  #unexpire(session: Session): void {
    clearTimeout(this.#expiry.get(session));
    this.#expiry.delete(session);
  }

  #settle(waiter: SessionWaiter): SessionWaiter {
    unlink(this.#waiters, waiter);
    if (waiter.onAbort !== undefined) {
      waiter.signal!.removeEventListener("abort", waiter.onAbort);
    }
    return waiter;
  }

  #startHeartbeat(): void {
    const interval = this.#options.heartbeatInterval;
    if (interval === 0 || this.#heartbeat !== undefined) return;
    this.#heartbeat = setInterval(() => {
      for (const session of this.#all) {
        if (session.held.size > 0 || session.inTransaction) session.heartbeat(interval);
      }
    }, interval);
    unrefTimer(this.#heartbeat);
  }

  #stopHeartbeat(): void {
    clearInterval(this.#heartbeat);
    this.#heartbeat = undefined;
  }
}

/** Lets the process exit while only the heartbeat timer is left (Node's and Deno's way). */
function unrefTimer(timer: unknown): void {
  if (typeof timer === "object" && timer !== null && "unref" in timer) {
    (timer as { unref(): void }).unref();
    return;
  }
  const deno = (globalThis as { Deno?: { unrefTimer?(id: number): void } }).Deno;
  if (typeof timer === "number") deno?.unrefTimer?.(timer);
}
