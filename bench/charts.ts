/**
 * The benchmark charts as SVG, built as plain strings: latency distributions (box plots on a log
 * axis, one row per subject) and rates (horizontal bars on a log axis, one block per scenario).
 * The output depends on the data only (no dates, no random ids), so that a rerun on the same
 * numbers gives the same file. A white background keeps it readable in GitHub's dark theme too.
 *
 * @module
 */

import type {
  Chart,
  DistributionChart,
  GroupResult,
  LatencyDistribution,
  RatesChart,
} from "./results.ts";

const FONT = "-apple-system, 'Segoe UI', Helvetica, Arial, sans-serif";
const INK = "#1f2328";
const MUTED = "#59636e";
const GRID = "#d1d9e0";
const COLOURS = { ours: "#0969da", peer: "#bc4c00", floor: "#818b98" } as const;
const WIDTH = 800;
/** Rough width of a character at 12 px (bold, to be safe), to size the label column. */
const CHAR = 7;

/** Text for SVG: XML-escaped, markdown code ticks dropped. */
export function escapeText(text: string): string {
  return text.replaceAll("`", "").replaceAll("&", "&amp;").replaceAll("<", "&lt;")
    .replaceAll(">", "&gt;").replaceAll('"', "&quot;");
}

/** A coordinate with one decimal at most; refuses what is not a finite number. */
function num(value: number): string {
  if (!Number.isFinite(value)) throw new Error(`chart coordinate ${value} is not finite`);
  return String(Math.round(value * 10) / 10);
}

function text(
  x: number,
  y: number,
  content: string,
  attributes: Record<string, string | number> = {},
): string {
  const extra = Object.entries(attributes).map(([name, value]) => ` ${name}="${value}"`).join("");
  return `<text x="${num(x)}" y="${num(y)}"${extra}>${escapeText(content)}</text>`;
}

function line(x1: number, y1: number, x2: number, y2: number, style: string): string {
  return `<line x1="${num(x1)}" y1="${num(y1)}" x2="${num(x2)}" y2="${num(y2)}" ${style}/>`;
}

/** Microseconds as `µs`, `ms` or `s`, three significant digits at most. */
export function formatMicros(value: number): string {
  if (value >= 1_000_000) return `${trim(value / 1_000_000)} s`;
  if (value >= 1000) return `${trim(value / 1000)} ms`;
  return `${trim(value)} µs`;
}

/** A rate as `1.2 k`, `340 k`, `3.1 M`. */
export function formatPerSecond(value: number): string {
  const units: [number, string][] = [[1e9, " G"], [1e6, " M"], [1e3, " k"]];
  for (const [size, suffix] of units) {
    if (value >= size) return `${trim(value / size)}${suffix}`;
  }
  return trim(value);
}

/** Three significant digits, without trailing zeros (`1.50` → `1.5`, `320` stays). */
function trim(value: number): string {
  return value >= 100 ? String(Math.round(value)) : String(Number(value.toPrecision(3)));
}

/** The 1-2-5 steps of the decades around `value`, ascending. */
function steps(low: number, high: number): number[] {
  const found: number[] = [];
  for (let decade = 10 ** Math.floor(Math.log10(low)); decade <= high * 10; decade *= 10) {
    for (const step of [1, 2, 5]) found.push(Number((decade * step).toPrecision(1)));
  }
  return found;
}

/** A log-scale axis from a 1-2-5 step below the values to one above, onto `[left, right]`. */
class LogAxis {
  readonly min: number;
  readonly max: number;

  constructor(values: number[], readonly left: number, readonly right: number) {
    const positive = values.filter((value) => Number.isFinite(value) && value > 0);
    const low = positive.length > 0 ? Math.min(...positive) : 1;
    const high = Math.max(positive.length > 0 ? Math.max(...positive) : 10, low * 2);
    const candidates = steps(low, high);
    this.min = candidates.filter((step) => step <= low).at(-1) ?? candidates[0];
    this.max = candidates.find((step) => step >= high) ?? candidates.at(-1)!;
  }

  /** The pixel of `value`; zero and values below the axis sit at its left end. */
  x(value: number): number {
    const clamped = Math.min(this.max, Math.max(this.min, value));
    const span = Math.log10(this.max / this.min);
    return this.left + (this.right - this.left) * (Math.log10(clamped / this.min) / span);
  }

  /**
   * Grid values: 1, 2, 5 of each decade, all labelled when a decade is wide enough for three
   * labels, else the powers of ten (and the axis' ends) only.
   */
  ticks(): { value: number; labelled: boolean }[] {
    const decadeWidth = (this.right - this.left) / Math.log10(this.max / this.min);
    const values = steps(this.min, this.max).filter((value) =>
      value >= this.min && value <= this.max
    );
    const powers = values.filter((value) =>
      Math.abs(Math.log10(value) - Math.round(Math.log10(value))) < 1e-9
    );
    // An end of the axis is labelled too, unless a power of ten is close beside it.
    const roomy = (value: number) =>
      powers.every((power) => Math.abs(this.x(power) - this.x(value)) >= 60);
    return values.map((value) => ({
      value,
      labelled: decadeWidth >= 180 || powers.includes(value) ||
        ((value === this.min || value === this.max) && roomy(value)),
    }));
  }

  /** Vertical grid lines from `top` to `bottom`. */
  grid(top: number, bottom: number): string[] {
    return this.ticks().map(({ value, labelled }) => {
      const x = this.x(value);
      return line(
        x,
        top,
        x,
        bottom,
        `stroke="${GRID}"${labelled ? "" : ' stroke-dasharray="2 3"'}`,
      );
    });
  }

  /** The tick labels, their baseline at `y`, and the axis line above them when `rule`. */
  labels(y: number, format: (value: number) => string, rule: boolean): string[] {
    const parts = this.ticks().filter(({ labelled }) => labelled).map(({ value }) =>
      text(this.x(value), y, format(value), { "text-anchor": "middle", fill: MUTED })
    );
    if (rule) parts.push(line(this.left, y - 15, this.right, y - 15, `stroke="${MUTED}"`));
    return parts;
  }
}

/** Words of `content` in lines of at most `width` characters. */
function wrap(content: string, width: number): string[] {
  const lines: string[] = [];
  for (const word of content.split(" ")) {
    const last = lines.at(-1);
    if (last !== undefined && last.length + 1 + word.length <= width) {
      lines[lines.length - 1] = `${last} ${word}`;
    } else lines.push(word);
  }
  return lines;
}

/** Where the chart's body starts: under the title and the subtitle's lines. */
function headerHeight(subtitle: string): number {
  return 42 + 16 * wrap(subtitle, SUBTITLE_CHARS).length;
}

const SUBTITLE_CHARS = Math.floor((WIDTH - 32) / 6.2);

function svg(height: number, title: string, subtitle: string, body: string[]): string {
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${num(height)}" ` +
    `viewBox="0 0 ${WIDTH} ${num(height)}" font-family="${FONT}" font-size="12" fill="${INK}">`,
    `<title>${escapeText(title)}</title>`,
    `<rect width="${WIDTH}" height="${num(height)}" fill="#ffffff"/>`,
    text(16, 24, title, { "font-size": 15, "font-weight": 600 }),
    ...wrap(subtitle, SUBTITLE_CHARS).map((part, i) =>
      text(16, 42 + 16 * i, part, { fill: MUTED })
    ),
    ...body,
    "</svg>",
    "",
  ].join("\n");
}

function labelWidth(names: string[]): number {
  const longest = Math.max(0, ...names.map((name) => escapeText(name).length));
  return Math.min(280, Math.max(120, Math.ceil(longest * CHAR) + 20));
}

const PERCENTILES: (keyof LatencyDistribution)[] = ["p1", "p10", "p50", "p90", "p99", "p999"];

/** Box plots of latency: whiskers p1–p99, box p10–p90, a bar at p50, a diamond at p99.9. */
function distributionChart(chart: DistributionChart): string {
  const ROW = 24;
  const subjects = chart.rows.filter((row) => row.role !== "floor");
  const floors = chart.rows.filter((row) => row.role === "floor");
  const left = labelWidth(chart.rows.map((row) => row.name));
  const right = WIDTH - 190;
  const values = chart.rows.flatMap((row) =>
    row.distribution === undefined ? [] : PERCENTILES.map((key) => row.distribution![key])
  );
  const axis = new LogAxis(values, left, right);
  const top = headerHeight(chart.subtitle);
  const body: string[] = [];
  let y = top;
  const drawRow = (row: DistributionChart["rows"][number]) => {
    const cy = y + ROW / 2;
    const colour = COLOURS[row.role];
    body.push(text(left - 10, cy + 4, row.name, {
      "text-anchor": "end",
      ...(row.role === "floor" ? { fill: MUTED } : {}),
      ...(row.role === "ours" ? { "font-weight": 600 } : {}),
    }));
    const d = row.distribution;
    if (d === undefined) {
      body.push(text(left + 6, cy + 4, `not measured${row.missing ? `: ${row.missing}` : ""}`, {
        fill: MUTED,
        "font-style": "italic",
      }));
    } else {
      const [x1, x10, x50, x90, x99, x999] = PERCENTILES.map((key) => axis.x(d[key]));
      const stroke = `stroke="${colour}" stroke-width="1.5"`;
      body.push(
        line(x1, cy, x10, cy, stroke),
        line(x90, cy, x99, cy, stroke),
        line(x1, cy - 4, x1, cy + 4, stroke),
        line(x99, cy - 4, x99, cy + 4, stroke),
        `<rect x="${num(x10)}" y="${num(cy - 6)}" width="${num(Math.max(1, x90 - x10))}" ` +
          `height="12" fill="${colour}" fill-opacity="0.25" ${stroke}/>`,
        line(x50, cy - 8, x50, cy + 8, `stroke="${colour}" stroke-width="3"`),
        `<path d="M${num(x999)} ${num(cy - 4)}l4 4-4 4-4-4z" fill="${colour}"/>`,
        text(right + 12, cy + 4, `p50 ${formatMicros(d.p50)} · p99 ${formatMicros(d.p99)}`, {
          fill: row.role === "floor" ? MUTED : INK,
        }),
      );
    }
    y += ROW;
  };
  subjects.forEach(drawRow);
  if (floors.length > 0) {
    y += 6;
    body.push(line(16, y, WIDTH - 16, y, `stroke="${GRID}"`));
    body.push(
      text(16, y + 16, "floors, timed alongside:", { fill: MUTED, "font-style": "italic" }),
    );
    y += 20;
    floors.forEach(drawRow);
  }
  const bottom = y + 4;
  const grid = [...axis.grid(top, bottom), ...axis.labels(bottom + 15, formatMicros, true)];
  const axisTitle = text((left + right) / 2, bottom + 32, "latency (log scale)", {
    "text-anchor": "middle",
    fill: MUTED,
  });
  // The key: one box drawn as the rows are, each part named.
  const ky = bottom + 56;
  const kx = 16;
  const kstroke = `stroke="${INK}" stroke-width="1.5"`;
  const key = [
    line(kx, ky, kx + 60, ky, kstroke),
    line(kx, ky - 4, kx, ky + 4, kstroke),
    line(kx + 60, ky - 4, kx + 60, ky + 4, kstroke),
    `<rect x="${kx + 14}" y="${ky - 6}" width="30" height="12" fill="${INK}" fill-opacity="0.15" ` +
    `${kstroke}/>`,
    line(kx + 26, ky - 8, kx + 26, ky + 8, `stroke="${INK}" stroke-width="3"`),
    `<path d="M${kx + 72} ${ky - 4}l4 4-4 4-4-4z" fill="${INK}"/>`,
    text(kx + 86, ky + 4, "whiskers p1–p99, box p10–p90, bar p50, ◆ p99.9", { fill: MUTED }),
    ...legend(
      kx + 400,
      ky,
      ([["ours", "ours"], ["peer", "other libraries"], ["floor", "floors"]] as const)
        .filter(([role]) => chart.rows.some((row) => row.role === role))
        .map(([role, name]): [string, string] => [name, COLOURS[role]]),
    ),
  ];
  return svg(ky + 20, chart.title, chart.subtitle, [...grid, ...body, axisTitle, ...key]);
}

function legend(x: number, y: number, entries: [string, string][]): string[] {
  const parts: string[] = [];
  for (const [name, colour] of entries) {
    parts.push(`<rect x="${num(x)}" y="${num(y - 6)}" width="12" height="12" fill="${colour}"/>`);
    parts.push(text(x + 17, y + 4, name, { fill: MUTED }));
    x += 17 + name.length * CHAR + 18;
  }
  return parts;
}

/** Horizontal bars on a log axis, a block per scenario, a bar per subject, values at the ends. */
function ratesChart(chart: RatesChart): string {
  const BAR = 14;
  const HEADING = 22;
  const names = chart.blocks.flatMap((block) => block.bars.map((bar) => bar.name));
  const left = labelWidth(names);
  const right = WIDTH - 130;
  const values = chart.blocks.flatMap((block) =>
    block.bars.flatMap((bar) => (bar.value === undefined ? [] : [bar.value]))
  );
  const axis = new LogAxis(values, left, right);
  const top = headerHeight(chart.subtitle) + 14;
  const body: string[] = axis.labels(top - 6, formatPerSecond, false);
  let y = top;
  for (const block of chart.blocks) {
    body.push(text(16, y + 15, block.title, { "font-weight": 600 }));
    y += HEADING;
    body.push(...axis.grid(y, y + block.bars.length * BAR));
    for (const bar of block.bars) {
      const cy = y + BAR / 2;
      body.push(text(left - 10, cy + 4, bar.name, {
        "text-anchor": "end",
        ...(bar.ours ? { "font-weight": 600 } : {}),
      }));
      if (bar.value === undefined) {
        body.push(text(left + 6, cy + 4, `not measured${bar.note ? `: ${bar.note}` : ""}`, {
          fill: MUTED,
          "font-style": "italic",
        }));
      } else {
        const end = Math.max(left + 1, axis.x(bar.value));
        body.push(
          `<rect x="${num(left)}" y="${num(y + 2)}" width="${num(end - left)}" ` +
            `height="${BAR - 4}" fill="${bar.ours ? COLOURS.ours : COLOURS.floor}"/>`,
          text(
            end + 6,
            cy + 4,
            `${formatPerSecond(bar.value)}${bar.note ? ` [${bar.note}]` : ""}`,
            bar.ours ? { "font-weight": 600 } : { fill: MUTED },
          ),
        );
      }
      y += BAR;
    }
    y += 8;
  }
  const bottom = y;
  const labels = axis.labels(bottom + 15, formatPerSecond, true);
  const axisTitle = text((left + right) / 2, bottom + 32, `${chart.subtitle} (log scale)`, {
    "text-anchor": "middle",
    fill: MUTED,
  });
  return svg(bottom + 48, chart.title, chart.subtitle, [...body, ...labels, axisTitle]);
}

/** The SVG document of a chart. */
export function renderChart(chart: Chart): string {
  return chart.type === "distribution" ? distributionChart(chart) : ratesChart(chart);
}

/**
 * The percentiles a distribution chart draws, from samples in microseconds (sorted or not);
 * `undefined` when there are none.
 */
export function distributionOf(samples: readonly number[]): LatencyDistribution | undefined {
  if (samples.length === 0) return undefined;
  const sorted = [...samples].sort((a, b) => a - b);
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
  return {
    samples: sorted.length,
    p1: at(0.01),
    p10: at(0.1),
    p50: at(0.5),
    p90: at(0.9),
    p99: at(0.99),
    p999: at(0.999),
  };
}

/**
 * The rates chart of a table of rates: a block per row counted in operations per second, a bar
 * per subject; `undefined` when the group has no such row.
 */
export function ratesChartOf(group: GroupResult, id: string): RatesChart | undefined {
  const unit = group.rateUnit ?? "Operations per second";
  const blocks = group.scenarios.filter((row) => row.unit === "ops/s").map((row) => ({
    title: row.title,
    bars: group.subjects.map((subject, index) => {
      const cell = row.cells[subject.name];
      return {
        name: subject.name,
        ours: index === 0,
        value: cell?.opsPerSec,
        note: cell?.skipped ?? cell?.note ?? (cell === undefined ? subject.unavailable : undefined),
      };
    }),
  }));
  if (blocks.length === 0) return undefined;
  return {
    type: "rates",
    id,
    title: group.title,
    subtitle: `${unit.split(/ of | \(|,/)[0]}, higher is better`,
    blocks,
  };
}
