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
  write(data: string | Uint8Array, done: () => void): void;
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
  WebSocketServer: new (
    options: { noServer: true; maxPayload: number; allowSynchronousEvents: boolean },
  ) => WsServer;
}
interface NodeCrypto {
  createHash(algorithm: "sha1"): {
    update(text: string): { digest(encoding: "base64"): string };
  };
}

/** RFC 6455's GUID, hashed with the client's key into `Sec-WebSocket-Accept`. */
const WEBSOCKET_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/** One unmasked server frame (RFC 6455), final, with a payload shorter than 64 KiB. */
function serverFrame(opcode: number, payload: Uint8Array): Uint8Array {
  const header = payload.length < 126 ? [0x80 | opcode, payload.length] : [
    0x80 | opcode,
    126,
    payload.length >> 8,
    payload.length & 0xff,
  ];
  const frame = new Uint8Array(header.length + payload.length);
  frame.set(header);
  frame.set(payload, header.length);
  return frame;
}

/**
 * The bytes that refuse a WebSocket handshake whose key is `key`: the upgrade's 101, the
 * `refused` frame and a close frame (1013, or 4001 for a blocked address), as the handler refuses
 * a socket it was given. A WebSocket that is answered an HTTP error instead hides its status
 * from the page or program (browsers, Node 22's and 24's global WebSocket), which then cannot
 * tell a refusal from an unreachable broker; a frame reaches every client.
 */
function refusalBytes(
  key: string,
  refusal: Refusal,
  sha1: (text: string) => string,
): Uint8Array {
  const encoder = new TextEncoder();
  const head = encoder.encode(
    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
      `Sec-WebSocket-Accept: ${sha1(key + WEBSOCKET_GUID)}\r\n\r\n`,
  );
  const text = serverFrame(
    0x1,
    encoder.encode(JSON.stringify({ op: "refused", message: refusal.message })),
  );
  const reason = encoder.encode("refused");
  const close = new Uint8Array(2 + reason.length);
  close.set([refusal.code >> 8, refusal.code & 0xff]);
  close.set(reason, 2);
  const closeFrame = serverFrame(0x8, close);
  const bytes = new Uint8Array(head.length + text.length + closeFrame.length);
  bytes.set(head);
  bytes.set(text, head.length);
  bytes.set(closeFrame, head.length + text.length);
  return bytes;
}

/** The client's `Sec-WebSocket-Key`, if the request is a WebSocket handshake this broker speaks. */
function handshakeKey(request: NodeIncoming): string | undefined {
  const key = request.headers["sec-websocket-key"];
  const version = request.headers["sec-websocket-version"];
  if (typeof key !== "string" || version !== "13") return undefined;
  const trimmed = key.trim();
  return /^[A-Za-z0-9+/]{22}==$/.test(trimmed) ? trimmed : undefined;
}

/**
 * Refuses an upgrade request on its raw socket, without a WebSocket being made for it, and closes
 * the connection once the answer is written: a WebSocket handshake gets {@link refusalBytes}, any
 * other request HTTP 503 (429 for a blocked address) with the reason as its body.
 */
function refuseUpgrade(
  socket: NodeSocket,
  request: NodeIncoming,
  refusal: Refusal,
  crypto: NodeCrypto,
): void {
  const key = handshakeKey(request);
  if (key !== undefined) {
    const sha1 = (text: string) => crypto.createHash("sha1").update(text).digest("base64");
    socket.write(refusalBytes(key, refusal, sha1), () => socket.destroy());
    return;
  }
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
 * connection is closed; upgrades past a limit are refused without a WebSocket being made for them
 * (the handshake's answer, a `refused` frame saying why and a close frame, written at once; HTTP
 * 503 to a request that is no WebSocket handshake); and the server holds at most
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
  const crypto = await import("node:crypto") as unknown as NodeCrypto;
  let ws: WsModule;
  try {
    ws = await import("ws") as unknown as WsModule;
  } catch (error) {
    throw new Error("serveBroker needs the ws package: npm install ws", { cause: error });
  }
  // A little slack over the frame limit: the session itself refuses frames above it. One message
  // per event-loop turn, as browsers and Deno deliver them: ws otherwise emits the messages of one
  // TCP segment back to back, before what the first set off has settled (a release's grant to a
  // waiting request reaches the session a microtask later; a cancel and a test behind it in the
  // same segment found that request still holding the key).
  const sockets = new ws.WebSocketServer({
    noServer: true,
    maxPayload: MAX_FRAME_BYTES + 1024,
    allowSynchronousEvents: false,
  });
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
    if (refused !== undefined) return refuseUpgrade(socket, request, refused, crypto);
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
