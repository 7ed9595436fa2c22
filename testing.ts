/**
 * The conformance suite of the lock contract, for backends written outside this package: one
 * call registers, with `node:test`, every rule that `LocalState`, `PostgresState` and the broker
 * are held to (modes, fairness, timeouts and aborts, release, bad input, close, no residue, an
 * invariant under random interleavings). `deno test` and `node --test` both run it.
 *
 * The backend is a subclass of `StateABC` (`acquire`, `probe`, `shutdown`); the suite needs only a
 * factory of open states. Give `sharedBacking: true` when two states share their locks (a server),
 * and `assertClean` to check, after each test, that the backend kept nothing behind.
 *
 * @example `my_state_test.ts`, run with `deno test` or `node --test`
 * ```ts
 * import { LocalState } from "@momotor/shared-state";
 * import { conformanceSuite } from "@momotor/shared-state/testing";
 *
 * class MyState extends LocalState {} // your StateABC subclass
 *
 * const states = new Set<MyState>();
 * conformanceSuite("MyState", {
 *   create() {
 *     const state = new MyState();
 *     states.add(state);
 *     return state;
 *   },
 *   assertClean() {
 *     for (const state of states) if (state.size !== 0) throw new Error("a key entry was kept");
 *     states.clear();
 *   },
 * });
 * ```
 *
 * @module
 */

export { type ConformanceOptions, conformanceSuite } from "./testing/conformance.ts";
