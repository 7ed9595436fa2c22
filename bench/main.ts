/**
 * `deno task bench`: every benchmark group side by side with its peers, printed as markdown tables
 * and written to `BENCHMARKS.md` with the machine, the runtime versions and the date.
 *
 *     deno task bench                       # everything (several minutes), writes BENCHMARKS.md
 *     deno task bench --smoke               # CI: a tiny round of everything; numbers meaningless
 *     deno task bench --only=deno,node      # some groups: deno, node, postgres, broker
 *
 * With `BENCHMARKS.md` go the charts, SVG files in `bench/charts/` that it shows (`charts.ts`).
 * `BENCH_SMOKE=1` is the same as `--smoke`. The smoke round never writes `BENCHMARKS.md` or the
 * charts (it builds them, unwritten) and never fails on a timing; it fails only when the benchmark code itself breaks. The Node group
 * runs on the npm build (made first, without its tests, when missing or stale); the PostgreSQL
 * group needs `DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`). A group that
 * cannot run says why and is skipped (with `REQUIRE_POSTGRES=1`, a missing database fails).
 *
 * @module
 */

import os from "node:os";
import { FULL_EFFORT, GroupSkipped, SMOKE_EFFORT } from "./harness.ts";
import { runInProcessGroup } from "./in_process.ts";
import { nodeUnavailable, nodeVersion, runNodeGroup } from "./node.ts";
import { ratesChartOf, renderChart } from "./charts.ts";
import { CHART_DIR, renderGroup } from "./report.ts";
import type { GroupResult } from "./results.ts";

const ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
const GROUPS = ["deno", "node", "postgres", "broker"] as const;
type GroupName = typeof GROUPS[number];

interface Options {
  smoke: boolean;
  groups: Set<GroupName>;
}

function parseArgs(args: string[]): Options {
  let smoke = Deno.env.get("BENCH_SMOKE") === "1";
  let groups = new Set<GroupName>(GROUPS);
  for (const arg of args) {
    if (arg === "--smoke") smoke = true;
    else if (arg.startsWith("--only=")) {
      const names = arg.slice("--only=".length).split(",");
      const unknown = names.filter((name) => !(GROUPS as readonly string[]).includes(name));
      if (unknown.length > 0) throw new Error(`unknown group ${unknown.join(", ")}`);
      groups = new Set(names as GroupName[]);
    } else {throw new Error(
        `unknown argument ${arg} (use --smoke, --only=deno,node,postgres,broker)`,
      );}
  }
  return { smoke, groups };
}

const log = (line: string) => console.error(line);

/** A file name from a group title, its versions left out: `in-process-node-npm-build`. */
function slug(title: string): string {
  return title.toLowerCase().split(/[^a-z0-9.]+/).filter((word) => word && !/\d/.test(word))
    .join("-");
}

/** Gives every table of rates its chart (the broker group brings its own). */
function addRatesCharts(groups: GroupResult[]): void {
  for (const group of groups) {
    if (group.markdown !== undefined || group.charts !== undefined) continue;
    const chart = ratesChartOf(group, slug(group.title));
    if (chart !== undefined) group.charts = [chart];
  }
}

/**
 * Writes the charts into `bench/charts/` and removes the SVG files there that this run did not
 * draw, so that the folder holds what BENCHMARKS.md shows.
 */
async function writeCharts(svgs: Map<string, string>): Promise<void> {
  const dir = `${ROOT}/${CHART_DIR}`;
  await Deno.mkdir(dir, { recursive: true });
  for (const entry of Deno.readDirSync(dir)) {
    if (entry.isFile && entry.name.endsWith(".svg") && !svgs.has(entry.name)) {
      await Deno.remove(`${dir}/${entry.name}`);
    }
  }
  for (const [name, svg] of svgs) await Deno.writeTextFile(`${dir}/${name}`, svg);
  log(`wrote ${svgs.size} chart${svgs.size === 1 ? "" : "s"} to ${CHART_DIR}/`);
}

/** Runs one group, or says why it did not run. */
async function attempt(
  name: string,
  body: () => Promise<GroupResult[]>,
  skipped: string[],
): Promise<GroupResult[]> {
  try {
    return await body();
  } catch (error) {
    if (!(error instanceof GroupSkipped)) throw error;
    log(`${name}: skipped, ${error.message}`);
    skipped.push(`${name}: not measured, ${error.message}.`);
    return [];
  }
}

function machine(versions: string[]): string {
  const cpus = os.cpus();
  const model = cpus[0]?.model.trim() ?? "unknown CPU";
  return [
    `- Machine: ${cpus.length} cores, ${model}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, ` +
    `${os.type()} ${os.release()} (${os.arch()})`,
    ...versions.map((version) => `- ${version}`),
    `- Date: ${new Date().toISOString().replace(/\.\d+Z$/, "Z")}`,
  ].join("\n");
}

async function readNotes(): Promise<string> {
  try {
    return await Deno.readTextFile(`${ROOT}/bench/NOTES.md`);
  } catch {
    return "";
  }
}

async function main(): Promise<void> {
  const options = parseArgs(Deno.args);
  const effort = options.smoke ? SMOKE_EFFORT : FULL_EFFORT;
  const groups: GroupResult[] = [];
  const skipped: string[] = [];
  const versions = [
    `Deno ${Deno.version.deno} (V8 ${Deno.version.v8}, TypeScript ${Deno.version.typescript})`,
  ];

  if (options.groups.has("deno")) {
    const runtime = `Deno ${Deno.version.deno}`;
    groups.push(await runInProcessGroup(runtime, effort, log));
  }
  if (options.groups.has("node")) {
    groups.push(
      ...await attempt("Node in-process group", async () => {
        const reason = await nodeUnavailable(log);
        if (reason !== undefined) throw new GroupSkipped(reason);
        versions.push(`Node ${await nodeVersion()}`);
        return [await runNodeGroup(options.smoke)];
      }, skipped),
    );
  }
  if (options.groups.has("postgres")) {
    groups.push(
      ...await attempt("PostgreSQL group", async () => {
        const { runPostgresGroups } = await import("./postgres.ts").catch((error) => {
          throw new GroupSkipped(`bench/postgres.ts cannot load (${error.message})`);
        });
        const { results, serverVersion } = await runPostgresGroups(effort, log);
        versions.push(serverVersion);
        return results;
      }, skipped),
    );
  }

  if (options.groups.has("broker")) {
    groups.push(
      ...await attempt("Broker group", async () => {
        const { runBrokerGroup } = await import("./broker.ts").catch((error) => {
          throw new GroupSkipped(`bench/broker.ts cannot load (${error.message})`);
        });
        return [await runBrokerGroup(effort, log)];
      }, skipped),
    );
  }

  addRatesCharts(groups);
  // Drawn in every run, the smoke round too, so that CI catches a chart that cannot be drawn.
  const svgs = new Map<string, string>();
  for (const chart of groups.flatMap((group) => group.charts ?? [])) {
    if (svgs.has(`${chart.id}.svg`)) throw new Error(`two charts named ${chart.id}`);
    svgs.set(`${chart.id}.svg`, renderChart(chart));
  }
  const tables = groups.map(renderGroup).join("\n");
  const extra = skipped.map((line) => `- ${line}`).join("\n");
  console.log(`\n${tables}${extra ? `\n${extra}\n` : ""}`);
  if (options.smoke) {
    log("smoke round: BENCHMARKS.md and the charts left as they are");
    return;
  }
  if (Deno.env.get("BENCH_SUBJECTS") !== undefined) {
    log("some subjects only (BENCH_SUBJECTS): BENCHMARKS.md and the charts left as they are");
    return;
  }
  const document = [
    "# Benchmarks",
    "",
    "Generated by `deno task bench` (`bench/`); run it again to reproduce on your machine. Numbers",
    "move from run to run on a shared machine: the ratios measured in the same run are what count.",
    "",
    machine(versions),
    "",
    "## Results",
    "",
    tables,
    extra,
    "",
    await readNotes(),
  ].join("\n");
  await writeCharts(svgs);
  await Deno.writeTextFile(`${ROOT}/BENCHMARKS.md`, document.replace(/\n{3,}/g, "\n\n"));
  log("wrote BENCHMARKS.md");
}

if (import.meta.main) {
  try {
    await main();
    // A peer library may keep a handle open (mortice's BroadcastChannel); the run is over.
    Deno.exit(0);
  } catch (error) {
    console.error(`\nbench failed: ${error instanceof Error ? error.stack : error}`);
    Deno.exit(1);
  }
}
