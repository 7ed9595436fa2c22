/**
 * The broker's HTTP server on Deno, which keeps serving through floods (issue 9, item 6): when
 * `Deno.serve` stops accepting (out of file descriptors: EMFILE), it listens again on the same
 * port, retrying with a growing delay (100 ms to 2 s), while the connections it has keep being
 * served. Deno cannot time out a request whose headers never finish arriving (denoland/deno#3515),
 * so a flood of those holds descriptors until its clients give up; the broker survives it and
 * serves again once it ends.
 */

import { tell } from "./messages.ts";

/** Delays before listening again: from 100 ms, doubling, up to 2 s while a flood lasts. */
const FIRST_RETRY_MS = 100;
const LAST_RETRY_MS = 2000;
/** A server that has been accepting this long resets the delay. */
const STEADY_MS = 10_000;

// The part of Deno's API used here, typed locally: the npm build compiles without Deno's types.
interface DenoServer {
  readonly addr: { port: number };
  readonly finished: Promise<void>;
  shutdown(): Promise<void>;
}
interface DenoServe {
  serve(
    options: {
      hostname: string;
      port: number;
      onListen(address: { port: number }): void;
      onError(error: unknown): Response;
    },
    handler: (request: Request, info: never) => Response | Promise<Response>,
  ): DenoServer;
}

/** A server that listens again whenever it stops accepting, until closed. */
export interface ResilientServer {
  /** The port it listens on (the one picked at first, with port 0). */
  readonly port: number;
  /** Stops listening for good. */
  close(): Promise<void>;
}

/**
 * Serves `handler` on Deno until closed. Throws when it cannot listen at first (the port taken,
 * no permission); later failures to accept are retried.
 */
export function serveResiliently(
  deno: DenoServe,
  handler: (request: Request, info: never) => Response | Promise<Response>,
  hostname: string,
  port: number,
): ResilientServer {
  let server: DenoServer | undefined;
  let listeningPort = port;
  let listenedAt = 0;
  let retryDelay = FIRST_RETRY_MS;
  let retryTimer: ReturnType<typeof setTimeout> | undefined;
  let closed = false;

  const listen = (first: boolean): void => {
    retryTimer = undefined;
    if (closed) return;
    const current = deno.serve({
      hostname,
      port: listeningPort,
      onListen(address) {
        listenedAt = performance.now();
        listeningPort = address.port; // a retry takes the same port, also when port 0 picked it
        if (!first) tell(`broker listening again on port ${address.port}`);
      },
      onError(error) {
        tell(`broker: a request failed: ${error}`);
        return new Response("Internal error.\n", { status: 500, headers: { connection: "close" } });
      },
    }, handler);
    server = current;
    listeningPort = current.addr.port;
    current.finished.then(
      () => closed || retry(new Error("the server stopped")),
      (error) => retry(error),
    );
  };

  const retry = (error: unknown): void => {
    server = undefined;
    if (closed) return;
    if (performance.now() - listenedAt >= STEADY_MS) retryDelay = FIRST_RETRY_MS;
    tell(
      `broker not accepting connections (${error}); the connections it has are still served; ` +
        `listening again in ${retryDelay} ms`,
    );
    retryTimer = setTimeout(() => {
      try {
        listen(false);
      } catch (error) {
        retry(error); // the flood is still on
      }
    }, retryDelay);
    retryDelay = Math.min(retryDelay * 2, LAST_RETRY_MS);
  };

  listen(true);
  return {
    get port() {
      return listeningPort;
    },
    async close() {
      closed = true;
      clearTimeout(retryTimer);
      await server?.shutdown();
    },
  };
}
