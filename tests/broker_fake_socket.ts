/**
 * A WebSocket stand-in for the broker tests that drive sessions through `handler.accept(socket,
 * address)` without a network: any client address can be claimed, and the peer's side (frames in,
 * the answer to a close) is played by the test. Runs the same on Deno and Node.
 */

import type { WebSocketLike } from "../backends/broker.ts";

/** How long {@link FakeSocket.next} waits for a frame: only a missing one takes this long. */
export const NEXT_FRAME_DEADLINE = 10_000;

/** A frame the broker sent, parsed. */
export type SentFrame = Record<string, unknown> & { op: string };

/** The broker's end of a pretend connection. */
export class FakeSocket implements WebSocketLike {
  readyState = 1;
  bufferedAmount = 0;
  /** Frames the broker sent, in order. */
  readonly sent: SentFrame[] = [];
  /** The close code the broker gave, once it closed. */
  closeCode: number | undefined;
  /** `true` once the broker tore the connection down without waiting for the peer. */
  tornDown = false;
  /** Whether the peer answers a close frame (at once, as a well-behaved client does). */
  readonly answersClose: boolean;
  readonly #listeners = new Map<string, Set<(event: never) => void>>();
  #waiters: { match: (frame: SentFrame) => boolean; resolve: (frame: SentFrame) => void }[] = [];

  /** @param answersClose Whether the peer answers the broker's close frame. */
  constructor(answersClose = true) {
    this.answersClose = answersClose;
  }

  addEventListener(type: string, listener: (event: never) => void): void {
    let listeners = this.#listeners.get(type);
    if (listeners === undefined) this.#listeners.set(type, listeners = new Set());
    listeners.add(listener);
  }

  send(data: string): void {
    if (this.readyState !== 1) throw new Error("send on a socket that is not open");
    const frame = JSON.parse(data) as SentFrame;
    this.sent.push(frame);
    this.#waiters = this.#waiters.filter((waiter) => {
      if (!waiter.match(frame)) return true;
      waiter.resolve(frame);
      return false;
    });
  }

  close(code?: number): void {
    if (this.readyState >= 2) return;
    this.readyState = 2;
    this.closeCode = code;
    if (this.answersClose) queueMicrotask(() => this.#closed(code ?? 1005));
  }

  /** What `ws` offers and the broker uses to tear a connection down. */
  terminate(): void {
    if (this.readyState === 3) return;
    this.tornDown = true;
    this.#closed(1006);
  }

  /** The client sends a text frame (an object is sent as JSON). */
  receive(frame: unknown): void {
    const data = typeof frame === "string" ? frame : JSON.stringify(frame);
    this.#dispatch("message", { data });
  }

  /**
   * The first frame the broker sent, already or from now on, that matches; rejects if none came
   * within {@link NEXT_FRAME_DEADLINE} ms, so that a test cannot hang on it.
   */
  next(match: (frame: SentFrame) => boolean = () => true): Promise<SentFrame> {
    const seen = this.sent.find(match);
    if (seen !== undefined) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiters = this.#waiters.filter((other) => other !== waiter);
        reject(
          new Error(`no such frame within ${NEXT_FRAME_DEADLINE} ms; sent: ${this.#sentText()}`),
        );
      }, NEXT_FRAME_DEADLINE);
      const waiter = {
        match,
        resolve: (frame: SentFrame) => {
          clearTimeout(timer);
          resolve(frame);
        },
      };
      this.#waiters.push(waiter);
    });
  }

  #sentText(): string {
    return JSON.stringify(this.sent).slice(0, 300);
  }

  /** The broker's answer to a hello: `welcome` or `refused`. */
  answer(): Promise<SentFrame> {
    return this.next((frame) => frame.op === "welcome" || frame.op === "refused");
  }

  #closed(code: number): void {
    this.readyState = 3;
    this.#dispatch("close", { code, reason: "", wasClean: code !== 1006 });
  }

  #dispatch(type: string, event: Record<string, unknown>): void {
    for (const listener of this.#listeners.get(type) ?? []) {
      (listener as (event: Record<string, unknown>) => void)(event);
    }
  }
}
