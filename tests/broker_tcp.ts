/**
 * WebSocket by hand over node:net, for the broker tests that need what no WebSocket class does:
 * arbitrary bytes, broken framing, a client that stops reading, a connection cut without a close.
 */

import { Buffer } from "node:buffer";
import net from "node:net";

/** Opcodes of RFC 6455. */
export const Opcode = { text: 1, binary: 2, close: 8, ping: 9, pong: 10 } as const;

/** A frame received from the server (servers do not mask). */
export interface TcpFrame {
  opcode: number;
  payload: Buffer;
}

/** Encodes one client frame (masked, as RFC 6455 requires of clients). */
export function encodeFrame(opcode: number, payload: Uint8Array | string, fin = true): Buffer {
  const data = typeof payload === "string" ? Buffer.from(payload, "utf8") : Buffer.from(payload);
  const length = data.length;
  const header = length < 126 ? 2 : length < 65536 ? 4 : 10;
  const frame = Buffer.alloc(header + 4 + length);
  frame[0] = (fin ? 0x80 : 0) | opcode;
  if (length < 126) {
    frame[1] = 0x80 | length;
  } else if (length < 65536) {
    frame[1] = 0x80 | 126;
    frame.writeUInt16BE(length, 2);
  } else {
    frame[1] = 0x80 | 127;
    frame.writeBigUInt64BE(BigInt(length), 2);
  }
  const mask = [0x12, 0x34, 0x56, 0x78];
  frame.set(mask, header);
  for (let i = 0; i < length; i++) frame[header + 4 + i] = data[i] ^ mask[i & 3];
  return frame;
}

/** A TCP connection that may or may not speak WebSocket. */
export class TcpClient {
  readonly socket: net.Socket;
  /** Resolves once the TCP connection is closed (by either side). */
  readonly closed: Promise<void>;
  /** Frames received after the upgrade. */
  readonly frames: TcpFrame[] = [];
  #buffer = Buffer.alloc(0);
  #upgraded = false;
  readonly #waiters = new Set<
    { match: (frame: TcpFrame) => boolean; resolve: (frame: TcpFrame) => void }
  >();

  private constructor(socket: net.Socket) {
    this.socket = socket;
    socket.on("error", () => {});
    this.closed = new Promise((resolve) => socket.on("close", () => resolve()));
    socket.on("data", (chunk: Buffer) => {
      this.#buffer = Buffer.concat([this.#buffer, chunk]);
      if (this.#upgraded) this.#parse();
    });
  }

  /** Opens a TCP connection to 127.0.0.1:`port`. */
  static async connect(port: number): Promise<TcpClient> {
    const socket = net.connect(port, "127.0.0.1");
    socket.setNoDelay(true);
    const client = new TcpClient(socket);
    await new Promise<void>((resolve) => {
      socket.once("connect", () => resolve());
      socket.once("close", () => resolve());
    });
    return client;
  }

  /** Opens a connection and upgrades it; rejects unless the server answers 101. */
  static async upgraded(port: number): Promise<TcpClient> {
    const client = await TcpClient.connect(port);
    const key = Buffer.from(crypto.getRandomValues(new Uint8Array(16))).toString("base64");
    client.socket.write(
      `GET / HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\n` +
        `Connection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
    );
    const head = await new Promise<string>((resolve, reject) => {
      const check = () => {
        const end = client.#buffer.indexOf("\r\n\r\n");
        if (end < 0) return;
        client.socket.off("data", check);
        const text = client.#buffer.subarray(0, end).toString("latin1");
        client.#buffer = client.#buffer.subarray(end + 4);
        resolve(text);
      };
      client.socket.on("data", check);
      client.closed.then(() => reject(new Error("closed during the upgrade")));
    });
    if (!head.startsWith("HTTP/1.1 101")) throw new Error(`upgrade refused: ${head}`);
    client.#upgraded = true;
    client.#parse();
    return client;
  }

  #parse(): void {
    for (;;) {
      const buffer = this.#buffer;
      if (buffer.length < 2) return;
      let length = buffer[1] & 0x7f;
      let offset = 2;
      if (length === 126) {
        if (buffer.length < 4) return;
        length = buffer.readUInt16BE(2);
        offset = 4;
      } else if (length === 127) {
        if (buffer.length < 10) return;
        length = Number(buffer.readBigUInt64BE(2));
        offset = 10;
      }
      if (buffer.length < offset + length) return;
      const frame = { opcode: buffer[0] & 0x0f, payload: buffer.subarray(offset, offset + length) };
      this.#buffer = buffer.subarray(offset + length);
      this.#deliver(frame);
    }
  }

  #deliver(frame: TcpFrame): void {
    for (const waiter of this.#waiters) {
      if (!waiter.match(frame)) continue;
      this.#waiters.delete(waiter);
      waiter.resolve(frame);
      return;
    }
    this.frames.push(frame);
  }

  /**
   * Resolves with the first frame (received already or from now on) that matches, taking it out
   * of {@link TcpClient.frames}, or with `undefined` once the connection closed without one.
   */
  frame(match: (frame: TcpFrame) => boolean): Promise<TcpFrame | undefined> {
    const found = this.frames.findIndex(match);
    if (found >= 0) return Promise.resolve(this.frames.splice(found, 1)[0]);
    return new Promise((resolve) => {
      const waiter = { match, resolve };
      this.#waiters.add(waiter);
      this.closed.then(() => {
        if (this.#waiters.delete(waiter)) resolve(undefined);
      });
    });
  }

  /** Sends a text frame holding `value` as JSON (or a string as it is). */
  sendText(value: unknown): void {
    const text = typeof value === "string" ? value : JSON.stringify(value);
    this.write(encodeFrame(Opcode.text, text));
  }

  /** Writes raw bytes; ignored once the connection is closed. */
  write(bytes: Uint8Array | string): void {
    if (!this.socket.destroyed) this.socket.write(bytes);
  }

  /** Authenticates with `token`; resolves with the broker's answer (a parsed frame). */
  async hello(token: string): Promise<Record<string, unknown> | undefined> {
    this.sendText({ op: "hello", version: 1, token });
    const answer = await this.frame((frame) => frame.opcode === Opcode.text);
    return answer === undefined ? undefined : JSON.parse(answer.payload.toString("utf8"));
  }

  /** Cuts the connection at once, without a close frame. */
  destroy(): Promise<void> {
    this.socket.destroy();
    return this.closed;
  }
}

/** What the server did with one upgrade request: everything it sent, and whether it hung up. */
export interface UpgradeAttempt {
  /** The bytes received, as latin1 text (frames after a 101 included). */
  text: string;
  /** `false` if the connection was still open at the deadline (then cut by us). */
  closedByServer: boolean;
}

/**
 * Opens a connection, sends a WebSocket upgrade request and nothing else (no hello, no answer to
 * a close frame), and resolves once the server closed the connection, or at `deadline` ms.
 */
export function upgradeAttempt(port: number, deadline: number): Promise<UpgradeAttempt> {
  return new Promise((resolve) => {
    const socket = net.connect(port, "127.0.0.1");
    const chunks: Buffer[] = [];
    const text = () => Buffer.concat(chunks).toString("latin1");
    const timer = setTimeout(() => {
      socket.removeAllListeners("close");
      socket.destroy();
      resolve({ text: text(), closedByServer: false });
    }, deadline);
    socket.on("error", () => {});
    socket.on("data", (chunk: Buffer) => chunks.push(chunk));
    socket.on("close", () => {
      clearTimeout(timer);
      resolve({ text: text(), closedByServer: true });
    });
    const key = Buffer.from(crypto.getRandomValues(new Uint8Array(16))).toString("base64");
    socket.write(
      `GET / HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
        `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
    );
  });
}

/**
 * Why the broker refused a connection, from what it sent: the message of the `refused` frame
 * after a 101, or the body of an HTTP 503/429 (a request that is no WebSocket handshake).
 * `undefined` if it did not refuse.
 */
export function refusalMessage(text: string): string | undefined {
  const http = /^HTTP\/1\.1 (?:503|429) [^\r]*\r\n[\s\S]*?\r\n\r\n([\s\S]*)$/.exec(text);
  if (http !== null) return `HTTP ${text.slice(9, 12)}: ${http[1].trim()}`;
  if (!text.startsWith("HTTP/1.1 101")) return undefined;
  const frame = /\{"op":"refused","message":("(?:[^"\\]|\\.)*")\}/.exec(text);
  return frame === null ? undefined : `refused: ${JSON.parse(frame[1])}`;
}
