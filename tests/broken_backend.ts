/**
 * A fixture for `conformance_test.ts`, run as a test file in a child process: the conformance
 * suite, through the public entry, on a LocalState broken on purpose as `BROKEN` says.
 *
 * - `exclusive`: exclusive requests are granted as shared ones (two "exclusive" holders at once).
 * - `release`: `release()` resolves but frees nothing.
 * - `fencing`: every lock's fencing token is the same number.
 * - `none`: LocalState as it is (the control).
 */

import process from "node:process";
import { LocalState, type Lock, type LockRequest } from "../mod.ts";
import { conformanceSuite } from "../testing.ts";

/** A lock that shows `exclusive` and releases with `release`, whatever it really holds. */
function disguise(
  lock: Lock,
  exclusive: boolean,
  release: () => Promise<void>,
  fencingToken: () => Promise<bigint> = () => lock.fencingToken(),
): Lock {
  return {
    key: lock.key,
    exclusive,
    signal: lock.signal,
    release,
    fencingToken,
    [Symbol.asyncDispose]: release,
  };
}

/** Grants an exclusive request in shared mode, and says it is exclusive. */
class SharedExclusive extends LocalState {
  protected override async acquire(key: string, request: LockRequest): Promise<Lock> {
    if (!request.exclusive) return super.acquire(key, request);
    const lock = await super.acquire(key, { ...request, exclusive: false });
    return disguise(lock, true, () => lock.release());
  }
}

/** Hands out locks whose release does nothing. */
class NoRelease extends LocalState {
  protected override async acquire(key: string, request: LockRequest): Promise<Lock> {
    const lock = await super.acquire(key, request);
    return disguise(lock, lock.exclusive, () => Promise.resolve());
  }
}

/** Hands out locks whose fencing tokens never grow. */
class StuckTokens extends LocalState {
  protected override async acquire(key: string, request: LockRequest): Promise<Lock> {
    const lock = await super.acquire(key, request);
    return disguise(lock, lock.exclusive, () => lock.release(), () => Promise.resolve(7n));
  }
}

const backends: Record<string, () => LocalState> = {
  exclusive: () => new SharedExclusive(),
  release: () => new NoRelease(),
  fencing: () => new StuckTokens(),
  none: () => new LocalState(),
};
const broken = process.env.BROKEN ?? "";
const create = backends[broken];
if (create === undefined) throw new Error(`BROKEN must be one of ${Object.keys(backends)}`);

// A test whose lock is never released fails after a second instead of hanging the run.
conformanceSuite(`LocalState broken: ${broken}`, { create, timeout: 1000 });
