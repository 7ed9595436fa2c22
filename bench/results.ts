/**
 * What a benchmark group measures, as plain data: a group run in another process (Node, a worker
 * process) sends it back as JSON.
 *
 * @module
 */

/** One subject in one scenario. */
export interface Cell {
  /** Median operations per second; absent when skipped. */
  opsPerSec?: number;
  /** Median bytes of heap retained afterwards, for scenarios that measure it. */
  heapBytes?: number;
  /** Median of a count the scenario reports instead of a rate (e.g. open connections). */
  count?: number;
  /** Why this subject was not measured here. */
  skipped?: string;
  /** How this subject's run differed from the row title (e.g. fewer tasks), shown in the cell. */
  note?: string;
}

/** One row of a table. */
export interface ScenarioResult {
  /** The row title. */
  title: string;
  /** What the number is: operations per second, or a count. */
  unit: "ops/s" | "count";
  /** Whether the reference subject must be at least as fast as the fastest peer here. */
  targetFastest: boolean;
  /** The target column's text when the group judges the row itself (met or missed, and why). */
  target?: string;
  /** Subject name to its cell. */
  cells: Record<string, Cell>;
}

/** A subject, as listed under the table. */
export interface SubjectInfo {
  /** Column title. */
  name: string;
  /** How it is driven. */
  how: string;
  /** Why it is missing in this runtime, if it is. */
  unavailable?: string;
}

/** One table: a group of scenarios measured in one runtime. */
export interface GroupResult {
  /** The table title. */
  title: string;
  /** The runtime, e.g. `Deno 2.9.6 (V8 15.0)`. */
  runtime: string;
  /** The subjects, the reference (compared against the others) first. */
  subjects: SubjectInfo[];
  /** The rows. */
  scenarios: ScenarioResult[];
  /** Rounds per cell (the median is shown). */
  rounds: number;
  /** Remarks measured along the way (e.g. no GC exposed, so no heap numbers). */
  remarks: string[];
  /** What the rates count, when it is not "Operations per second" (wall clock). */
  rateUnit?: string;
  /** The target column's title, when it is not "≥ fastest peer". */
  targetHeader?: string;
  /**
   * The group's body as ready markdown (its table and notes), for a group whose rows are not one
   * rate per subject (latency percentiles, violations); `scenarios` then stays empty.
   */
  markdown?: string;
}
