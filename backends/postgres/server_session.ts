/**
 * Issue 9: how a session-mode connection knows that the server session under it is its own, and
 * what it does when it is not (a transaction-mode pooler sits between).
 *
 * At open the connection leaves a random marker on a fresh server session, and every statement
 * after that runs only where the marker is (see `statements.ts`). A statement that finds another
 * server session under the connection takes and frees nothing there; the connection is then
 * refused for good ({@link ServerSessionChanged}), and what it left on its own server session,
 * which a pooler keeps alive, is freed: by a guarded release when a statement happens to reach that
 * session again, else by ending that backend once it is idle, a bounded number of times.
 */

import { backendLogger } from "../../internal/log.ts";
import { releaseSession, terminateIdleBackend } from "./statements.ts";

const log = backendLogger("postgres");

/** The fix, named in every refusal. */
const FIX = "a transaction-mode pooler (PgBouncer pool_mode=transaction, Supavisor port 6543, " +
  'Neon -pooler) sits between; use `mode: "transaction"` or a direct or session-mode connection';

/**
 * A session-mode connection is not served by one server session of its own: requests on it are
 * refused (issue 9). A later change marks such `LockFailed`s with a reason.
 */
export class ServerSessionChanged extends Error {
  /** @param what What was seen, e.g. "the server session changed under the connection". */
  constructor(what: string) {
    super(`${what}: ${FIX}`);
    this.name = "ServerSessionChanged";
  }
}

/** The server session a session-mode connection marked at open. */
export interface MarkedSession {
  /** The random marker, 32 hex digits: safe to inline in SQL. */
  readonly marker: string;
  /** Its backend's pid. */
  readonly pid: number;
  /** Its backend's start, in microseconds since 1970 (with the pid, it names one backend). */
  readonly started: string;
  /** `server_version_num`. */
  readonly version: number;
  /**
   * Something between us and PostgreSQL hands out the backend (the pid in the connection's
   * BackendKeyData is not the backend's): closing the connection may leave the server session
   * alive, with whatever is on it.
   */
  readonly pooled: boolean;
}

/** A new random marker. */
export function newMarker(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join("");
}

/**
 * Attempts at freeing a server session that the connection lost, the first pause between them
 * (doubling, up to the cap): about 3 s in all.
 */
const RELEASE_ATTEMPTS = 8;
const RELEASE_RETRY_FIRST_MS = 25;
const RELEASE_RETRY_MAX_MS = 1000;

/** How long a backend must have been idle before it is ended for what it carries. */
const IDLE_BEFORE_TERMINATE_MS = 100;

/**
 * Frees what the connection left on its marked server session, through `run` (a query on the
 * connection, wherever the pooler sends it): a guarded release if the statement reaches that
 * session; else, if it carries our settings or locks (not only the marker), ends that backend once
 * it has been idle for a while (see {@link terminateIdleBackend}). At most
 * {@link RELEASE_ATTEMPTS} attempts (one for a marker alone); then the server session keeps what
 * it carries until the pooler closes it. Never rejects.
 */
export async function releaseServerSession(
  run: (text: string) => Promise<unknown[]>,
  session: MarkedSession,
  settingsApplied: boolean,
): Promise<void> {
  let delay = RELEASE_RETRY_FIRST_MS;
  for (let attempt = 1; attempt <= RELEASE_ATTEMPTS; attempt++) {
    try {
      if ((await run(releaseSession(session.marker))).length > 0) return;
      // A marker alone does no harm (later session-mode connections that land there are
      // refused at once, as they should be): one try is enough.
      if (!settingsApplied) return;
      const [backend] = await run(
        terminateIdleBackend(
          session.pid,
          session.started,
          session.version,
          IDLE_BEFORE_TERMINATE_MS,
        ),
      ) as { terminated?: unknown }[];
      if (backend === undefined || backend.terminated === true) return;
    } catch (error) {
      log.warn("could not free the server session of pid {pid}: {error}", {
        pid: session.pid,
        error: String(error),
      });
      return;
    }
    if (attempt < RELEASE_ATTEMPTS) {
      await new Promise((resolve) => setTimeout(resolve, delay));
      delay = Math.min(delay * 2, RELEASE_RETRY_MAX_MS);
    }
  }
  log.warn(
    "the server session of pid {pid} stayed busy: what it carries stays until the pooler ends it",
    { pid: session.pid },
  );
}
