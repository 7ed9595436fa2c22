/**
 * `node:assert/strict` for the browser test (`runtimes/browser_test.ts`): the bundle of the page
 * maps `node:assert` and `node:assert/strict` here, so that the conformance suite runs in a
 * browser unchanged. It covers what the suite and the page use, with Node's strict semantics:
 * `ok`, `equal` and `notEqual` (`Object.is`), `deepEqual` and `notDeepEqual` (deep strict, with
 * prototypes), `match` and `doesNotMatch`, `fail`, `throws` and `rejects` (an error class, a
 * validation function, a `RegExp`, or an object or error whose properties must match).
 * `browser_test.ts` checks it against `node:assert/strict` under Deno.
 *
 * @module
 */

/** The error of a failed assertion, as Node names it. */
export class AssertionError extends Error {
  override name = "AssertionError";
  readonly code = "ERR_ASSERTION";
  readonly actual: unknown;
  readonly expected: unknown;
  readonly operator: string;

  constructor(
    options: { message: string; actual?: unknown; expected?: unknown; operator: string },
  ) {
    super(options.message);
    this.actual = options.actual;
    this.expected = options.expected;
    this.operator = options.operator;
  }
}

/** A short rendering of a value for a failure message. */
export function inspect(value: unknown, depth = 0): string {
  if (typeof value === "string") return JSON.stringify(value);
  if (typeof value === "bigint") return `${value}n`;
  if (typeof value === "function") return `[Function ${value.name || "(anonymous)"}]`;
  if (typeof value !== "object" || value === null) return String(value);
  if (value instanceof Error) return `${value.name}: ${value.message}`;
  if (value instanceof RegExp || value instanceof Date) return String(value);
  if (depth > 2) return Array.isArray(value) ? "[Array]" : "[Object]";
  if (Array.isArray(value)) return `[ ${value.map((v) => inspect(v, depth + 1)).join(", ")} ]`;
  const entries = Object.entries(value).map(([k, v]) => `${k}: ${inspect(v, depth + 1)}`);
  return `{ ${entries.join(", ")} }`;
}

function failWith(
  message: string | Error | undefined,
  fallback: string,
  details: { actual?: unknown; expected?: unknown; operator: string },
): never {
  if (message instanceof Error) throw message;
  throw new AssertionError({ message: message ?? fallback, ...details });
}

/** Node's `isDeepStrictEqual`, for the values tests compare: primitives, arrays, objects, errors. */
export function isDeepStrictEqual(
  a: unknown,
  b: unknown,
  seen = new Map<object, object>(),
): boolean {
  if (Object.is(a, b)) return true;
  if (typeof a !== "object" || typeof b !== "object" || a === null || b === null) return false;
  if (Object.getPrototypeOf(a) !== Object.getPrototypeOf(b)) return false;
  if (seen.get(a) === b) return true;
  seen.set(a, b);
  if (a instanceof Date) return a.getTime() === (b as Date).getTime();
  if (a instanceof RegExp) return String(a) === String(b);
  if (a instanceof Error) {
    const e = b as Error;
    if (a.name !== e.name || a.message !== e.message) return false;
  }
  if (Array.isArray(a) && a.length !== (b as unknown[]).length) return false;
  if (a instanceof Map) {
    const m = b as Map<unknown, unknown>;
    if (a.size !== m.size) return false;
    for (const [key, value] of a) {
      if (!m.has(key) || !isDeepStrictEqual(value, m.get(key), seen)) return false;
    }
    return true;
  }
  if (a instanceof Set) {
    const s = b as Set<unknown>;
    if (a.size !== s.size) return false;
    for (const value of a) if (!s.has(value)) return false;
    return true;
  }
  const keysA = Object.keys(a);
  const keysB = Object.keys(b);
  if (keysA.length !== keysB.length) return false;
  for (const key of keysA) {
    if (!Object.prototype.hasOwnProperty.call(b, key)) return false;
    const valueA = (a as Record<string, unknown>)[key];
    const valueB = (b as Record<string, unknown>)[key];
    if (!isDeepStrictEqual(valueA, valueB, seen)) return false;
  }
  return true;
}

/** What `throws` and `rejects` accept as the expected error. */
export type Expected =
  | (new (...args: never[]) => unknown)
  | ((error: unknown) => boolean)
  | RegExp
  | Record<string, unknown>
  | Error;

/** Node's check of a thrown or rejected `actual` against `expected`. */
function checkError(actual: unknown, expected: Expected, message: string | undefined, op: string) {
  const details = { actual, expected, operator: op };
  if (typeof expected === "function") {
    if (expected.prototype !== undefined && actual instanceof expected) return;
    if (Object.prototype.isPrototypeOf.call(Error, expected) || expected === Error) {
      failWith(
        message,
        `The error is expected to be an instance of "${expected.name}". Received ${
          inspect(actual)
        }`,
        details,
      );
    }
    const result = (expected as (error: unknown) => unknown).call({}, actual);
    if (result !== true) {
      failWith(
        message,
        `The ${
          expected.name ? `"${expected.name}" ` : ""
        }validation function is expected to return "true". Received ${inspect(result)}`,
        details,
      );
    }
    return;
  }
  if (expected instanceof RegExp) {
    if (expected.test(String(actual))) return;
    failWith(
      message,
      `The input did not match the regular expression ${expected}. Input: ${inspect(actual)}`,
      details,
    );
  }
  if (typeof actual !== "object" || actual === null) {
    failWith(message, `${inspect(actual)} is not an object to compare with`, details);
  }
  const keys = Object.keys(expected);
  if (expected instanceof Error) keys.push("name", "message");
  for (const key of keys) {
    const want = (expected as Record<string, unknown>)[key];
    const got = (actual as Record<string, unknown>)[key];
    const ok = want instanceof RegExp && typeof got === "string"
      ? want.test(got)
      : isDeepStrictEqual(got, want);
    if (!ok) {
      failWith(
        message,
        `Expected values to be strictly deep-equal: ${key}: ${inspect(got)} !== ${inspect(want)}`,
        details,
      );
    }
  }
}

/** `expected` and `message`, where a string in `expected`'s place is the message (as in Node). */
function split(expected: Expected | string | undefined, message: string | undefined) {
  return typeof expected === "string"
    ? { expected: undefined, message: expected }
    : { expected, message };
}

/** Asserts that `value` is truthy. */
function ok(value: unknown, message?: string | Error): asserts value {
  if (!value) {
    failWith(
      message,
      `The expression evaluated to a falsy value: ${inspect(value)}`,
      { actual: value, expected: true, operator: "==" },
    );
  }
}

/** The strict assert: a function (`assert(value)`), with the methods of `node:assert/strict`. */
interface StrictAssert {
  (value: unknown, message?: string | Error): asserts value;
  ok(value: unknown, message?: string | Error): asserts value;
  equal<T>(actual: unknown, expected: T, message?: string | Error): asserts actual is T;
  strictEqual<T>(actual: unknown, expected: T, message?: string | Error): asserts actual is T;
  notEqual(actual: unknown, expected: unknown, message?: string | Error): void;
  notStrictEqual(actual: unknown, expected: unknown, message?: string | Error): void;
  deepEqual<T>(actual: unknown, expected: T, message?: string | Error): asserts actual is T;
  deepStrictEqual<T>(actual: unknown, expected: T, message?: string | Error): asserts actual is T;
  notDeepEqual(actual: unknown, expected: unknown, message?: string | Error): void;
  notDeepStrictEqual(actual: unknown, expected: unknown, message?: string | Error): void;
  match(value: string, pattern: RegExp, message?: string | Error): void;
  doesNotMatch(value: string, pattern: RegExp, message?: string | Error): void;
  fail(message?: string | Error): never;
  throws(fn: () => unknown, expected?: Expected | string, message?: string): void;
  rejects(
    promise: Promise<unknown> | (() => Promise<unknown>),
    expected?: Expected | string,
    message?: string,
  ): Promise<void>;
  AssertionError: typeof AssertionError;
  strict: StrictAssert;
}

function equal(actual: unknown, expected: unknown, message?: string | Error): void {
  if (!Object.is(actual, expected)) {
    failWith(
      message,
      `Expected values to be strictly equal:\n\n${inspect(actual)} !== ${inspect(expected)}\n`,
      { actual, expected, operator: "strictEqual" },
    );
  }
}

function notEqual(actual: unknown, expected: unknown, message?: string | Error): void {
  if (Object.is(actual, expected)) {
    failWith(message, `Expected "actual" to be strictly unequal to: ${inspect(expected)}`, {
      actual,
      expected,
      operator: "notStrictEqual",
    });
  }
}

function deepEqual(actual: unknown, expected: unknown, message?: string | Error): void {
  if (!isDeepStrictEqual(actual, expected)) {
    failWith(
      message,
      `Expected values to be strictly deep-equal:\n${inspect(actual)}\n!==\n${inspect(expected)}`,
      { actual, expected, operator: "deepStrictEqual" },
    );
  }
}

function notDeepEqual(actual: unknown, expected: unknown, message?: string | Error): void {
  if (isDeepStrictEqual(actual, expected)) {
    failWith(message, `Expected "actual" not to be strictly deep-equal to: ${inspect(expected)}`, {
      actual,
      expected,
      operator: "notDeepStrictEqual",
    });
  }
}

function match(value: string, pattern: RegExp, message?: string | Error): void {
  if (typeof value !== "string" || !pattern.test(value)) {
    failWith(
      message,
      `The input did not match the regular expression ${pattern}. Input: ${inspect(value)}`,
      { actual: value, expected: pattern, operator: "match" },
    );
  }
}

function doesNotMatch(value: string, pattern: RegExp, message?: string | Error): void {
  if (typeof value !== "string" || pattern.test(value)) {
    failWith(
      message,
      `The input was expected to not match the regular expression ${pattern}. Input: ${
        inspect(value)
      }`,
      { actual: value, expected: pattern, operator: "doesNotMatch" },
    );
  }
}

function fail(message: string | Error = "Failed"): never {
  failWith(message, "Failed", { operator: "fail" });
}

function throws(fn: () => unknown, expected?: Expected | string, message?: string): void {
  const args = split(expected, message);
  try {
    fn();
  } catch (error) {
    if (args.expected !== undefined) checkError(error, args.expected, args.message, "throws");
    return;
  }
  failWith(
    undefined,
    `Missing expected exception${args.message ? `: ${args.message}` : "."}`,
    { operator: "throws", expected: args.expected },
  );
}

async function rejects(
  promise: Promise<unknown> | (() => Promise<unknown>),
  expected?: Expected | string,
  message?: string,
): Promise<void> {
  const args = split(expected, message);
  // As in Node, a function that throws instead of returning a promise rejects with its error.
  const settling = typeof promise === "function" ? promise() : promise;
  try {
    await settling;
  } catch (error) {
    if (args.expected !== undefined) checkError(error, args.expected, args.message, "rejects");
    return;
  }
  failWith(
    undefined,
    `Missing expected rejection${args.message ? `: ${args.message}` : "."}`,
    { operator: "rejects", expected: args.expected },
  );
}

const assert = ((value: unknown, message?: string | Error) => ok(value, message)) as StrictAssert;
Object.assign(assert, {
  ok,
  equal,
  strictEqual: equal,
  notEqual,
  notStrictEqual: notEqual,
  deepEqual,
  deepStrictEqual: deepEqual,
  notDeepEqual,
  notDeepStrictEqual: notDeepEqual,
  match,
  doesNotMatch,
  fail,
  throws,
  rejects,
  AssertionError,
  strict: assert,
});

export default assert;
export {
  deepEqual,
  doesNotMatch,
  equal,
  equal as strictEqual,
  fail,
  match,
  notDeepEqual,
  notEqual,
  ok,
  rejects,
  throws,
};
