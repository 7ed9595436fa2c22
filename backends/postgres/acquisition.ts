/**
 * The database half of PostgresState (issue 10: apart from the local queue in lock_table.ts and
 * from the two modes in modes.ts): how one lock id is taken in PostgreSQL for the request at the
 * head of a key's queue, and given back.
 *
 * Taking it: a try that never waits; then, if the request may wait, a blocking wait in
 * PostgreSQL's own fair queue on a session that holds nothing else; a request that gives up
 * cancels the wait in the database (repeatedly, until it has ended) and frees whatever a grant
 * racing the cancel left; then the session goes back to the pool. Never a polling loop.
 */

import type { LockFailed, LockFailedReason } from "../../errors.ts";
import { backendFailure, busy, type Requested, timedOut } from "../../internal/failures.ts";
import { type GiveUpReason, RequestWait } from "../../internal/request_wait.ts";
import type { LockRequest } from "../../state.ts";
import type { ModeStrategy } from "./modes.ts";
import type { SessionPool } from "./pool.ts";
import { ServerSessionChanged } from "./server_session.ts";
import type { DatabaseSession } from "./session.ts";
import {
  advisoryLocks,
  describeError,
  describeWaitError,
  type PermitTarget,
  SQLSTATE,
  sqlState,
} from "./statements.ts";

/** How long an abandoned timed-out wait may outlive its deadline before it is cancelled. */
const TIMEOUT_CANCEL_GRACE = 1000;

/** Milliseconds after a cancel before a wait that still runs is cancelled again, doubling. */
const CANCEL_RETRY_FIRST = 50;
const CANCEL_RETRY_MAX = 2000;
/**
 * Milliseconds between tries on the main session of a request that queues for a session of its
 * own (every one in use): the first, and the most, doubling in between.
 */
const RETRY_FIRST_MS = 10;
const RETRY_MAX_MS = 1000;

/** Attempts at a statement that a stray cancel (meant for an earlier wait) may hit. */
const STRAY_CANCEL_ATTEMPTS = 3;

/** The request an acquisition is for. */
export interface Applicant extends Requested {
  readonly request: LockRequest;
  /** Whether it was granted or failed already. */
  readonly settled: boolean;
  /** Fails it, if it still waits. */
  fail(error: LockFailed): void;
}

/**
 * A request in its key's local queue (lock_table.ts, permits.ts): the applicant of the
 * acquisitions made for it. It waits with the shared {@link RequestWait}, and fails itself out of
 * its queue; a subclass says which queue.
 */
export abstract class QueuedApplicant<T> implements Applicant {
  abstract readonly key: string;
  abstract readonly exclusive: boolean;
  readonly wait: RequestWait<T>;

  /**
   * @param request The validated request.
   * @param onGiveUp Called once the request timed out or was aborted (and failed itself).
   */
  constructor(readonly request: LockRequest, onGiveUp: (why: GiveUpReason) => void) {
    // The wait reads the key and mode only when it fails, once the subclass has set them.
    this.wait = new RequestWait<T>(this, request, (_, why) => onGiveUp(why));
  }

  get settled(): boolean {
    return this.wait.settled;
  }

  /** Leaves the queue and fails, if it still waits. */
  fail(error: LockFailed): void {
    if (this.wait.settled) return;
    this.leaveQueue();
    this.wait.fail(error);
  }

  /** Takes it out of its key's queue. */
  protected abstract leaveQueue(): void;
}

/** The database lock an acquisition got. */
export interface Granted {
  readonly session: DatabaseSession;
  readonly exclusive: boolean;
}

/**
 * What an acquisition takes in the database: a lock id in a mode, or (issue 13) a permit slot.
 * The protocol around it (try, wait, cancel until ended, clean up) is the same.
 */
export interface Claim {
  /** Takes it if it is free, never waits; `true` when taken. */
  take(mode: ModeStrategy, session: DatabaseSession): Promise<boolean>;
  /**
   * Waits for it in PostgreSQL's queue, up to `timeout` ms, on a session that holds nothing else:
   * one statement, run with `session.wait`, so that a cancel ends it. Resolves once taken.
   */
  await(mode: ModeStrategy, session: DatabaseSession, timeout: number | undefined): Promise<void>;
}

/** The claim of lock `id` in a mode. */
function lockClaim(id: bigint, exclusive: boolean): Claim {
  return {
    take: (mode, session) => mode.tryLock(session, id, exclusive),
    await: (mode, session, timeout) => mode.waitLock(session, id, exclusive, timeout),
  };
}

/** One attempt to get the database lock of a key for the request at the head of its queue. */
export class Acquisition {
  /** The request gave up (timeout, abort, close): the attempt ends as soon as it safely can. */
  abandoned = false;
  /** Settles with the database lock, or nothing; never rejects. */
  readonly done: Promise<Granted | undefined>;
  #controller: AbortController | undefined;
  /** Set while a blocking wait runs: ends it in the database. */
  #cancelWait: (() => void) | undefined = undefined;
  /** The cancel sent, if any: the session is not reused before it was delivered. */
  #cancelling: Promise<void> | undefined = undefined;
  #graceTimer: ReturnType<typeof setTimeout> | undefined = undefined;

  constructor(
    readonly claim: Claim,
    readonly applicant: Applicant,
    run: (acquisition: Acquisition) => Promise<Granted | undefined>,
  ) {
    this.done = run(this).finally(() => clearTimeout(this.#graceTimer));
  }

  /** Aborted once the attempt is abandoned; created only by the slow path that needs it. */
  get signal(): AbortSignal {
    this.#controller ??= new AbortController();
    if (this.abandoned) this.#controller.abort(new Error("abandoned"));
    return this.#controller.signal;
  }

  /**
   * The request gave up: end the attempt, in the database too. `superseded` (issue 13): a permit
   * wait no longer needed, because a try on the side got a slot.
   */
  abandon(why: GiveUpReason | "close" | "superseded"): void {
    if (this.abandoned) return;
    this.abandoned = true;
    this.#controller?.abort(new Error("abandoned"));
    if (this.#cancelWait === undefined) return;
    if (why === "timeout") {
      // lock_timeout ends the wait in the database at about the same time; cancel only if not.
      this.#graceTimer = setTimeout(() => this.#cancelWait?.(), TIMEOUT_CANCEL_GRACE);
    } else {
      this.#cancelWait();
    }
  }

  /** @internal While a wait runs on `session`: how to cancel it. */
  waiting(
    session: DatabaseSession,
    wait: { readonly ended: boolean; readonly done: Promise<void> },
  ): void {
    this.#cancelWait = () => {
      this.#cancelWait = undefined;
      this.#cancelling = cancelUntilEnded(session, wait);
    };
    if (this.abandoned) this.#cancelWait();
  }

  /** @internal The wait ended: resolves once a cancel on its way has landed. */
  waited(): Promise<void> | undefined {
    this.#cancelWait = undefined;
    return this.#cancelling;
  }
}

/**
 * Cancels the wait running on `session` until it has ended. A cancel that reaches the server
 * before it has read the wait statement is dropped (a backend ignores a cancel between
 * statements), and the wait would go on for ever: a wait still running a moment after its cancel
 * is cancelled again. The cancel is a protocol cancel request over a connection of its own, so
 * that it does not depend on the main session (issue 9: an unresponsive main session left aborted
 * waits in PostgreSQL's queue). Resolves once the last cancel was delivered; never rejects.
 */
async function cancelUntilEnded(
  session: DatabaseSession,
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
 * A database operation failed: issue 9's refusal (a transaction-mode pooler under a session-mode
 * state) names its cause and fix; anything else means the database could not be reached.
 */
export function databaseFailure(requested: Requested, error: unknown): LockFailed {
  return error instanceof ServerSessionChanged
    ? backendFailure(requested, "refused", error.message, error)
    : backendFailure(
      requested,
      "unreachable",
      `the database could not be reached (${describeError(error)})`,
      error,
    );
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

/** A failed database operation: the error of a session we gave up on says why best. */
function failureOf(session: DatabaseSession | undefined, caught: unknown): unknown {
  return session?.dead ? session.cause ?? caught : caught;
}

/** Takes, tests and frees advisory locks in the database for one state. */
export class DatabaseLocks {
  readonly #pool: SessionPool;
  readonly #mode: ModeStrategy;
  /**
   * Issue 9: set once a session-mode connection was found not to have a server session of its own
   * (a transaction-mode pooler sits between). The configuration is wrong and stays wrong: every
   * later request is refused at once, instead of taking locks that the pooler would hand on.
   */
  #refused: ServerSessionChanged | undefined;

  constructor(pool: SessionPool, mode: ModeStrategy) {
    this.#pool = pool;
    this.#mode = mode;
  }

  /** The refusal of every request, once the state found itself behind a transaction pooler. */
  /**
   * Whether the state found itself behind a transaction pooler: read on every acquire, so that
   * the usual answer costs no allocation.
   */
  get refused(): boolean {
    return this.#refused !== undefined;
  }

  refusal(requested: Requested): LockFailed | undefined {
    return this.#refused === undefined ? undefined : databaseFailure(requested, this.#refused);
  }

  /** Notes why a lock held in the database was lost (issue 9's refusal sticks). */
  lost(cause: unknown): void {
    this.#note(cause);
  }

  /** Starts taking lock `id` for `applicant`. */
  acquire(id: bigint, applicant: Applicant): Acquisition {
    return this.acquireClaim(lockClaim(id, applicant.exclusive), applicant);
  }

  /** Starts taking `claim` for `applicant` (issue 13: a lock or a permit slot). */
  acquireClaim(claim: Claim, applicant: Applicant): Acquisition {
    return new Acquisition(claim, applicant, (acquisition) => this.#run(acquisition));
  }

  /** Whether lock `id` could be taken now, leaving nothing taken; throws LockFailed. */
  probe(id: bigint, requested: Requested): Promise<boolean> {
    return this.#probe(requested, (session) => this.#mode.probe(session, id, requested.exclusive));
  }

  /** Issue 13: whether a slot of `target` could be taken now, leaving nothing taken. */
  probePermit(target: PermitTarget, requested: Requested): Promise<boolean> {
    return this.#probe(requested, (session) => this.#mode.probePermit(session, target));
  }

  async #probe(
    requested: Requested,
    test: (session: DatabaseSession) => Promise<boolean>,
  ): Promise<boolean> {
    const refusal = this.refusal(requested);
    if (refusal !== undefined) throw refusal;
    let session: DatabaseSession | undefined;
    try {
      session = await this.#pool.main();
      return await test(session);
    } catch (caught) {
      const error = failureOf(session, caught);
      this.#note(error);
      throw databaseFailure(requested, error);
    }
  }

  /**
   * Issue 12: a fencing token for lock `id`, held on `session`. Rejects with the driver's error
   * when the session died (the lock's holders have lost it by then), else with an Error naming
   * what went wrong.
   */
  async fencingToken(session: DatabaseSession, id: bigint, exclusive: boolean): Promise<bigint> {
    try {
      return await this.#mode.fencingToken(this.#pool, session, id, exclusive);
    } catch (caught) {
      const error = failureOf(session, caught);
      this.#note(error);
      if (session.dead) throw error;
      throw new Error(`could not make a fencing token in PostgreSQL (${describeError(error)})`, {
        cause: error,
      });
    }
  }

  /**
   * Issue 12: the advisory locks `ids` as `pg_locks` shows them, for every backend of the
   * database, and the pids of this state's own sessions. Throws LockFailed like a probe.
   */
  async advisoryLocks(
    ids: readonly bigint[],
    requested: Requested,
  ): Promise<{ rows: readonly Record<string, unknown>[]; own: ReadonlySet<number> }> {
    const refusal = this.refusal(requested);
    if (refusal !== undefined) throw refusal;
    let session: DatabaseSession | undefined;
    try {
      session = await this.#pool.main();
      const rows = await session.query(advisoryLocks(ids));
      return { rows, own: this.#pool.pids(this.#mode.name === "transaction") };
    } catch (caught) {
      const error = failureOf(session, caught);
      this.#note(error);
      throw databaseFailure(requested, error);
    }
  }

  /**
   * Frees lock `id` on `session`; resolves once it is free. A session that fails it dies, and its
   * locks with it. Gives a spare session that holds nothing any more back to the pool.
   */
  release(session: DatabaseSession, id: bigint, exclusive: boolean): Promise<void> {
    return this.#free(session, () => this.#mode.unlock(session, id, exclusive));
  }

  /** Issue 13: frees slot `slot` of `target` on `session`, as {@link DatabaseLocks.release}. */
  releaseSlot(session: DatabaseSession, target: PermitTarget, slot: number): Promise<void> {
    return this.#free(session, () => this.#mode.releaseSlot(session, target, slot));
  }

  /** The mode's strategy (issue 13: whether waiters hear notifications). */
  get mode(): ModeStrategy {
    return this.#mode;
  }

  async #free(session: DatabaseSession, unlock: () => Promise<void>): Promise<void> {
    for (let attempt = 0; attempt < STRAY_CANCEL_ATTEMPTS && !session.dead; attempt++) {
      try {
        await unlock();
        break;
      } catch (error) {
        this.#note(error);
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
    session.inTransaction = false;
    if (!session.dead && !session.main && session.held.size === 0) this.#pool.give(session);
  }

  /**
   * A wait needs a session of its own, and every one is in use (`maxConnections`): the request
   * queues in the process for one. Meanwhile the key may come free in the database, and nothing
   * would say so; a process whose sessions hold locks whose holders wait on this request would
   * wait for ever for a key nobody holds. So while it queues, the try is repeated on `tried` (the
   * main session) at growing intervals, 10 ms doubling to 1 s. Resolves with the lock when a try
   * got it, or with the session the queue gave (the caller waits on it); rejects as the queue
   * does (the attempt was abandoned, the pool closed).
   */
  async #takeOrRetry(
    acquisition: Acquisition,
    tried: DatabaseSession,
  ): Promise<{ granted: Granted } | { session: DatabaseSession }> {
    const { claim, applicant } = acquisition;
    const done = new AbortController();
    const signal = AbortSignal.any([acquisition.signal, done.signal]);
    const queued = this.#mode.waitSession(this.#pool, tried, () => signal);
    let answered = false;
    const settled = queued.then(() => answered = true, () => answered = true);
    for (let delay = RETRY_FIRST_MS;; delay = Math.min(delay * 2, RETRY_MAX_MS)) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([settled, new Promise((resolve) => timer = setTimeout(resolve, delay))]);
      clearTimeout(timer);
      // The queue answered (a session, or a rejection: abandoned, pool closed): go on from there.
      if (answered || signal.aborted) return { session: await queued };
      let took: boolean;
      try {
        took = await claim.take(this.#mode, tried);
      } catch (error) {
        this.#leaveQueue(done, queued);
        throw error;
      }
      if (took) {
        this.#leaveQueue(done, queued);
        return { granted: { session: tried, exclusive: applicant.exclusive } };
      }
    }
  }

  /** Leaves the pool's queue; a session given meanwhile all the same goes back, unused. */
  #leaveQueue(controller: AbortController, queued: Promise<DatabaseSession>): void {
    controller.abort(new Error("no session needed any more"));
    queued.then((session) => this.#pool.give(session), () => {});
  }

  /** Try, then (if the request may wait) wait in PostgreSQL's queue. Never rejects. */
  async #run(acquisition: Acquisition): Promise<Granted | undefined> {
    const { claim, applicant } = acquisition;
    const { exclusive, request } = applicant;
    const refusal = this.refusal(applicant);
    if (refusal !== undefined) {
      applicant.fail(refusal);
      return undefined;
    }
    const mode = this.#mode;
    let session: DatabaseSession | undefined;
    try {
      session = await mode.trySession(this.#pool, () => acquisition.signal);
      if (await claim.take(mode, session)) return { session, exclusive };
      if (acquisition.abandoned || request.tryOnce) {
        if (request.tryOnce) applicant.fail(busy(applicant));
        if (mode.tryHoldsSession) await this.#cleanUp(session);
        return undefined;
      }
      const tried = session;
      session = undefined;
      if (!mode.tryHoldsSession && !this.#pool.canTake) {
        const taken = await this.#takeOrRetry(acquisition, tried);
        if ("granted" in taken) return taken.granted;
        session = taken.session;
      } else {
        session = await mode.waitSession(this.#pool, tried, () => acquisition.signal);
      }
      return await this.#wait(acquisition, session);
    } catch (caught) {
      const error = failureOf(session, caught);
      if (session !== undefined && mode.tryHoldsSession) await this.#cleanUp(session);
      this.#note(error);
      if (!acquisition.abandoned) applicant.fail(databaseFailure(applicant, error));
      return undefined;
    }
  }

  /** The blocking wait, on a session that holds nothing else. Never rejects. */
  async #wait(acquisition: Acquisition, session: DatabaseSession): Promise<Granted | undefined> {
    const { claim, applicant } = acquisition;
    const { exclusive, request } = applicant;
    const remaining = request.deadline === undefined
      ? undefined
      : request.deadline - performance.now();
    if (acquisition.abandoned || (remaining !== undefined && remaining <= 0)) {
      if (!acquisition.abandoned) applicant.fail(timedOut(applicant, request.timeout));
      await this.#cleanUp(session);
      return undefined;
    }
    session.waiting = true;
    const waitLock = claim.await(this.#mode, session, remaining);
    const wait = { ended: false, done: waitLock.then(() => {}, () => {}) };
    acquisition.waiting(session, wait);
    let error: unknown;
    let granted = false;
    try {
      await waitLock;
      granted = true;
    } catch (caught) {
      error = caught;
    }
    wait.ended = true;
    // A cancel still on its way could hit the next query on this session (in transaction mode a
    // heartbeat inside the lock's transaction, aborting it): let it land first, heartbeats off.
    await acquisition.waited();
    session.waiting = false;
    if (granted && !session.dead) return { session, exclusive };
    // Granted on a connection that died right after: the lock went with it. A connection we
    // gave up on (a silent network) says why better than the driver's "connection destroyed".
    if (granted || session.dead) error = session.cause ?? error;
    this.#note(error);
    if (!acquisition.abandoned) {
      applicant.fail(
        sqlState(error) === SQLSTATE.lockNotAvailable
          ? timedOut(applicant, request.timeout)
          : error instanceof ServerSessionChanged
          ? databaseFailure(applicant, error)
          : backendFailure(applicant, waitFailureReason(error), describeWaitError(error), error),
      );
    }
    await this.#cleanUp(session);
    return undefined;
  }

  /**
   * Frees what a failed or abandoned attempt may hold (PostgreSQL can grant a lock just as the
   * wait is cancelled and report the cancel anyway), then gives the session back.
   */
  async #cleanUp(session: DatabaseSession): Promise<void> {
    for (let attempt = 0; attempt < STRAY_CANCEL_ATTEMPTS && !session.dead; attempt++) {
      try {
        await this.#mode.cleanUp(session);
        this.#pool.give(session);
        return;
      } catch (error) {
        this.#note(error);
        if (sqlState(error) !== SQLSTATE.queryCanceled) break;
      }
    }
    // Ending the session frees whatever it held (behind a pooler, its release does: issue 9).
    session.kill(new Error("could not clean up after a lock wait"));
  }

  /** Issue 9: the first refusal makes every later request fail at once. */
  #note(error: unknown): void {
    if (error instanceof ServerSessionChanged) this.#refused ??= error;
  }
}
