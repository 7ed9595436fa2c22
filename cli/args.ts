/**
 * The command line of `shared-state`, parsed with Node's `node:util` `parseArgs` (issue 11): it
 * runs alike on Deno and Node, is maintained with Node itself, and adds no dependency. What it
 * does not do (subcommands, `KEY -- COMMAND`, numbers) is the little code below.
 */

import { parseArgs, type ParseArgsConfig } from "node:util";
import { BROKER_HELP, ID_HELP, LOCKS_HELP, MAIN_HELP, RUN_HELP, TEST_HELP } from "./help.ts";

/** Where the locks live, as the flags say; the environment fills in the rest (backend.ts). */
export interface BackendFlags {
  url?: string;
  token?: string;
  namespace?: string;
}

/** `run [options] KEY -- COMMAND [ARGS…]`. */
export interface RunArguments {
  key: string;
  exclusive: boolean;
  /** Issue 13: with `--limit N`, a permit of KEY with limit N instead of a lock. */
  limit: number | undefined;
  /** Milliseconds; `undefined` waits for ever, `0` tries once. */
  timeout: number | undefined;
  /** Milliseconds between SIGTERM and SIGKILL when the lock is lost. */
  killAfter: number;
  quiet: boolean;
  backend: BackendFlags;
  /** The command and its arguments; never empty. */
  command: string[];
}

/** `test [options] KEY`. */
export interface TestArguments {
  key: string;
  exclusive: boolean;
  /** Issue 13: with `--limit N`, whether a permit with limit N is free. */
  limit: number | undefined;
  backend: BackendFlags;
}

/** `id [--namespace NS] KEY`. */
export interface IdArguments {
  key: string;
  namespace: string;
}

/** `locks [options] [KEY…]` (issue 12). */
export interface LocksArguments {
  /** The keys to look at; none: every advisory lock of the database (PostgreSQL only). */
  keys: string[];
  /** JSON on stdout instead of a table. */
  json: boolean;
  backend: BackendFlags;
}

/** `broker [options]`. */
export interface BrokerArguments {
  port: number;
  hostname: string;
  token?: string;
  url?: string;
  namespace?: string;
}

/** What the command line asks for. */
export type Invocation =
  | { kind: "help"; text: string }
  | { kind: "version" }
  | { kind: "run"; args: RunArguments }
  | { kind: "test"; args: TestArguments }
  | { kind: "id"; args: IdArguments }
  | { kind: "locks"; args: LocksArguments }
  | { kind: "broker"; args: BrokerArguments };

/** Bad usage: the message says what, and which `--help` to read (exit code 64). */
export class UsageError extends Error {
  /** The subcommand whose help to point at, or `undefined` for the top level. */
  readonly subcommand: string | undefined;

  constructor(message: string, subcommand?: string) {
    super(message);
    this.name = "UsageError";
    this.subcommand = subcommand;
  }
}

/** Kill-after default: ten seconds of grace between SIGTERM and SIGKILL. */
export const DEFAULT_KILL_AFTER_MS = 10_000;
/** The broker's default port and interface, as `deno task broker`'s. */
export const DEFAULT_BROKER_PORT = 8787;
export const DEFAULT_BROKER_HOSTNAME = "127.0.0.1";

type Options = NonNullable<ParseArgsConfig["options"]>;

const HELP: Options = { help: { type: "boolean", short: "h" } };
const BACKEND: Options = {
  url: { type: "string" },
  token: { type: "string" },
  namespace: { type: "string" },
};
const RUN: Options = {
  ...HELP,
  ...BACKEND,
  shared: { type: "boolean" },
  timeout: { type: "string" },
  "kill-after": { type: "string" },
  quiet: { type: "boolean" },
  limit: { type: "string" },
};
const TEST: Options = {
  ...HELP,
  ...BACKEND,
  shared: { type: "boolean" },
  limit: { type: "string" },
};
const ID: Options = { ...HELP, namespace: { type: "string" } };
const LOCKS: Options = { ...HELP, ...BACKEND, json: { type: "boolean" } };
const BROKER: Options = {
  ...HELP,
  port: { type: "string" },
  hostname: { type: "string" },
  token: { type: "string" },
  url: { type: "string" },
  namespace: { type: "string" },
};

const SUBCOMMAND_HELP: Record<string, string> = {
  run: RUN_HELP,
  test: TEST_HELP,
  id: ID_HELP,
  locks: LOCKS_HELP,
  broker: BROKER_HELP,
};

/** `--help` or `-h` before any `--`: help wins over every other mistake on the line. */
function asksForHelp(args: readonly string[]): boolean {
  for (const arg of args) {
    if (arg === "--") return false;
    if (arg === "--help" || arg === "-h") return true;
  }
  return false;
}

interface Parsed {
  values: Record<string, string | boolean | undefined>;
  /** Positionals before the first `--`, and after it (`undefined` when there is no `--`). */
  before: string[];
  after: string[] | undefined;
}

function parse(args: string[], options: Options, subcommand: string | undefined): Parsed {
  let result;
  try {
    result = parseArgs({ args, options, allowPositionals: true, strict: true, tokens: true });
  } catch (error) {
    // parseArgs's own messages are good ("Unknown option '--nope'"), but for the advice on
    // positionals that start with a dash, which does not apply to KEY -- COMMAND.
    const message = error instanceof Error ? error.message : String(error);
    throw new UsageError(message.split(". To specify a positional argument")[0], subcommand);
  }
  const terminator = result.tokens.find((token) => token.kind === "option-terminator")?.index;
  const before: string[] = [];
  const after: string[] = [];
  for (const token of result.tokens) {
    if (token.kind !== "positional") continue;
    if (terminator === undefined || token.index < terminator) before.push(token.value);
    else after.push(token.value);
  }
  return {
    values: result.values as Parsed["values"],
    before,
    after: terminator === undefined ? undefined : after,
  };
}

/** A whole, non-negative number of milliseconds. */
function milliseconds(value: string | boolean | undefined, flag: string, subcommand: string) {
  if (value === undefined) return undefined;
  const text = String(value);
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(Number(text))) {
    throw new UsageError(
      `${flag} needs a whole number of milliseconds (0 or more), got ${JSON.stringify(text)}`,
      subcommand,
    );
  }
  return Number(text);
}

/**
 * Issue 13: `--limit N`, a whole number from 1 (a permit of KEY instead of a lock), which has no
 * mode, so `--shared` beside it is a mistake.
 */
function permitLimit(values: Parsed["values"], subcommand: string): number | undefined {
  if (values.limit === undefined) return undefined;
  const text = String(values.limit);
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(Number(text)) || Number(text) < 1) {
    throw new UsageError(
      `--limit needs a whole number of holders (1 or more), got ${JSON.stringify(text)}`,
      subcommand,
    );
  }
  if (values.shared === true) {
    throw new UsageError(
      "--limit takes a permit, which has no mode: leave out --shared",
      subcommand,
    );
  }
  return Number(text);
}

function text(value: string | boolean | undefined): string | undefined {
  return typeof value === "string" ? value : undefined;
}

function backendFlags(values: Parsed["values"]): BackendFlags {
  return { url: text(values.url), token: text(values.token), namespace: text(values.namespace) };
}

/** Exactly one KEY among all positionals (`--` lets a key start with a dash). */
function singleKey({ before, after }: Parsed, subcommand: string): string {
  const keys = [...before, ...after ?? []];
  if (keys.length === 0) throw new UsageError("missing KEY", subcommand);
  if (keys.length > 1) {
    throw new UsageError(
      `one KEY only, got ${keys.length}: ${keys.map((key) => JSON.stringify(key)).join(" ")}`,
      subcommand,
    );
  }
  return keys[0];
}

function parseRun(args: string[]): RunArguments {
  const parsed = parse(args, RUN, "run");
  const { values, before, after } = parsed;
  // Numbers first: `--timeout KEY -- …` (a forgotten value) is better told as a bad number.
  const timeout = milliseconds(values.timeout, "--timeout", "run");
  const killAfter = milliseconds(values["kill-after"], "--kill-after", "run");
  const limit = permitLimit(values, "run");
  if (before.length === 0) throw new UsageError("missing KEY", "run");
  if (after === undefined) {
    throw new UsageError(
      before.length === 1
        ? "missing COMMAND: shared-state run [options] KEY -- COMMAND [ARGS…]"
        : "missing -- between KEY and COMMAND: shared-state run [options] KEY -- COMMAND [ARGS…]",
      "run",
    );
  }
  if (before.length > 1) {
    throw new UsageError(
      `one KEY only before --, got ${before.map((key) => JSON.stringify(key)).join(" ")}`,
      "run",
    );
  }
  if (after.length === 0) throw new UsageError("missing COMMAND after --", "run");
  return {
    key: before[0],
    exclusive: values.shared !== true,
    limit,
    timeout,
    killAfter: killAfter ?? DEFAULT_KILL_AFTER_MS,
    quiet: values.quiet === true,
    backend: backendFlags(values),
    command: after,
  };
}

function parseTest(args: string[]): TestArguments {
  const parsed = parse(args, TEST, "test");
  const limit = permitLimit(parsed.values, "test");
  return {
    key: singleKey(parsed, "test"),
    exclusive: parsed.values.shared !== true,
    limit,
    backend: backendFlags(parsed.values),
  };
}

function parseId(args: string[]): IdArguments {
  const parsed = parse(args, ID, "id");
  return { key: singleKey(parsed, "id"), namespace: text(parsed.values.namespace) ?? "" };
}

function parseLocks(args: string[]): LocksArguments {
  const { values, before, after } = parse(args, LOCKS, "locks");
  return {
    keys: [...before, ...after ?? []],
    json: values.json === true,
    backend: backendFlags(values),
  };
}

function parseBroker(args: string[]): BrokerArguments {
  const { values, before, after } = parse(args, BROKER, "broker");
  const extra = [...before, ...after ?? []];
  if (extra.length > 0) {
    throw new UsageError(`unexpected argument ${JSON.stringify(extra[0])}`, "broker");
  }
  const port = text(values.port) ?? String(DEFAULT_BROKER_PORT);
  if (!/^\d+$/.test(port) || Number(port) > 65535) {
    throw new UsageError(
      `--port needs a port number (0 to 65535), got ${JSON.stringify(port)}`,
      "broker",
    );
  }
  const hostname = text(values.hostname) ?? DEFAULT_BROKER_HOSTNAME;
  if (hostname === "") throw new UsageError("--hostname must not be empty", "broker");
  return {
    port: Number(port),
    hostname,
    token: text(values.token),
    url: text(values.url),
    namespace: text(values.namespace),
  };
}

/**
 * Reads the command line (without the runtime and script: `process.argv.slice(2)`).
 *
 * @throws {UsageError} for anything `shared-state` does not understand.
 */
export function parseInvocation(argv: readonly string[]): Invocation {
  const [first, ...rest] = argv;
  switch (first) {
    case "run":
    case "test":
    case "id":
    case "locks":
    case "broker":
      if (asksForHelp(rest)) return { kind: "help", text: SUBCOMMAND_HELP[first] };
      if (first === "run") return { kind: "run", args: parseRun(rest) };
      if (first === "test") return { kind: "test", args: parseTest(rest) };
      if (first === "id") return { kind: "id", args: parseId(rest) };
      if (first === "locks") return { kind: "locks", args: parseLocks(rest) };
      return { kind: "broker", args: parseBroker(rest) };
    case undefined:
      throw new UsageError("missing SUBCOMMAND (run, test, id, locks or broker)");
    case "help":
      if (rest.length > 0 && rest[0] in SUBCOMMAND_HELP) {
        return { kind: "help", text: SUBCOMMAND_HELP[rest[0]] };
      }
      return { kind: "help", text: MAIN_HELP };
  }
  const { values, before } = parse([...argv], {
    ...HELP,
    version: { type: "boolean", short: "V" },
  }, undefined);
  if (values.help === true) return { kind: "help", text: MAIN_HELP };
  if (values.version === true) return { kind: "version" };
  throw new UsageError(
    before.length > 0 ? `unknown subcommand ${JSON.stringify(before[0])}` : "missing SUBCOMMAND",
  );
}
