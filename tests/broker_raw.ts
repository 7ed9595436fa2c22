/** A raw WebSocket client for the broker tests: sends any frame, records every answer. */

import { webSocketClass } from "./broker_env.ts";

/** A received frame, parsed. */
export type Frame = Record<string, unknown> & { op: string };

interface RawSocket {
  readyState: number;
  send(data: string | Uint8Array): void;
  close(code?: number): void;
  addEventListener(type: string, listener: (event: never) => void): void;
}

/** One raw connection to a broker. */
export class RawClient {
  readonly frames: Frame[] = [];
  /** Resolves with the close code once the connection closed. */
  readonly closed: Promise<number>;
  readonly #socket: RawSocket;
  #waiters: { match: (frame: Frame) => boolean; resolve: (frame: Frame) => void }[] = [];

  private constructor(socket: RawSocket) {
    this.#socket = socket;
    this.closed = new Promise((resolve) => {
      socket.addEventListener("close", (event: { code: number }) => resolve(event.code));
    });
    socket.addEventListener("error", () => {});
    socket.addEventListener("message", (event: { data: unknown }) => {
      let frame: Frame;
      try {
        frame = JSON.parse(String(event.data)) as Frame;
      } catch {
        frame = { op: "unparseable", data: String(event.data).slice(0, 200) };
      }
      this.frames.push(frame);
      this.#waiters = this.#waiters.filter((waiter) => {
        if (!waiter.match(frame)) return true;
        waiter.resolve(frame);
        return false;
      });
    });
  }

  /** Connects; resolves once the socket is open (or closed, for a refused upgrade). */
  static async connect(url: string): Promise<RawClient> {
    const WebSocketClass = await webSocketClass();
    const socket = new WebSocketClass(url) as unknown as RawSocket;
    const client = new RawClient(socket);
    await new Promise<void>((resolve) => {
      socket.addEventListener("open", () => resolve());
      socket.addEventListener("close", () => resolve());
    });
    return client;
  }

  /** Connects and authenticates. */
  static async authenticated(url: string, token: string): Promise<RawClient> {
    const client = await RawClient.connect(url);
    client.send({ op: "hello", version: 1, token });
    // A connection closed without a word (a refused upgrade, a dropped one) must not hang here.
    const welcome = await Promise.race([
      client.next((frame) => frame.op === "welcome" || frame.op === "refused"),
      client.closed.then((code): Frame => ({ op: "closed", code })),
    ]);
    if (welcome.op !== "welcome") throw new Error(`not welcomed: ${JSON.stringify(welcome)}`);
    return client;
  }

  get open(): boolean {
    return this.#socket.readyState === 1;
  }

  /** Sends an object as JSON, or a string or bytes as they are. Ignores a closed socket. */
  send(frame: unknown): void {
    if (!this.open) return;
    const data = typeof frame === "string" || frame instanceof Uint8Array
      ? frame
      : JSON.stringify(frame);
    this.#socket.send(data);
  }

  /** The first frame, received from now on or already, that matches. */
  next(match: (frame: Frame) => boolean = () => true): Promise<Frame> {
    const seen = this.frames.find(match);
    if (seen !== undefined) {
      this.frames.splice(this.frames.indexOf(seen), 1);
      return Promise.resolve(seen);
    }
    return new Promise((resolve) => {
      this.#waiters.push({
        match,
        resolve: (frame) => {
          this.frames.splice(this.frames.indexOf(frame), 1);
          resolve(frame);
        },
      });
    });
  }

  /** The next frame about request `id`. */
  reply(id: number): Promise<Frame> {
    return this.next((frame) => frame.id === id && frame.op !== "queued");
  }

  /** Closes and waits for the close to complete. */
  async close(): Promise<number> {
    try {
      this.#socket.close(1000);
    } catch {
      // already closed
    }
    return await this.closed;
  }
}
