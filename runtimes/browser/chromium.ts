/**
 * Headless Chromium for `runtimes/browser_test.ts`: found, started on one URL with a profile of
 * its own, and stopped with every process it started. Chromium runs in a process group of its
 * own (`setsid`), with `HOME` and the XDG folders in a scratch folder, so that `stop()` can end
 * the group and also find what leaves the group (its crash handlers start sessions of their own,
 * but name the scratch folder on their command line), and leave nothing behind on disk either.
 *
 * @module
 */

import process from "node:process";

/** The flags Chromium needs here: headless, as root, on a machine with no network but loopback. */
export const CHROMIUM_FLAGS: readonly string[] = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--no-default-browser-check",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--disable-breakpad",
  "--disable-crash-reporter",
  // The page's console messages, and Chromium's own errors, on stderr (shown when a test fails).
  "--enable-logging=stderr",
  "--v=0",
];

/** The binaries looked for on `PATH` when `CHROMIUM` is not set. */
const NAMES = ["chromium", "chromium-browser", "google-chrome-stable", "google-chrome"];

/** The Chromium to use: `CHROMIUM` if set, else the first of {@link NAMES} on `PATH`. */
export function findChromium(): string | undefined {
  if (process.env.CHROMIUM) return process.env.CHROMIUM;
  for (const dir of (process.env.PATH ?? "").split(":")) {
    for (const name of NAMES) {
      try {
        const path = `${dir}/${name}`;
        if (Deno.statSync(path).isFile) return path;
      } catch {
        // not there
      }
    }
  }
  return undefined;
}

/** A running Chromium. */
export interface Chromium {
  /** Settles when the browser's main process exits. */
  readonly status: Promise<Deno.CommandStatus>;
  /** What it wrote to stdout and stderr (the last 64 KiB). */
  output(): string;
  /**
   * Ends every process it started (SIGTERM, then SIGKILL after `graceMs`) and removes its
   * scratch folder. Rejects, after killing them, if processes were still there after the bound.
   */
  stop(graceMs?: number): Promise<void>;
}

const MAX_OUTPUT = 64 * 1024;

/** Pids of live (not zombie) processes of group `group`, or naming `marker` on their command line. */
function leftovers(group: number, marker: string): number[] {
  const found: number[] = [];
  let entries: Iterable<Deno.DirEntry>;
  try {
    entries = Deno.readDirSync("/proc");
  } catch {
    return found; // no /proc (macOS): the group kill is all there is
  }
  for (const entry of entries) {
    const pid = Number(entry.name);
    if (!Number.isInteger(pid)) continue;
    try {
      // pid (comm) state ppid pgrp ...: comm may hold spaces and parentheses; split after it.
      const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
      const [state, , pgrp] = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      if (state === "Z" || state === "X") continue;
      if (Number(pgrp) === group) {
        found.push(pid);
        continue;
      }
      const cmdline = Deno.readTextFileSync(`/proc/${pid}/cmdline`);
      if (cmdline.includes(marker)) found.push(pid);
    } catch {
      // gone meanwhile, or not ours to read
    }
  }
  return found;
}

function kill(pid: number, signal: Deno.Signal): void {
  try {
    Deno.kill(pid, signal);
  } catch {
    // gone already
  }
}

/** Starts headless Chromium on `url`. */
export async function launchChromium(binary: string, url: string): Promise<Chromium> {
  const dir = await Deno.makeTempDir({ prefix: "shared-state-chromium-" });
  const child = new Deno.Command("setsid", {
    args: [binary, ...CHROMIUM_FLAGS, `--user-data-dir=${dir}/profile`, url],
    env: {
      HOME: dir,
      XDG_CONFIG_HOME: `${dir}/config`,
      XDG_CACHE_HOME: `${dir}/cache`,
      XDG_DATA_HOME: `${dir}/data`,
    },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  // setsid execs in place (the child leads no group yet): its pid is the group's id.
  const group = child.pid;
  let output = "";
  const read = async (stream: ReadableStream<Uint8Array>) => {
    for await (const text of stream.pipeThrough(new TextDecoderStream())) {
      output = (output + text).slice(-MAX_OUTPUT);
    }
  };
  const reading = Promise.all([read(child.stdout), read(child.stderr)]).catch(() => {});

  let stopping: Promise<void> | undefined;
  const stop = (graceMs = 5000) =>
    stopping ??= (async () => {
      const signalAll = (signal: Deno.Signal) => {
        kill(-group, signal);
        for (const pid of leftovers(group, dir)) kill(pid, signal);
      };
      signalAll("SIGTERM");
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([
        child.status,
        new Promise<void>((resolve) => timer = setTimeout(resolve, graceMs)),
      ]);
      clearTimeout(timer);
      signalAll("SIGKILL");
      await child.status;
      // Processes outside the group (crash handlers) may take a moment to go: poll, bounded.
      let left = leftovers(group, dir);
      for (let round = 0; round < 50 && left.length > 0; round++) {
        signalAll("SIGKILL");
        await new Promise((resolve) => setTimeout(resolve, 100));
        left = leftovers(group, dir);
      }
      // The pipes close once every writer is gone; bounded all the same.
      await Promise.race([reading, new Promise((resolve) => timer = setTimeout(resolve, 2000))]);
      clearTimeout(timer);
      await Deno.remove(dir, { recursive: true }).catch(() => {});
      if (left.length > 0) {
        throw new Error(`Chromium processes still running after SIGKILL: ${left.join(", ")}`);
      }
    })();
  return { status: child.status, output: () => output, stop };
}
