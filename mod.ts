/**
 * Named read/write locks for workers that share state, behind one abstract class with pluggable
 * backends: the TypeScript form of Python's `momotor.shared.state`.
 *
 * - {@link StateABC}: the contract (`getLock`, `testLock`, `withLock`, `close`).
 * - {@link LocalState}: in memory, for the tasks of one process.
 * - `PostgresState` (`@momotor/shared-state/postgres`): PostgreSQL advisory locks, across
 *   processes and machines.
 * - `BrokerState` and `brokerHandler` (`@momotor/shared-state/broker`): one state served to
 *   workers over WebSocket.
 *
 * This entry point uses web-standard APIs only and pulls in no database driver.
 *
 * @example
 * ```ts
 * import { LocalState } from "@momotor/shared-state";
 *
 * const state = new LocalState();
 * {
 *   await using _lock = await state.getLock("grading/42", { exclusive: false });
 *   // … read what other workers may read at the same time …
 * }
 * await state.close();
 * ```
 *
 * @module
 */

export {
  type LockErrorDetails,
  LockFailed,
  type LockFailedDetails,
  type LockFailedReason,
  LockLost,
  type LockLostDetails,
  type LockLostReason,
} from "./errors.ts";
export {
  type Lock,
  type LockHolder,
  type LockInfo,
  type LockOptions,
  type LockRequest,
  type MultiLock,
  type Permit,
  type PermitOptions,
  type PermitRequest,
  StateABC,
  type TestLockOptions,
  type TestPermitOptions,
} from "./state.ts";
export { LocalState, type LocalStateOptions } from "./backends/local.ts";
export { LOG_CATEGORY } from "./internal/log.ts";
