/**
 * PostgresState's counting semaphores (issue 13), on advisory locks, with no table:
 *
 * - **Slots.** A permit key with limit L has the slots 0 to L-1, each an advisory lock in the
 *   two-`int4` form (`permitSlotKeys`: the high half of the key's lock id, and its low half plus
 *   the slot number), apart from every lock id (the one-`int8` form). A held permit holds one slot.
 * - **Try.** One statement takes the first free slot without waiting (a recursive query that tries
 *   one slot per step and stops at the first it gets), skipping the slots this process holds:
 *   advisory locks are reentrant per session, so the process must never try a slot it has.
 * - **Wait.** One statement on a spare connection: it joins the key's waiters (slot -1 in shared
 *   mode, a transaction-level lock that ends with the statement), searches once more, then waits
 *   in PostgreSQL's own fair queue for one slot chosen at random among those this process does
 *   not hold. The slot it waits for is granted to it as soon as its holder frees it or dies.
 * - **Wake-up.** A release tests for waiters (slot -1 held by anyone) and only then notifies the
 *   channel `shared_state_permits` with the key's lock id. Session-mode states LISTEN on their
 *   main connection: a notification (or a release in this process) makes the waiting process try
 *   once more on its main connection, and if that takes a slot, its wait is cancelled. Waiters in
 *   transaction mode hear no notifications (a LISTEN does not pass a transaction pooler): they get
 *   the slot they wait for, or a slot freed in their own process.
 *
 * In process, requests queue first come, first served; only the head of a key's queue talks to
 * the database, one attempt at a time.
 */

import { BasePermit, RELEASED } from "../../internal/base_lock.ts";
import { busy, closed } from "../../internal/failures.ts";
import { append, type List, unlink } from "../../internal/intrusive_list.ts";
import { backendLogger } from "../../internal/log.ts";
import type { GiveUpReason } from "../../internal/request_wait.ts";
import type { Permit, PermitRequest } from "../../lock.ts";
import {
  type Acquisition,
  type Applicant,
  type Claim,
  type DatabaseLocks,
  type Granted,
  QueuedApplicant,
} from "./acquisition.ts";
import { advisoryLockId } from "./lock_id.ts";
import { type ModeStrategy, slotRef } from "./modes.ts";
import type { SessionPool } from "./pool.ts";
import { ServerSessionChanged } from "./server_session.ts";
import type { AdvisoryRef, DatabaseSession, HeldOnSession } from "./session.ts";
import { describeError, PERMIT_CHANNEL, type PermitTarget } from "./statements.ts";

const log = backendLogger("postgres");

/** What the permit table needs from its state. */
export interface PermitTableOptions {
  readonly namespace: string;
  readonly database: DatabaseLocks;
  /** Tells the table of notifications (releases in other processes). */
  readonly pool: SessionPool;
  readonly name: string;
}

/** A request waiting in its key's local queue. */
class PermitWaiter extends QueuedApplicant<Permit> {
  prev: PermitWaiter | undefined = undefined;
  next: PermitWaiter | undefined = undefined;
  readonly exclusive = false;

  constructor(
    readonly entry: PermitEntry,
    override readonly request: PermitRequest,
    onGiveUp: (waiter: PermitWaiter, why: GiveUpReason) => void,
  ) {
    super(request, (why) => onGiveUp(this, why));
  }

  get key(): string {
    return this.entry.key;
  }

  get limit(): number {
    return this.request.limit;
  }

  protected leaveQueue(): void {
    unlink(this.entry.queue, this);
  }
}

/** A slot this process holds in the database (for a permit, or until freed). */
class HeldSlot implements HeldOnSession {
  /** The permit it stands for; none while it is being freed. */
  permit: PostgresPermit | undefined = undefined;
  /** Once it is being freed: settles when it is free. */
  freeing: Promise<void> | undefined = undefined;
  readonly id: AdvisoryRef;

  constructor(
    readonly entry: PermitEntry,
    readonly session: DatabaseSession,
    readonly slot: number,
    readonly table: PermitTable,
  ) {
    this.id = slotRef(entry.target(slot + 1), slot);
  }

  sessionLost(cause: unknown): void {
    this.table.slotLost(this, cause);
  }
}

/** A held permit as the caller sees it. */
class PostgresPermit extends BasePermit {
  constructor(readonly slot: HeldSlot, limit: number) {
    super(slot.entry.key, limit);
  }

  protected unlock(): Promise<void> {
    return this.slot.table.release(this);
  }
}

/** The slot search (and wait) of one request. */
class SlotClaim implements Claim {
  /** The slot taken. */
  slot: number | undefined = undefined;
  /** The slot waited for in PostgreSQL's queue, while the wait runs. */
  waitingFor: number | undefined = undefined;

  /**
   * @param entry The key.
   * @param limit The request's limit.
   * @param avoid A slot not to take (the one the head's wait is for), besides those held.
   */
  constructor(
    readonly entry: PermitEntry,
    readonly limit: number,
    readonly avoid?: number,
    readonly onWait?: () => void,
  ) {}

  async take(mode: ModeStrategy, session: DatabaseSession): Promise<boolean> {
    this.slot = await mode.tryPermit(session, this.entry.target(this.limit, this.avoid));
    return this.slot !== undefined;
  }

  async await(
    mode: ModeStrategy,
    session: DatabaseSession,
    timeout: number | undefined,
  ): Promise<void> {
    const slot = this.entry.waitSlot(this.limit);
    this.waitingFor = slot;
    this.onWait?.();
    try {
      this.slot = await mode.waitPermit(session, this.entry.target(this.limit), slot, timeout);
    } finally {
      this.waitingFor = undefined;
    }
  }
}

/** The database attempt of the head of a key's queue. */
interface Attempt {
  readonly waiter: PermitWaiter;
  readonly claim: SlotClaim;
  readonly acquisition: Acquisition;
  /** The slot a nudge took for the waiter while its wait ran, if one did. */
  nudged: HeldSlot | undefined;
  /** Settles once the attempt was dealt with (its slots given or freed). */
  finished: Promise<void>;
}

/** One permit key in use: exists while a permit is held, awaited or being settled. */
class PermitEntry {
  readonly queue: List<PermitWaiter> = { head: undefined, tail: undefined };
  /** Slots this process holds or is freeing: its searches skip them. */
  readonly slots: Map<number, HeldSlot> = new Map();
  /** The head's attempt in flight. */
  attempt: Attempt | undefined = undefined;
  /** A second try, on a notification or a local release, while the head waits. */
  nudge: Acquisition | undefined = undefined;
  /** Another notification came while the nudge ran. */
  nudgeAgain = false;
  /** Settles once the nudge in flight was dealt with. */
  nudgeDone: Promise<void> = RELEASED;
  readonly key1: number;
  readonly low: number;

  constructor(readonly key: string, readonly base: bigint) {
    const unsigned = BigInt.asUintN(64, base);
    this.key1 = Number(BigInt.asIntN(32, unsigned >> 32n));
    this.low = Number(unsigned & 0xffffffffn);
  }

  /** The slots 0…limit-1, skipping those held here (and `avoid`). */
  target(limit: number, avoid?: number): PermitTarget {
    const skip = [...this.slots.keys()].filter((slot) => slot < limit);
    if (avoid !== undefined && !this.slots.has(avoid)) skip.push(avoid);
    return { base: this.base, key1: this.key1, low: this.low, limit, skip };
  }

  /** Slots below `limit` held here. */
  heldBelow(limit: number): number {
    let count = 0;
    for (const slot of this.slots.keys()) if (slot < limit) count++;
    return count;
  }

  /** A slot to wait for: at random among those below `limit` not held here. */
  waitSlot(limit: number): number {
    const held = [...this.slots.keys()].filter((slot) => slot < limit).sort((a, b) => a - b);
    if (held.length >= limit) return Math.floor(Math.random() * limit);
    let slot = Math.floor(Math.random() * (limit - held.length));
    for (const taken of held) if (taken <= slot) slot++;
    return slot;
  }

  get unused(): boolean {
    return this.queue.head === undefined && this.slots.size === 0 &&
      this.attempt === undefined && this.nudge === undefined;
  }
}

/** Per-key bookkeeping of PostgresState's permits. */
export class PermitTable {
  readonly #entries = new Map<string, PermitEntry>();
  /** The same entries by the decimal lock id that notifications carry. */
  readonly #byBase = new Map<string, PermitEntry>();
  readonly #options: PermitTableOptions;
  readonly #database: DatabaseLocks;
  #closed = false;

  constructor(options: PermitTableOptions) {
    this.#options = options;
    this.#database = options.database;
    options.pool.onNotification = (channel, payload) => {
      if (channel !== PERMIT_CHANNEL) return;
      const entry = this.#byBase.get(payload);
      if (entry !== undefined) this.#nudge(entry);
    };
  }

  /** Permit keys held, awaited or being settled right now. */
  get size(): number {
    return this.#entries.size;
  }

  acquire(key: string, request: PermitRequest): Promise<Permit> {
    const { limit } = request;
    if (this.#database.refused) {
      return Promise.reject(this.#database.refusal({ key, exclusive: false, limit }));
    }
    let entry = this.#entries.get(key);
    if (entry === undefined) {
      entry = new PermitEntry(key, advisoryLockId(this.#options.namespace, key));
      this.#entries.set(key, entry);
      this.#byBase.set(String(entry.base), entry);
    } else if (
      request.tryOnce && (entry.heldBelow(limit) >= limit || this.#someoneWaits(entry))
    ) {
      return Promise.reject(busy({ key, exclusive: false, limit }));
    }
    const waiter = new PermitWaiter(entry, request, (waiter, why) => this.#gaveUp(waiter, why));
    append(entry.queue, waiter);
    this.#pump(entry);
    return waiter.wait.promise;
  }

  /** This process's own holders and queue first, then PostgreSQL (a search undone at once). */
  async probe(key: string, limit: number): Promise<boolean> {
    const requested = { key, exclusive: false, limit };
    let entry: PermitEntry | undefined;
    for (;;) {
      entry = this.#entries.get(key);
      if (entry === undefined) break;
      if (entry.queue.head !== undefined) return false;
      // What is still being settled (an attempt whose waiter gave up, slots being freed) is
      // waited for: the answer is about the holders.
      const settling = [entry.attempt?.finished, entry.nudgeDone];
      for (const held of entry.slots.values()) {
        if (held.permit === undefined) settling.push(held.freeing);
      }
      if (entry.attempt === undefined && settling.length === 2) break;
      await Promise.all(settling);
      if (this.#closed) throw closed(requested);
    }
    if (entry !== undefined && entry.heldBelow(limit) >= limit) return false;
    const target = entry?.target(limit) ??
      new PermitEntry(key, advisoryLockId(this.#options.namespace, key)).target(limit);
    try {
      return await this.#database.probePermit(target, requested);
    } catch (error) {
      throw this.#closed ? closed(requested) : error;
    }
  }

  /** Fails every waiter and loses every held permit; the pool's shutdown frees the database. */
  close(): void {
    this.#closed = true;
    for (const entry of this.#entries.values()) {
      entry.attempt?.acquisition.abandon("close");
      entry.nudge?.abandon("close");
      for (let waiter = entry.queue.head; waiter !== undefined; waiter = entry.queue.head) {
        unlink(entry.queue, waiter);
        waiter.wait.fail(closed(waiter));
      }
      for (const held of entry.slots.values()) {
        held.session.held.delete(held);
        held.permit?.lose("closed", "the state was closed");
      }
      entry.slots.clear();
    }
    this.#entries.clear();
    this.#byBase.clear();
  }

  /** Called by a holder's `release()`: resolves once its slot is free in the database. */
  release(permit: PostgresPermit): Promise<void> {
    if (this.#closed) return RELEASED;
    const held = permit.slot;
    held.permit = undefined;
    return this.#free(held);
  }

  /** The session under a slot died: its permit is lost. */
  slotLost(held: HeldSlot, cause: unknown): void {
    const entry = held.entry;
    if (entry.slots.get(held.slot) !== held) return;
    entry.slots.delete(held.slot);
    this.#database.lost(cause);
    const message = cause instanceof ServerSessionChanged
      ? cause.message
      : "the database connection was lost";
    held.permit?.lose("disconnected", message, cause);
    if (held.permit !== undefined) {
      log.warn("{name}: lost a permit on {key}: {cause}", {
        name: this.#options.name,
        key: entry.key,
        cause: describeError(cause),
      });
    }
    this.#pump(entry);
  }

  /**
   * Whether a request ahead of a new one really waits: the head waits in PostgreSQL's queue, or
   * a request that may wait is queued. A try-once request behind requests that are only being
   * tried queues behind them, and is tried in its turn.
   */
  #someoneWaits(entry: PermitEntry): boolean {
    if (entry.attempt?.claim.waitingFor !== undefined) return true;
    for (let waiter = entry.queue.head; waiter !== undefined; waiter = waiter.next) {
      if (!waiter.request.tryOnce) return true;
    }
    return false;
  }

  /** The head waits in PostgreSQL's queue: the try-once requests behind it are busy. */
  #headWaits(entry: PermitEntry): void {
    for (let waiter = entry.queue.head?.next; waiter !== undefined;) {
      const next = waiter.next;
      if (waiter.request.tryOnce) waiter.fail(busy(waiter));
      waiter = next;
    }
  }

  /** Frees a slot in the database; the key's waiters may move on once it is free. */
  #free(held: HeldSlot): Promise<void> {
    return held.freeing ??= this.#unlock(held);
  }

  async #unlock(held: HeldSlot): Promise<void> {
    const entry = held.entry;
    held.session.held.delete(held);
    await this.#database.releaseSlot(held.session, entry.target(held.slot + 1), held.slot);
    if (entry.slots.get(held.slot) === held) entry.slots.delete(held.slot);
    this.#pump(entry);
    this.#nudge(entry);
  }

  /** Records a slot the database granted. */
  #hold(entry: PermitEntry, granted: Granted, slot: number): HeldSlot {
    const held = new HeldSlot(entry, granted.session, slot, this);
    granted.session.held.add(held);
    entry.slots.set(slot, held);
    return held;
  }

  /** Gives `held` to `waiter` as its permit. */
  #grant(waiter: PermitWaiter, held: HeldSlot): void {
    unlink(waiter.entry.queue, waiter);
    const permit = new PostgresPermit(held, waiter.limit);
    held.permit = permit;
    waiter.wait.grant(permit);
  }

  /** Moves a key on: fails a busy try-once head, or starts the head's attempt. */
  #pump(entry: PermitEntry): void {
    if (this.#closed) return;
    for (;;) {
      const head = entry.queue.head;
      if (head === undefined) {
        if (entry.unused) this.#forget(entry);
        return;
      }
      if (entry.attempt !== undefined || entry.nudge !== undefined) return;
      if (entry.heldBelow(head.limit) >= head.limit) {
        // Every slot it may take is held here: only a release here can let it in.
        if (head.request.tryOnce) {
          head.fail(busy(head));
          continue;
        }
        return;
      }
      this.#start(entry, head);
      return;
    }
  }

  #forget(entry: PermitEntry): void {
    if (this.#entries.get(entry.key) === entry) this.#entries.delete(entry.key);
    if (this.#byBase.get(String(entry.base)) === entry) this.#byBase.delete(String(entry.base));
  }

  /** The head's attempt: try, then wait (see the module's comment). */
  #start(entry: PermitEntry, waiter: PermitWaiter): void {
    const claim = new SlotClaim(entry, waiter.limit, undefined, () => this.#headWaits(entry));
    const acquisition = this.#database.acquireClaim(claim, waiter);
    const attempt: Attempt = { waiter, claim, acquisition, nudged: undefined, finished: RELEASED };
    entry.attempt = attempt;
    attempt.finished = acquisition.done.then(async (granted) => {
      // A nudge still trying may take a slot too: one slot goes to the waiter, the others are
      // freed first, so that once the waiter has its permit this process holds no other slot.
      while (entry.nudge !== undefined) await entry.nudgeDone;
      const slots: HeldSlot[] = [];
      const slot = claim.slot;
      if (granted !== undefined && slot !== undefined && this.#keeps(granted)) {
        slots.push(this.#hold(entry, granted, slot));
      }
      if (attempt.nudged !== undefined) slots.push(attempt.nudged);
      const [first, ...others] = slots;
      await Promise.all(others.map((held) => this.#free(held)));
      if (first !== undefined) {
        if (!waiter.settled && !this.#closed) this.#grant(waiter, first);
        else await this.#free(first);
      }
      if (entry.attempt === attempt) entry.attempt = undefined;
      this.#pump(entry);
    });
  }

  /** Whether a database grant is still worth keeping: closing ends its session, and the slot. */
  #keeps(granted: Granted): boolean {
    return !this.#closed && !granted.session.dead;
  }

  /**
   * A slot may have been freed (a notification, a release here): if the head waits in
   * PostgreSQL's queue for another slot, it tries once more on the side; if that takes a slot,
   * the wait is cancelled (the attempt then gives the waiter one slot and frees any other).
   */
  #nudge(entry: PermitEntry): void {
    const attempt = entry.attempt;
    if (this.#closed || attempt === undefined || attempt.claim.waitingFor === undefined) return;
    if (attempt.nudged !== undefined) return;
    if (entry.nudge !== undefined) {
      entry.nudgeAgain = true;
      return;
    }
    const { waiter } = attempt;
    const claim = new SlotClaim(entry, waiter.limit, attempt.claim.waitingFor);
    // A try on the waiter's behalf: it never fails the waiter.
    const applicant: Applicant = {
      key: entry.key,
      exclusive: false,
      limit: waiter.limit,
      request: { ...waiter.request, tryOnce: true },
      settled: false,
      fail: () => {},
    };
    const nudge = this.#database.acquireClaim(claim, applicant);
    entry.nudge = nudge;
    entry.nudgeAgain = false;
    entry.nudgeDone = nudge.done.then((granted) => {
      entry.nudge = undefined;
      if (granted !== undefined && claim.slot !== undefined && this.#keeps(granted)) {
        attempt.nudged = this.#hold(entry, granted, claim.slot);
        attempt.acquisition.abandon("superseded");
      } else if (entry.nudgeAgain) {
        this.#nudge(entry);
      }
    });
  }

  /** A waiter timed out or was aborted: it leaves the queue; its attempt is abandoned. */
  #gaveUp(waiter: PermitWaiter, why: GiveUpReason): void {
    const entry = waiter.entry;
    unlink(entry.queue, waiter);
    if (entry.attempt?.waiter === waiter) entry.attempt.acquisition.abandon(why);
    this.#pump(entry);
  }
}
