/**
 * Which compiled test files run on the runtimes that CI tests beside the Node of the build
 * (Bun: `runtimes/bun.ts`; Node 22 and 24: `runtimes/node.ts`), unless `--all` asks for every
 * one. The whole suite takes minutes per runtime; this set covers in seconds what differs
 * between runtimes: the contract on each backend, the broker on the runtime's own WebSocket and
 * `node:http`, and how the runtime loads the package.
 *
 * @module
 */

/** The chosen test files, relative to `npm/esm/tests/`. */
export const RUNTIME_FILES: readonly string[] = [
  // The conformance suite on LocalState, the broker (serveBroker and the runtime's WebSocket)
  // and PostgresState in both modes, and the suite's own check that it fails broken backends.
  "local_test.js",
  "broker_conformance_test.js",
  "postgres_conformance_test.js",
  "conformance_test.js",
  // The broker: its unit tests, a client on a socket that throws, refusals and floods (what a
  // runtime's WebSocket shows of a refused handshake, its node:http under a flood), permits.
  "broker_test.js",
  "broker_throwing_socket_test.js",
  "broker_admission_test.js",
  "broker_auth_failures_test.js",
  "broker_permits_test.js",
  // require() of every entry point, await using written natively.
  "package_load_test.js",
];

/** Every compiled test file of `testsDir` (`npm/esm/tests`), sorted. */
export function allTestFiles(testsDir: string): string[] {
  return [...Deno.readDirSync(testsDir)].map((entry) => entry.name)
    .filter((name) => name.endsWith("_test.js")).sort();
}
