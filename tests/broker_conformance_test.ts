import assert from "node:assert/strict";
import { after, before } from "node:test";
import { LocalState } from "../mod.ts";
import { BrokerState } from "../backends/broker.ts";
import { conformanceSuite } from "../testing.ts";
import { clientOptions, type RunningBroker, startBroker } from "./broker_env.ts";

const TOKEN = "conformance-token";
const served = new LocalState({ name: "served" });
let broker: RunningBroker;

before(async () => {
  broker = await startBroker(served, { token: TOKEN });
});
after(async () => {
  await broker.close();
  await served.close();
});

conformanceSuite("BrokerState over a loopback broker", {
  sharedBacking: true,
  async create() {
    return new BrokerState(broker.url, await clientOptions(TOKEN));
  },
  assertClean() {
    assert.equal(served.size, 0, "the broker's state kept a key entry");
    return Promise.resolve();
  },
});
