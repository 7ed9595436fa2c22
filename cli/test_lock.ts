/**
 * `shared-state test [--shared | --limit N] KEY`: exit 0 when a `run --timeout 0` would get the
 * lock (or, issue 13, a permit with limit N) now, 1 when not, 69 when the backend cannot be
 * reached (issue 11).
 */

import { LockFailed } from "../errors.ts";
import type { StateABC } from "../state.ts";
import type { TestArguments } from "./args.ts";
import { chooseBackend, type Environment, openState } from "./backend.ts";
import { ExitCode } from "./exit_codes.ts";
import { tell } from "./messages.ts";

/**
 * `shared-state test`: resolves with the exit code.
 *
 * @throws {UsageError} no URL, or a URL the backend rejects.
 * @throws {BackendUnavailable} the backend's driver package is missing.
 */
export async function testLock(args: TestArguments, env: Environment): Promise<number> {
  const target = chooseBackend(args.backend, env, "test");
  let state: StateABC | undefined;
  try {
    state = await openState(target, `shared-state test ${args.key}`);
    const free = args.limit === undefined
      ? await state.testLock(args.key, { exclusive: args.exclusive })
      : await state.testPermit(args.key, { limit: args.limit });
    return free ? ExitCode.ok : ExitCode.held;
  } catch (error) {
    if (!(error instanceof LockFailed)) throw error;
    tell(error.message);
    return ExitCode.unavailable;
  } finally {
    await state?.close();
  }
}
