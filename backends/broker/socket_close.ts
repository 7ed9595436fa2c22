/**
 * Closing a client's WebSocket for good (issue 9, item 6): the close frame first, then, if the
 * peer has not completed the closing handshake within a grace period, its TCP connection torn
 * down. A peer that never answers (gone without a FIN, or hostile) would otherwise keep the
 * connection, and a file descriptor of the broker, for ever: a WebSocket's `close()` only sends
 * the close frame and waits for the peer's.
 */

import { backendLogger } from "../../internal/log.ts";
import type { WebSocketLike } from "./protocol.ts";

const log = backendLogger("broker");

/** How long, in milliseconds, a peer has to answer the broker's close frame. */
export const CLOSE_GRACE = 1000;

/** `readyState` of a closed WebSocket. */
const CLOSED = 3;

/** What Deno keeps behind `Deno[Deno.internal]`: its resource table, among others. */
interface DenoInternals {
  core?: { tryClose?(rid: number): void };
}

/**
 * Closes the resource behind a WebSocket of `Deno.upgradeWebSocket`, which holds its TCP
 * connection. Deno has no public way to do it: once `close()` was called, a second one does
 * nothing and the socket waits for the peer's close frame with no time limit (measured on Deno
 * 2.9: still open after 150 s; denoland/deno#27924, open), and its `idleTimeout` applies only to
 * an open socket. So this reaches Deno's resource table the way Deno's own `WebSocket` does,
 * feature-detected: `false` where that is not possible.
 */
function closeDenoResource(socket: object): boolean {
  const deno = (globalThis as { Deno?: { internal?: symbol } }).Deno;
  if (deno === undefined || typeof deno.internal !== "symbol") return false;
  const internals = (deno as Record<symbol, DenoInternals | undefined>)[deno.internal];
  const tryClose = internals?.core?.tryClose;
  if (typeof tryClose !== "function") return false;
  const ridKey = Object.getOwnPropertySymbols(socket).find((key) => key.description === "[[rid]]");
  const rid = ridKey === undefined ? undefined : (socket as Record<symbol, unknown>)[ridKey];
  if (typeof rid !== "number") return false;
  // Resource ids are never reused in Deno, so a socket that closed meanwhile harms nothing.
  tryClose.call(internals!.core, rid);
  return true;
}

/**
 * Cuts the TCP connection under `socket` without waiting for the peer: `terminate()` where the
 * socket has it (the `ws` package), Deno's resource otherwise. `false` if neither was possible.
 */
export function tearDown(socket: WebSocketLike): boolean {
  const terminate = (socket as { terminate?: unknown }).terminate;
  try {
    if (typeof terminate === "function") {
      terminate.call(socket);
      return true;
    }
    return closeDenoResource(socket);
  } catch (error) {
    log.debug("tearing a socket down failed: {error}", { error });
    return false;
  }
}

/**
 * Sends a close frame with `code` and `reason`, and tears the connection down if the peer has not
 * closed it within `grace` milliseconds. Resolves once the socket is closed or torn down (or the
 * runtime offers no way to tear it down); never rejects.
 */
export function closeSocket(
  socket: WebSocketLike,
  code: number,
  reason: string,
  grace: number = CLOSE_GRACE,
): Promise<void> {
  return new Promise<void>((resolve) => {
    if (socket.readyState === CLOSED) return resolve();
    let timer: ReturnType<typeof setTimeout> | undefined = undefined;
    const closed = () => {
      clearTimeout(timer);
      resolve();
    };
    socket.addEventListener("close", closed);
    try {
      socket.close(code, reason);
    } catch {
      // The runtime refuses this code or reason (a browser-like socket): close it plainly.
      try {
        socket.close();
      } catch {
        // Already closed.
      }
    }
    if (socket.readyState === CLOSED) return closed();
    timer = setTimeout(() => {
      if (socket.readyState !== CLOSED && !tearDown(socket)) {
        log.warn("a closed connection could not be torn down: it waits for its peer");
      }
      resolve();
    }, grace);
  });
}
