/**
 * How locks live in the database, as two strategies (issue 10): session-level advisory locks,
 * many on one connection and checked against the connection's own server session (issue 9), or
 * transaction-level ones, one open transaction per lock, for transaction-mode poolers. Each runs
 * its own statements (statements.ts) and reads its own results; the acquisition protocol
 * (acquisition.ts) is the same for both.
 */

import type { SessionPool } from "./pool.ts";
import { ServerSessionChanged } from "./server_session.ts";
import type { DatabaseSession } from "./session.ts";
import {
  type LockMode,
  PERMIT_CHANNEL,
  type PermitTarget,
  sessionFencingToken,
  sessionPermitStatements,
  sessionStatements,
  transactionFencingToken,
  transactionPermitStatements,
  transactionStatements,
} from "./statements.ts";

/** One way for locks to live in the database. */
export interface ModeStrategy {
  /** Its name, as in the `mode` option. */
  readonly name: LockMode;
  /**
   * Whether the session of a try holds something afterwards even when the try failed (an open
   * transaction), so that it must be cleaned up and given back.
   */
  readonly tryHoldsSession: boolean;
  /** The session a first try runs on. */
  trySession(pool: SessionPool, signal: () => AbortSignal): Promise<DatabaseSession>;
  /** Takes the lock if it is free, never waits; `true` when taken. */
  tryLock(session: DatabaseSession, id: bigint, exclusive: boolean): Promise<boolean>;
  /** The session a blocking wait runs on, after a failed try on `tried`. */
  waitSession(
    pool: SessionPool,
    tried: DatabaseSession,
    signal: () => AbortSignal,
  ): Promise<DatabaseSession>;
  /**
   * Waits in PostgreSQL's own queue, up to `timeout` ms; resolves once granted. Rejects with 55P03
   * on timeout, 57014 on cancel ({@link DatabaseSession.cancelWait}), 40P01 on deadlock.
   */
  waitLock(
    session: DatabaseSession,
    id: bigint,
    exclusive: boolean,
    timeout?: number,
  ): Promise<void>;
  /** Frees the lock (one attempt). */
  unlock(session: DatabaseSession, id: bigint, exclusive: boolean): Promise<void>;
  /**
   * Frees whatever a failed, cancelled or abandoned attempt may have left on its session (one
   * attempt): the server can grant a lock just as the wait is cancelled, and report the cancel.
   */
  cleanUp(session: DatabaseSession): Promise<void>;
  /** Whether the lock could be taken now, leaving nothing taken. */
  probe(session: DatabaseSession, id: bigint, exclusive: boolean): Promise<boolean>;
  /**
   * Issue 12: a fencing token for lock `id`, held on `session`, made while it is held. Rejects
   * when the lock turns out to be gone (its session is then dead).
   */
  fencingToken(
    pool: SessionPool,
    session: DatabaseSession,
    id: bigint,
    exclusive: boolean,
  ): Promise<bigint>;

  // Issue 13: permits.
  /** Whether waiters hear notifications of releases (and so should be nudged by them). */
  readonly notified: boolean;
  /** Takes the first free slot of `target`, never waits: the slot, or `undefined`. */
  tryPermit(session: DatabaseSession, target: PermitTarget): Promise<number | undefined>;
  /**
   * Waits for a slot of `target` (see `PermitStatements.waitPermit`), `slot` in PostgreSQL's queue;
   * resolves with the slot taken. Rejects as {@link ModeStrategy.waitLock}.
   */
  waitPermit(
    session: DatabaseSession,
    target: PermitTarget,
    slot: number,
    timeout?: number,
  ): Promise<number>;
  /** Frees slot `slot` of `target` and tells waiters (one attempt). */
  releaseSlot(session: DatabaseSession, target: PermitTarget, slot: number): Promise<void>;
  /** Whether a slot of `target` could be taken now, leaving nothing taken. */
  probePermit(session: DatabaseSession, target: PermitTarget): Promise<boolean>;
}

/** Issue 12: the lock's transaction is not in `pg_locks` any more, though its session lived. */
export class LockGone extends Error {
  constructor() {
    super("PostgreSQL no longer lists the lock as held by its transaction");
    this.name = "LockGone";
  }
}

function token(rows: readonly unknown[]): bigint {
  return BigInt((rows[0] as { token: string }).token);
}

/** The slot of a permit statement's one row (`int8` comes as text), or `undefined` for NULL. */
function slotOf(rows: readonly unknown[]): number | undefined {
  const slot = (rows[0] as { slot?: unknown } | undefined)?.slot;
  return slot === null || slot === undefined ? undefined : Number(slot);
}

/**
 * Session mode: the main session listens for permit releases of other processes, from before its
 * first permit try on (a LISTEN takes effect when its statement ends, before the try runs).
 */
function listen(session: DatabaseSession): void {
  if (session.listening) return;
  session.listening = true;
  session.query(`listen ${PERMIT_CHANNEL}`).catch(() => {
    session.listening = false;
  });
}

/**
 * Issue 9: a session-mode statement returns no row on a server session that is not the
 * connection's own (a transaction-mode pooler moved it), and took or freed nothing there. The
 * connection is refused for good: its holders lose their locks, and what it left on its own
 * server session is freed.
 */
function ownSession<T extends readonly unknown[]>(session: DatabaseSession, rows: T): T {
  if (rows.length > 0) return rows;
  const error = new ServerSessionChanged("the server session changed under the connection");
  session.kill(error);
  throw error;
}

function ok(rows: readonly unknown[]): boolean {
  return (rows[0] as { ok?: unknown } | undefined)?.ok === true;
}

/** Session-level advisory locks: uncontended locks share the main session. */
export const sessionMode: ModeStrategy = {
  name: "session",
  tryHoldsSession: false,
  trySession: (pool) => pool.main(),
  async tryLock(session, id, exclusive) {
    const statement = sessionStatements.tryLock(id, exclusive, session.marker);
    return ok(ownSession(session, await session.query(statement)));
  },
  // A wait blocks its session: it runs on a spare that holds nothing else.
  waitSession: (pool, _tried, signal) => pool.take(signal()),
  async waitLock(session, id, exclusive, timeout) {
    const statement = sessionStatements.waitLock(id, exclusive, timeout, session.marker);
    ownSession(session, await session.wait(statement, id));
  },
  async unlock(session, id, exclusive) {
    const statement = sessionStatements.unlock(id, exclusive, session.marker);
    ownSession(session, await session.query(statement));
  },
  async cleanUp(session) {
    ownSession(session, await session.query(sessionStatements.cleanup(session.marker)));
  },
  async probe(session, id, exclusive) {
    const statement = sessionStatements.probe(id, exclusive, session.marker);
    return ok(ownSession(session, await session.query(statement)));
  },
  // On the lock's own session: it holds the lock whenever it runs a statement of ours.
  async fencingToken(_pool, session) {
    let rows;
    try {
      rows = await session.query(sessionFencingToken(session.marker));
    } catch (error) {
      // Anything but the server's refusal (a permission, a read-only server) means the
      // connection broke: with it the lock, which must not wait for the close to be noticed.
      if (!(error instanceof Error && error.name === "PostgresError")) session.kill(error);
      throw error;
    }
    return token(ownSession(session, rows));
  },
  notified: true,
  async tryPermit(session, target) {
    listen(session);
    const statement = sessionPermitStatements.tryPermit(target, session.marker);
    return slotOf(ownSession(session, await session.query(statement)));
  },
  async waitPermit(session, target, slot, timeout) {
    const statement = sessionPermitStatements.waitPermit(target, slot, timeout, session.marker);
    const { key1, key2 } = slotRef(target, slot);
    return slotOf(ownSession(session, await session.wait(statement, { key1, key2 }))) ?? slot;
  },
  async releaseSlot(session, target, slot) {
    const statement = sessionPermitStatements.releaseSlot(target, slot, session.marker);
    ownSession(session, await session.query(statement));
  },
  async probePermit(session, target) {
    const statement = sessionPermitStatements.probe(target, session.marker);
    return ok(ownSession(session, await session.query(statement)));
  },
};

/** Transaction-level advisory locks: each lock is a transaction on a session of its own. */
export const transactionMode: ModeStrategy = {
  name: "transaction",
  tryHoldsSession: true,
  async trySession(pool, signal) {
    const session = await pool.take(signal());
    session.inTransaction = true;
    return session;
  },
  async tryLock(session, id, exclusive) {
    // One result per statement: `begin`, the settings with the backend pid, the try.
    const results = await session.query(transactionStatements.tryLock(id, exclusive, ""));
    // Behind a transaction pooler, the backend to watch is the one serving this transaction.
    session.pid = Number((results.at(-2) as { pid?: unknown }[])[0].pid);
    return ok(results.at(-1) as unknown as readonly unknown[]);
  },
  // The try opened the transaction that the wait continues.
  waitSession: (_pool, tried) => Promise.resolve(tried),
  async waitLock(session, id, exclusive, timeout) {
    await session.wait(transactionStatements.waitLock(id, exclusive, timeout, ""), id);
  },
  async unlock(session) {
    await session.query(transactionStatements.unlock(0n, true, ""));
    session.inTransaction = false;
  },
  async cleanUp(session) {
    await session.query(transactionStatements.cleanup(""));
    session.inTransaction = false;
  },
  async probe(session, id, exclusive) {
    return ok(await session.query(transactionStatements.probe(id, exclusive, "")));
  },
  // The lock's transaction must not commit: the token's runs on the main session, and checks in
  // pg_locks that the lock's backend still holds it (the release waits for the token).
  async fencingToken(pool, session, id, exclusive) {
    const main = await pool.main();
    const [row] = await main.query(transactionFencingToken(session.pid, id, exclusive));
    if (row?.held !== true) {
      const error = new LockGone();
      session.kill(error);
      throw error;
    }
    return token([row]);
  },
  notified: false,
  async tryPermit(session, target) {
    const results = await session.query(transactionPermitStatements.tryPermit(target, ""));
    session.pid = Number((results.at(-2) as { pid?: unknown }[])[0].pid);
    return slotOf(results.at(-1) as unknown as readonly unknown[]);
  },
  async waitPermit(session, target, slot, timeout) {
    const statement = transactionPermitStatements.waitPermit(target, slot, timeout, "");
    return slotOf(await session.wait(statement, slotRef(target, slot))) ?? slot;
  },
  async releaseSlot(session, target, slot) {
    await session.query(transactionPermitStatements.releaseSlot(target, slot, ""));
    session.inTransaction = false;
  },
  async probePermit(session, target) {
    return ok(await session.query(transactionPermitStatements.probe(target, "")));
  },
};

/** Slot `slot` of `target` as PostgreSQL's two `int4` keys (issue 13). */
export function slotRef(target: PermitTarget, slot: number): { key1: number; key2: number } {
  const key2 = ((target.low + slot) % 2 ** 32 + 2 ** 32) % 2 ** 32;
  return { key1: target.key1, key2: key2 >= 2 ** 31 ? key2 - 2 ** 32 : key2 };
}
