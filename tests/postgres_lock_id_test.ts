/** Lock ids: the JavaScript function, its SHA-256, and the documented SQL expression agree. */

import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { ADVISORY_LOCK_ID_SQL, advisoryLockId } from "../backends/postgres.ts";
import { sha256 } from "../backends/postgres/sha256.ts";
import { random } from "../testing/helpers.ts";
import { adminClient, postgresSkip } from "./postgres_env.ts";

const skip = await postgresSkip();
const encoder = new TextEncoder();

/** A random string mixing ASCII, NUL, accents, CJK, emoji (surrogate pairs) and long runs. */
function randomKey(next: () => number): string {
  const pools = ["abcxyz/-_.: ", "\u0000", "éüßøñ", "中文字", "😀🚀🧪", "\u{10FFFF}\u0001\u007f"];
  const length = Math.floor(next() * (next() < 0.05 ? 3000 : 40));
  let key = "";
  for (let i = 0; i < length; i++) {
    const chars = [...pools[Math.floor(next() * pools.length)]];
    key += chars[Math.floor(next() * chars.length)];
  }
  return key;
}

describe("advisoryLockId", () => {
  it("is the first 8 bytes of SHA-256 over int4be(len(ns)) || ns || key, signed", async () => {
    const next = random(7);
    for (let i = 0; i < 200; i++) {
      const namespace = randomKey(next);
      const key = randomKey(next);
      const ns = encoder.encode(namespace);
      const k = encoder.encode(key);
      const input = new Uint8Array(4 + ns.length + k.length);
      new DataView(input.buffer).setUint32(0, ns.length);
      input.set(ns, 4);
      input.set(k, 4 + ns.length);
      const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", input));
      assert.deepEqual(sha256(input), digest, "the sync SHA-256 matches WebCrypto");
      assert.equal(advisoryLockId(namespace, key), new DataView(digest.buffer).getBigInt64(0));
    }
  });

  it("matches a fixed vector (the id must never change between releases)", () => {
    // sha256(00 00 00 00) begins df3f6198 04a92fdb: the empty namespace and key.
    assert.equal(advisoryLockId("", ""), BigInt.asIntN(64, 0xdf3f619804a92fdbn));
    assert.equal(advisoryLockId("app", "a"), advisoryLockId("app", "a"));
    assert.notEqual(advisoryLockId("app", "a"), advisoryLockId("ap", "pa"));
    assert.notEqual(advisoryLockId("a", "bc"), advisoryLockId("ab", "c"));
  });

  it("rejects non-strings with TypeError", () => {
    assert.throws(() => advisoryLockId(1 as never, "a"), TypeError);
    assert.throws(() => advisoryLockId("a", null as never), TypeError);
  });

  describe("against PostgreSQL", { skip }, () => {
    const sql = skip ? undefined : adminClient();
    after(() => sql?.end());

    it("agrees with ADVISORY_LOCK_ID_SQL on 1,000 random keys, unicode and NUL included", async () => {
      const next = random(42);
      const pairs = Array.from({ length: 1000 }, (_, i) => ({
        namespace: i % 3 === 0 ? "" : randomKey(next),
        key: randomKey(next),
      }));
      const hex = (text: string) =>
        Array.from(encoder.encode(text), (byte) => byte.toString(16).padStart(2, "0")).join("");
      const expression = ADVISORY_LOCK_ID_SQL.replaceAll("$1", "ns").replaceAll("$2", "k");
      const rows = await sql!.unsafe(
        `select ${expression}::text as id
         from unnest($1::text[], $2::text[]) with ordinality as t(ns_hex, k_hex, i),
           lateral (select decode(ns_hex, 'hex') as ns, decode(k_hex, 'hex') as k) as bytes
         order by i`,
        [pairs.map((p) => hex(p.namespace)), pairs.map((p) => hex(p.key))],
      );
      assert.equal(rows.length, 1000);
      pairs.forEach((pair, i) => {
        assert.equal(
          BigInt(rows[i].id),
          advisoryLockId(pair.namespace, pair.key),
          `key #${i} ${JSON.stringify(pair.key.slice(0, 30))}`,
        );
      });
    });

    it("names the lock that pg_locks shows (classid high, objid low, objsubid 1)", async () => {
      const id = advisoryLockId("lock-id-test", "a\u0000b");
      const [row] = await sql!.begin(async (tx) => {
        await tx`select pg_advisory_xact_lock(${id.toString()}::int8)`;
        return await tx`
          select classid::int8 as hi, objid::int8 as lo, objsubid from pg_locks
          where locktype = 'advisory' and pid = pg_backend_pid()`;
      });
      assert.equal(BigInt(row.hi), (id >> 32n) & 0xffffffffn);
      assert.equal(BigInt(row.lo), id & 0xffffffffn);
      assert.equal(row.objsubid, 1);
    });
  });
});
