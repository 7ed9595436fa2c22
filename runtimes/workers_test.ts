/**
 * The package on Cloudflare Workers, as a Workers user gets it: `npm pack` of the built `npm/`,
 * installed into a scratch Worker project with `postgres`, bundled and served by
 * `wrangler dev --local` (workerd), with a broker of this process on 127.0.0.1 and the PostgreSQL
 * server of the other tests. The Worker (`runtimes/worker/index.ts`) answers one question per
 * request; these tests ask and check the answers.
 *
 * Run after `deno task build:npm`, with `WRANGLER` set to a wrangler binary (CI installs one from
 * npm: `.ci/run`): `WRANGLER=… deno test --allow-all runtimes/workers_test.ts`. Without
 * `WRANGLER` the tests skip, loudly; with `REQUIRE_WORKERS=1` that is a failure instead.
 *
 * @module
 */

import assert from "node:assert/strict";
import process from "node:process";
import { after, before, describe, it } from "node:test";
import { LocalState } from "../mod.ts";
import { brokerHandler } from "../backends/broker.ts";
import { PostgresState } from "../backends/postgres.ts";
import { DATABASE_URL, postgresSkip } from "../tests/postgres_env.ts";
import { readManifest } from "../scripts/npm_package/checks.ts";

const ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
const NPM_DIR = `${ROOT}/npm`;
const TOKEN = "workers-test-token";
/** A compatibility date that the workerd of wrangler 4 supports. */
const COMPATIBILITY_DATE = "2025-09-01";
const NAMESPACE = `workers-test-${process.pid}`;
/** Bound on wrangler's start (bundling included), and on any one request to the Worker. */
const START_TIMEOUT_MS = 60_000;
const REQUEST_TIMEOUT_MS = 15_000;

function skipReason(): string | false {
  if (process.env.WRANGLER) return false;
  const reason = "WRANGLER is not set to a wrangler binary (CI installs one from npm)";
  if (process.env.REQUIRE_WORKERS === "1") throw new Error(`REQUIRE_WORKERS=1 but ${reason}`);
  console.error(`\n!!!!! SKIPPING THE CLOUDFLARE WORKERS TESTS: ${reason}. !!!!!\n`);
  return `SKIPPED: ${reason}`;
}

const skip = skipReason() || await postgresSkip();

/** Runs a command to its end; throws with its output unless it exits 0. */
async function runOk(cmd: string, args: string[], cwd: string, env: Record<string, string> = {}) {
  const { code, stdout, stderr } = await new Deno.Command(cmd, {
    args,
    cwd,
    env,
    stdin: "null",
  }).output();
  const output = new TextDecoder().decode(stdout) + new TextDecoder().decode(stderr);
  if (code !== 0) throw new Error(`${cmd} ${args.join(" ")} exited ${code}:\n${output}`);
  return output;
}

/** wrangler's environment: no telemetry, no fetch of Cloudflare's `cf` object, files kept here. */
function wranglerEnv(dir: string): Record<string, string> {
  return {
    CI: "true",
    WRANGLER_SEND_METRICS: "false",
    CLOUDFLARE_CF_FETCH_ENABLED: "false",
    WRANGLER_LOG_PATH: `${dir}/logs`,
    XDG_CONFIG_HOME: `${dir}/config`,
    NO_COLOR: "1",
  };
}

/**
 * A scratch Worker project: the packed tarball and `postgres` installed, the Worker and a
 * web-standard one (no `nodejs_compat`) with their wrangler configurations.
 */
async function makeProject(): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "shared-state-worker-" });
  await runOk("npm", ["pack", "--pack-destination", dir, "--loglevel=error"], NPM_DIR);
  const tarball = [...Deno.readDirSync(dir)].find((entry) => entry.name.endsWith(".tgz"))!.name;
  const manifest = await readManifest(NPM_DIR);
  await Deno.writeTextFile(
    `${dir}/package.json`,
    JSON.stringify({ name: "worker", private: true, version: "0.0.0", type: "module" }),
  );
  await runOk("npm", [
    "install",
    `./${tarball}`,
    `postgres@${manifest.peerDependencies?.postgres ?? "3"}`,
    "--no-audit",
    "--no-fund",
    "--prefer-offline",
    "--loglevel=error",
  ], dir);
  await Deno.mkdir(`${dir}/src`);
  await Deno.copyFile(`${ROOT}/runtimes/worker/index.ts`, `${dir}/src/index.ts`);
  await Deno.copyFile(`${ROOT}/runtimes/worker/web.ts`, `${dir}/src/web.ts`);
  const config = (name: string, main: string, more: Record<string, unknown>) =>
    JSON.stringify({ name, main, compatibility_date: COMPATIBILITY_DATE, ...more });
  await Deno.writeTextFile(
    `${dir}/wrangler.json`,
    config("shared-state-worker", "src/index.ts", {
      compatibility_flags: ["nodejs_compat"],
      durable_objects: { bindings: [{ name: "LOCKS", class_name: "Locks" }] },
      migrations: [{ tag: "v1", new_sqlite_classes: ["Locks"] }],
    }),
  );
  await Deno.writeTextFile(
    `${dir}/wrangler.web.json`,
    config("shared-state-web", "src/web.ts", {}),
  );
  return dir;
}

/** `wrangler dev --local` running the Worker; `url` once it said it is ready. */
interface Dev {
  url: string;
  /** Stops wrangler and its workerd (the whole process group), bounded. */
  stop(): Promise<void>;
  output(): string;
}

async function startDev(dir: string, vars: Record<string, string>): Promise<Dev> {
  // setsid: wrangler and the workerd it starts form one process group, stopped together.
  const child = new Deno.Command("setsid", {
    args: [
      process.env.WRANGLER!,
      "dev",
      "--local",
      "--ip",
      "127.0.0.1",
      "--port",
      "0",
      "--inspector-port",
      "0",
      "--show-interactive-dev-session=false",
      ...Object.entries(vars).flatMap(([name, value]) => ["--var", `${name}:${value}`]),
    ],
    cwd: dir,
    env: wranglerEnv(dir),
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let output = "";
  let ready: (url: string) => void = () => {};
  const readyUrl = new Promise<string>((resolve) => ready = resolve);
  const read = async (stream: ReadableStream<Uint8Array>) => {
    for await (const text of stream.pipeThrough(new TextDecoderStream())) {
      output += text;
      const match = /Ready on (http:\/\/[^\s]+)/.exec(output);
      if (match) ready(match[1]);
    }
  };
  const reading = Promise.all([read(child.stdout), read(child.stderr)]);
  const stop = async () => {
    const group = -child.pid;
    const signal = (name: Deno.Signal) => {
      try {
        Deno.kill(group, name);
      } catch {
        // the group is gone already
      }
    };
    signal("SIGTERM");
    let timer: ReturnType<typeof setTimeout> | undefined;
    const killed = new Promise<void>((resolve) => {
      timer = setTimeout(() => {
        signal("SIGKILL");
        resolve();
      }, 5000);
    });
    await Promise.race([child.status, killed]);
    await child.status;
    clearTimeout(timer);
    signal("SIGKILL"); // anything of the group that outlived wrangler (workerd)
    await reading;
  };
  let timer: ReturnType<typeof setTimeout> | undefined;
  const outcome = await Promise.race([
    readyUrl,
    child.status.then((status) => new Error(`wrangler dev exited (${status.code}) before ready`)),
    new Promise<Error>((resolve) => {
      timer = setTimeout(
        () => resolve(new Error(`wrangler dev not ready after ${START_TIMEOUT_MS} ms`)),
        START_TIMEOUT_MS,
      );
    }),
  ]);
  clearTimeout(timer);
  if (outcome instanceof Error) {
    await stop();
    throw new Error(`${outcome.message}:\n${output}`);
  }
  return { url: outcome.replace(/\/$/, ""), stop, output: () => output };
}

/** An answer of the Worker. */
interface Answer {
  ok: boolean;
  error?: { name: string; lockFailed: boolean; reason?: string; message: string };
  [field: string]: unknown;
}

describe("Cloudflare Workers (wrangler dev --local, the packed npm tarball)", { skip }, () => {
  const served = new LocalState({ name: "served to the Worker" });
  let broker: Deno.HttpServer<Deno.NetAddr> | undefined;
  let handler: ReturnType<typeof brokerHandler> | undefined;
  let dir: string | undefined;
  let dev: Dev | undefined;
  let outside: PostgresState | undefined;

  before(async () => {
    handler = brokerHandler(served, { token: TOKEN });
    broker = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, handler);
    dir = await makeProject();
    dev = await startDev(dir, {
      BROKER_URL: `ws://127.0.0.1:${broker.addr.port}/`,
      TOKEN,
      DATABASE_URL,
      NAMESPACE,
    });
    outside = new PostgresState(DATABASE_URL, { namespace: NAMESPACE });
  });

  after(async () => {
    await dev?.stop();
    await handler?.close();
    await broker?.shutdown();
    await served.close();
    await outside?.close();
    if (dir !== undefined) await Deno.remove(dir, { recursive: true });
  });

  /** Asks the Worker; its answer must come within the request bound. */
  async function ask(path: string): Promise<Answer> {
    const response = await fetch(`${dev!.url}${path}`, {
      signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
    });
    const text = await response.text();
    try {
      return JSON.parse(text);
    } catch {
      throw new Error(`${path}: HTTP ${response.status}: ${text}\n${dev!.output()}`);
    }
  }

  /** Polls `condition` every 20 ms until it holds, for at most `ms`. */
  async function eventually(condition: () => Promise<boolean>, ms: number, what: string) {
    const deadline = performance.now() + ms;
    while (!(await condition())) {
      if (performance.now() > deadline) throw new Error(`${what}: not within ${ms} ms`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  it("bundles the web-standard entry points without nodejs_compat, warning of nothing", async () => {
    const output = await runOk(
      process.env.WRANGLER!,
      [
        "deploy",
        "--dry-run",
        "--outdir",
        "bundle",
        "--config",
        "wrangler.web.json",
      ],
      dir!,
      wranglerEnv(dir!),
    );
    assert.doesNotMatch(output, /WARNING|▲|node:/, output);
    const bundle = await Deno.readTextFile(`${dir}/bundle/web.js`);
    assert.doesNotMatch(bundle, /["']node:[a-z_/]+["']/, "the web-standard bundle imports node:");
  });

  it("runs LocalState, with await using", async () => {
    assert.deepEqual(await ask("/local"), { ok: true, after: true });
  });

  it("runs a BrokerState of one request against a broker, closed by await using", async () => {
    assert.deepEqual(await ask("/broker?key=b1"), { ok: true, heldElsewhere: true, free: true });
    assert.equal(served.size, 0, "the broker kept something of the Worker's request");
    // The broker's other clients and the Worker's contend for the same lock.
    const lock = await served.getLock("b1");
    const busy = await ask("/broker?key=b1&timeout=200");
    assert.equal(busy.ok, false);
    assert.equal(busy.error?.lockFailed, true, JSON.stringify(busy));
    assert.equal(busy.error?.reason, "timeout");
    await lock.release();
    assert.equal((await ask("/broker?key=b1")).ok, true);
  });

  it("runs a PostgresState of one request (nodejs_compat)", async () => {
    assert.deepEqual(await ask("/postgres?key=p1"), { ok: true, heldElsewhere: true, free: true });
    const lock = await outside!.getLock("p1");
    const busy = await ask("/postgres?key=p1&timeout=200");
    assert.equal(busy.error?.lockFailed, true, JSON.stringify(busy));
    assert.equal(busy.error?.reason, "timeout");
    await lock.release();
    assert.equal((await ask("/postgres?key=p1")).ok, true);
  });

  it("answers a BrokerState kept across requests with a lock or LockFailed, then a new connection", async () => {
    // The socket belongs to the request that opened it: the next request cannot use it, gets
    // LockFailed (not workerd's own error), and the one after it connects again.
    const answers = [];
    for (let i = 0; i < 3; i++) answers.push(await ask("/reuse/broker?key=r1&timeout=3000"));
    assert.equal(answers[0].ok, true, JSON.stringify(answers));
    assert.equal(answers[1].ok, false, JSON.stringify(answers));
    assert.equal(answers[1].error?.lockFailed, true, JSON.stringify(answers));
    assert.equal(answers[1].error?.reason, "unreachable", JSON.stringify(answers));
    assert.equal(answers[2].ok, true, JSON.stringify(answers));
    // close() never rejects, whatever the socket does.
    assert.deepEqual(await ask("/reuse/broker/close"), { ok: true });
    assert.equal(await served.testLock("r1"), true);
  });

  it("answers a PostgresState kept across requests with LockFailed at once, then connects again", async () => {
    // The same for PostgreSQL: workerd fails the write to the first request's socket in its
    // callback only, with no event; the state must notice at once, not wait out the timeout.
    const answers = [];
    for (let i = 0; i < 3; i++) answers.push(await ask("/reuse/postgres?key=r2&timeout=3000"));
    const all = JSON.stringify(answers);
    assert.equal(answers[0].ok, true, all);
    assert.equal(answers[1].error?.lockFailed, true, all);
    assert.equal(answers[1].error?.reason, "unreachable", all);
    assert.ok((answers[1].ms as number) < 2000, `waited for its timeout: ${all}`);
    assert.equal(answers[2].ok, true, all);
    assert.deepEqual(await ask("/reuse/postgres/close"), { ok: true });
    assert.equal(await outside!.testLock("r2"), true);
  });

  it("serves every request with a BrokerState and a PostgresState kept in a Durable Object", async () => {
    for (const backend of ["broker", "postgres"]) {
      for (let i = 0; i < 3; i++) {
        const answer = await ask(`/object/${backend}?key=o1&timeout=3000`);
        assert.deepEqual(answer, { ok: true, heldElsewhere: true, free: true }, `${backend} ${i}`);
      }
    }
    assert.equal(served.size, 0);
  });

  it("releases a lock left held by a response once ctx.waitUntil(state.close()) ran", async () => {
    assert.deepEqual(await ask("/wait-until?key=w1"), { ok: true });
    await eventually(() => served.testLock("w1"), 5000, "the lock released after the response");
  });
});
