/**
 * Which new connections the broker takes (issue 9, item 7): at most `maxConnections` at once, of
 * which at most `maxUnauthenticated` before `welcome`, and none from an address blocked for its
 * failed authentications. A refusal says why, as an HTTP status for a request not yet upgraded
 * and as a close code for a socket upgraded elsewhere.
 */

import { type AuthFailureLimiter, blockedMessage } from "./auth_failures.ts";
import { CloseCode } from "./protocol.ts";

/** Why a new connection is not taken. */
export interface Refusal {
  /** For a request not yet upgraded: 503 (a limit) or 429 (a blocked address). */
  status: 503 | 429;
  /** For a socket already upgraded, after a `refused` frame. */
  code: number;
  /** What the client is told. */
  message: string;
  /** Seconds after which trying again makes sense (`Retry-After`). */
  retryAfter: number;
}

/** Counts the broker's connections and decides on new ones. */
export class Admission {
  readonly #maxConnections: number;
  readonly #maxUnauthenticated: number;
  readonly #authFailures: AuthFailureLimiter;
  #connections = 0;
  #unauthenticated = 0;

  /**
   * @param maxConnections Most connections at once.
   * @param maxUnauthenticated Most connections at once that have not been welcomed yet.
   * @param authFailures The failed authentications per address.
   */
  constructor(
    maxConnections: number,
    maxUnauthenticated: number,
    authFailures: AuthFailureLimiter,
  ) {
    this.#maxConnections = maxConnections;
    this.#maxUnauthenticated = maxUnauthenticated;
    this.#authFailures = authFailures;
  }

  /** Connections taken and not ended. */
  get connections(): number {
    return this.#connections;
  }

  /** Connections taken and not yet welcomed. */
  get unauthenticated(): number {
    return this.#unauthenticated;
  }

  /** Why a new connection from `address` is refused now, or `undefined` if it is taken. */
  refusal(address: string | undefined): Refusal | undefined {
    if (this.#connections >= this.#maxConnections) {
      return {
        status: 503,
        code: CloseCode.tryAgainLater,
        message: `the broker is at its connection limit (${this.#maxConnections}); try again later`,
        retryAfter: 1,
      };
    }
    if (this.#unauthenticated >= this.#maxUnauthenticated) {
      return {
        status: 503,
        code: CloseCode.tryAgainLater,
        message: `too many connections are authenticating (at most ${this.#maxUnauthenticated}); ` +
          "try again later",
        retryAfter: 1,
      };
    }
    const blocked = this.#authFailures.blockedFor(address);
    if (blocked > 0) {
      return {
        status: 429,
        code: CloseCode.unauthorized,
        message: blockedMessage(blocked),
        retryAfter: Math.ceil(blocked / 1000),
      };
    }
    return undefined;
  }

  /** A connection was taken: it counts as unauthenticated until {@link Admission.welcomed}. */
  opened(): void {
    this.#connections++;
    this.#unauthenticated++;
  }

  /** A connection was welcomed. */
  welcomed(): void {
    this.#unauthenticated--;
  }

  /** A connection ended, welcomed or not. */
  ended(welcomed: boolean): void {
    this.#connections--;
    if (!welcomed) this.#unauthenticated--;
  }
}
