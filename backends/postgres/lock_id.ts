/**
 * From a namespace and a key to the 64-bit id of a PostgreSQL advisory lock, in JavaScript and in
 * SQL, so that an operator can find a key in `pg_locks` and another language can take the same lock.
 */

import { sha256 } from "./sha256.ts";

const encoder = new TextEncoder();

/**
 * The bytes that are hashed: the namespace's UTF-8 length as 4 bytes big-endian, the namespace in
 * UTF-8, then the key in UTF-8. The length prefix keeps ("ab", "c") and ("a", "bc") apart.
 */
export function lockIdInput(namespace: string, key: string): Uint8Array {
  const ns = encoder.encode(namespace);
  const k = encoder.encode(key);
  const input = new Uint8Array(4 + ns.length + k.length);
  new DataView(input.buffer).setUint32(0, ns.length);
  input.set(ns, 4);
  input.set(k, 4 + ns.length);
  return input;
}

/**
 * The id of the PostgreSQL advisory lock that {@link PostgresState} takes for `key` in
 * `namespace`: the first 8 bytes of a SHA-256 digest, read as a signed 64-bit big-endian integer.
 *
 * The digest is taken over `int4be(byteLength(ns)) || utf8(ns) || utf8(key)`. Strings are encoded
 * as UTF-8; a lone surrogate (not valid Unicode) becomes U+FFFD, as `TextEncoder` does.
 * {@link ADVISORY_LOCK_ID_SQL} computes the same id inside PostgreSQL.
 *
 * @example
 * ```ts
 * import { advisoryLockId } from "@momotor/shared-state/postgres";
 *
 * const id = advisoryLockId("my-app", "grading/42");
 * // In pg_locks: classid = high 32 bits, objid = low 32 bits, objsubid = 1.
 * const classid = (id >> 32n) & 0xffffffffn;
 * const objid = id & 0xffffffffn;
 * ```
 *
 * @param namespace Keeps applications that share a database apart.
 * @param key The lock's key: any string.
 * @returns A signed 64-bit integer, as PostgreSQL's `bigint`.
 */
export function advisoryLockId(namespace: string, key: string): bigint {
  if (typeof namespace !== "string") {
    throw new TypeError(`namespace must be a string, got ${typeof namespace}`);
  }
  if (typeof key !== "string") throw new TypeError(`key must be a string, got ${typeof key}`);
  const digest = sha256(lockIdInput(namespace, key));
  return new DataView(digest.buffer).getBigInt64(0);
}

/**
 * A SQL expression that gives {@link advisoryLockId} inside PostgreSQL 11 or later. `$1` is the
 * namespace and `$2` the key, both as `bytea` holding UTF-8 (text cannot hold NUL; for a key
 * without NUL, `convert_to(key, 'UTF8')` gives the bytes).
 *
 * @example Find who holds a key
 * ```sql
 * SELECT l.pid, l.mode, l.granted
 * FROM pg_locks l
 * WHERE l.locktype = 'advisory' AND l.objsubid = 1
 *   AND ((l.classid::bigint << 32) | l.objid::bigint) =
 *     ('x' || encode(substr(sha256(int4send(length(convert_to('my-app', 'UTF8')))
 *       || convert_to('my-app', 'UTF8') || convert_to('grading/42', 'UTF8')), 1, 8), 'hex'))
 *       ::bit(64)::bigint;
 * ```
 */
export const ADVISORY_LOCK_ID_SQL: string =
  "('x' || encode(substr(sha256(int4send(length($1::bytea)) || $1::bytea || $2::bytea), 1, 8), 'hex'))::bit(64)::bigint";

// ---- Permit slots (issue 13) ----

/**
 * Slot `slot` of a permit key as the two `int4` keys of a PostgreSQL advisory lock (the two-key
 * form, `objsubid = 2` in `pg_locks`: apart from every lock id, which uses the one-`int8` form):
 * the high 32 bits of the key's {@link advisoryLockId}, and its low 32 bits plus `slot`, modulo
 * 2^32; both as signed `int4`.
 *
 * @param id The key's lock id ({@link advisoryLockId}).
 * @param slot A slot number, from 0 to the limit minus one.
 * @returns `[key1, key2]` for `pg_advisory_lock(int4, int4)`.
 */
export function permitSlotKeys(id: bigint, slot: number): [number, number] {
  const unsigned = BigInt.asUintN(64, id);
  return [
    Number(BigInt.asIntN(32, unsigned >> 32n)),
    Number(BigInt.asIntN(32, (unsigned & 0xffffffffn) + BigInt(slot))),
  ];
}

/**
 * The advisory lock that {@link PostgresState} takes for slot `slot` of the permit key `key` in
 * `namespace` (`getPermit`): the two `int4` keys of `pg_advisory_lock(key1, key2)`. A permit with
 * limit L holds one of the slots 0 to L-1. In `pg_locks`: `classid` = key1, `objid` = key2 (both
 * read as unsigned), `objsubid = 2`.
 *
 * @example
 * ```ts
 * import { advisoryPermitSlot } from "@momotor/shared-state/postgres";
 *
 * const [key1, key2] = advisoryPermitSlot("my-app", "payment-api", 0);
 * // Another language takes slot 0 with: select pg_try_advisory_lock(key1, key2)
 * ```
 *
 * @param namespace Keeps applications that share a database apart.
 * @param key The permit key: any string.
 * @param slot A slot number: a non-negative safe integer.
 * @returns `[key1, key2]`, each a signed 32-bit integer.
 */
export function advisoryPermitSlot(namespace: string, key: string, slot: number): [number, number] {
  if (!Number.isSafeInteger(slot) || slot < 0) {
    throw new RangeError(`slot must be a non-negative safe integer, got ${slot}`);
  }
  return permitSlotKeys(advisoryLockId(namespace, key), slot);
}
