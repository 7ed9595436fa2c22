/**
 * The broker's wire protocol: JSON text frames over one WebSocket, their types, the limits both
 * sides enforce, and the validation of every frame a peer may send (nothing is trusted).
 */

/** The protocol version a client announces in `hello` and the broker confirms in `welcome`. */
export const PROTOCOL_VERSION = 1;

/**
 * Largest frame a peer may send. A key of {@link MAX_KEY_LENGTH} UTF-16 code units takes at most
 * 6 bytes per unit in JSON (`\u0000`), so any legal key fits with room to spare.
 */
export const MAX_FRAME_BYTES: number = 2 * 1024 * 1024;

/** Longest key, in UTF-16 code units (256 Ki; a 64 KiB key fits four times over). */
export const MAX_KEY_LENGTH: number = 256 * 1024;

/** Longest token the broker reads; a longer `hello` is refused. */
export const MAX_TOKEN_LENGTH = 4096;

/** Longest client name in `hello`, and longest `owner` in `inspected`, in UTF-16 code units. */
export const MAX_NAME_LENGTH = 256;

/** Most holders, and most waiters, listed in one `inspected` frame (issue 12). */
export const MAX_INSPECT_ENTRIES = 1000;

/**
 * Default for the most reply bytes the broker queues for one client that does not read them;
 * beyond, the connection is closed (1008) and everything it held released.
 */
export const DEFAULT_MAX_BUFFERED_BYTES: number = 16 * 1024 * 1024;

/** Default for how often, in milliseconds, the client pings the broker. */
export const DEFAULT_HEARTBEAT_INTERVAL = 5000;

/** Close codes used by the broker and the client, besides the standard 1000/1001/1003/1008/1009. */
export const CloseCode = {
  /** A normal end (client close, or a clean end of the session). */
  normal: 1000,
  /** The broker is shutting down. */
  goingAway: 1001,
  /** A binary frame: only text frames are spoken. */
  unsupportedData: 1003,
  /** Too many malformed frames. */
  policyViolation: 1008,
  /** A frame larger than {@link MAX_FRAME_BYTES}. */
  tooBig: 1009,
  /** A bug in the broker ended this one connection. */
  internalError: 1011,
  /** The broker is at a connection limit: try again later. */
  tryAgainLater: 1013,
  /** No `hello`, a wrong token, a `hello` too late, or an address blocked for failed ones. */
  unauthorized: 4001,
  /** The peer was silent for two heartbeat intervals (a half-open connection). */
  heartbeatTimeout: 4002,
  /** The client speaks a protocol version the broker does not. */
  unsupportedVersion: 4003,
} as const;

/**
 * Why a request failed, in a `failed` frame: the served state's `LockFailed.reason` (`busy`,
 * `timeout`, `closed`, `unreachable`, `refused`, `deadlock`), or the broker's own: `cancelled`
 * (the client cancelled it, or its connection ended), `limit` (a per-connection limit),
 * `invalid` (a malformed request), `error` (anything else). A client reads an unknown reason as
 * `error`.
 */
export type FailureReason =
  | "busy"
  | "timeout"
  | "cancelled"
  | "closed"
  | "unreachable"
  | "refused"
  | "deadlock"
  | "limit"
  | "invalid"
  | "error";

/** Frames a client sends. */
export type ClientFrame =
  | { op: "hello"; version: number; token: string; name?: string }
  | { op: "acquire"; id: number; key: string; exclusive: boolean; timeout: number | undefined }
  | { op: "cancel"; id: number }
  | { op: "release"; id: number }
  | { op: "test"; id: number; key: string; exclusive: boolean }
  // Issue 13: a permit of a counting semaphore, and locks on several keys, all or none.
  | { op: "permit"; id: number; key: string; limit: number; timeout: number | undefined }
  | { op: "testPermit"; id: number; key: string; limit: number }
  | {
    op: "acquireAll";
    id: number;
    keys: string[];
    exclusive: boolean;
    timeout: number | undefined;
  }
  // Issue 12: a held lock's fencing token, and who holds and awaits a key.
  | { op: "fence"; id: number }
  | { op: "inspect"; id: number; key: string }
  | { op: "ping" }
  | { op: "pong" };

/** The most keys in one `acquireAll` (each still counts against the key characters per connection). */
export const MAX_KEYS = 1024;

/**
 * A holder or waiter in an `inspected` frame: `since` in milliseconds since 1970, `owner` at most
 * {@link MAX_NAME_LENGTH} code units.
 */
export interface WireHolder {
  exclusive: boolean;
  since?: number;
  owner?: string;
}

/** Issue 12: the features a broker of this version announces in `welcome`. */
export const FEATURES: readonly string[] = Object.freeze(["fence", "inspect"]);

/** The limits a broker announces in `welcome`. */
export interface BrokerLimits {
  /** Largest frame the broker reads, in UTF-8 bytes; larger ones close the connection (1009). */
  maxFrameBytes: number;
  /** Longest key, in UTF-16 code units. */
  maxKeyLength: number;
  /** Most requests (waiting, held or being tested) one connection may have at once. */
  maxRequests: number;
  /** The broker's heartbeat interval in milliseconds: ping at least this often. */
  heartbeatInterval: number;
}

/** Frames the broker sends. */
export type ServerFrame =
  /**
   * `features` (issue 12): the frames of this version beyond the first ones that the broker
   * answers (`fence`, `inspect`); an older broker sends none.
   */
  | { op: "welcome"; version: number; limits: BrokerLimits; features?: string[] }
  | { op: "refused"; message: string }
  | { op: "queued"; id: number }
  | { op: "granted"; id: number }
  | {
    op: "failed";
    id: number;
    reason: FailureReason;
    message: string;
    /** Issue 13: for an `acquireAll`, the key that could not be acquired, when one was. */
    key?: string;
  }
  | { op: "released"; id: number }
  | { op: "lost"; id: number; message: string }
  | { op: "tested"; id: number; free: boolean }
  | { op: "fenced"; id: number; token?: string; message?: string }
  | { op: "inspected"; id: number; holders: WireHolder[]; waiters: WireHolder[] }
  | { op: "error"; id?: number; message: string }
  | { op: "ping" }
  | { op: "pong" };

/** A frame that could not be accepted; `id` is set when the frame named a usable request id. */
export class ProtocolError extends Error {
  readonly id: number | undefined;

  constructor(message: string, id?: number) {
    super(message);
    this.name = "ProtocolError";
    this.id = id;
  }
}

type Fields = Record<string, unknown>;

/**
 * Whether `text` takes more than `limit` bytes in UTF-8, as it does on the wire. Counted without
 * encoding it, and only when its length in UTF-16 code units leaves the answer open.
 */
export function exceedsUtf8Bytes(text: string, limit: number): boolean {
  if (text.length > limit) return true; // every code unit takes at least one byte
  if (text.length * 3 <= limit) return false; // and at most three
  let bytes = 0;
  for (let i = 0; i < text.length; i++) {
    const unit = text.charCodeAt(i);
    if (unit < 0x80) bytes += 1;
    else if (unit < 0x800) bytes += 2;
    else if (unit >= 0xd800 && unit < 0xdc00 && (text.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      bytes += 4; // a surrogate pair
      i++;
    } else bytes += 3; // the rest of the BMP; a lone surrogate becomes U+FFFD
    if (bytes > limit) return true;
  }
  return false;
}

/** The start of the most frequent frames, as both sides write them (see {@link idOfCompactFrame}). */
const RELEASE = '{"op":"release","id":';
const GRANTED = '{"op":"granted","id":';
const RELEASED = '{"op":"released","id":';

/**
 * Issue 14: the id of a frame written exactly as `{"op":"<op>","id":<digits>}` (`start` is all of
 * it up to the digits), read without `JSON.parse`, the largest cost of a frame; `undefined` for
 * anything else, which then takes the full parse and its checks. Only an id that the full parse
 * would accept passes: 1 to 16 digits without a leading zero, a safe integer.
 */
function idOfCompactFrame(text: unknown, start: string): number | undefined {
  if (typeof text !== "string" || !text.startsWith(start)) return undefined;
  const end = text.length - 1;
  const digits = end - start.length;
  if (digits < 1 || digits > 16 || text.charCodeAt(end) !== 0x7d /* } */) return undefined;
  let id = 0;
  for (let i = start.length; i < end; i++) {
    const digit = text.charCodeAt(i) - 0x30;
    if (digit < 0 || digit > 9 || (digit === 0 && i === start.length && digits > 1)) {
      return undefined;
    }
    id = id * 10 + digit;
  }
  return Number.isSafeInteger(id) ? id : undefined;
}

/** Parses a text frame into an object with a string `op`, or throws {@link ProtocolError}. */
function parseObject(text: unknown): Fields {
  if (typeof text !== "string") throw new ProtocolError("frames must be text");
  if (exceedsUtf8Bytes(text, MAX_FRAME_BYTES)) throw new ProtocolError("frame too large");
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new ProtocolError("frame is not valid JSON");
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new ProtocolError("frame must be a JSON object");
  }
  const fields = value as Fields;
  if (typeof fields.op !== "string") throw new ProtocolError('frame needs a string "op"');
  return fields;
}

/** A request id: an integer from 0 to 2^53 - 1. */
function isId(value: unknown): value is number {
  return typeof value === "number" && Number.isSafeInteger(value) && value >= 0;
}

function requireId(fields: Fields): number {
  if (!isId(fields.id)) {
    throw new ProtocolError(`"${fields.op}" needs "id", an integer from 0 to 2^53 - 1`);
  }
  return fields.id;
}

function requireKeyAndMode(fields: Fields, id: number): { key: string; exclusive: boolean } {
  const key = requireKey(fields, id);
  const { exclusive } = fields;
  if (typeof exclusive !== "boolean") throw new ProtocolError('"exclusive" must be a boolean', id);
  return { key, exclusive };
}

function requireKey(fields: Fields, id: number): string {
  const { key } = fields;
  if (typeof key !== "string") throw new ProtocolError('"key" must be a string', id);
  if (key.length > MAX_KEY_LENGTH) {
    throw new ProtocolError(`"key" is longer than ${MAX_KEY_LENGTH} UTF-16 code units`, id);
  }
  return key;
}

/** An optional wait in milliseconds from arrival: a finite number >= 0, `null` or absent. */
function optionalTimeout(fields: Fields, id: number): number | undefined {
  const timeout = fields.timeout ?? undefined;
  if (
    timeout !== undefined &&
    (typeof timeout !== "number" || !Number.isFinite(timeout) || timeout < 0)
  ) {
    throw new ProtocolError('"timeout" must be a finite number >= 0, null or absent', id);
  }
  return timeout;
}

/** Issue 13: a permit's limit, a positive safe integer. */
function requireLimit(fields: Fields, id: number): number {
  const { limit } = fields;
  if (typeof limit !== "number" || !Number.isSafeInteger(limit) || limit < 1) {
    throw new ProtocolError('"limit" must be an integer from 1 to 2^53 - 1', id);
  }
  return limit;
}

/** Issue 13: the keys of an `acquireAll`, 1 to {@link MAX_KEYS} strings of legal length. */
function requireKeys(fields: Fields, id: number): string[] {
  const { keys } = fields;
  if (!Array.isArray(keys) || keys.length === 0 || keys.length > MAX_KEYS) {
    throw new ProtocolError(`"keys" must be an array of 1 to ${MAX_KEYS} strings`, id);
  }
  for (const key of keys) {
    if (typeof key !== "string") throw new ProtocolError('"keys" must hold strings only', id);
    if (key.length > MAX_KEY_LENGTH) {
      throw new ProtocolError(`a key is longer than ${MAX_KEY_LENGTH} UTF-16 code units`, id);
    }
  }
  return keys as string[];
}

/** A fencing token on the wire: a decimal string of a signed 64-bit integer. */
function isToken(value: unknown): value is string {
  if (typeof value !== "string" || !/^-?[0-9]{1,19}$/.test(value)) return false;
  const token = BigInt(value);
  return token >= -(2n ** 63n) && token < 2n ** 63n;
}

function holderList(value: unknown, name: string): WireHolder[] {
  if (!Array.isArray(value) || value.length > MAX_INSPECT_ENTRIES) {
    throw new ProtocolError(
      `inspected needs "${name}", an array of at most ${MAX_INSPECT_ENTRIES}`,
    );
  }
  return value.map((entry) => {
    const { exclusive, since, owner } = (entry ?? {}) as Fields;
    if (typeof exclusive !== "boolean") {
      throw new ProtocolError(`an entry of "${name}" needs a boolean "exclusive"`);
    }
    const holder: WireHolder = { exclusive };
    if (since !== undefined && since !== null) {
      if (typeof since !== "number" || !Number.isFinite(since)) {
        throw new ProtocolError(`"since" in "${name}" must be a number of milliseconds`);
      }
      holder.since = since;
    }
    if (owner !== undefined && owner !== null) {
      if (typeof owner !== "string" || owner.length > MAX_NAME_LENGTH) {
        throw new ProtocolError(
          `"owner" in "${name}" must be a string of ${MAX_NAME_LENGTH} at most`,
        );
      }
      holder.owner = owner;
    }
    return holder;
  });
}

/** Validates a frame from a client. Throws {@link ProtocolError} for anything malformed. */
export function parseClientFrame(text: unknown): ClientFrame {
  const id = idOfCompactFrame(text, RELEASE);
  if (id !== undefined) return { op: "release", id };
  const fields = parseObject(text);
  switch (fields.op) {
    case "hello": {
      const { version, token, name } = fields;
      if (typeof version !== "number") throw new ProtocolError('"version" must be a number');
      if (typeof token !== "string") throw new ProtocolError('"token" must be a string');
      if (name === undefined || name === null) return { op: "hello", version, token };
      if (typeof name !== "string" || name.length > MAX_NAME_LENGTH) {
        throw new ProtocolError(`"name" must be a string of ${MAX_NAME_LENGTH} at most`);
      }
      return { op: "hello", version, token, name };
    }
    case "acquire": {
      const id = requireId(fields);
      const { key, exclusive } = requireKeyAndMode(fields, id);
      return { op: "acquire", id, key, exclusive, timeout: optionalTimeout(fields, id) };
    }
    case "permit": {
      const id = requireId(fields);
      const key = requireKey(fields, id);
      const limit = requireLimit(fields, id);
      return { op: "permit", id, key, limit, timeout: optionalTimeout(fields, id) };
    }
    case "testPermit": {
      const id = requireId(fields);
      return { op: "testPermit", id, key: requireKey(fields, id), limit: requireLimit(fields, id) };
    }
    case "acquireAll": {
      const id = requireId(fields);
      const keys = requireKeys(fields, id);
      const { exclusive } = fields;
      if (typeof exclusive !== "boolean") {
        throw new ProtocolError('"exclusive" must be a boolean', id);
      }
      return { op: "acquireAll", id, keys, exclusive, timeout: optionalTimeout(fields, id) };
    }
    case "test": {
      const id = requireId(fields);
      return { op: "test", id, ...requireKeyAndMode(fields, id) };
    }
    case "cancel":
    case "release":
    case "fence":
      return { op: fields.op, id: requireId(fields) };
    case "inspect": {
      const id = requireId(fields);
      return { op: "inspect", id, key: requireKey(fields, id) };
    }
    case "ping":
    case "pong":
      return { op: fields.op };
    default:
      // Naming the id ends that request on the client: an op of a later protocol revision
      // fails at once instead of waiting for an answer that never comes.
      throw new ProtocolError(
        `unknown op ${JSON.stringify(String(fields.op).slice(0, 40))}`,
        isId(fields.id) ? fields.id : undefined,
      );
  }
}

const FAILURE_REASONS = new Set<string>([
  "busy",
  "timeout",
  "cancelled",
  "closed",
  "unreachable",
  "refused",
  "deadlock",
  "limit",
  "invalid",
  "error",
]);

function optionalMessage(fields: Fields): string {
  return typeof fields.message === "string" ? fields.message : "(no message)";
}

/**
 * Validates a frame from the broker. Throws {@link ProtocolError} for anything malformed: the
 * client then drops the connection rather than guess.
 */
export function parseServerFrame(text: unknown): ServerFrame {
  let id = idOfCompactFrame(text, GRANTED);
  if (id !== undefined) return { op: "granted", id };
  id = idOfCompactFrame(text, RELEASED);
  if (id !== undefined) return { op: "released", id };
  const fields = parseObject(text);
  switch (fields.op) {
    case "welcome": {
      if (typeof fields.version !== "number") throw new ProtocolError("welcome without version");
      const limits =
        (typeof fields.limits === "object" && fields.limits !== null
          ? fields.limits
          : {}) as Partial<BrokerLimits>;
      return {
        op: "welcome",
        version: fields.version,
        limits: {
          maxFrameBytes: limits.maxFrameBytes ?? MAX_FRAME_BYTES,
          maxKeyLength: limits.maxKeyLength ?? MAX_KEY_LENGTH,
          maxRequests: limits.maxRequests ?? Infinity,
          heartbeatInterval: limits.heartbeatInterval ?? DEFAULT_HEARTBEAT_INTERVAL,
        },
        features: Array.isArray(fields.features)
          ? fields.features.filter((feature): feature is string => typeof feature === "string")
          : [],
      };
    }
    case "refused":
      return { op: "refused", message: optionalMessage(fields) };
    case "queued":
    case "granted":
    case "released":
      return { op: fields.op, id: requireId(fields) };
    case "failed": {
      const id = requireId(fields);
      const reason = typeof fields.reason === "string" && FAILURE_REASONS.has(fields.reason)
        ? fields.reason as FailureReason
        : "error";
      const frame: ServerFrame = { op: "failed", id, reason, message: optionalMessage(fields) };
      if (typeof fields.key === "string") frame.key = fields.key;
      return frame;
    }
    case "lost":
      return { op: "lost", id: requireId(fields), message: optionalMessage(fields) };
    case "tested": {
      const id = requireId(fields);
      if (typeof fields.free !== "boolean") throw new ProtocolError("tested without free");
      return { op: "tested", id, free: fields.free };
    }
    case "fenced": {
      const id = requireId(fields);
      if (fields.token !== undefined) {
        if (!isToken(fields.token)) {
          throw new ProtocolError('"token" must be a decimal string of a 64-bit integer');
        }
        return { op: "fenced", id, token: fields.token };
      }
      return { op: "fenced", id, message: optionalMessage(fields) };
    }
    case "inspected":
      return {
        op: "inspected",
        id: requireId(fields),
        holders: holderList(fields.holders, "holders"),
        waiters: holderList(fields.waiters, "waiters"),
      };
    case "error":
      return {
        op: "error",
        id: isId(fields.id) ? fields.id : undefined,
        message: optionalMessage(fields),
      };
    case "ping":
    case "pong":
      return { op: fields.op };
    default:
      throw new ProtocolError(`unknown op ${JSON.stringify(String(fields.op).slice(0, 40))}`);
  }
}

/** The subset of a web-standard WebSocket that both sides use (Deno, browsers, `ws`, undici). */
export interface WebSocketLike {
  /** 0 connecting, 1 open, 2 closing, 3 closed. */
  readonly readyState: number;
  /** Bytes accepted by `send` and not yet handed to the network, where the runtime tells. */
  readonly bufferedAmount?: number;
  /** Sends a text frame. */
  send(data: string): void;
  /** Starts the closing handshake. */
  close(code?: number, reason?: string): void;
  /**
   * Listens for `open`, `message`, `close` and `error`. The listener is typed as a method's (its
   * parameter compared both ways), so that the classes of `ws` (with `@types/ws`), the DOM and
   * Deno all fit, and so does a listener of one event type.
   */
  addEventListener(type: string, listener: { listener(event: unknown): void }["listener"]): void;
}

/** `readyState` of an open WebSocket. */
export const OPEN = 1;
