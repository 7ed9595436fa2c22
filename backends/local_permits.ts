/**
 * LocalState's counting semaphores (issue 13): per permit key, the number of holders and the queue
 * of waiting requests, each judged by its own limit, first come, first served. Grants and releases
 * are O(1); a key takes memory only while a permit of it is held or awaited.
 */

import { BasePermit, RELEASED } from "../internal/base_lock.ts";
import { busy, closed } from "../internal/failures.ts";
import { append, type List, unlink } from "../internal/intrusive_list.ts";
import { RequestWait } from "../internal/request_wait.ts";
import type { Permit, PermitRequest } from "../lock.ts";

/** Holders and waiters of one permit key; deleted once it has neither. */
class PermitEntry implements List<LocalPermit> {
  /** Number of held permits. */
  count = 0;
  /** The queue of waiting requests, first come first. */
  head: LocalPermit | undefined = undefined;
  tail: LocalPermit | undefined = undefined;

  get unused(): boolean {
    return this.count === 0 && this.head === undefined;
  }

  /** Whether the request at the head of the queue fits: fewer holders than its own limit. */
  fits(limit: number): boolean {
    return this.count < limit;
  }
}

/** A request, then a held permit: in its key's queue while waiting, in the held list after. */
class LocalPermit extends BasePermit {
  prev: LocalPermit | undefined = undefined;
  next: LocalPermit | undefined = undefined;
  /** Set while the request waits in its key's queue. */
  wait: RequestWait<Permit> | undefined = undefined;

  constructor(
    readonly table: PermitTable,
    readonly entry: PermitEntry,
    key: string,
    limit: number,
  ) {
    super(key, limit);
  }

  protected unlock(): Promise<void> {
    this.table.release(this);
    return RELEASED;
  }
}

/** The permit keys of one LocalState. */
export class PermitTable {
  readonly #entries = new Map<string, PermitEntry>();
  /** Every held permit, so that `close()` can abort their signals. */
  readonly #held: List<LocalPermit> = { head: undefined, tail: undefined };
  #closed = false;

  /** Permit keys held or awaited right now. */
  get size(): number {
    return this.#entries.size;
  }

  /** Grants at once when nobody waits and the holders are fewer than the limit, else queues. */
  acquire(key: string, request: PermitRequest): Promise<Permit> {
    const { limit } = request;
    let entry = this.#entries.get(key);
    if (entry === undefined) {
      entry = new PermitEntry();
      this.#entries.set(key, entry);
    } else if (entry.head !== undefined || !entry.fits(limit)) {
      if (request.tryOnce) return Promise.reject(busy({ key, exclusive: false, limit }));
      const permit = new LocalPermit(this, entry, key, limit);
      permit.wait = new RequestWait<Permit>(permit, request, () => this.#gaveUp(permit));
      append(entry, permit);
      return permit.wait.promise;
    }
    const permit = new LocalPermit(this, entry, key, limit);
    this.#hold(permit);
    return Promise.resolve(permit);
  }

  /** Whether a request with this limit and `timeout: 0` would be granted now. */
  probe(key: string, limit: number): boolean {
    const entry = this.#entries.get(key);
    return entry === undefined || (entry.head === undefined && entry.fits(limit));
  }

  /** Fails every waiting request and marks every held permit lost. */
  close(): void {
    this.#closed = true;
    for (const entry of this.#entries.values()) {
      for (let permit = entry.head; permit !== undefined; permit = entry.head) {
        unlink(entry, permit);
        const wait = permit.wait!;
        permit.wait = undefined;
        wait.fail(closed(permit));
      }
    }
    this.#entries.clear();
    for (let permit = this.#held.head; permit !== undefined; permit = this.#held.head) {
      unlink(this.#held, permit);
      permit.lose("closed", "the state was closed");
    }
  }

  /** Called by a holder's `release()`. */
  release(permit: LocalPermit): void {
    if (this.#closed) return;
    unlink(this.#held, permit);
    const entry = permit.entry;
    entry.count--;
    this.#settle(entry, permit.key);
  }

  #hold(permit: LocalPermit): void {
    permit.entry.count++;
    append(this.#held, permit);
  }

  /** Grants the head of the queue while it fits, one O(1) step each; forgets an unused key. */
  #settle(entry: PermitEntry, key: string): void {
    for (let permit = entry.head; permit !== undefined; permit = entry.head) {
      if (!entry.fits(permit.limit)) break;
      unlink(entry, permit);
      const wait = permit.wait!;
      permit.wait = undefined;
      this.#hold(permit);
      wait.grant(permit);
    }
    if (entry.unused) this.#entries.delete(key);
  }

  /** A waiting request timed out or was aborted: it leaves the queue and nothing behind. */
  #gaveUp(permit: LocalPermit): void {
    if (permit.wait === undefined) return;
    permit.wait = undefined;
    unlink(permit.entry, permit);
    // The head that leaves may have had a smaller limit than those behind it.
    this.#settle(permit.entry, permit.key);
  }
}
