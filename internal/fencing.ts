/**
 * Fencing tokens of the in-process backend (issue 12): one counter for the whole process, kept
 * above the wall clock so that a restarted process goes on above the tokens of the one before.
 */

/** Tokens per millisecond of wall-clock time below which the counter never falls. */
const TOKENS_PER_MS_BITS = 20n;

let last = 0n;

/**
 * The next token of this process: greater than every token it made before, and at least the
 * wall-clock time in milliseconds times 2^20. A restarted process therefore starts above every
 * token of the one before, unless the system clock stepped back by more than the time between,
 * or the one before made over 2^20 tokens a millisecond (a billion a second) for long. Until the
 * year 2248 a token fits PostgreSQL's `bigint` (below 2^63).
 */
export function nextProcessToken(): bigint {
  const floor = BigInt(Date.now()) << TOKENS_PER_MS_BITS;
  last = last >= floor ? last + 1n : floor;
  return last;
}
