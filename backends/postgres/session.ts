/**
 * One database session: a dedicated postgres.js client with a single connection that is never
 * recycled, whose death is noticed at once and never papered over by a silent reconnect.
 *
 * Why not `sql.reserve()`: in postgres.js 3.4.9, after the backend behind a reserved connection
 * dies, the next query on it can throw a TypeError from a timer that nothing can catch (porsager/
 * postgres issues 1208, 1154, 1195). A client of its own with `max: 1`, `idle_timeout` and
 * `max_lifetime` off, whose `onclose` we watch, has no such path: we stop using it the moment it
 * closes and end it, which rejects whatever was still in flight.
 *
 * The session also makes its own sockets (postgres.js's `socket` option), for three reasons of
 * issue 9: postgres.js reconnects for ever, silently, when a connection closes before it is ready
 * (a port proxy in front of a server still starting); ending a client does not end a connection
 * still being set up, which then keeps the process alive for `connect_timeout`; and a protocol
 * cancel request, which reaches a waiting backend without the main connection, needs a socket that
 * closing the state can end too.
 */

import net from "node:net";
import postgres from "postgres";
import { backendLogger } from "../../internal/log.ts";
import {
  type MarkedSession,
  newMarker,
  releaseServerSession,
  ServerSessionChanged,
} from "./server_session.ts";
import { markSession, sessionHeartbeat, SQLSTATE, sqlState, verifySession } from "./statements.ts";

const log = backendLogger("postgres");

/** Queries a session runs are pipelined; postgres.js's default cap of 100 would queue the rest. */
const MAX_PIPELINE = 1_000_000;

/**
 * Milliseconds ending a connection behind a pooler may spend freeing its server session (issue 9;
 * server_session.ts retries for about as long).
 */
const RELEASE_BOUND_MS = 3000;

/** Milliseconds a cancel request may take to be delivered before its socket is dropped. */
const CANCEL_TIMEOUT_MS = 2000;

/**
 * An advisory lock as PostgreSQL knows it: a lock id (the one-`int8` form, `objsubid = 1`), or a
 * permit slot (issue 13: the two-`int4` form, `objsubid = 2`).
 */
export type AdvisoryRef = bigint | { readonly key1: number; readonly key2: number };

/** What a session reports to its owner. */
export interface SessionEvents {
  /** The session exists and is connecting: until `open` settles, only `kill` reaches it. */
  connecting?(session: DatabaseSession): void;
  /**
   * The connection died (or was declared dead): every lock on it is gone. Called once, with the
   * advisory lock ids its backend may still hold or await on the server if the server did not
   * notice (a silent network): see {@link Orphan}.
   */
  lost(session: DatabaseSession, cause: unknown, orphan: Orphan | undefined): void;
  /** A notification arrived on a channel the session listens on (issue 13: permit releases). */
  notified?(channel: string, payload: string): void;
}

/**
 * A backend that we gave up on while it held or awaited advisory locks, and that the server may
 * not have ended (our end of a silent network was closed, the server's was not): it must be ended
 * once the database can be reached, or a lock stays held, or is later granted, for nobody.
 */
export interface Orphan {
  /** Its backend pid. */
  readonly pid: number;
  /** The locks it held or awaited: it is ended only while it still holds or awaits one. */
  readonly ids: readonly AdvisoryRef[];
}

/** A database lock that lives on a session. */
export interface HeldOnSession {
  /** Its advisory lock. */
  readonly id: AdvisoryRef;
  /** The session died: the lock is gone. */
  sessionLost(cause: unknown): void;
}

/** The options a session needs, derived once per state. */
export interface SessionTemplate {
  /** postgres.js options (parsed, from `sql.options`) to spread into each session's client. */
  readonly options: postgres.Options<Record<string, never>>;
  /**
   * DatabaseSession mode: mark the server session and check it in every statement (issue 9), and disable
   * the server-side idle timeouts for it.
   */
  readonly sessionSettings: boolean;
  /** Releases of server sessions that connections lost (issue 9), for the state's close to await. */
  readonly releases: Set<Promise<void>>;
  /**
   * Milliseconds a new connection may take to be ready before it is given up (a server that
   * accepts and never answers); 0 leaves it to postgres.js's `connect_timeout`.
   */
  readonly openTimeout: number;
}

/** The parsed postgres.js options a socket is made from. */
interface SocketOptions {
  host: string[];
  port: number[];
  path?: string | false;
  socket?: (options: unknown) => net.Socket | Promise<net.Socket>;
}

/** The part of a postgres.js query that sends a protocol cancel request for it. */
interface CancellableQuery {
  canceller?: ((query: unknown) => Promise<void>) | null;
}

/** A blocking lock wait running on a session. */
interface RunningWait {
  readonly id: AdvisoryRef;
  readonly query: postgres.PendingQuery<postgres.Row[]>;
  readonly canceller: ((query: unknown) => Promise<void>) | undefined;
}

let sessionCounter = 0;

/** One database session on a dedicated connection. Create with {@link DatabaseSession.open}. */
export class DatabaseSession {
  /** A number for debug logs. */
  readonly number: number = ++sessionCounter;
  /** The server process id (`pg_backend_pid()`), 0 until open. */
  pid = 0;
  /** Set once the connection is gone or ended; then every query rejects. */
  dead = false;
  /** The advisory locks held on this session (at most one per key); told when it dies. */
  readonly held: Set<HeldOnSession> = new Set();
  /** A blocking lock wait is running: nothing else may be queued behind it. */
  waiting = false;
  /** The pool's main session (session mode: uncontended locks live on it). */
  main = false;
  /** In transaction mode: a transaction is open. */
  inTransaction = false;
  /** Why it died. */
  cause: unknown = undefined;
  /** Watchdog checks in a row that found its wait's backend not waiting any more (pool.ts). */
  suspectChecks = 0;
  /** DatabaseSession mode: the marker every statement checks (issue 9); empty in transaction mode. */
  marker = "";
  /** Issue 13: the session was told to LISTEN for permit releases. */
  listening = false;
  /**
   * Resolves once what a refused connection left on its server session was freed, or could not
   * be (issue 9); at once otherwise. Never rejects.
   */
  released: Promise<void> = Promise.resolve();

  readonly #sql: postgres.Sql;
  readonly #template: SessionTemplate;
  /** DatabaseSession mode: the server session marked at open. */
  #marked: MarkedSession | undefined;
  /** DatabaseSession mode: the session settings were applied on the marked server session. */
  #settingsApplied = false;
  readonly #events: SessionEvents;
  #ending = false;
  #heartbeatSince: number | undefined;
  /** Ticks seen while the heartbeat in flight was unanswered. */
  #heartbeatTicks = 0;
  /** Queries sent and not answered yet. */
  #inFlight = 0;
  readonly #answered = () => {
    this.#inFlight--;
  };
  #wait: RunningWait | undefined;
  /** The connection's socket, once made. */
  #socket: net.Socket | undefined;
  /** Sockets made so far for the connection (one per host tried). */
  #attempts = 0;
  /** Set while postgres.js makes the socket of a cancel request (synchronously, in cancelWait). */
  #makingCancelSocket = false;
  readonly #cancelSockets = new Set<net.Socket>();
  /** Rejects once the session is dead, so that opening never outlives it. */
  #died: (cause: unknown) => void = () => {};

  private constructor(template: SessionTemplate, events: SessionEvents) {
    this.#events = events;
    this.#template = template;
    const base = template.options as Record<string, unknown>;
    const connection = (base.connection ?? {}) as Record<string, unknown>;
    // Spreading parsed options is how postgres.js itself derives its listen/subscribe clients.
    this.#sql = postgres({
      ...base,
      max: 1,
      idle_timeout: null,
      max_lifetime: null,
      max_pipeline: MAX_PIPELINE,
      fetch_types: false,
      prepare: false,
      // A client passed in may rename columns (`transform: postgres.camel`, …); ours read `ok`
      // and `pid` as they come. (The options are already parsed, so this is the parsed form.)
      transform: { undefined: undefined, column: {}, value: {}, row: {} },
      no_subscribe: true,
      shared: { retries: 0, typeArrayMap: {} },
      socket: (options: SocketOptions) => this.#makeSocket(options),
      connection: {
        ...connection,
        application_name: connection.application_name === "postgres.js" ||
            connection.application_name === undefined
          ? "shared-state"
          : connection.application_name,
      },
      onnotice: (notice: unknown) => log.debug("notice: {notice}", { notice }),
      onnotify: (channel: string, payload: string) => this.#events.notified?.(channel, payload),
      onclose: () => this.#closed(),
    } as unknown as postgres.Options<Record<string, never>>);
  }

  /**
   * Connects and reads the backend pid. Queries are only sent once this resolved, so that none
   * waits in postgres.js's pool queue (from where a closed connection would reconnect to run it).
   * Rejects when the connection closes before it is ready, or is not ready within
   * `openTimeout`; either way nothing of it is left running.
   */
  static async open(template: SessionTemplate, events: SessionEvents): Promise<DatabaseSession> {
    const session = new DatabaseSession(template, events);
    events.connecting?.(session);
    const died = new Promise<never>((_, reject) => session.#died = reject);
    let timer: ReturnType<typeof setTimeout> | undefined;
    if (template.openTimeout > 0) {
      timer = setTimeout(() => {
        session.kill(
          new Error(`no answer from the database within ${template.openTimeout} ms of connecting`),
        );
      }, template.openTimeout);
    }
    try {
      await Promise.race([template.sessionSettings ? session.#mark() : session.#readPid(), died]);
    } catch (error) {
      session.kill(error);
      throw session.cause;
    } finally {
      clearTimeout(timer);
    }
    if (session.dead) throw session.cause;
    log.debug("session {number} open, pid {pid}", { number: session.number, pid: session.pid });
    return session;
  }

  /** Queries sent on this session and not answered yet. */
  get inFlight(): number {
    return this.#inFlight;
  }

  /** The lock id of the blocking wait running now, if any. */
  get waitingFor(): AdvisoryRef | undefined {
    return this.#wait?.id;
  }

  /** Transaction mode: reads the backend pid (each lock's transaction reads its own again). */
  async #readPid(): Promise<void> {
    const rows = await this.#sql.unsafe("select pg_backend_pid() as pid");
    this.pid = Number(rows[0].pid);
  }

  /**
   * DatabaseSession mode (issue 9): marks a fresh server session, then applies the session settings in a
   * second statement only where the marker is, so that a pooler that moved the connection in
   * between gets none. Throws {@link ServerSessionChanged} when either fails.
   */
  async #mark(): Promise<void> {
    const marker = newMarker();
    const rows = await this.#sql.unsafe(markSession(marker));
    const row = rows[0];
    this.pid = Number(row.pid);
    if (row.fresh !== true) {
      throw new ServerSessionChanged(
        "the server session under the connection is not a fresh one (it carries another " +
          "connection's marker or advisory locks)",
      );
    }
    // A pooler answers with its own BackendKeyData, not the backend's.
    const keyData = (rows as unknown as { state?: { pid?: unknown } }).state;
    this.#marked = {
      marker,
      pid: this.pid,
      started: String(row.started),
      version: Number(row.version),
      pooled: keyData?.pid !== this.pid,
    };
    if ((await this.#sql.unsafe(verifySession(marker))).length === 0) {
      throw new ServerSessionChanged("the server session changed under the connection");
    }
    this.marker = marker;
    this.#settingsApplied = true;
  }

  /**
   * Runs `text` (simple protocol: no parameters, so the values must be inlined safely by the
   * caller) and returns the query. Rejects once the session is dead.
   */
  query(text: string): postgres.PendingQuery<postgres.Row[]> {
    if (this.dead) {
      // A rejected thenable of the same shape; nothing runs.
      return Promise.reject(this.cause) as unknown as postgres.PendingQuery<postgres.Row[]>;
    }
    const query: postgres.PendingQuery<postgres.Row[]> = this.#sql.unsafe(text);
    this.#inFlight++;
    query.then(this.#answered, this.#answered);
    return query;
  }

  /**
   * Runs the blocking wait `text` for lock `id`, which {@link DatabaseSession.cancelWait} can end through
   * a connection of its own.
   */
  wait(text: string, id: AdvisoryRef): postgres.PendingQuery<postgres.Row[]> {
    const query = this.query(text);
    // postgres.js forgets its canceller after one use, but a cancel can be dropped (lock_table.ts
    // repeats it): keep it.
    const canceller = (query as unknown as CancellableQuery).canceller ?? undefined;
    const wait: RunningWait = { id, query, canceller };
    this.#wait = wait;
    const ended = () => {
      if (this.#wait === wait) this.#wait = undefined;
    };
    query.then(ended, ended);
    return query;
  }

  /**
   * Sends a protocol cancel request for the running wait, over a connection of its own: it does
   * not depend on the main session, which may be the one that stopped answering (issue 9).
   * Resolves once it was delivered, or after {@link CANCEL_TIMEOUT_MS}; never rejects.
   */
  async cancelWait(): Promise<void> {
    const wait = this.#wait;
    if (wait?.canceller === undefined) return;
    let delivered: Promise<void>;
    this.#makingCancelSocket = true;
    try {
      delivered = Promise.resolve(wait.canceller(wait.query));
    } catch (error) {
      delivered = Promise.reject(error);
    } finally {
      this.#makingCancelSocket = false;
    }
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      delivered.catch((error) => log.debug("cancel failed: {error}", { error })),
      new Promise((resolve) => timer = setTimeout(resolve, CANCEL_TIMEOUT_MS)),
    ]);
    clearTimeout(timer);
  }

  /**
   * Called by the heartbeat timer: sends `select 1` unless one is in flight. One still unanswered
   * at two ticks and after `timeout` ms declares the connection dead (a silent network loss). Two
   * ticks, because after the event loop was blocked the late tick may run before the answer that
   * arrived meanwhile is read.
   */
  heartbeat(timeout: number): void {
    if (this.dead || this.waiting) return;
    const now = performance.now();
    if (this.#heartbeatSince !== undefined) {
      this.#heartbeatTicks++;
      if (this.#heartbeatTicks >= 2 && now - this.#heartbeatSince >= timeout) {
        this.kill(
          new Error(
            `no answer from the database within ${
              Math.round(now - this.#heartbeatSince)
            } ms (the network or the server stopped answering)`,
          ),
        );
      }
      return;
    }
    this.#heartbeatSince = now;
    this.query(this.marker === "" ? "select 1" : sessionHeartbeat(this.marker)).then(
      (rows) => {
        this.#heartbeatAnswered();
        // Issue 9: the locks held on this connection are on a server session it cannot reach.
        if (rows.length === 0) {
          this.kill(new ServerSessionChanged("the server session changed under the connection"));
        }
      },
      (error) => {
        this.#heartbeatAnswered();
        // A stray cancel (57014) aimed at an earlier wait says nothing about the connection,
        // unless it hit inside a transaction-mode lock: then it aborted the transaction, and
        // the transaction's lock is gone.
        if (sqlState(error) !== SQLSTATE.queryCanceled || this.inTransaction) this.kill(error);
      },
    );
  }

  #heartbeatAnswered(): void {
    this.#heartbeatSince = undefined;
    this.#heartbeatTicks = 0;
  }

  /** Declares the session dead: reports it once and drops the connection at once. */
  kill(cause: unknown): void {
    if (this.dead) return;
    this.dead = true;
    this.cause = cause;
    this.#died(cause);
    log.debug("session {number} (pid {pid}) lost: {cause}", {
      number: this.number,
      pid: this.pid,
      cause,
    });
    if (cause instanceof ServerSessionChanged && this.#marked !== undefined) {
      // Issue 9: the pooler keeps the server session alive, with our locks: free it first.
      this.released = this.#release(this.#marked).then(() => this.#drop());
    } else {
      this.#drop();
    }
    if (this.#ending) return;
    const orphan = this.#orphan();
    // The pool forgets the session first, so that what the locks' owners do next opens another.
    this.#events.lost(this, cause, orphan);
    const held = [...this.held];
    this.held.clear();
    for (const lock of held) lock.sessionLost(cause);
  }

  /**
   * Ends the connection gracefully (the server then frees its locks), waiting at most `graceMs`
   * for the server to close it before dropping it. Never rejects.
   */
  async end(graceMs: number): Promise<void> {
    if (this.#ending) return;
    this.#ending = true;
    if (this.dead) return;
    this.dead = true;
    this.cause = new Error("the session was ended");
    this.#died(this.cause);
    // Behind a pooler the server session outlives the connection (issue 9): free it. A wait's
    // release runs once the cancel the pool sent ended it; bounded, whatever the network does.
    if (this.#marked?.pooled) {
      let bound: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([
        this.#release(this.#marked),
        new Promise((resolve) => bound = setTimeout(resolve, RELEASE_BOUND_MS)),
      ]);
      clearTimeout(bound);
    }
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      this.#sql.end(this.waiting || graceMs === 0 ? { timeout: 0 } : {}).catch(() => {}),
      new Promise((resolve) => timer = setTimeout(resolve, graceMs)),
    ]);
    clearTimeout(timer);
    this.#drop();
  }

  /**
   * Drops the connection now, whatever the network does: nothing of it may keep running (or the
   * process alive), and postgres.js's end does not stop a connection still being set up.
   */
  #drop(): void {
    this.#sql.end({ timeout: 0 }).catch(() => {});
    this.#socket?.destroy();
    for (const socket of this.#cancelSockets) socket.destroy();
  }

  /** What the server may still hold for this session when we drop it without its noticing. */
  #orphan(): Orphan | undefined {
    if (this.pid === 0) return undefined;
    const ids = [...this.held].map((lock) => lock.id);
    const waitingFor = this.#wait?.id;
    if (waitingFor !== undefined) ids.push(waitingFor);
    return ids.length === 0 ? undefined : { pid: this.pid, ids };
  }

  /**
   * postgres.js's `socket` option: the connection's socket, one per host tried, or the socket of a
   * cancel request. Throws (which fails the connection) instead of reconnecting a session that
   * closed before it was ready, or that was ready once: a session is never silently replaced.
   */
  #makeSocket(options: SocketOptions): net.Socket | Promise<net.Socket> {
    if (this.#makingCancelSocket) {
      const socket = this.#newSocket(options, Math.max(0, this.#attempts - 1));
      return Promise.resolve(socket).then((socket) => {
        this.#cancelSockets.add(socket);
        socket.once("close", () => this.#cancelSockets.delete(socket));
        if (this.#ending) socket.destroy();
        return socket;
      });
    }
    if (this.dead) throw this.cause;
    const hosts = Math.max(1, options.path ? 1 : options.host.length);
    if (this.pid !== 0 || this.#attempts >= hosts) {
      const error = new Error(
        this.pid !== 0
          ? "the connection to the database closed"
          : "the connection to the database closed before it was ready",
      );
      this.kill(error);
      throw error;
    }
    const made = this.#newSocket(options, this.#attempts++);
    return Promise.resolve(made).then((socket) => {
      this.#socket = socket;
      this.#watchWrites(socket);
      if (this.dead) socket.destroy();
      return socket;
    });
  }

  /**
   * Kills the session as soon as a write to its socket fails. Node follows a failed write with an
   * `error` event (and postgres.js's `onclose`), but not every runtime does: on Cloudflare Workers
   * a socket belongs to the request that opened it, a write from a later request fails in its
   * callback only ("Cannot perform I/O on behalf of a different request"), and no event follows;
   * the requests on the session would wait on a dead socket until their timeout, or for ever.
   */
  #watchWrites(socket: net.Socket): void {
    const write = socket.write;
    socket.write = ((chunk: unknown, ...rest: unknown[]) => {
      const callback = typeof rest.at(-1) === "function"
        ? rest.pop() as (error?: Error | null) => void
        : undefined;
      return (write as (...args: unknown[]) => boolean).call(
        socket,
        chunk,
        ...rest,
        (error?: Error | null) => {
          if (error) this.kill(error);
          callback?.(error);
        },
      );
    }) as typeof socket.write;
  }

  /** A new socket to host number `index`, or from the caller's own `socket` option. */
  #newSocket(options: SocketOptions, index: number): net.Socket | Promise<net.Socket> {
    const custom = (this.#template.options as { socket?: SocketOptions["socket"] }).socket;
    if (typeof custom === "function") return custom(options);
    if (options.path) return net.connect({ path: options.path });
    const host = options.host[index % options.host.length];
    const port = options.port[index % options.port.length] ?? options.port[0];
    return net.connect({ host, port });
  }

  /** Frees the marked server session, tracked in the template until done; never rejects. */
  #release(marked: MarkedSession): Promise<void> {
    const releases = this.#template.releases;
    const release = releaseServerSession(
      (text) => this.#sql.unsafe(text),
      marked,
      this.#settingsApplied,
    )
      .finally(() => releases.delete(release));
    releases.add(release);
    return release;
  }

  #closed(): void {
    if (this.#ending) return;
    this.kill(new Error(`the connection to the database closed (pid ${this.pid})`));
  }
}
