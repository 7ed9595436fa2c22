/** The lines `shared-state` writes on stderr, all in one voice: `shared-state: …`. */

import process from "node:process";

/** Writes `shared-state: <text>` on stderr. */
export function tell(text: string): void {
  process.stderr.write(`shared-state: ${text}\n`);
}

/** `exclusive lock on "key"`, as the library's errors say it. */
export function lockName(key: string, exclusive: boolean): string {
  return `${exclusive ? "exclusive" : "shared"} lock on ${JSON.stringify(key)}`;
}

/** Issue 13: `permit on "key" (limit 3)`, as LockFailed names a permit. */
export function permitName(key: string, limit: number): string {
  return `permit on ${JSON.stringify(key)} (limit ${limit})`;
}

/** A duration for people: `1.5 s`, `42 s`, `1 h 3 min`. */
export function duration(ms: number): string {
  const s = ms / 1000;
  if (s < 10) return `${Math.round(s * 10) / 10} s`;
  if (s < 120) return `${Math.round(s)} s`;
  const minutes = Math.round(s / 60);
  return minutes < 120 ? `${minutes} min` : `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
}
