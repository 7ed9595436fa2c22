/** The shared conformance suite against PostgresState, in both modes, sharing one server. */

import { conformanceSuite } from "../testing.ts";
import { postgresBackend, postgresSkip, testState } from "./postgres_env.ts";

const skip = await postgresSkip();

for (const mode of ["session", "transaction"] as const) {
  const applicationName = `ss-test-conformance-${mode}`;
  conformanceSuite(
    `PostgresState (${mode} mode)`,
    postgresBackend(
      skip,
      applicationName,
      () => testState(applicationName, { namespace: `conformance-${mode}`, mode }),
    ),
  );
}
