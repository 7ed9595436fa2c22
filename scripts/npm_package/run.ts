/**
 * Runs the external tools of the npm build (npm, npx, node) and times the build's steps.
 *
 * @module
 */

/** How to run a command. */
export interface RunOptions {
  /** The working directory. */
  cwd: string;
  /** Extra environment variables (the rest is inherited). */
  env?: Record<string, string>;
  /** Pass output through to the terminal instead of capturing it. */
  inherit?: boolean;
  /**
   * With `inherit`: stop the command (SIGTERM) once it has run this long, and fail. A test run
   * that an open handle keeps alive must fail CI, not hang it.
   */
  timeoutMs?: number;
}

/** What a captured command printed. */
export interface RunResult {
  /** The exit code. */
  code: number;
  /** Standard output and error, interleaved by stream. */
  output: string;
}

/** Runs a command; never throws for a non-zero exit (the caller decides). */
export async function run(cmd: string, args: string[], options: RunOptions): Promise<RunResult> {
  const command = new Deno.Command(cmd, {
    args,
    cwd: options.cwd,
    env: options.env,
    stdin: "null",
    stdout: options.inherit ? "inherit" : "piped",
    stderr: options.inherit ? "inherit" : "piped",
  });
  if (options.inherit) {
    const child = command.spawn();
    let timedOut = false;
    const timer = options.timeoutMs === undefined ? undefined : setTimeout(() => {
      timedOut = true;
      child.kill("SIGTERM");
    }, options.timeoutMs);
    const { code } = await child.status;
    clearTimeout(timer);
    const output = timedOut ? `stopped after ${options.timeoutMs! / 1000} s: still running` : "";
    return { code: timedOut ? 124 : code, output };
  }
  const result = await command.output();
  const decode = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
  return { code: result.code, output: decode(result.stdout) + decode(result.stderr) };
}

/** Runs a command and throws, with its output, unless it exits 0. */
export async function runOk(cmd: string, args: string[], options: RunOptions): Promise<string> {
  const result = await run(cmd, args, options);
  if (result.code !== 0) {
    throw new Error(`${cmd} ${args.join(" ")} exited ${result.code}\n${result.output}`);
  }
  return result.output;
}

/** Runs one step of the build and logs how long it took. */
export async function step<T>(name: string, body: () => Promise<T> | T): Promise<T> {
  const start = performance.now();
  console.log(`▶ ${name}`);
  const result = await body();
  console.log(`✔ ${name} (${((performance.now() - start) / 1000).toFixed(1)} s)`);
  return result;
}
