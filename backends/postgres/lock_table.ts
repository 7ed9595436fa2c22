/**
 * The in-process half of PostgresState: per key, the local holders and the local queue, and the
 * one database lock that stands for them. How a database lock is taken and freed is
 * acquisition.ts's job; how locks live in the database, modes.ts's.
 *
 * PostgreSQL advisory locks are reentrant per session and a session never conflicts with itself,
 * so the process must keep its own holders apart: requests queue here, first come first served,
 * and at most one database operation per key runs at a time. Local holders of one mode share one
 * database lock; a local successor takes the lock over without a round trip. Both only within
 * `handoffWindow` ms of the database grant: after that the lock goes back to PostgreSQL, whose
 * queue may hold a remote waiter, so that no remote request starves behind a busy process.
 */

import { BaseLock, RELEASED } from "../../internal/base_lock.ts";
import { busy, closed } from "../../internal/failures.ts";
import { labelOf, requestTime } from "../../internal/holders.ts";
import { append, type List, unlink } from "../../internal/intrusive_list.ts";
import type { GiveUpReason } from "../../internal/request_wait.ts";
import { backendLogger } from "../../internal/log.ts";
import type { Lock, LockRequest } from "../../state.ts";
import {
  type Acquisition,
  type DatabaseLocks,
  type Granted,
  QueuedApplicant,
} from "./acquisition.ts";
import { inspection, type OwnEntry, parseAdvisoryLock, type PostgresLockInfo } from "./inspect.ts";
import { advisoryLockId } from "./lock_id.ts";
import { ServerSessionChanged } from "./server_session.ts";
import type { DatabaseSession, HeldOnSession } from "./session.ts";
import { describeError } from "./statements.ts";

const log = backendLogger("postgres");

/** What the table needs from its state. */
export interface LockTableOptions {
  readonly namespace: string;
  readonly database: DatabaseLocks;
  readonly handoffWindow: number;
  readonly name: string;
}

/** A request waiting in its key's local queue (and, at the head, maybe in the database). */
class Waiter extends QueuedApplicant<Lock> {
  prev: Waiter | undefined = undefined;
  next: Waiter | undefined = undefined;
  /** Set while a database acquisition runs for this waiter. */
  acquisition: Acquisition | undefined = undefined;

  constructor(
    readonly entry: KeyEntry,
    readonly exclusive: boolean,
    request: LockRequest,
    onGiveUp: (waiter: Waiter, why: GiveUpReason) => void,
  ) {
    super(request, (why) => onGiveUp(this, why));
  }

  get key(): string {
    return this.entry.key;
  }

  protected leaveQueue(): void {
    unlink(this.entry.queue, this);
  }
}

/** A held lock as the caller sees it. */
class PostgresLock extends BaseLock {
  prev: PostgresLock | undefined = undefined;
  next: PostgresLock | undefined = undefined;
  /**
   * When the database granted it (`performance.now()`), for a holder that the grant was taken
   * for; unknown (no clock read) for one that joined a database lock held already.
   */
  grantedAt: number | undefined = undefined;

  constructor(readonly entry: KeyEntry, exclusive: boolean, readonly table: LockTable) {
    super(entry.key, exclusive);
  }

  protected unlock(): Promise<void> {
    return this.table.release(this);
  }

  protected override fence(): Promise<bigint> {
    return this.table.fencingToken(this);
  }
}

/** The database lock that stands for a key's local holders. */
class DatabaseLock implements HeldOnSession {
  constructor(
    readonly entry: KeyEntry,
    readonly session: DatabaseSession,
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

/** Per-key bookkeeping of one PostgresState. */
export class LockTable {
  readonly #entries = new Map<string, KeyEntry>();
  readonly #options: LockTableOptions;
  #lastId: { readonly key: string; readonly id: bigint } | undefined = undefined;
  readonly #database: DatabaseLocks;
  #closed = false;

  constructor(options: LockTableOptions) {
    this.#options = options;
    this.#database = options.database;
  }

  /**
   * The lock id of `key`. The last key's is kept (issue 14): a key locked over and over is hashed
   * once, not on every acquire (SHA-256 was the largest cost of an uncontended acquire's own code).
   */
  #lockId(key: string): bigint {
    const last = this.#lastId;
    if (last !== undefined && last.key === key) return last.id;
    const id = advisoryLockId(this.#options.namespace, key);
    this.#lastId = { key, id };
    return id;
  }

  /** Keys held, awaited or being settled right now. */
  get size(): number {
    return this.#entries.size;
  }

  acquire(key: string, request: LockRequest): Promise<Lock> {
    const { exclusive } = request;
    if (this.#database.refused) return Promise.reject(this.#database.refusal({ key, exclusive }));
    let entry = this.#entries.get(key);
    if (entry === undefined) {
      entry = new KeyEntry(key, this.#lockId(key));
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

  /** This process's own holders first, then PostgreSQL (a try-lock that is undone at once). */
  async probe(key: string, exclusive: boolean): Promise<boolean> {
    for (;;) {
      const entry = this.#entries.get(key);
      if (entry === undefined) break;
      if (entry.queue.head !== undefined || this.#conflicts(entry, exclusive)) return false;
      if (entry.count > 0) return this.#canJoin(entry, exclusive);
      if (entry.op === undefined) break;
      await entry.op;
      if (this.#closed) throw closed({ key, exclusive });
    }
    const id = this.#lockId(key);
    try {
      return await this.#database.probe(id, { key, exclusive });
    } catch (error) {
      throw this.#closed ? closed({ key, exclusive }) : error;
    }
  }

  /**
   * Issue 12: a fencing token made in PostgreSQL while `lock` holds the database lock (see
   * modes.ts). Local holders that take over the database lock in turn get theirs later, on the
   * same session or after its release: greater.
   */
  fencingToken(lock: PostgresLock): Promise<bigint> {
    const db = lock.entry.db;
    if (db === undefined) {
      return Promise.reject(new Error("the lock has no database lock (it was lost)"));
    }
    return this.#database.fencingToken(db.session, db.id, db.exclusive);
  }

  /**
   * Issue 12: the key's holders and waiters in every process on the database (`pg_locks`), this
   * state's own from its books: one entry per local holder or request.
   */
  async inspect(key: string): Promise<PostgresLockInfo> {
    const id = this.#lockId(key);
    const { rows, own } = await this.#database.advisoryLocks([id], { key, exclusive: true });
    if (this.#closed) throw closed({ key, exclusive: true });
    const holders: OwnEntry[] = [];
    const waiters: OwnEntry[] = [];
    const entry = this.#entries.get(key);
    if (entry !== undefined) {
      const pid = entry.db?.session.pid;
      for (let lock = entry.holders.head; lock !== undefined; lock = lock.next) {
        const label = labelOf(lock);
        const since = label?.since ??
          (lock.grantedAt === undefined
            ? undefined
            : new Date(performance.timeOrigin + lock.grantedAt));
        holders.push({ exclusive: lock.exclusive, since, owner: label?.owner, pid });
      }
      for (let waiter = entry.queue.head; waiter !== undefined; waiter = waiter.next) {
        const label = labelOf(waiter.request.signal);
        waiters.push({
          exclusive: waiter.exclusive,
          since: label?.since ?? requestTime(waiter.request),
          owner: label?.owner,
        });
      }
    }
    return inspection(key, id, rows.map(parseAdvisoryLock), own, { holders, waiters });
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
    this.#database.lost(cause);
    const message = cause instanceof ServerSessionChanged
      ? cause.message
      : "the database connection was lost";
    for (let lock = entry.holders.head; lock !== undefined; lock = entry.holders.head) {
      unlink(entry.holders, lock);
      lock.lose("disconnected", message, cause);
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
      entry,
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
            head.fail(busy(head));
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
      const lock = this.#hold(entry, head.exclusive);
      lock.grantedAt = db.grantedAt;
      head.wait.grant(lock);
    }
  }

  #releaseDatabaseLock(entry: KeyEntry, db: DatabaseLock): void {
    db.session.held.delete(db);
    entry.db = undefined;
    const done = this.#database.release(db.session, entry.id, db.exclusive).then(() => {
      if (entry.op === done) {
        entry.op = entry.releasing = undefined;
        this.#pump(entry);
      }
    });
    entry.op = entry.releasing = done;
  }

  #acquireDatabaseLock(entry: KeyEntry, waiter: Waiter): void {
    const acquisition = this.#database.acquire(entry.id, waiter);
    waiter.acquisition = acquisition;
    const done = acquisition.done.then((granted: Granted | undefined) => {
      if (waiter.acquisition === acquisition) waiter.acquisition = undefined;
      // Closing ends the session, and with it the lock.
      if (granted !== undefined && !this.#closed && !granted.session.dead) {
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
      entry.op = undefined;
      this.#pump(entry);
    });
    entry.op = done;
  }

  /** A waiter timed out or was aborted: it leaves the queue; its database attempt is abandoned. */
  #gaveUp(entry: KeyEntry, waiter: Waiter, why: GiveUpReason): void {
    unlink(entry.queue, waiter);
    waiter.acquisition?.abandon(why);
    this.#pump(entry);
  }
}
