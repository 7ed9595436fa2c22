/**
 * Markdown rendering of benchmark groups: one table per group, the reference subject (the first)
 * against each peer, and whether the speed target is met.
 *
 * @module
 */

import type { Cell, Chart, GroupResult, ScenarioResult } from "./results.ts";

/** Where the full run writes the charts, relative to the repository (and to BENCHMARKS.md). */
export const CHART_DIR = "bench/charts";

/** The markdown image of a chart, as BENCHMARKS.md shows it. */
export function chartLink(chart: Chart): string {
  return `![${chart.title.replaceAll(/[[\]]/g, "")}](${CHART_DIR}/${chart.id}.svg)`;
}

/** `1234567` as `1.23 M`, three significant digits. */
export function formatRate(value: number): string {
  const units: [number, string][] = [[1e9, " G"], [1e6, " M"], [1e3, " k"]];
  for (const [size, suffix] of units) {
    if (value >= size) return `${(value / size).toPrecision(3)}${suffix}`;
  }
  return value.toPrecision(3);
}

/** Bytes as megabytes with one decimal; GC noise below zero shows as 0. */
export function formatBytes(bytes: number): string {
  return `${(Math.max(0, bytes) / 1e6).toFixed(1)} MB`;
}

/** A speed ratio, `reference ÷ peer`: above 1× the reference is faster. */
export function formatRatio(ratio: number): string {
  return `${ratio >= 10 ? ratio.toFixed(0) : ratio.toPrecision(2)}×`;
}

function value(cell: Cell | undefined, unit: ScenarioResult["unit"]): number | undefined {
  return unit === "count" ? cell?.count : cell?.opsPerSec;
}

function withNote(text: string, cell: Cell): string {
  return cell.note === undefined ? text : `${text} [${cell.note}]`;
}

function rateCell(cell: Cell | undefined, reference: Cell | undefined, isReference: boolean) {
  if (cell === undefined) return "";
  if (cell.skipped !== undefined) return `— (${cell.skipped})`;
  if (cell.opsPerSec === undefined) return "";
  const rate = formatRate(cell.opsPerSec);
  if (isReference || reference?.opsPerSec === undefined) return withNote(`**${rate}**`, cell);
  return withNote(`${rate} (${formatRatio(reference.opsPerSec / cell.opsPerSec)})`, cell);
}

function countCell(cell: Cell | undefined): string {
  if (cell === undefined) return "";
  if (cell.skipped !== undefined) return `— (${cell.skipped})`;
  return cell.count === undefined ? "" : withNote(String(Math.round(cell.count)), cell);
}

/** The target column: is the reference at least as fast as the fastest peer? */
function targetCell(row: ScenarioResult, names: string[]): string {
  if (row.target !== undefined) return row.target;
  if (!row.targetFastest) return "";
  const reference = value(row.cells[names[0]], row.unit);
  let fastest: [string, number] | undefined;
  for (const name of names.slice(1)) {
    const peer = value(row.cells[name], row.unit);
    if (peer !== undefined && (fastest === undefined || peer > fastest[1])) fastest = [name, peer];
  }
  if (reference === undefined || fastest === undefined) return "";
  const ratio = reference / fastest[1];
  return `${ratio >= 1 ? "met" : "**missed**"}: ${formatRatio(ratio)} ${fastest[0]}`;
}

/** Renders one group as a markdown table with its notes. */
export function renderGroup(group: GroupResult): string {
  if (group.markdown !== undefined) return `### ${group.title}\n\n${group.markdown}\n`;
  const names = group.subjects.map((subject) => subject.name);
  const reference = names[0];
  const hasTarget = group.scenarios.some((row) => row.targetFastest || row.target !== undefined);
  const targetHeader = group.targetHeader ?? "target: ≥ fastest peer";
  const header = ["Scenario", ...names, ...(hasTarget ? [targetHeader] : [])];
  const lines = [
    `| ${header.join(" | ")} |`,
    `| ${header.map((_, i) => (i === 0 ? "---" : "---:")).join(" | ")} |`,
  ];
  for (const row of group.scenarios) {
    const ref = row.cells[reference];
    const cells = names.map((name, i) =>
      row.unit === "count" ? countCell(row.cells[name]) : rateCell(row.cells[name], ref, i === 0)
    );
    const target = hasTarget ? [targetCell(row, names)] : [];
    lines.push(`| ${[row.title, ...cells, ...target].join(" | ")} |`);
    if (names.some((name) => row.cells[name]?.heapBytes !== undefined)) {
      const heaps = names.map((name) => {
        const bytes = row.cells[name]?.heapBytes;
        return bytes === undefined ? "" : formatBytes(bytes);
      });
      lines.push(`| ↳ heap retained afterwards | ${heaps.join(" | ")} |${hasTarget ? " |" : ""}`);
    }
  }
  const subjects = group.subjects.map(({ name, how, unavailable }) =>
    `- **${name}**: ${how}${unavailable ? ` — not measured: ${unavailable}` : ""}`
  );
  return [
    `### ${group.title}`,
    "",
    `Median of ${group.rounds} round${group.rounds === 1 ? "" : "s"} after warm-up. ` +
    `${
      group.rateUnit ?? "Operations per second"
    }, higher is better; in brackets ${reference}'s rate ÷ the peer's ` +
    `(above 1× ${reference} is faster).`,
    "",
    ...lines,
    "",
    ...(group.charts ?? []).flatMap((chart) => [chartLink(chart), ""]),
    ...subjects,
    ...group.remarks.map((remark) => `- ${remark}`),
    "",
  ].join("\n");
}
