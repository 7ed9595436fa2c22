/**
 * A broker in an OS process of its own, for the broker tests: serves a LocalState on a free
 * loopback port and prints `ready <url>`. On stdin, the line `size` is answered with
 * `size <keys held or awaited>`; the end of stdin closes the broker and exits 0.
 *
 * Usage: `broker.ts <token> [options as JSON]`, the options of `brokerHandler` plus `port`.
 */

import process from "node:process";
import { createInterface } from "node:readline";
import { LocalState } from "../../mod.ts";
import { startBroker } from "../broker_env.ts";

const [token, json = "{}"] = process.argv.slice(2);
const state = new LocalState({ name: "broker worker" });
const { port = 0, ...options } = JSON.parse(json);
const broker = await startBroker(state, { ...options, token }, port);
process.stdout.write(`ready ${broker.url}\n`);

const input = createInterface({ input: process.stdin });
input.on("line", (line) => {
  if (line.trim() === "size") {
    process.stdout.write(`size ${state.size} connections ${broker.handler.connections}\n`);
  }
});
input.on("close", async () => {
  await broker.close();
  await state.close();
  process.exit(0);
});
