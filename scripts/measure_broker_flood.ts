/**
 * Measures how the shipped broker (`shared-state broker`, what `deno task broker` runs) stands a
 * flood, for issue 9: started with few file descriptors (`ulimit -n`), it is flooded with
 * connections that send half an HTTP request, then with upgrades that never send a hello; the
 * script reports whether the broker stayed up, how soon a client is served once the flood is
 * gone, how soon connections it ends are closed at the TCP level, and how it answers wrong tokens.
 * Manual, not a test: it takes a while and exhausts the broker's descriptors on purpose.
 *
 * Usage: `deno run --allow-all scripts/measure_broker_flood.ts [--fds N] [--flood N]
 * [--cli PATH]` (defaults: 256 descriptors, 2000 connections, this checkout's cli.ts). All
 * traffic stays on 127.0.0.1.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import net from "node:net";
import { parseArgs } from "node:util";
import { BrokerState } from "../backends/broker.ts";

const TOKEN = "flood-token";
const AUTH_TIMEOUT = 1000;
const MAX_UNAUTHENTICATED = 50;

const { values } = parseArgs({
  options: {
    fds: { type: "string", default: "256" },
    flood: { type: "string", default: "2000" },
    cli: { type: "string", default: new URL("../cli.ts", import.meta.url).pathname },
  },
});
const fds = Number(values.fds);
const floodSize = Number(values.flood);

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** The broker process, its stderr kept; `env` adds to its settings. */
async function startBroker(port: number, env: Record<string, string> = {}) {
  const command = new Deno.Command("bash", {
    args: [
      "-c",
      `ulimit -n ${fds}; exec "$0" run --allow-all "$1" broker --port "$2"`,
      Deno.execPath(),
      values.cli!,
      String(port),
    ],
    env: {
      TOKEN,
      AUTH_TIMEOUT: String(AUTH_TIMEOUT),
      MAX_UNAUTHENTICATED: String(MAX_UNAUTHENTICATED),
      ...env,
    },
    stdout: "piped",
    stderr: "piped",
  });
  const child = command.spawn();
  const stderr: string[] = [];
  let exited: Deno.CommandStatus | undefined;
  child.status.then((status) => exited = status);
  (async () => {
    for await (const chunk of child.stderr.pipeThrough(new TextDecoderStream())) {
      stderr.push(...chunk.split("\n").filter((line) => line !== ""));
    }
  })();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let output = "";
  while (!output.includes("serving")) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`the broker did not start: ${stderr.join("\n")}`);
    output += value;
  }
  (async () => {
    while (!(await reader.read()).done) { /* drain */ }
  })();
  return { child, stderr, exited: () => exited };
}

/** Raw TCP connections, destroyed at the end. */
const sockets = new Set<net.Socket>();

function connect(port: number, first: string): net.Socket {
  const socket = net.connect(port, "127.0.0.1");
  sockets.add(socket);
  socket.on("error", () => {});
  socket.on("close", () => sockets.delete(socket));
  socket.write(first);
  return socket;
}

function upgradeRequest(port: number): string {
  const key = Buffer.from(crypto.getRandomValues(new Uint8Array(16))).toString("base64");
  return `GET / HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
    `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`;
}

/** Whether a BrokerState gets and releases a lock within `ms`. */
async function served(url: string, ms: number): Promise<boolean> {
  const state = new BrokerState(url, { token: TOKEN, heartbeatInterval: 1000 });
  try {
    const lock = await state.getLock("measure", { timeout: ms });
    await lock.release();
    return true;
  } catch {
    return false;
  } finally {
    await state.close();
  }
}

/** Opens `count` connections as fast as the loop goes, each sending `first`; counts the fates. */
async function flood(port: number, count: number, first: (port: number) => string) {
  const start = performance.now();
  const opened: net.Socket[] = [];
  let connected = 0;
  let failed = 0;
  let closedByServer = 0;
  for (let i = 0; i < count; i++) {
    const socket = connect(port, first(port));
    socket.once("connect", () => connected++);
    socket.once("error", () => failed++);
    socket.once("end", () => closedByServer++);
    socket.resume();
    opened.push(socket);
    if (i % 100 === 99) await sleep(0);
  }
  await sleep(3000);
  return {
    seconds: (performance.now() - start) / 1000 - 3,
    connected,
    failed,
    closedByServer,
    opened,
  };
}

const port = await freePort();
const url = `ws://127.0.0.1:${port}/`;
// Every client here has the same address: the brake on failed authentications (connections that
// never send a hello count) would soon refuse them all. It is measured on a broker of its own.
const broker = await startBroker(port, { MAX_AUTH_FAILURES: "1000000" });
console.log(`broker ${values.cli} on port ${port}, ulimit -n ${fds}`);

// 1. Connections the broker ends (no hello within AUTH_TIMEOUT), whose peers never answer.
{
  const ends: number[] = [];
  await Promise.all(Array.from({ length: 50 }, () =>
    new Promise<void>((resolve) => {
      const socket = connect(port, upgradeRequest(port));
      let closeFrameAt: number | undefined;
      socket.on("data", (chunk: Buffer) => {
        if (closeFrameAt === undefined && chunk.includes(Buffer.from([0x88]))) {
          closeFrameAt = performance.now();
        }
      });
      const timer = setTimeout(() => {
        socket.removeAllListeners("close"); // our own close is not the broker's
        socket.destroy();
        resolve();
      }, AUTH_TIMEOUT + 15_000);
      socket.on("close", () => {
        clearTimeout(timer);
        if (closeFrameAt !== undefined) ends.push(performance.now() - closeFrameAt);
        resolve();
      });
    })));
  ends.sort((a, b) => a - b);
  console.log(
    `ended sessions: ${ends.length}/50 TCP connections closed by the broker within ` +
      `${(AUTH_TIMEOUT + 15_000) / 1000} s of connecting; ` +
      `${Math.round(ends[0] ?? NaN)}..${Math.round(ends.at(-1) ?? NaN)} ms after its close frame`,
  );
}

// 2. A flood of half-sent HTTP requests, beyond the descriptors the broker has.
{
  const result = await flood(port, floodSize, () => "GET / HTTP/1.1\r\nHost: x\r\n");
  console.log(
    `half-sent flood: ${floodSize} opened in ${result.seconds.toFixed(2)} s ` +
      `(${Math.round(floodSize / result.seconds)}/s); ${result.connected} connected, ` +
      `${result.failed} failed; broker ${broker.exited() ? "EXITED" : "alive"}`,
  );
  console.log(`  a client during the flood: ${await served(url, 2000) ? "served" : "not served"}`);
  for (const socket of result.opened) socket.destroy();
  const start = performance.now();
  let ok = false;
  while (!ok && performance.now() - start < 30_000 && !broker.exited()) {
    ok = await served(url, 1000);
  }
  console.log(
    `  after the flood: ${
      ok ? `served again after ${Math.round(performance.now() - start)} ms` : "NOT served"
    }; broker ${broker.exited() ? `EXITED (${broker.exited()!.code})` : "alive"}`,
  );
}

// 3. A flood of upgrades that never send a hello, past MAX_UNAUTHENTICATED.
if (!broker.exited()) {
  const count = Math.min(floodSize, 1000);
  const result = await flood(port, count, upgradeRequest);
  console.log(
    `silent-upgrade flood: ${count} in ${result.seconds.toFixed(2)} s; ` +
      `${result.closedByServer} closed by the broker within 3 s ` +
      `(${MAX_UNAUTHENTICATED} are kept until the ${AUTH_TIMEOUT} ms auth timeout)`,
  );
  for (const socket of result.opened) socket.destroy();
  await sleep(AUTH_TIMEOUT + 1500);
  console.log(`  after it: a client ${await served(url, 5000) ? "is served" : "is NOT served"}`);
}

for (const socket of sockets) socket.destroy();
if (!broker.exited()) broker.child.kill("SIGTERM");
const status = await broker.child.status;
console.log(`broker exit code ${status.code}; its stderr (last 5 lines):`);
for (const line of broker.stderr.slice(-5)) console.log(`  ${line}`);

// 4. Wrong tokens from one address, one connection each, on a broker with the default limits.
{
  const port = await freePort();
  const broker = await startBroker(port);
  const start = performance.now();
  const answers = new Map<string, number>();
  for (let i = 0; i < 200; i++) {
    const answer = await new Promise<string>((resolve) => {
      const socket = net.connect(port, "127.0.0.1");
      socket.on("error", () => resolve("error"));
      let text = "";
      socket.on("data", (chunk: Buffer) => {
        text += chunk.toString("latin1");
        if (text.includes("\r\n\r\n") && !text.startsWith("HTTP/1.1 101")) {
          resolve(text.slice(0, 12));
        }
        const refused = /"message":"([^"]*)"/.exec(text);
        if (refused) resolve(refused[1].replace(/\d+ s$/, "N s"));
        if (text.startsWith("HTTP/1.1 101") && !text.includes("hello-sent")) {
          text += "hello-sent";
          const hello = JSON.stringify({ op: "hello", version: 1, token: "wrong" });
          const frame = Buffer.alloc(6 + hello.length);
          frame[0] = 0x81;
          frame[1] = 0x80 | hello.length;
          Buffer.from(hello).copy(frame, 6); // mask 0: the payload as it is
          socket.write(frame);
        }
      });
      socket.write(upgradeRequest(port));
      setTimeout(() => resolve("no answer"), 5000);
    }).finally(() => undefined);
    answers.set(answer, (answers.get(answer) ?? 0) + 1);
  }
  for (const socket of sockets) socket.destroy();
  const seconds = (performance.now() - start) / 1000;
  console.log(`wrong tokens: 200 in ${seconds.toFixed(2)} s (${Math.round(200 / seconds)}/s):`);
  for (const [answer, count] of answers) console.log(`  ${count} × ${answer}`);
  broker.child.kill("SIGTERM");
  await broker.child.status;
}
