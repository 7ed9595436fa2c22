/**
 * `shared-state run [options] KEY -- COMMAND [ARGS…]`: takes the lock, runs the command, and
 * releases the lock once the command has ended, never before (issue 11).
 *
 * - A signal (SIGINT, SIGTERM, SIGHUP) while waiting ends the wait: exit 128+N, nothing run.
 * - A signal while the command runs is passed on to it; the CLI goes on waiting for it.
 * - A lost lock (dead connection, broker gone) sends the command SIGTERM, then SIGKILL after
 *   `--kill-after`, and exits 74 once it has ended: its work is no longer protected.
 */

import { LockFailed } from "../errors.ts";
import type { StateABC } from "../state.ts";
import type { RunArguments } from "./args.ts";
import { chooseBackend, type Environment, openState } from "./backend.ts";
import { CommandNotStarted, type CommandProcess, startCommand } from "./command_process.ts";
import { ExitCode, failureExitCode, signalExitCode } from "./exit_codes.ts";
import { duration, tell } from "./messages.ts";
import { catchSignals, type RelayedSignal } from "./signals.ts";
import { WaitNotice } from "./wait_notice.ts";

/** What the command runs under: a lock, or (issue 13, `--limit`) a permit. */
interface Held {
  readonly signal: AbortSignal;
  release(): Promise<void>;
}

/** What the command finds in its environment besides the CLI's own. */
function commandEnvironment(args: RunArguments): Record<string, string> {
  if (args.limit !== undefined) {
    return {
      SHARED_STATE_KEY: args.key,
      SHARED_STATE_MODE: "permit",
      SHARED_STATE_LIMIT: String(args.limit),
    };
  }
  return { SHARED_STATE_KEY: args.key, SHARED_STATE_MODE: args.exclusive ? "exclusive" : "shared" };
}

/** The signals received so far, and where they go: the wait until the command runs, then it. */
class SignalRoute {
  /** The first signal received before the command started. */
  early: RelayedSignal | undefined;
  readonly #wait = new AbortController();
  #command: CommandProcess | undefined;

  /** Aborted by the first signal received before the command started. */
  get waitSignal(): AbortSignal {
    return this.#wait.signal;
  }

  receive(signal: RelayedSignal): void {
    if (this.#command !== undefined) {
      this.#command.kill(signal);
      return;
    }
    this.early ??= signal;
    this.#wait.abort(signal);
  }

  /** From now on signals go to `command`, beginning with one that came while it was started. */
  attach(command: CommandProcess): void {
    this.#command = command;
    if (this.early !== undefined) command.kill(this.early);
  }
}

/** Waits for the lock (or the permit); a number is the exit code when it did not come. */
async function acquire(
  state: StateABC,
  args: RunArguments,
  route: SignalRoute,
): Promise<Held | number> {
  const notice = args.quiet
    ? undefined
    : new WaitNotice(args.key, args.exclusive, args.timeout, args.limit);
  try {
    const { key, limit, timeout } = args;
    const signal = route.waitSignal;
    const lock = limit === undefined
      ? await state.getLock(key, { exclusive: args.exclusive, timeout, signal })
      : await state.getPermit(key, { limit, timeout, signal });
    notice?.stop(true);
    return lock;
  } catch (error) {
    notice?.stop(false);
    if (route.early !== undefined) return signalExitCode(route.early);
    if (!(error instanceof LockFailed)) throw error;
    const code = failureExitCode(error);
    if (code !== ExitCode.notAcquired || !args.quiet) {
      tell(`${error.message}; the command did not run`);
    }
    return code;
  }
}

/** Runs the command under the held lock; resolves with the exit code once it has ended. */
async function runHolding(lock: Held, args: RunArguments, route: SignalRoute): Promise<number> {
  let command: CommandProcess;
  try {
    command = await startCommand(args.command, commandEnvironment(args));
  } catch (error) {
    if (!(error instanceof CommandNotStarted)) throw error;
    tell(error.message);
    return error.code === "ENOENT" ? ExitCode.notFound : ExitCode.cannotExecute;
  }
  route.attach(command);

  let lost = false;
  let ended = false;
  let killTimer: ReturnType<typeof setTimeout> | undefined;
  const onLost = () => {
    if (ended) return;
    lost = true;
    const reason = lock.signal.reason;
    tell(
      `${reason instanceof Error ? reason.message : "lost the lock"}: sending SIGTERM to the ` +
        `command, SIGKILL in ${duration(args.killAfter)} if it is still running`,
    );
    command.kill("SIGTERM");
    killTimer = setTimeout(() => {
      tell("the command is still running: sending SIGKILL");
      command.kill("SIGKILL");
    }, args.killAfter);
  };
  lock.signal.addEventListener("abort", onLost, { once: true });
  if (lock.signal.aborted) onLost();

  const end = await command.ended;
  ended = true;
  clearTimeout(killTimer);
  lock.signal.removeEventListener("abort", onLost);
  if (lost) return ExitCode.lost;
  return end.signal !== undefined ? signalExitCode(end.signal) : end.code;
}

/**
 * `shared-state run`: resolves with the exit code.
 *
 * @throws {UsageError} no URL, or a URL the backend rejects.
 * @throws {BackendUnavailable} the backend's driver package is missing.
 */
export async function runUnderLock(args: RunArguments, env: Environment): Promise<number> {
  const target = chooseBackend(args.backend, env, "run");
  const route = new SignalRoute();
  const stopCatching = catchSignals((signal) => route.receive(signal));
  let state: StateABC | undefined;
  try {
    state = await openState(target, `shared-state run ${args.key}`);
    const lock = await acquire(state, args, route);
    if (typeof lock === "number") return lock;
    try {
      if (route.early !== undefined) return signalExitCode(route.early);
      if (lock.signal.aborted) {
        const reason = lock.signal.reason;
        tell(
          `${reason instanceof Error ? reason.message : "lost the lock"}; the command did not run`,
        );
        return ExitCode.unavailable;
      }
      return await runHolding(lock, args, route);
    } finally {
      await lock.release();
    }
  } finally {
    await state?.close();
    // Only now: a signal that comes while the lock is released and the state closed is not
    // allowed to end the CLI before the lock is really free.
    stopCatching();
  }
}
