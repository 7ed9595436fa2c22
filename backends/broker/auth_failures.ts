/**
 * Failed authentications per client address, the broker's brake on token guessing (issue 9,
 * item 7): an address that failed `maxFailures` times within `window` ms is refused for the next
 * `window` ms, without its tokens being checked. Checks still under way count against the budget
 * too, so hellos sent together on many connections get no more tries than hellos sent one by one.
 * Memory stays bounded: at most `maxAddresses` addresses are remembered, the least recently seen
 * forgotten first.
 */

import { clientAddressKey } from "./client_address.ts";

/** Default for the number of failures that blocks an address. */
export const DEFAULT_MAX_AUTH_FAILURES = 10;
/** Default for the window that counts failures, and for how long an address stays blocked. */
export const DEFAULT_AUTH_FAILURE_WINDOW = 60_000;
/** Default for the most addresses remembered at once (about 100 bytes each). */
export const DEFAULT_MAX_TRACKED_ADDRESSES = 10_000;

/** What a client of an address refused for `refusedFor` more milliseconds is told. */
export function blockedMessage(refusedFor: number): string {
  return `too many failed authentications from this address; try again in ${
    Math.ceil(refusedFor / 1000)
  } s`;
}

/** What {@link AuthFailureLimiter} is built with. */
export interface AuthFailureLimits {
  /** Failures within {@link AuthFailureLimits.window} that block an address. */
  maxFailures: number;
  /** Milliseconds: the window that counts failures, and how long a block lasts. */
  window: number;
  /** Most addresses remembered at once. Default {@link DEFAULT_MAX_TRACKED_ADDRESSES}. */
  maxAddresses?: number;
  /** The clock, in milliseconds (tests pass their own). Default `performance.now`. */
  now?: () => number;
}

/** One address's record. */
interface Failures {
  /** Failures since {@link Failures.since}. */
  count: number;
  /** When the first failure of this count happened. */
  since: number;
  /** Token checks under way. */
  checking: number;
  /** When the address was last seen: the map is ordered by it, oldest first. */
  latest: number;
  /** Until when the address is refused (0: not blocked). */
  blockedUntil: number;
}

/** Counts failed authentications per address and says which addresses are refused. */
export class AuthFailureLimiter {
  readonly #maxFailures: number;
  readonly #window: number;
  readonly #maxAddresses: number;
  readonly #now: () => number;
  /** Address key → its failures, in the order in which they were last seen, oldest first. */
  readonly #addresses = new Map<string, Failures>();

  /** @param limits How many failures block an address, for how long, and how many are kept. */
  constructor(limits: AuthFailureLimits) {
    this.#maxFailures = limits.maxFailures;
    this.#window = limits.window;
    this.#maxAddresses = limits.maxAddresses ?? DEFAULT_MAX_TRACKED_ADDRESSES;
    this.#now = limits.now ?? (() => performance.now());
  }

  /** Number of addresses remembered. */
  get size(): number {
    return this.#addresses.size;
  }

  /**
   * Milliseconds for which `address` stays blocked, or 0. An unknown address (`undefined`: the
   * server did not say) is never blocked.
   */
  blockedFor(address: string | undefined): number {
    if (address === undefined) return 0;
    const failures = this.#addresses.get(clientAddressKey(address));
    if (failures === undefined) return 0;
    return Math.max(0, failures.blockedUntil - this.#now());
  }

  /**
   * Starts checking a token presented from `address`: `false` (and nothing counted) when the
   * address is blocked, or has as many checks under way as it has failures left before a block.
   * Every `true` must be followed by one {@link AuthFailureLimiter.end}.
   */
  begin(address: string | undefined): boolean {
    if (address === undefined) return true;
    const failures = this.#touch(clientAddressKey(address), this.#now());
    if (failures.blockedUntil > this.#now()) return false;
    if (failures.count + failures.checking >= this.#maxFailures) return false;
    failures.checking++;
    return true;
  }

  /** Ends a check started by {@link AuthFailureLimiter.begin}; a failure counts. */
  end(address: string | undefined, succeeded: boolean): void {
    if (address === undefined) return;
    const now = this.#now();
    // Made anew if it was forgotten meanwhile (the table was full): a failure still counts.
    const failures = this.#touch(clientAddressKey(address), now);
    failures.checking = Math.max(0, failures.checking - 1);
    if (!succeeded) this.#fail(failures, now);
  }

  /** Counts a failure of `address` that was no token check (a malformed or missing hello). */
  recordFailure(address: string | undefined): void {
    if (address === undefined) return;
    const now = this.#now();
    this.#fail(this.#touch(clientAddressKey(address), now), now);
  }

  /** Counts a failure on a record just touched (its count is of the current window). */
  #fail(failures: Failures, now: number): void {
    if (++failures.count >= this.#maxFailures) {
      failures.blockedUntil = now + this.#window;
      failures.count = 0;
      failures.since = now;
    }
  }

  /** The record of `key`, made if need be, moved to the end of the order, its count current. */
  #touch(key: string, now: number): Failures {
    let failures = this.#addresses.get(key);
    if (failures !== undefined) {
      this.#addresses.delete(key); // re-inserted below: the map stays ordered by last sight
      if (now - failures.since >= this.#window) {
        failures.count = 0;
        failures.since = now;
      }
    } else {
      this.#forgetExpired(now);
      if (this.#addresses.size >= this.#maxAddresses) {
        // Full: forget the address seen longest ago, blocked or not.
        this.#addresses.delete(this.#addresses.keys().next().value!);
      }
      failures = { count: 0, since: now, checking: 0, latest: now, blockedUntil: 0 };
    }
    failures.latest = now;
    this.#addresses.set(key, failures);
    return failures;
  }

  /**
   * Drops addresses last seen a window ago or more, with no check under way: their count has
   * expired and so has any block (a block starts when the address is seen and lasts a window).
   * The oldest come first, so this stops at the first address still of use, and costs nothing
   * per call on average.
   */
  #forgetExpired(now: number): void {
    for (const [key, failures] of this.#addresses) {
      if (now - failures.latest < this.#window || failures.checking > 0) return;
      this.#addresses.delete(key);
    }
  }
}
