/**
 * One database session: a dedicated postgres.js client with a single connection that is never
 * recycled, whose death is noticed at once and never papered over by a silent reconnect.
 *
 * Why not `sql.reserve()`: in postgres.js 3.4.9, after the backend behind a reserved connection
 * dies, the next query on it can throw a TypeError from a timer that nothing can catch (porsager/
 * postgres issues 1208, 1154, 1195). A client of its own with `max: 1`, `idle_timeout` and
 * `max_lifetime` off, whose `onclose` we watch, has no such path: we stop using it the moment it
 * closes and end it, which rejects whatever was still in flight.
 */

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

/** Seconds a graceful end may take before the connection is dropped. */
const END_TIMEOUT_SECONDS = 2;

/** What a session reports to its owner. */
export interface SessionEvents {
  /** The connection died (or was declared dead): every lock on it is gone. Called once. */
  lost(session: Session, cause: unknown): void;
}

/** A database lock that lives on a session. */
export interface HeldOnSession {
  /** The session died: the lock is gone. */
  sessionLost(cause: unknown): void;
}

/** The options a session needs, derived once per state. */
export interface SessionTemplate {
  /** postgres.js options (parsed, from `sql.options`) to spread into each session's client. */
  readonly options: postgres.Options<Record<string, never>>;
  /**
   * Session mode: mark the server session and check it in every statement (issue 9), and disable
   * the server-side idle timeouts for it.
   */
  readonly sessionSettings: boolean;
  /** Releases of server sessions that connections lost (issue 9), for the state's close to await. */
  readonly releases: Set<Promise<void>>;
}

let sessionCounter = 0;

/** A dedicated connection. Create with {@link Session.open}. */
export class Session {
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
  /** Session mode: the marker every statement checks (issue 9); empty in transaction mode. */
  marker = "";
  /**
   * Resolves once what a refused connection left on its server session was freed, or could not
   * be (issue 9); at once otherwise. Never rejects.
   */
  released: Promise<void> = Promise.resolve();

  readonly #sql: postgres.Sql;
  readonly #template: SessionTemplate;
  /** Session mode: the server session marked at open. */
  #marked: MarkedSession | undefined;
  /** Session mode: the session settings were applied on the marked server session. */
  #settingsApplied = false;
  readonly #events: SessionEvents;
  #ending = false;
  #heartbeatSince: number | undefined;
  /** Ticks seen while the heartbeat in flight was unanswered. */
  #heartbeatTicks = 0;

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
      connection: {
        ...connection,
        application_name: connection.application_name === "postgres.js" ||
            connection.application_name === undefined
          ? "shared-state"
          : connection.application_name,
      },
      onnotice: (notice: unknown) => log.debug("notice: {notice}", { notice }),
      onclose: () => this.#closed(),
    } as unknown as postgres.Options<Record<string, never>>);
  }

  /**
   * Connects and reads the backend pid. Queries are only sent once this resolved, so that none
   * waits in postgres.js's pool queue (from where a closed connection would reconnect to run it).
   */
  static async open(template: SessionTemplate, events: SessionEvents): Promise<Session> {
    const session = new Session(template, events);
    try {
      if (template.sessionSettings) {
        await session.#mark();
      } else {
        const rows = await session.#sql.unsafe("select pg_backend_pid() as pid");
        session.pid = Number(rows[0].pid);
      }
    } catch (error) {
      session.kill(error);
      throw error;
    }
    if (session.dead) throw session.cause;
    log.debug("session {number} open, pid {pid}", { number: session.number, pid: session.pid });
    return session;
  }

  /**
   * Session mode (issue 9): marks a fresh server session, then applies the session settings in a
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
   * caller) and returns the query, which can be cancelled. Rejects once the session is dead.
   */
  query(text: string): postgres.PendingQuery<postgres.Row[]> {
    if (this.dead) {
      // A rejected thenable of the same shape; nothing runs.
      return Promise.reject(this.cause) as unknown as postgres.PendingQuery<postgres.Row[]>;
    }
    return this.#sql.unsafe(text);
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
          new Error(`no heartbeat answer within ${Math.round(now - this.#heartbeatSince)} ms`),
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

  /** Declares the session dead: reports it once and drops the connection. */
  kill(cause: unknown): void {
    if (this.dead) return;
    this.dead = true;
    this.cause = cause;
    log.debug("session {number} (pid {pid}) lost: {cause}", {
      number: this.number,
      pid: this.pid,
      cause,
    });
    if (cause instanceof ServerSessionChanged && this.#marked !== undefined) {
      // Issue 9: the pooler keeps the server session alive, with our locks: free it first.
      this.released = this.#release(this.#marked).then(() => this.#sql.end({ timeout: 0 }))
        .catch(() => {});
    } else {
      this.#sql.end({ timeout: 0 }).catch(() => {});
    }
    if (this.#ending) return;
    // The pool forgets the session first, so that what the locks' owners do next opens another.
    this.#events.lost(this, cause);
    const held = [...this.held];
    this.held.clear();
    for (const lock of held) lock.sessionLost(cause);
  }

  /** Ends the connection gracefully (the server then frees its locks); never rejects. */
  async end(): Promise<void> {
    if (this.#ending) return;
    this.#ending = true;
    if (this.dead) return;
    this.dead = true;
    this.cause = new Error("the session was ended");
    // Behind a pooler the server session outlives the connection (issue 9). A waiting one's
    // backend was ended already (SessionPool's #endWaits).
    if (this.#marked?.pooled && !this.waiting) await this.#release(this.#marked);
    await this.#sql.end({ timeout: this.waiting ? 0 : END_TIMEOUT_SECONDS }).catch(() => {});
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
