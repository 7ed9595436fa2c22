/** Argument checks shared by every backend: bad input is a TypeError or RangeError naming it. */

import type { LockOptions, LockRequest, TestLockOptions } from "../state.ts";

const DEFAULT_REQUEST: LockRequest = Object.freeze({
  exclusive: true,
  deadline: undefined,
  timeout: undefined,
  tryOnce: false,
  signal: undefined,
});

/** The request of `{ exclusive: false }` alone, the common shared case, made once. */
const SHARED_REQUEST: LockRequest = Object.freeze({ ...DEFAULT_REQUEST, exclusive: false });

function show(value: unknown): string {
  if (typeof value === "string") return JSON.stringify(value.slice(0, 40));
  if (typeof value === "bigint") return `${value}n`;
  if (typeof value === "symbol" || typeof value === "function") return String(typeof value);
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return Object.prototype.toString.call(value);
  }
}

export function checkKey(key: unknown): asserts key is string {
  if (typeof key !== "string") {
    throw new TypeError(`key must be a string, got ${typeof key} ${show(key)}`);
  }
}

export function checkFunction(fn: unknown, name: string): void {
  if (typeof fn !== "function") throw new TypeError(`${name} must be a function, got ${show(fn)}`);
}

function checkOptionsObject(options: unknown): asserts options is Record<string, unknown> {
  if (typeof options !== "object" || options === null) {
    throw new TypeError(`options must be an object, got ${show(options)}`);
  }
}

function parseExclusive(value: unknown): boolean {
  if (value === undefined) return true;
  if (typeof value !== "boolean") {
    throw new TypeError(`options.exclusive must be a boolean, got ${show(value)}`);
  }
  return value;
}

/** Validates `getLock` options into a request whose deadline counts from now. */
export function parseLockOptions(options: LockOptions | undefined): LockRequest {
  if (options === undefined) return DEFAULT_REQUEST;
  checkOptionsObject(options);
  const exclusive = parseExclusive(options.exclusive);
  const { timeout, signal } = options;
  if (timeout === undefined && signal === undefined) {
    return exclusive ? DEFAULT_REQUEST : SHARED_REQUEST;
  }
  if (timeout !== undefined) {
    if (typeof timeout !== "number") {
      throw new TypeError(`options.timeout must be a number of milliseconds, got ${show(timeout)}`);
    }
    if (!(timeout >= 0) || timeout === Infinity) {
      throw new RangeError(
        `options.timeout must be a finite number >= 0 (leave it out to wait for ever), got ${timeout}`,
      );
    }
  }
  if (signal !== undefined && !(signal instanceof AbortSignal)) {
    throw new TypeError(`options.signal must be an AbortSignal, got ${show(signal)}`);
  }
  return {
    exclusive,
    deadline: timeout === undefined ? undefined : performance.now() + timeout,
    timeout,
    tryOnce: timeout === 0,
    signal,
  };
}

/** Validates `testLock` options into the mode to test. */
export function checkTestOptions(options: TestLockOptions | undefined): boolean {
  if (options === undefined) return true;
  checkOptionsObject(options);
  return parseExclusive(options.exclusive);
}
