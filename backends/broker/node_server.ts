/**
 * {@link serveBroker}: the broker on Node, whose HTTP server cannot upgrade a web-standard
 * Request. Uses `node:http` and the `ws` package, both imported only when called. Exported by
 * `backends/broker_node.ts` (`./broker/node`), not by the web-standard `./broker`.
 */

import {
  checkOptions,
  optionNames,
  optionRangeError,
  optionTypeError,
} from "../../internal/arguments.ts";
import type { StateABC } from "../../state.ts";
import { MAX_FRAME_BYTES, type WebSocketLike } from "./protocol.ts";
import type { Refusal } from "./admission.ts";
import {
  BROKER_OPTION_NAMES,
  type BrokerHandler,
  type BrokerOptions,
  brokerParts,
} from "./server.ts";

/** Options of {@link serveBroker}. */
export interface ServeBrokerOptions extends BrokerOptions {
  /** The state to serve; closing it is up to the caller. */
  state: StateABC;
  /** TCP port; `0` (the default) picks a free one. */
  port?: number;
  /** Interface to listen on. Default `"127.0.0.1"`; `"0.0.0.0"` serves other machines. */
  hostname?: string;
}

const WHAT = "serveBroker options";
/** Its own options, then those it passes on to {@link brokerHandler}. */
const SERVE_OPTION_NAMES: readonly string[] = [
  ...optionNames<Omit<ServeBrokerOptions, keyof BrokerOptions>>({
    state: true,
    port: true,
    hostname: true,
  }),
  ...BROKER_OPTION_NAMES,
];

/** A running broker on Node. */
export interface BrokerServer {
  /** The port it listens on (useful with `port: 0`). */
  readonly port: number;
  /** The interface it listens on. */
  readonly hostname: string;
  /** The `ws://` URL clients connect to. */
  readonly url: string;
  /** The handler behind it (connection count, `accept`). */
  readonly handler: BrokerHandler;
  /** Ends every connection, releasing what its clients held, and stops listening. */
  close(): Promise<void>;
}

// The parts of node:http and ws used here, typed locally: ws ships no types of its own.
interface NodeSocket {
  readonly remoteAddress?: string;
  setNoDelay(noDelay?: boolean): void;
  on(event: "error", listener: () => void): void;
  write(text: string, done: () => void): void;
  destroy(): void;
}
interface NodeIncoming {
  headers: Record<string, string | string[] | undefined>;
}
interface NodeResponse {
  writeHead(status: number, headers: Record<string, string>): void;
  end(text: string): void;
}
interface NodeHttpServer {
  on(
    event: "upgrade",
    listener: (req: NodeIncoming, socket: NodeSocket, head: unknown) => void,
  ): void;
  on(event: "error" | "clientError", listener: (error: Error, socket?: NodeSocket) => void): void;
  listen(port: number, hostname: string, ready: () => void): void;
  off(event: "error", listener: (error: Error) => void): void;
  address(): { port: number } | string | null;
  close(done: () => void): void;
  closeAllConnections?(): void;
  maxConnections: number;
}
interface NodeServerOptions {
  headersTimeout: number;
  requestTimeout: number;
  connectionsCheckingInterval: number;
}
interface NodeHttp {
  createServer(
    options: NodeServerOptions,
    listener: (req: NodeIncoming, res: NodeResponse) => void,
  ): NodeHttpServer;
}
interface WsSocket extends WebSocketLike {
  terminate(): void;
}
interface WsServer {
  handleUpgrade(
    req: NodeIncoming,
    socket: NodeSocket,
    head: unknown,
    done: (socket: WsSocket) => void,
  ): void;
  on(event: "error", listener: (error: Error) => void): void;
  close(): void;
}
interface WsModule {
  WebSocketServer: new (options: { noServer: true; maxPayload: number }) => WsServer;
}

/** Answers an upgrade request with a refusal on its raw socket, and closes the connection. */
function refuseUpgrade(socket: NodeSocket, refusal: Refusal): void {
  const body = `The broker refused the connection: ${refusal.message}.\n`;
  const status = refusal.status === 429 ? "429 Too Many Requests" : "503 Service Unavailable";
  const length = new TextEncoder().encode(body).length;
  socket.write(
    `HTTP/1.1 ${status}\r\nConnection: close\r\nContent-Type: text/plain; charset=utf-8\r\n` +
      `Retry-After: ${refusal.retryAfter}\r\nContent-Length: ${length}\r\n\r\n${body}`,
    () => socket.destroy(),
  );
}

/**
 * Starts a broker on Node (or any runtime with `node:http`): an HTTP server whose WebSocket
 * upgrades are served by `brokerHandler`; other requests get HTTP 426. Needs the `ws`
 * package (`npm install ws`), which sets TCP no-delay on every socket.
 *
 * Against floods: a request (the upgrade included) must arrive whole within `authTimeout`, or its
 * connection is closed; upgrades past a limit are answered 503 (429 for an address blocked for
 * its failed authentications) without being upgraded; and the server holds at most
 * `maxConnections + maxUnauthenticated` TCP connections in all (those of requests still arriving
 * and of refusals included), dropping further ones at once.
 *
 * @example
 * ```ts ignore
 * import { LocalState } from "@momotor/shared-state";
 * import { serveBroker } from "@momotor/shared-state/broker/node";
 *
 * const broker = await serveBroker({ state: new LocalState(), token: process.env.TOKEN!, port: 8787 });
 * console.log(`broker on ${broker.url}`);
 * ```
 *
 * @param options The state, token, port, interface, heartbeat and limits.
 * @returns The running server, once it listens.
 */
export async function serveBroker(options: ServeBrokerOptions): Promise<BrokerServer> {
  checkOptions(options, SERVE_OPTION_NAMES, WHAT);
  const { state, port = 0, hostname = "127.0.0.1", ...brokerOptions } = options;
  if (typeof port !== "number") throw optionTypeError(WHAT, "port", "an integer", port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw optionRangeError(WHAT, "port", "an integer from 0 to 65535", port);
  }
  if (typeof hostname !== "string") throw optionTypeError(WHAT, "hostname", "a string", hostname);
  const { handler, config, refusal } = brokerParts(state, brokerOptions);
  const { authTimeout, maxConnections, maxUnauthenticated } = config;
  const http = await import("node:http") as unknown as NodeHttp;
  let ws: WsModule;
  try {
    ws = await import("ws") as unknown as WsModule;
  } catch (error) {
    throw new Error("serveBroker needs the ws package: npm install ws", { cause: error });
  }
  // A little slack over the frame limit: the session itself refuses frames above it.
  const sockets = new ws.WebSocketServer({ noServer: true, maxPayload: MAX_FRAME_BYTES + 1024 });
  sockets.on("error", () => {});
  const open = new Set<WsSocket>();
  const server = http.createServer({
    // A request still arriving after authTimeout is closed (slowloris); Node checks every
    // connectionsCheckingInterval, so the close comes within 1.5 authTimeout at most.
    headersTimeout: authTimeout,
    requestTimeout: authTimeout,
    connectionsCheckingInterval: Math.max(100, Math.min(authTimeout / 2, 30_000)),
  }, (_request, response) => {
    response.writeHead(426, { "content-type": "text/plain; charset=utf-8", upgrade: "websocket" });
    response.end("This is a shared-state broker: connect with a WebSocket (BrokerState).\n");
  });
  // Every TCP connection counts, a request still arriving included: past this, Node drops them.
  server.maxConnections = maxConnections + maxUnauthenticated;
  server.on("clientError", (_error, socket) => socket?.destroy());
  server.on("upgrade", (request, socket, head) => {
    socket.on("error", () => {});
    const address = socket.remoteAddress;
    const refused = refusal(address);
    if (refused !== undefined) return refuseUpgrade(socket, refused);
    socket.setNoDelay(true); // a handoff is a few small frames: never wait for Nagle
    sockets.handleUpgrade(request, socket, head, (socket) => {
      open.add(socket);
      socket.addEventListener("close", () => open.delete(socket));
      handler.accept(socket, address);
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.on("error", reject);
    server.listen(port, hostname, () => {
      server.off("error", reject);
      resolve();
    });
  });
  server.on("error", () => {});
  const address = server.address();
  const actualPort = typeof address === "object" && address !== null ? address.port : port;
  const host = hostname.includes(":") ? `[${hostname}]` : hostname;
  return {
    port: actualPort,
    hostname,
    url: `ws://${host}:${actualPort}/`,
    handler,
    async close() {
      await handler.close();
      // The close frames are sent; do not wait for peers that may never answer.
      for (const socket of open) socket.terminate();
      sockets.close();
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections?.();
      });
    },
  };
}
