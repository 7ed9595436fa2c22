/**
 * A Worker that imports only the web-standard entry points (`.` and `./broker`): it must bundle
 * without `nodejs_compat` and without a warning (`runtimes/workers_test.ts`).
 */

import { LocalState } from "@momotor/shared-state";
import { BrokerState } from "@momotor/shared-state/broker";

interface Env {
  BROKER_URL: string;
  TOKEN: string;
}

export default {
  async fetch(_request: Request, env: Env): Promise<Response> {
    await using local = new LocalState();
    await using broker = new BrokerState(env.BROKER_URL, { token: env.TOKEN });
    const free = await local.testLock("a") && await broker.testLock("a");
    return Response.json({ free });
  },
};
