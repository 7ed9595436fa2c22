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
  /**
   * Charts of this group, drawn by `charts.ts` into `bench/charts/<id>.svg` when the full run
   * writes BENCHMARKS.md, and shown under the group's table.
   */
  charts?: Chart[];
}

/** Percentiles of a latency distribution, in microseconds. */
export interface LatencyDistribution {
  /** How many samples the percentiles come from. */
  samples: number;
  p1: number;
  p10: number;
  p50: number;
  p90: number;
  p99: number;
  p999: number;
}

/** One row of a distribution chart: a subject, or a floor it is judged against. */
export interface DistributionRow {
  name: string;
  /** Our subject (highlighted), a peer library, or a floor (grey, drawn below the subjects). */
  role: "ours" | "peer" | "floor";
  /** Absent when the subject was not measured. */
  distribution?: LatencyDistribution;
  /** Why it was not measured, shown in place of the box. */
  missing?: string;
}

/** Latency distributions as box plots on a log axis, one row per subject. */
export interface DistributionChart {
  type: "distribution";
  /** The file name without `.svg`, unique in the run (e.g. `broker-uncontended`). */
  id: string;
  /** The heading inside the chart. */
  title: string;
  /** What is timed, under the heading (e.g. "acquire+release, one process, no contention"). */
  subtitle: string;
  rows: DistributionRow[];
}

/** One bar of a rates chart. */
export interface RateBar {
  name: string;
  ours: boolean;
  /** Absent when not measured here. */
  value?: number;
  /** Shown after the value (e.g. a different task count), or in place of it when missing. */
  note?: string;
}

/** Rates per scenario per subject as horizontal bars on a log axis. */
export interface RatesChart {
  type: "rates";
  /** The file name without `.svg`, unique in the run. */
  id: string;
  title: string;
  /** What the rates count (e.g. "operations per CPU-second"). */
  subtitle: string;
  /** One block of bars per scenario. */
  blocks: { title: string; bars: RateBar[] }[];
}

/** A chart of a group, as plain data. */
export type Chart = DistributionChart | RatesChart;
