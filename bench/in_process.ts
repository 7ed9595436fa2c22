/**
 * The in-process group: LocalState against the in-process lock libraries, five scenarios. Each
 * library is measured in fresh processes of its own (`in_process_child.ts`), the processes of the
 * libraries interleaved so that a busy spell of the machine hits them all alike. Runtime-neutral:
 * it runs under Deno on the sources and, compiled, under Node on the npm build.
 *
 * @module
 */

import { execFile } from "node:child_process";
import process from "node:process";
import { type Effort, lacksWithResolvers, median } from "./harness.ts";
import type { ChildReport } from "./in_process_child.ts";
import type { Cell, GroupResult, ScenarioResult } from "./results.ts";
import { type Scenario, SCENARIOS } from "./scenarios.ts";
import { type Subject, SUBJECTS } from "./subjects.ts";

const here = new URL(import.meta.url).pathname;
const isDeno = "Deno" in globalThis;

/** The command line that runs a measuring process in this same runtime. */
function childCommand(args: string[]): string[] {
  const child = here.replace(/in_process\.(ts|js)$/, "in_process_child.$1");
  if (!isDeno) return ["--expose-gc", child, ...args];
  // bench/ has a config of its own: the comparison libraries stay out of the project's lock.
  const config = here.replace(/in_process\.ts$/, "deno.json");
  return ["run", "--allow-all", "--v8-flags=--expose-gc", "--config", config, child, ...args];
}

/** Runs a measuring process; resolves with its reports, scenario id to report. */
function runChild(args: string[]): Promise<Record<string, ChildReport>> {
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      childCommand(args),
      { maxBuffer: 1 << 24 },
      (error, stdout, stderr) => {
        if (error !== null) {
          reject(new Error(`measuring process ${args.join(" ")} failed:\n${stderr}`));
          return;
        }
        try {
          resolve(JSON.parse(stdout.trim().split("\n").at(-1) ?? ""));
        } catch {
          reject(new Error(`measuring process ${args.join(" ")} printed no report:\n${stdout}`));
        }
      },
    );
  });
}

function skipReason(subject: Subject, scenario: Scenario): string | undefined {
  if (subject.unavailable !== undefined) return subject.unavailable;
  if (scenario.needsShared && !subject.shared) return "no shared mode";
  return undefined;
}

interface Samples {
  subject: Subject;
  ops: number;
  rates: number[];
  heaps: number[];
}

/** Calibrates each subject, then runs `effort.processes` interleaved processes per subject. */
async function measureScenario(
  scenario: Scenario,
  effort: Effort,
  log: (line: string) => void,
): Promise<Record<string, Samples>> {
  const samples: Record<string, Samples> = {};
  const subjects = SUBJECTS.filter((subject) => skipReason(subject, scenario) === undefined);
  for (const subject of subjects) {
    const [report] = Object.values(await runChild([subject.name, scenario.id, "0", "calibrate"]));
    samples[subject.name] = { subject, ops: report.ops, rates: [], heaps: [] };
  }
  for (let round = 0; round < effort.processes; round++) {
    // Rotate the order so that no subject always runs right after the same neighbour.
    for (let i = 0; i < subjects.length; i++) {
      const entry = samples[subjects[(i + round) % subjects.length].name];
      const args = [entry.subject.name, scenario.id, String(effort.rounds), String(entry.ops)];
      const report = (await runChild(args))[scenario.id];
      entry.rates.push(...report.rates);
      entry.heaps.push(...report.heaps);
    }
  }
  log(`  ${scenario.title}: done`);
  return samples;
}

/** The smoke round: one process per subject runs every scenario once at a tiny size. */
async function smokeScenarios(): Promise<Record<string, Record<string, Samples>>> {
  const byScenario: Record<string, Record<string, Samples>> = {};
  for (const scenario of SCENARIOS) byScenario[scenario.id] = {};
  for (const subject of SUBJECTS) {
    const ids = SCENARIOS.filter((scenario) => skipReason(subject, scenario) === undefined)
      .map((scenario) => scenario.id);
    if (ids.length === 0) continue;
    const reports = await runChild([subject.name, ids.join(","), "1", "smoke"]);
    for (const [id, report] of Object.entries(reports)) {
      byScenario[id][subject.name] = { subject, ...report };
    }
  }
  return byScenario;
}

function toRow(scenario: Scenario, samples: Record<string, Samples>): ScenarioResult {
  const cells: Record<string, Cell> = {};
  for (const subject of SUBJECTS) {
    const skipped = skipReason(subject, scenario);
    const entry = samples[subject.name];
    if (skipped !== undefined || entry === undefined) {
      cells[subject.name] = { skipped: skipped ?? "not measured" };
      continue;
    }
    cells[subject.name] = {
      opsPerSec: median(entry.rates),
      ...(entry.heaps.length > 0 ? { heapBytes: median(entry.heaps) } : {}),
    };
  }
  return { title: scenario.title, unit: "ops/s", targetFastest: true, cells };
}

/**
 * Runs every in-process scenario on every subject.
 *
 * @param runtime The runtime's name and version, for the table title.
 * @param effort How much to measure.
 * @param log Progress lines (stderr, say).
 */
export async function runInProcessGroup(
  runtime: string,
  effort: Effort,
  log: (line: string) => void,
): Promise<GroupResult> {
  log(`In-process group under ${runtime}${effort.smoke ? " (smoke)" : ""}`);
  const rows: ScenarioResult[] = [];
  if (effort.smoke) {
    const all = await smokeScenarios();
    for (const scenario of SCENARIOS) rows.push(toRow(scenario, all[scenario.id]));
  } else {
    for (const scenario of SCENARIOS) {
      rows.push(toRow(scenario, await measureScenario(scenario, effort, log)));
    }
  }
  const rounds = effort.processes * effort.rounds;
  return {
    title: `In process, ${runtime}`,
    runtime,
    subjects: SUBJECTS.map(({ name, how, unavailable }) => ({ name, how, unavailable })),
    scenarios: rows,
    rounds,
    rateUnit: "Operations per CPU-second of the measuring process (user + system time, all its " +
      "threads)",
    remarks: [
      `each library runs in processes of its own (${effort.processes} per scenario, ` +
      `${effort.rounds} timed round${effort.rounds === 1 ? "" : "s"} each after a warm-up), ` +
      "interleaved with the others' processes",
      "CPU time, not wall time: nothing here waits outside the process, and on a busy machine " +
      "CPU time is disturbed less (not at all is too much to hope for: cores' caches are shared)",
      ...(lacksWithResolvers
        ? [
          "this runtime has no `Promise.withResolvers`, which mortice (it-queue) and " +
          "@rocicorp/lock call: the measuring processes install the usual polyfill (their users " +
          "on this runtime need one too)",
        ]
        : []),
    ],
  };
}
