/**
 * The in-process half of PostgresState: per key, the local holders and the local queue, and the
 * one database lock that stands for them.
 *
 * PostgreSQL advisory locks are reentrant per session and a session never conflicts with itself,
 * so the process must keep its own holders apart: requests queue here, first come first served,
 * and at most one database operation per key runs at a time. Local holders of one mode share one
 * database lock; a local successor takes the lock over without a round trip. Both only within
 * `handoffWindow` ms of the database grant: after that the lock goes back to PostgreSQL, whose
 * queue may hold a remote waiter, so that no remote request starves behind a busy process.
 */

import type { LockFailed, LockFailedReason } from "../../errors.ts";
import { BaseLock, RELEASED } from "../../internal/base_lock.ts";
import { backendFailure, busy, closed, type Requested, timedOut } from "../../internal/failures.ts";
import { append, type List, unlink } from "../../internal/intrusive_list.ts";
import { type GiveUpReason, RequestWait } from "../../internal/request_wait.ts";
import { backendLogger } from "../../internal/log.ts";
import type { Lock, LockRequest } from "../../state.ts";
import { advisoryLockId } from "./lock_id.ts";
import type { SessionPool } from "./pool.ts";
import { ServerSessionChanged } from "./server_session.ts";
import type { HeldOnSession, Session } from "./session.ts";
import {
  describeError,
  describeWaitError,
  type LockMode,
  SQLSTATE,
  sqlState,
  type Statements,
} from "./statements.ts";

const log = backendLogger("postgres");

/** How long an abandoned timed-out wait may outlive its deadline before it is cancelled. */
const TIMEOUT_CANCEL_GRACE = 1000;

/** Milliseconds after a cancel before a wait that still runs is cancelled again, doubling. */
const CANCEL_RETRY_FIRST = 50;
const CANCEL_RETRY_MAX = 2000;

/**
 * A database operation failed: issue 9's refusal (a transaction-mode pooler under a session-mode
 * state) names its cause and fix, anything else means the database could not be reached.
 */
function databaseFailure(requested: Requested, error: unknown): LockFailed {
  return error instanceof ServerSessionChanged
    ? backendFailure(requested, "refused", error.message, error)
    : backendFailure(
      requested,
      "unreachable",
      `the database could not be reached (${describeError(error)})`,
      error,
    );
}

/** What the table needs from its state. */
export interface LockTableOptions {
  readonly namespace: string;
  readonly mode: LockMode;
  readonly statements: Statements;
  readonly pool: SessionPool;
  readonly handoffWindow: number;
  readonly name: string;
}

/** A request waiting in its key's local queue (and, at the head, maybe in the database). */
class Waiter {
  prev: Waiter | undefined = undefined;
  next: Waiter | undefined = undefined;
  /** Set while a database acquisition runs for this waiter. */
  acquisition: Acquisition | undefined = undefined;
  readonly wait: RequestWait;

  constructor(
    readonly key: string,
    readonly exclusive: boolean,
    readonly request: LockRequest,
    onGiveUp: (waiter: Waiter, why: GiveUpReason) => void,
  ) {
    this.wait = new RequestWait(this, request, (_, why) => onGiveUp(this, why));
  }

  get settled(): boolean {
    return this.wait.settled;
  }
}

/** A held lock as the caller sees it. */
class PostgresLock extends BaseLock {
  prev: PostgresLock | undefined = undefined;
  next: PostgresLock | undefined = undefined;

  constructor(readonly entry: KeyEntry, exclusive: boolean, readonly table: LockTable) {
    super(entry.key, exclusive);
  }

  protected unlock(): Promise<void> {
    return this.table.release(this);
  }
}

/** The database lock that stands for a key's local holders. */
class DatabaseLock implements HeldOnSession {
  constructor(
    readonly entry: KeyEntry,
    readonly session: Session,
    readonly exclusive: boolean,
    readonly grantedAt: number,
    readonly table: LockTable,
  ) {}

  get id(): bigint {
    return this.entry.id;
  }

  sessionLost(cause: unknown): void {
    this.table.databaseLockLost(this, cause);
  }
}

/** One key in use: exists while it is held, awaited or has a database operation running. */
class KeyEntry {
  readonly queue: List<Waiter> = { head: undefined, tail: undefined };
  readonly holders: List<PostgresLock> = { head: undefined, tail: undefined };
  /** Number of local holders. */
  count = 0;
  /** Whether the local holder is exclusive. */
  exclusiveHeld = false;
  /** The database lock held for this key, if any. */
  db: DatabaseLock | undefined = undefined;
  /** The database operation (acquire or release) running for this key; never rejects. */
  op: Promise<void> | undefined = undefined;
  /** When {@link KeyEntry.op} is a release: the promise holders' `release()` returns. */
  releasing: Promise<void> | undefined = undefined;

  constructor(readonly key: string, readonly id: bigint) {}
}

/** One attempt to get the database lock of a key for the waiter at the head of its queue. */
class Acquisition {
  /** The waiter gave up (timeout, abort, close): the attempt ends as soon as it safely can. */
  abandoned = false;
  #controller: AbortController | undefined;
  /** Set while a blocking wait runs: ends it in the database. */
  cancelWait: (() => void) | undefined = undefined;
  /** The cancel sent, if any: the session is not reused before it was delivered. */
  cancelling: Promise<void> | undefined = undefined;
  graceTimer: ReturnType<typeof setTimeout> | undefined = undefined;

  constructor(readonly entry: KeyEntry, readonly waiter: Waiter) {}

  /** Aborted once the attempt is abandoned; created only by the slow path that needs it. */
  get signal(): AbortSignal {
    this.#controller ??= new AbortController();
    if (this.abandoned) this.#controller.abort(new Error("abandoned"));
    return this.#controller.signal;
  }

  abandon(why: GiveUpReason | "close"): void {
    if (this.abandoned) return;
    this.abandoned = true;
    this.#controller?.abort(new Error("abandoned"));
    if (this.cancelWait === undefined) return;
    if (why === "timeout") {
      // lock_timeout ends the wait in the database at about the same time; cancel only if not.
      this.graceTimer = setTimeout(() => this.cancelWait?.(), TIMEOUT_CANCEL_GRACE);
    } else {
      this.cancelWait();
    }
  }
}

/** The outcome of an acquisition: the database lock, or nothing. */
interface Granted {
  session: Session;
  exclusive: boolean;
}

/** Per-key bookkeeping of one PostgresState. */
export class LockTable {
  readonly #entries = new Map<string, KeyEntry>();
  readonly #options: LockTableOptions;
  readonly #statements: Statements;
  readonly #pool: SessionPool;
  #closed = false;
  /**
   * Issue 9: set once a session-mode connection was found not to have a server session of its own
   * (a transaction-mode pooler sits between). The configuration is wrong and stays wrong: every
   * later request is refused at once, instead of taking locks that the pooler would hand on.
   */
  #refused: ServerSessionChanged | undefined;

  constructor(options: LockTableOptions) {
    this.#options = options;
    this.#statements = options.statements;
    this.#pool = options.pool;
  }

  /** Keys held, awaited or being settled right now. */
  get size(): number {
    return this.#entries.size;
  }

  acquire(key: string, request: LockRequest): Promise<Lock> {
    const { exclusive } = request;
    if (this.#refused !== undefined) {
      return Promise.reject(databaseFailure({ key, exclusive }, this.#refused));
    }
    let entry = this.#entries.get(key);
    if (entry === undefined) {
      entry = new KeyEntry(key, advisoryLockId(this.#options.namespace, key));
      this.#entries.set(key, entry);
    } else if (
      entry.queue.head === undefined && entry.op === undefined && this.#canJoin(entry, exclusive)
    ) {
      // Local contention settled locally: join the database lock already held.
      return Promise.resolve(this.#hold(entry, exclusive));
    } else if (
      request.tryOnce && (entry.queue.head !== undefined || this.#conflicts(entry, exclusive))
    ) {
      return Promise.reject(busy({ key, exclusive }));
    }
    return this.#enqueue(entry, request);
  }

  async probe(key: string, exclusive: boolean): Promise<boolean> {
    if (this.#refused !== undefined) throw databaseFailure({ key, exclusive }, this.#refused);
    for (;;) {
      const entry = this.#entries.get(key);
      if (entry === undefined) break;
      if (entry.queue.head !== undefined || this.#conflicts(entry, exclusive)) return false;
      if (entry.count > 0) return this.#canJoin(entry, exclusive);
      if (entry.op === undefined) break;
      await entry.op;
      if (this.#closed) throw closed({ key, exclusive });
    }
    const id = advisoryLockId(this.#options.namespace, key);
    let session: Session | undefined;
    try {
      session = await this.#pool.main();
      const rows = await session.query(this.#statements.probe(id, exclusive, session.marker));
      this.#checkServerSession(session, rows);
      return rows[0]?.ok === true;
    } catch (caught) {
      const error = session?.dead ? session.cause ?? caught : caught;
      this.#noteRefusal(error);
      throw this.#closed ? closed({ key, exclusive }) : databaseFailure({ key, exclusive }, error);
    }
  }

  /** Fails every waiter and loses every held lock; the pool's shutdown frees the database. */
  close(): void {
    this.#closed = true;
    for (const entry of this.#entries.values()) {
      for (let waiter = entry.queue.head; waiter !== undefined; waiter = entry.queue.head) {
        unlink(entry.queue, waiter);
        waiter.acquisition?.abandon("close");
        waiter.wait.fail(closed(waiter));
      }
      for (let lock = entry.holders.head; lock !== undefined; lock = entry.holders.head) {
        unlink(entry.holders, lock);
        lock.lose("closed", "the state was closed");
      }
      entry.count = 0;
      entry.db?.session.held.delete(entry.db);
      entry.db = undefined;
    }
    this.#entries.clear();
  }

  /** Called by a holder's `release()`. Resolves once the database lock is freed, if it is. */
  release(lock: PostgresLock): Promise<void> {
    if (this.#closed) return RELEASED;
    const entry = lock.entry;
    unlink(entry.holders, lock);
    entry.count--;
    if (lock.exclusive) entry.exclusiveHeld = false;
    this.#pump(entry);
    return entry.releasing ?? RELEASED;
  }

  /** The session under a database lock died: its local holders lose their locks. */
  databaseLockLost(db: DatabaseLock, cause: unknown): void {
    const entry = db.entry;
    if (entry.db !== db) return;
    entry.db = undefined;
    this.#noteRefusal(cause);
    const reason = cause instanceof ServerSessionChanged
      ? cause.message
      : "the database connection was lost";
    for (let lock = entry.holders.head; lock !== undefined; lock = entry.holders.head) {
      unlink(entry.holders, lock);
      lock.lose("disconnected", reason, cause);
    }
    entry.count = 0;
    entry.exclusiveHeld = false;
    log.warn("{name}: lost the database lock on {key}: {cause}", {
      name: this.#options.name,
      key: entry.key,
      cause: describeError(cause),
    });
    this.#pump(entry);
  }

  #enqueue(entry: KeyEntry, request: LockRequest): Promise<Lock> {
    const waiter = new Waiter(
      entry.key,
      request.exclusive,
      request,
      (waiter, why) => this.#gaveUp(entry, waiter, why),
    );
    append(entry.queue, waiter);
    this.#pump(entry);
    return waiter.wait.promise;
  }

  /** Whether a request of this mode may join the database lock held now, without a round trip. */
  #canJoin(entry: KeyEntry, exclusive: boolean): boolean {
    const db = entry.db;
    if (db === undefined || db.exclusive !== exclusive || db.session.dead) return false;
    if (exclusive ? entry.count > 0 : entry.exclusiveHeld) return false;
    return performance.now() - db.grantedAt < this.#options.handoffWindow;
  }

  #conflicts(entry: KeyEntry, exclusive: boolean): boolean {
    return entry.count > 0 && (exclusive || entry.exclusiveHeld);
  }

  #hold(entry: KeyEntry, exclusive: boolean): PostgresLock {
    const lock = new PostgresLock(entry, exclusive, this);
    append(entry.holders, lock);
    entry.count++;
    if (exclusive) entry.exclusiveHeld = true;
    return lock;
  }

  /** Moves a key on: grants what fits, releases or acquires the database lock. */
  #pump(entry: KeyEntry): void {
    if (this.#closed || entry.op !== undefined) return;
    for (;;) {
      const head = entry.queue.head;
      if (entry.db !== undefined) {
        if (head !== undefined && this.#canJoin(entry, head.exclusive)) {
          unlink(entry.queue, head);
          head.wait.grant(this.#hold(entry, head.exclusive));
          continue;
        }
        if (entry.count > 0) {
          if (head?.request.tryOnce) {
            unlink(entry.queue, head);
            head.wait.fail(busy(head));
            continue;
          }
          return;
        }
        this.#releaseDatabaseLock(entry, entry.db);
        return;
      }
      if (head === undefined) {
        if (entry.count === 0) this.#entries.delete(entry.key);
        return;
      }
      this.#acquireDatabaseLock(entry, head);
      return;
    }
  }

  /**
   * A fresh database grant goes to the waiters at the head that it fits: the one it was taken for
   * (or, if that one gave up meanwhile, the next of the same mode) and, in shared mode, the shared
   * requests queued right behind it. They were all waiting before the grant, so this needs no
   * hand-off window: with `handoffWindow: 0` the grant would otherwise be given back unused.
   */
  #grantHeadRun(entry: KeyEntry, db: DatabaseLock): void {
    for (let head = entry.queue.head; head !== undefined; head = entry.queue.head) {
      if (head.exclusive !== db.exclusive || (head.exclusive && entry.count > 0)) return;
      unlink(entry.queue, head);
      head.wait.grant(this.#hold(entry, head.exclusive));
    }
  }

  #releaseDatabaseLock(entry: KeyEntry, db: DatabaseLock): void {
    const done = this.#unlock(entry, db).then(() => {
      if (entry.op === done) {
        entry.op = entry.releasing = undefined;
        this.#pump(entry);
      }
    });
    entry.op = entry.releasing = done;
  }

  async #unlock(entry: KeyEntry, db: DatabaseLock): Promise<void> {
    const session = db.session;
    session.held.delete(db);
    entry.db = undefined;
    const statement = this.#statements.unlock(entry.id, db.exclusive, session.marker);
    for (let attempt = 0; attempt < 3 && !session.dead; attempt++) {
      try {
        this.#checkServerSession(session, await session.query(statement));
        break;
      } catch (error) {
        // Only a stray cancel (meant for an earlier wait) is worth another try; anything else
        // means the session is gone, and its locks with it.
        if (sqlState(error) !== SQLSTATE.queryCanceled) {
          session.kill(error);
          break;
        }
      }
    }
    // Issue 9: the lock stayed on a server session that the pooler keeps; resolve once it is freed.
    if (session.dead) await session.released;
    if (this.#options.mode === "transaction") session.inTransaction = false;
    if (!session.dead && !session.main && session.held.size === 0) this.#pool.give(session);
  }

  #acquireDatabaseLock(entry: KeyEntry, waiter: Waiter): void {
    const acquisition = new Acquisition(entry, waiter);
    waiter.acquisition = acquisition;
    const done = this.#runAcquisition(acquisition).then((granted) => {
      if (waiter.acquisition === acquisition) waiter.acquisition = undefined;
      clearTimeout(acquisition.graceTimer);
      if (granted !== undefined) {
        if (this.#closed || granted.session.dead) {
          // Closing ends the session, and with it the lock.
        } else {
          const db = new DatabaseLock(
            entry,
            granted.session,
            granted.exclusive,
            performance.now(),
            this,
          );
          granted.session.held.add(db);
          entry.db = db;
          this.#grantHeadRun(entry, db);
        }
      }
      entry.op = undefined;
      this.#pump(entry);
    });
    entry.op = done;
  }

  /** Try, then (if the waiter may wait) wait in PostgreSQL's queue. Never rejects. */
  async #runAcquisition(acquisition: Acquisition): Promise<Granted | undefined> {
    const { entry, waiter } = acquisition;
    const { exclusive } = waiter;
    const transaction = this.#options.mode === "transaction";
    if (this.#refused !== undefined) {
      this.#failHead(acquisition, databaseFailure(waiter, this.#refused));
      return undefined;
    }
    let session: Session | undefined;
    try {
      session = transaction ? await this.#pool.take(acquisition.signal) : await this.#pool.main();
      if (transaction) session.inTransaction = true;
      const results = await session.query(
        this.#statements.tryLock(entry.id, exclusive, session.marker),
      );
      this.#checkServerSession(session, results);
      // Behind a transaction pooler, the backend to cancel is the one serving this transaction.
      if (transaction) session.pid = Number((results.at(-2) as { pid?: unknown }[])[0].pid);
      // A multi-statement query (transaction mode) gives one result per statement.
      const rows = (transaction ? results.at(-1) : results) as { ok?: unknown }[];
      if (rows[0]?.ok === true) return { session, exclusive };
      if (acquisition.abandoned || waiter.request.tryOnce) {
        if (waiter.request.tryOnce) this.#failHead(acquisition, busy(waiter));
        if (transaction) await this.#cleanUp(session);
        return undefined;
      }
      if (!transaction) session = await this.#pool.take(acquisition.signal);
      return await this.#wait(acquisition, session);
    } catch (caught) {
      // A connection we gave up on (a silent network) says why better than the driver does.
      const error = session?.dead ? session.cause ?? caught : caught;
      if (session !== undefined && transaction) await this.#cleanUp(session);
      this.#noteRefusal(error);
      if (!acquisition.abandoned) this.#failHead(acquisition, databaseFailure(waiter, error));
      return undefined;
    }
  }

  /** The blocking wait, on a session that holds nothing else. Never rejects. */
  async #wait(acquisition: Acquisition, session: Session): Promise<Granted | undefined> {
    const { entry, waiter } = acquisition;
    const { exclusive, request } = waiter;
    const remaining = request.deadline === undefined
      ? undefined
      : request.deadline - performance.now();
    if (acquisition.abandoned || (remaining !== undefined && remaining <= 0)) {
      if (!acquisition.abandoned) this.#failHead(acquisition, timedOut(waiter, request.timeout));
      await this.#cleanUp(session);
      return undefined;
    }
    session.waiting = true;
    const query = session.wait(
      this.#statements.waitLock(entry.id, exclusive, remaining, session.marker),
      entry.id,
    );
    const wait = { ended: false, done: Promise.resolve(query).then(() => {}, () => {}) };
    acquisition.cancelWait = () => {
      acquisition.cancelWait = undefined;
      acquisition.cancelling = this.#cancelUntilEnded(session, wait);
    };
    let error: unknown;
    let granted = false;
    try {
      this.#checkServerSession(session, await query);
      granted = true;
    } catch (caught) {
      error = caught;
    }
    wait.ended = true;
    acquisition.cancelWait = undefined;
    // A cancel still on its way could hit the next query on this session (in transaction mode a
    // heartbeat inside the lock's transaction, aborting it): let it land first, heartbeats off.
    await acquisition.cancelling;
    session.waiting = false;
    if (granted && !session.dead) return { session, exclusive };
    // Granted on a connection that died right after: the lock went with it. A connection we
    // gave up on (a silent network) says why better than the driver's "connection destroyed".
    if (granted || session.dead) error = session.cause ?? error;
    this.#noteRefusal(error);
    if (!acquisition.abandoned) {
      this.#failHead(
        acquisition,
        sqlState(error) === SQLSTATE.lockNotAvailable
          ? timedOut(waiter, request.timeout)
          : error instanceof ServerSessionChanged
          ? databaseFailure(waiter, error)
          : backendFailure(waiter, waitFailureReason(error), describeWaitError(error), error),
      );
    }
    await this.#cleanUp(session);
    return undefined;
  }

  /**
   * Cancels the wait running on `session` until it has ended. A cancel that reaches the server
   * before it has read the wait statement is dropped (a backend ignores a cancel between
   * statements), and the wait would go on for ever: a wait still running a moment after its
   * cancel is cancelled again. The cancel is a protocol cancel request over a connection of its
   * own, so that it does not depend on the main session (issue 9: an unresponsive main session
   * left aborted waits in PostgreSQL's queue). Resolves once the last cancel was delivered; never
   * rejects.
   */
  async #cancelUntilEnded(
    session: Session,
    wait: { readonly ended: boolean; readonly done: Promise<void> },
  ): Promise<void> {
    for (let delay = CANCEL_RETRY_FIRST; !wait.ended && !session.dead; delay *= 2) {
      await session.cancelWait();
      if (wait.ended) return;
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([
        wait.done,
        new Promise((resolve) => timer = setTimeout(resolve, Math.min(delay, CANCEL_RETRY_MAX))),
      ]);
      clearTimeout(timer);
    }
  }

  /**
   * Frees what a failed or abandoned attempt may hold (PostgreSQL can grant a lock just as the
   * wait is cancelled and report the cancel anyway), then gives the session back.
   */
  async #cleanUp(session: Session): Promise<void> {
    for (let attempt = 0; attempt < 3 && !session.dead; attempt++) {
      try {
        this.#checkServerSession(
          session,
          await session.query(this.#statements.cleanup(session.marker)),
        );
        session.inTransaction = false;
        this.#pool.give(session);
        return;
      } catch (error) {
        if (sqlState(error) !== SQLSTATE.queryCanceled) break;
      }
    }
    // Ending the session frees whatever it held (behind a pooler, its release does: issue 9).
    session.kill(new Error("could not clean up after a lock wait"));
  }

  /**
   * Issue 9: a session-mode statement that returned no row ran on a server session that is not the
   * connection's own, and took or freed nothing there. The connection is refused for good: its
   * holders lose their locks, and what it left on its own server session is freed.
   */
  #checkServerSession(session: Session, rows: readonly unknown[]): void {
    if (!this.#statements.checksSession || rows.length > 0) return;
    const error = new ServerSessionChanged("the server session changed under the connection");
    this.#noteRefusal(error);
    session.kill(error);
    throw error;
  }

  /** Issue 9: the first refusal makes every later request fail at once (see `#refused`). */
  #noteRefusal(error: unknown): void {
    if (error instanceof ServerSessionChanged) this.#refused ??= error;
  }

  /** Fails the acquisition's waiter, if it still waits. */
  #failHead(acquisition: Acquisition, error: LockFailed): void {
    const { entry, waiter } = acquisition;
    if (waiter.settled) return;
    unlink(entry.queue, waiter);
    waiter.wait.fail(error);
  }

  /** A waiter timed out or was aborted: it leaves the queue; its database attempt is abandoned. */
  #gaveUp(entry: KeyEntry, waiter: Waiter, why: GiveUpReason): void {
    unlink(entry.queue, waiter);
    waiter.acquisition?.abandon(why);
    this.#pump(entry);
  }
}

/** The reason of a wait that PostgreSQL ended (other than by its lock_timeout). */
function waitFailureReason(error: unknown): LockFailedReason {
  switch (sqlState(error)) {
    case SQLSTATE.deadlockDetected:
      return "deadlock";
    // Someone else cancelled the wait (an operator, a statement_timeout): the server said no.
    case SQLSTATE.queryCanceled:
      return "refused";
    default:
      return "unreachable";
  }
}
