/**
 * What the heartbeat does each interval (issue 9): every request in flight settles within two to
 * three intervals whatever the network does, and no backend holds a lock that nobody knows about.
 *
 * - Every session with something at stake (held locks, an open transaction, a query in flight)
 *   gets a `select 1`; one unanswered at the second tick is declared dead.
 * - A session blocked in a lock wait cannot answer: the main session watches its backend in
 *   `pg_stat_activity` instead. A backend that stopped waiting while our wait goes on (two checks
 *   in a row) was granted, or ended, and its answer lost on a silent network: the session is given
 *   up. When the watch itself goes unanswered, the waits cannot be watched, and they fail.
 * - Backends given up on while they held or awaited locks (orphans: the server did not notice)
 *   are ended from the main session once the database answers again, while they still hold or
 *   await one of those locks.
 */

import { backendLogger } from "../../internal/log.ts";
import type { AdvisoryRef, DatabaseSession, Orphan } from "./session.ts";
import { describeError } from "./statements.ts";

const log = backendLogger("postgres");

/** Orphans remembered at most; the oldest are forgotten beyond this. */
const MAX_ORPHANS = 10_000;

/**
 * The `pg_locks` columns `classid, objid, objsubid` of an advisory lock: an id taken as one int8
 * (`objsubid` 1), or a permit slot taken as two int4 (`objsubid` 2, issue 13).
 */
function lockColumns(ref: AdvisoryRef): string {
  if (typeof ref !== "bigint") return `'${ref.key1 >>> 0}'::oid, '${ref.key2 >>> 0}'::oid, 2`;
  const unsigned = BigInt.asUintN(64, ref);
  return `'${unsigned >> 32n}'::oid, '${unsigned & 0xffffffffn}'::oid, 1`;
}

/** How the watchdog reaches the main session. */
export interface MainSession {
  /** The main session, opened if needed. */
  main(): Promise<DatabaseSession>;
  /** The main session if one is open, without opening one. */
  current(): DatabaseSession | undefined;
}

/** The heartbeat's work for one pool. */
export class Watchdog {
  readonly #interval: number;
  readonly #main: MainSession;
  readonly #orphans: Orphan[] = [];
  /** Whether a connection was opened since the newest orphan was recorded. */
  #reachable = false;
  /** The watch of waiting backends in flight: since when, and ticks seen unanswered. */
  #watch: { since: number; ticks: number } | undefined;

  constructor(interval: number, main: MainSession) {
    this.#interval = interval;
    this.#main = main;
  }

  /** Whether orphans wait to be ended (the heartbeat must keep running for them). */
  get hasOrphans(): boolean {
    return this.#orphans.length > 0;
  }

  /** A backend was given up on while it held or awaited locks. */
  orphaned(orphan: Orphan): void {
    this.#orphans.push(orphan);
    if (this.#orphans.length > MAX_ORPHANS) this.#orphans.shift();
    this.#reachable = false;
  }

  /** A connection was opened: the database answers again. */
  opened(): void {
    this.#reachable = true;
  }

  /** The state closed: nothing is watched or ended any more. */
  clear(): void {
    this.#orphans.length = 0;
  }

  /** One round over the pool's `sessions`; `false` when there is nothing left to watch. */
  tick(sessions: ReadonlySet<DatabaseSession>): boolean {
    const interval = this.#interval;
    for (const session of sessions) {
      if (session.held.size > 0 || session.inTransaction || session.inFlight > 0) {
        session.heartbeat(interval);
      }
    }
    const waiting = [...sessions].filter((s) => s.waitingFor !== undefined && s.pid !== 0);
    if (waiting.length === 0 && this.#orphans.length === 0) return sessions.size > 0;
    const watch = this.#watch;
    if (watch === undefined) {
      this.#watchWaits(waiting);
    } else if (++watch.ticks >= 2 && performance.now() - watch.since >= interval) {
      // The database does not answer the watch: the waits cannot be watched, and the network
      // under them is most likely gone too. Their requests fail (and their backends become
      // orphans, ended once the database answers again).
      const silence = Math.round(performance.now() - watch.since);
      for (const session of waiting) {
        session.kill(new Error(`no answer from the database within ${silence} ms`));
      }
    }
    return true;
  }

  /** Looks at the waits' backends from the main session, and ends the orphans. Never rejects. */
  async #watchWaits(waiting: DatabaseSession[]): Promise<void> {
    const watch = { since: performance.now(), ticks: 0 };
    this.#watch = watch;
    const orphans = this.#orphans.slice();
    try {
      // Orphans alone open a connection only once another one could be opened after them: one
      // opened during the outage would fail the request that comes first after it.
      const current = this.#main.current();
      if (waiting.length === 0 && (current === undefined || current.dead) && !this.#reachable) {
        return;
      }
      const main = await this.#main.main();
      if (waiting.length > 0) await this.#checkWaits(main, waiting);
      if (orphans.length > 0) await this.#endOrphans(main, orphans);
    } catch (error) {
      log.debug("watching waits failed: {error}", { error: describeError(error) });
    } finally {
      if (this.#watch === watch) this.#watch = undefined;
    }
  }

  async #checkWaits(main: DatabaseSession, waiting: DatabaseSession[]): Promise<void> {
    const rows = await main.query(
      `select pid, state from pg_stat_activity where pid in (${waiting.map((s) => s.pid)})`,
    );
    const active = new Set(
      rows.filter((row) => row.state === "active").map((row) => Number(row.pid)),
    );
    for (const session of waiting) {
      if (session.waitingFor === undefined) continue;
      if (active.has(session.pid)) {
        session.suspectChecks = 0;
      } else if (++session.suspectChecks >= 2) {
        session.kill(
          new Error(
            "the database says the wait ended, but its answer never arrived " +
              "(the network dropped it)",
          ),
        );
      }
    }
  }

  /** Ends the orphans that still hold or await one of their locks; forgets the others. */
  async #endOrphans(main: DatabaseSession, orphans: Orphan[]): Promise<void> {
    const values = orphans.flatMap((orphan) =>
      orphan.ids.map((id) => `(${orphan.pid}, ${lockColumns(id)})`)
    );
    const rows = await main.query(
      `select distinct o.pid, pg_terminate_backend(o.pid) as ended` +
        ` from (values ${values.join(", ")}) as o(pid, classid, objid, objsubid)` +
        ` where exists (select from pg_locks l where l.locktype = 'advisory' and l.pid = o.pid` +
        ` and l.classid = o.classid and l.objid = o.objid and l.objsubid = o.objsubid)`,
    );
    for (const row of rows) {
      log.warn("ended backend {pid}, which held or awaited a lock we had given up on", {
        pid: Number(row.pid),
      });
    }
    // Ended, or no longer holding anything of ours: either way nothing is left to do.
    const done = new Set(orphans);
    for (let i = this.#orphans.length - 1; i >= 0; i--) {
      if (done.has(this.#orphans[i])) this.#orphans.splice(i, 1);
    }
  }
}
