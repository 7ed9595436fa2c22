/**
 * What the broker (or any caller inside the package) tells a backend about the requests and locks
 * it makes for its clients, for `inspect`: who, and since when. Kept beside them in a WeakMap, so
 * that a state that is never asked pays nothing and keeps nothing.
 */

import type { LockHolder } from "../lock.ts";

/** Who a request or lock is for, and since when. */
export interface HolderLabel {
  readonly owner?: string;
  readonly since?: Date;
}

const labels = new WeakMap<object, HolderLabel>();

/**
 * Labels a held lock, or the signal of a request (the request is found by its signal while it
 * waits).
 */
export function setLabel(target: object, label: HolderLabel): void {
  labels.set(target, label);
}

/** The label of a lock or a request's signal, if any. */
export function labelOf(target: object | undefined): HolderLabel | undefined {
  return target === undefined ? undefined : labels.get(target);
}

/** A holder entry with only the fields that are known (so that it compares and prints cleanly). */
export function holderEntry(
  exclusive: boolean,
  since: Date | undefined,
  owner: string | undefined,
): LockHolder {
  const holder: LockHolder = { exclusive };
  if (since !== undefined) holder.since = since;
  if (owner !== undefined) holder.owner = owner;
  return holder;
}

/**
 * When a waiting request was made, where the request tells without a clock read of its own: a
 * request with a timeout has its deadline on the `performance.now()` clock.
 */
export function requestTime(
  request: { readonly deadline: number | undefined; readonly timeout: number | undefined },
): Date | undefined {
  if (request.deadline === undefined || request.timeout === undefined) return undefined;
  return new Date(performance.timeOrigin + request.deadline - request.timeout);
}
