/**
 * `shared-state id [--namespace NS] KEY`: the 64-bit PostgreSQL advisory lock id of a key, and
 * how to find it in `pg_locks`. Imports the id function without the PostgreSQL driver, so that it
 * works where only the package is installed.
 */

import { advisoryLockId } from "../backends/postgres/lock_id.ts";
import type { IdArguments } from "./args.ts";

/**
 * The lines `shared-state id` prints: the id alone first (for scripts: `… | head -n 1`), then
 * its `pg_locks` columns and a query that lists the key's holders and waiters.
 */
export function lockIdReport(args: IdArguments): string[] {
  const id = advisoryLockId(args.namespace, args.key);
  // pg_locks shows a bigint advisory key as two unsigned 32-bit oids, objsubid 1.
  const unsigned = BigInt.asUintN(64, id);
  const classid = unsigned >> 32n;
  const objid = unsigned & 0xffffffffn;
  return [
    String(id),
    `pg_locks: locktype = 'advisory', classid = ${classid}, objid = ${objid}, objsubid = 1`,
    "holders and waiters:",
    "  SELECT l.pid, l.mode, l.granted, a.application_name, a.client_addr",
    "  FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid",
    `  WHERE l.locktype = 'advisory' AND l.classid = ${classid} AND l.objid = ${objid}` +
    " AND l.objsubid = 1;",
  ];
}
