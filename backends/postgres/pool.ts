/**
 * The sessions of one PostgresState: a main session (uncontended locks, probes) and spare sessions
 * that each run one blocking wait or one transaction, capped, reused, and watched every heartbeat
 * interval by the watchdog (watchdog.ts).
 */

import { append, type List, unlink } from "../../internal/intrusive_list.ts";
import { DatabaseSession, type Orphan, type SessionTemplate } from "./session.ts";
import { Watchdog } from "./watchdog.ts";

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
  resolve(session: DatabaseSession): void;
  reject(error: unknown): void;
  signal: AbortSignal | undefined;
  onAbort: (() => void) | undefined;
}

/** How long an idle spare session stays open unused, in milliseconds. */
export const SPARE_IDLE_MS = 5_000;

/** Milliseconds an idle spare may take to end gracefully before its connection is dropped. */
const END_GRACE_MS = 2_000;

/**
 * Milliseconds `close()` gives the server to take part (cancels delivered, sessions ended
 * gracefully) before every connection is dropped: close is prompt whatever the network does.
 */
const SHUTDOWN_GRACE_MS = 1_000;

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
  readonly #all = new Set<DatabaseSession>();
  readonly #idle: DatabaseSession[] = [];
  /** When each idle spare is ended unless taken first. */
  readonly #expiry = new Map<DatabaseSession, ReturnType<typeof setTimeout>>();
  readonly #waiters: List<SessionWaiter> = { head: undefined, tail: undefined };
  #opening = 0;
  /** Sessions being opened, so that shutting down can end them too. */
  readonly #connecting = new Set<DatabaseSession>();
  /** Heartbeats, the watch of waits, and the orphans (watchdog.ts). */
  readonly #watchdog: Watchdog;
  #mainSession: DatabaseSession | undefined;
  #mainOpening: Promise<DatabaseSession> | undefined;
  #heartbeat: ReturnType<typeof setInterval> | undefined;
  #closed = false;
  /** Issue 13: told of every notification that a session (the main one, listening) receives. */
  onNotification: ((channel: string, payload: string) => void) | undefined;

  constructor(template: SessionTemplate, options: PoolOptions) {
    this.#template = template;
    this.#options = options;
    this.#watchdog = new Watchdog(options.heartbeatInterval, {
      main: () => this.main(),
      current: () => this.#mainSession,
    });
  }

  /** Whether {@link SessionPool.take} would answer without queueing for a session. */
  get canTake(): boolean {
    return this.#idle.length > 0 || this.size < this.#options.maxConnections;
  }

  /** Sessions open or opening right now (for tests and diagnostics). */
  get size(): number {
    return this.#all.size + this.#opening;
  }

  /**
   * The backend pids of the sessions open now (issue 12: `inspect` tells its own apart). With
   * `pinnedOnly`, only those of sessions in a transaction, whose pid was read in it: behind a
   * transaction pooler a session's backend is its own only while a transaction is open, and the
   * pooler hands it to other clients in between.
   */
  pids(pinnedOnly: boolean): Set<number> {
    const pids = new Set<number>();
    for (const session of this.#all) {
      if (session.dead || session.pid === 0 || (pinnedOnly && !session.inTransaction)) continue;
      pids.add(session.pid);
    }
    return pids;
  }

  /** The main session, opened on first use and again after it died. Exempt from the cap. */
  main(): Promise<DatabaseSession> {
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
  take(signal?: AbortSignal): Promise<DatabaseSession> {
    if (this.#closed) return Promise.reject(new PoolClosed());
    if (signal?.aborted) return Promise.reject(signal.reason);
    while (this.#idle.length > 0) {
      // The most recently used first, so that the others expire when fewer are needed.
      const session = this.#idle.pop()!;
      this.#unexpire(session);
      if (!session.dead) return Promise.resolve(session);
    }
    if (this.size < this.#options.maxConnections) return this.#open();
    return new Promise<DatabaseSession>((resolve, reject) => {
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
  give(session: DatabaseSession): void {
    if (session.dead) return;
    if (this.#closed) {
      this.#forget(session);
      session.end(0);
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
      session.end(END_GRACE_MS);
    }
  }

  /**
   * Ends every session, within {@link SHUTDOWN_GRACE_MS} whatever the network does. Waiters for a
   * session fail. A backend blocked in a lock wait does not notice that its client went away
   * before PostgreSQL 14 (client_connection_check_interval): it would stay in PostgreSQL's queue
   * until granted, ahead of every later request, so its wait is cancelled first. Never rejects.
   */
  async shutdown(): Promise<void> {
    this.#closed = true;
    this.#stopHeartbeat();
    for (let waiter = this.#waiters.head; waiter !== undefined; waiter = this.#waiters.head) {
      this.#settle(waiter).reject(new PoolClosed());
    }
    for (const session of this.#connecting) session.kill(new PoolClosed());
    const sessions = [...this.#all];
    this.#all.clear();
    this.#idle.length = 0;
    for (const timer of this.#expiry.values()) clearTimeout(timer);
    this.#expiry.clear();
    this.#mainSession = undefined;
    this.#watchdog.clear();
    const deadline = performance.now() + SHUTDOWN_GRACE_MS;
    const remaining = () => Math.max(0, deadline - performance.now());
    await Promise.all(sessions.map(async (session) => {
      if (session.waitingFor !== undefined) {
        let timer: ReturnType<typeof setTimeout> | undefined;
        await Promise.race([
          session.cancelWait(),
          new Promise((resolve) => timer = setTimeout(resolve, remaining())),
        ]);
        clearTimeout(timer);
      }
      await session.end(remaining());
    }));
    // Issue 9: connections refused behind a transaction pooler still freeing the server sessions
    // that the pooler keeps (bounded: a few seconds at most, see server_session.ts).
    await Promise.all(this.#template.releases);
  }

  async #open(): Promise<DatabaseSession> {
    this.#opening++;
    let session: DatabaseSession;
    try {
      session = await DatabaseSession.open(this.#template, {
        connecting: (s) => this.#connecting.add(s),
        lost: (s, _cause, orphan) => this.#lost(s, orphan),
        notified: (channel, payload) => this.onNotification?.(channel, payload),
      });
    } finally {
      this.#opening--;
    }
    this.#connecting.delete(session);
    if (this.#closed) {
      session.end(0);
      throw new PoolClosed();
    }
    this.#all.add(session);
    this.#watchdog.opened();
    this.#startHeartbeat();
    return session;
  }

  #lost(session: DatabaseSession, orphan: Orphan | undefined): void {
    this.#connecting.delete(session);
    if (this.#mainSession === session) this.#mainSession = undefined;
    if (orphan !== undefined && !this.#closed && this.#options.heartbeatInterval > 0) {
      this.#watchdog.orphaned(orphan);
      this.#startHeartbeat();
    }
    this.#forget(session);
  }

  /** Removes a session from the books; its place may go to someone waiting for one. */
  #forget(session: DatabaseSession): void {
    if (!this.#all.delete(session)) return;
    const index = this.#idle.indexOf(session);
    if (index >= 0) this.#idle.splice(index, 1);
    this.#unexpire(session);
    if (this.#all.size === 0 && !this.#watchdog.hasOrphans) this.#stopHeartbeat();
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
  #expire(session: DatabaseSession): void {
    const timer = setTimeout(() => {
      this.#expiry.delete(session);
      this.#forget(session);
      session.end(END_GRACE_MS);
    }, SPARE_IDLE_MS);
    unrefTimer(timer);
    this.#expiry.set(session, timer);
  }

  #unexpire(session: DatabaseSession): void {
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
    if (interval === 0 || this.#heartbeat !== undefined || this.#closed) return;
    this.#heartbeat = setInterval(() => {
      if (!this.#watchdog.tick(this.#all)) this.#stopHeartbeat();
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
