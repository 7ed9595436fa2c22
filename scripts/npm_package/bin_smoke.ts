/**
 * The `shared-state` command from the packed tarball, as npm users get it (issue 11): installed
 * alone, `--version`, `--help` and `id` work and a PostgreSQL `run` names the missing driver;
 * with the optional peers, `npx shared-state` runs a command under a lock of a broker that
 * `shared-state broker` serves, and passes the command's exit code on.
 *
 * @module
 */

import { CheckFailed } from "./checks.ts";

/** No command of the smoke test may take longer: a hang fails the check, it does not stall it. */
const COMMAND_TIMEOUT_MS = 60_000;

interface Outcome {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the installed bin (`node_modules/.bin/shared-state`) in `dir` with `args`. */
async function shell(
  dir: string,
  command: string,
  args: string[],
  env: Record<string, string> = {},
): Promise<Outcome> {
  const child = new Deno.Command(command, {
    args,
    cwd: dir,
    // The scratch project's environment, not the build's: no DATABASE_URL to fall back on.
    env: { SHARED_STATE_URL: "", DATABASE_URL: "", SHARED_STATE_TOKEN: "", ...env },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const timer = setTimeout(() => child.kill("SIGKILL"), COMMAND_TIMEOUT_MS);
  try {
    const { code, stdout, stderr } = await child.output();
    const decode = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
    return { code, stdout: decode(stdout), stderr: decode(stderr) };
  } finally {
    clearTimeout(timer);
  }
}

/** Fails unless `outcome` has exit code `code` and output matching `pattern`; else says so. */
function expect(what: string, outcome: Outcome, code: number, pattern: RegExp): string {
  const output = outcome.stdout + outcome.stderr;
  if (outcome.code !== code || !pattern.test(output)) {
    throw new CheckFailed(
      `shared-state bin: ${what}`,
      `expected exit ${code} and output matching ${pattern}, got exit ${outcome.code}:\n${output}`,
    );
  }
  return `${what}: exit ${code}`;
}

/** The bin of the package installed alone: no `postgres`, no `ws`. */
export async function checkBinAlone(dir: string, version: string): Promise<string[]> {
  const bin = `${dir}/node_modules/.bin/shared-state`;
  const escaped = version.replaceAll(".", "\\.");
  return [
    expect("--version", await shell(dir, bin, ["--version"]), 0, new RegExp(escaped)),
    expect("run --help", await shell(dir, bin, ["run", "--help"]), 0, /75 +the lock was not/),
    expect("id", await shell(dir, bin, ["id", "report"]), 0, /^-?\d+\n.*classid = \d+/),
    expect(
      "run on PostgreSQL without the driver",
      await shell(dir, bin, ["run", "--url", "postgres://u@127.0.0.1:1/x", "k", "--", "true"]),
      69,
      /the postgres package is not installed/,
    ),
    expect("run without a URL", await shell(dir, bin, ["run", "k", "--", "true"]), 64, /no URL/),
  ];
}

/** Starts `shared-state broker --port 0` and resolves with its URL once it listens. */
async function startBroker(dir: string, token: string) {
  const child = new Deno.Command(`${dir}/node_modules/.bin/shared-state`, {
    args: ["broker", "--port", "0"],
    cwd: dir,
    env: { TOKEN: token, DATABASE_URL: "" },
    stdin: "null",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const timer = setTimeout(() => child.kill("SIGKILL"), COMMAND_TIMEOUT_MS);
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let seen = "";
  let url: string | undefined;
  while (url === undefined) {
    const { value, done } = await reader.read();
    if (done) break;
    seen += value;
    url = /ws:\/\/\S+/.exec(seen)?.[0];
  }
  // Keep reading (and discarding) so that the broker never blocks on a full pipe.
  const drained = (async () => {
    while (!(await reader.read()).done) { /* discard */ }
  })();
  if (url === undefined) {
    clearTimeout(timer);
    await child.status;
    throw new CheckFailed("shared-state broker", `exited before it listened:\n${seen}`);
  }
  return {
    url,
    async stop(): Promise<number> {
      child.kill("SIGTERM");
      const { code } = await child.status;
      clearTimeout(timer);
      await drained;
      return code;
    },
  };
}

/** The bin with the optional peers installed: `npx shared-state` against its own broker. */
export async function checkBinWithPeers(dir: string): Promise<string[]> {
  const token = "smoke-token";
  const broker = await startBroker(dir, token);
  const lines = [`shared-state broker: listening on ${broker.url}`];
  let failure: unknown;
  try {
    const env = { SHARED_STATE_URL: broker.url, SHARED_STATE_TOKEN: token };
    const script = "console.log(process.env.SHARED_STATE_KEY); process.exit(3)";
    lines.push(expect(
      "npx shared-state run, URL and token from the environment (exit code passed on)",
      await shell(dir, "npx", ["shared-state", "run", "smoke", "--", "node", "-e", script], env),
      3,
      /^smoke$/m,
    ));
    lines.push(expect(
      "npx shared-state test --url",
      await shell(dir, "npx", ["shared-state", "test", "--url", broker.url, "smoke"], {
        SHARED_STATE_TOKEN: token,
      }),
      0,
      /^$/,
    ));
    lines.push(expect(
      "npx shared-state run with a wrong token",
      await shell(dir, "npx", ["shared-state", "run", "smoke", "--", "true"], {
        ...env,
        SHARED_STATE_TOKEN: "wrong",
      }),
      69,
      /wrong token/,
    ));
  } catch (error) {
    failure = error;
  }
  const code = await broker.stop();
  if (failure !== undefined) throw failure;
  if (code !== 0) throw new CheckFailed("shared-state broker", `exited ${code} on SIGTERM`);
  lines.push("shared-state broker: stopped on SIGTERM, exit 0");
  return lines;
}
