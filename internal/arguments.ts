/**
 * Argument checks shared by every call and constructor of every backend, with one message style:
 *
 * - `unknown option "nameSpace" in PostgresState options (known: namespace, mode, …)`
 * - `option "timeout" in getLock options must be a number of milliseconds, got "10"`
 * - `getLock options must be an object, got null`
 */

import type {
  LockOptions,
  LockRequest,
  PermitOptions,
  PermitRequest,
  TestLockOptions,
  TestPermitOptions,
} from "../lock.ts";

const DEFAULT_REQUEST: LockRequest = Object.freeze({
  exclusive: true,
  deadline: undefined,
  timeout: undefined,
  tryOnce: false,
  signal: undefined,
});

/** The request of `{ exclusive: false }` alone, the common shared case, made once. */
const SHARED_REQUEST: LockRequest = Object.freeze({ ...DEFAULT_REQUEST, exclusive: false });

/** Options of `getLock` and `withLock`. */
const LOCK_OPTIONS = optionNames<LockOptions>({ exclusive: true, timeout: true, signal: true });
/** Options of `testLock`. */
const TEST_OPTIONS = optionNames<TestLockOptions>({ exclusive: true });
/** Options of `getPermit` and `withPermit`. */
const PERMIT_OPTIONS = optionNames<PermitOptions>({ limit: true, timeout: true, signal: true });
/** Options of `testPermit`. */
const TEST_PERMIT_OPTIONS = optionNames<TestPermitOptions>({ limit: true });

/** The most characters of a value quoted in a message. */
const SHOWN_LENGTH = 40;

/** A value as a message quotes it, once: `"abc"`, `42`, `undefined`, `10n`, `{"a":1}`, `[object Map]`. */
export function show(value: unknown): string {
  switch (typeof value) {
    case "string":
      return JSON.stringify(
        value.length > SHOWN_LENGTH ? `${value.slice(0, SHOWN_LENGTH)}…` : value,
      );
    case "bigint":
      return `${value}n`;
    case "symbol":
      return value.toString();
    case "function":
      return value.name ? `function ${value.name}` : "a function";
    case "object": {
      if (value === null) return "null";
      const prototype = Object.getPrototypeOf(value);
      if (prototype !== Object.prototype && prototype !== null && !Array.isArray(value)) {
        return Object.prototype.toString.call(value);
      }
      try {
        const json = JSON.stringify(value);
        return json.length > SHOWN_LENGTH ? `${json.slice(0, SHOWN_LENGTH)}…` : json;
      } catch {
        return Object.prototype.toString.call(value);
      }
    }
    default:
      return String(value);
  }
}

/** `option "name" in <what> must be <expected>, got <value>`, as a TypeError. */
export function optionTypeError(
  what: string,
  name: string,
  expected: string,
  value: unknown,
): TypeError {
  return new TypeError(`option "${name}" in ${what} must be ${expected}, got ${show(value)}`);
}

/** `option "name" in <what> must be <expected>, got <value>`, as a RangeError. */
export function optionRangeError(
  what: string,
  name: string,
  expected: string,
  value: unknown,
): RangeError {
  return new RangeError(`option "${name}" in ${what} must be ${expected}, got ${show(value)}`);
}

/**
 * The names of every option of `T`, for {@link checkOptions}: the type checker refuses a list
 * that misses one, so that a new option cannot be forgotten here.
 */
export function optionNames<T>(names: Record<keyof T, true>): readonly string[] {
  return Object.freeze(Object.keys(names));
}

/**
 * Checks that `options` is an object whose keys are all in `known`: a typo (`nameSpace`) is a
 * TypeError naming it and the known ones. On the hot path (`getLock`): a `for…in` over a small
 * object and no allocation when every key is known.
 *
 * @param options What the caller passed.
 * @param known Every option the call takes.
 * @param what The options' name in messages: `"getLock options"`, `"PostgresState options"`.
 */
export function checkOptions(
  options: unknown,
  known: readonly string[],
  what: string,
): asserts options is Record<string, unknown> {
  if (typeof options !== "object" || options === null) {
    throw new TypeError(`${what} must be an object, got ${show(options)}`);
  }
  for (const name in options) {
    if (!known.includes(name)) {
      throw new TypeError(
        `unknown option ${JSON.stringify(name)} in ${what} (known: ${known.join(", ")})`,
      );
    }
  }
}

export function checkKey(key: unknown): asserts key is string {
  if (typeof key !== "string") throw new TypeError(`key must be a string, got ${show(key)}`);
}

export function checkFunction(fn: unknown, name: string): void {
  if (typeof fn !== "function") throw new TypeError(`${name} must be a function, got ${show(fn)}`);
}

function parseExclusive(value: unknown, what: string): boolean {
  if (value === undefined) return true;
  if (typeof value !== "boolean") throw optionTypeError(what, "exclusive", "a boolean", value);
  return value;
}

/** Checks the `timeout` and `signal` options, common to locks and permits. */
/** How a request waits: the part of a {@link LockRequest} that `timeout` and `signal` make. */
type RequestTiming = Pick<LockRequest, "deadline" | "timeout" | "tryOnce" | "signal">;

/** Validates `timeout` and `signal` into a request's timing, its deadline counted from now. */
function checkWait(timeout: unknown, signal: unknown, what: string): RequestTiming {
  if (timeout !== undefined) {
    if (typeof timeout !== "number") {
      throw optionTypeError(what, "timeout", "a number of milliseconds", timeout);
    }
    if (!(timeout >= 0) || timeout === Infinity) {
      throw optionRangeError(
        what,
        "timeout",
        "a finite number >= 0 (leave it out to wait for ever)",
        timeout,
      );
    }
  }
  if (signal !== undefined && !(signal instanceof AbortSignal)) {
    throw optionTypeError(what, "signal", "an AbortSignal", signal);
  }
  return {
    deadline: timeout === undefined ? undefined : performance.now() + timeout,
    timeout,
    tryOnce: timeout === 0,
    signal,
  };
}

/**
 * Validates `getLock` options into a request whose deadline counts from now.
 *
 * @param what The options' name in messages: `"getLock options"` or `"withLock options"`.
 */
export function parseLockOptions(options: LockOptions | undefined, what: string): LockRequest {
  if (options === undefined) return DEFAULT_REQUEST;
  checkOptions(options, LOCK_OPTIONS, what);
  const exclusive = parseExclusive(options.exclusive, what);
  if (options.timeout === undefined && options.signal === undefined) {
    return exclusive ? DEFAULT_REQUEST : SHARED_REQUEST;
  }
  return { exclusive, ...checkWait(options.timeout, options.signal, what) };
}

/** Validates `testLock` options into the mode to test. */
export function checkTestOptions(options: TestLockOptions | undefined): boolean {
  if (options === undefined) return true;
  checkOptions(options, TEST_OPTIONS, "testLock options");
  return parseExclusive(options.exclusive, "testLock options");
}

// ---- Permits and multi-key locks (issue 13) ----

/** A permit's `limit`: a positive safe integer, required. */
function parseLimit(value: unknown, what: string): number {
  if (typeof value !== "number") throw optionTypeError(what, "limit", "a number", value);
  if (!Number.isSafeInteger(value) || value < 1) {
    throw optionRangeError(what, "limit", "a positive safe integer", value);
  }
  return value;
}

/**
 * Validates `getPermit` options (`limit` required) into a request whose deadline counts from now.
 *
 * @param what The options' name in messages: `"getPermit options"` or `"withPermit options"`.
 */
export function parsePermitOptions(
  options: PermitOptions | undefined,
  what: string,
): PermitRequest {
  checkOptions(options, PERMIT_OPTIONS, what);
  const limit = parseLimit(options.limit, what);
  return { exclusive: false, limit, ...checkWait(options.timeout, options.signal, what) };
}

/** Validates `testPermit` options into the limit to test. */
export function checkTestPermitOptions(options: TestPermitOptions | undefined): number {
  checkOptions(options, TEST_PERMIT_OPTIONS, "testPermit options");
  return parseLimit(options.limit, "testPermit options");
}

/**
 * Validates the keys of `getLocks`: an array of strings, at least one. Duplicates are dropped
 * (a key named twice is locked once); the result keeps the order in which keys were first named.
 */
export function parseKeys(keys: unknown): string[] {
  if (!Array.isArray(keys)) {
    throw new TypeError(`keys must be an array of strings, got ${show(keys)}`);
  }
  if (keys.length === 0) throw new RangeError("keys must name at least one key, got []");
  for (const [index, key] of keys.entries()) {
    if (typeof key !== "string") {
      throw new TypeError(`keys[${index}] must be a string, got ${show(key)}`);
    }
  }
  return [...new Set(keys as string[])];
}
