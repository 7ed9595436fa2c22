/** The shared conformance suite against PostgresState, in both modes, sharing one server. */

import assert from "node:assert/strict";
import type { PostgresState } from "../backends/postgres.ts";
import { conformanceSuite } from "./conformance.ts";
import { adminClient, advisoryLocksOf, postgresSkip, testState } from "./postgres_env.ts";

const skip = await postgresSkip();

for (const mode of ["session", "transaction"] as const) {
  const applicationName = `ss-test-conformance-${mode}`;
  const states = new Set<PostgresState>();
  const admin = skip ? undefined : adminClient();
  conformanceSuite({
    name: `PostgresState (${mode} mode)`,
    skip,
    sharedBacking: true,
    create() {
      const state = testState(applicationName, { namespace: `conformance-${mode}`, mode });
      states.add(state);
      return state;
    },
    async assertClean() {
      for (const state of states) assert.equal(state.size, 0, "PostgresState kept a key entry");
      states.clear();
      // Closed states ended their sessions; the server must hold nothing of theirs.
      assert.deepEqual(await advisoryLocksOf(admin!, applicationName), []);
    },
    async teardown() {
      await admin?.end();
    },
  });
}
