/**
 * A TCP proxy on 127.0.0.1 that reproduces the network's failures without root (issue 9): it can
 * go silent (forward nothing, close nothing: a lost network), silence one connection only, hold
 * the server's answers back, accept and drop connections at once (a server still starting behind
 * a port proxy), or accept and never answer. Uses node:net only, so it runs on Deno and Node.
 */

import net from "node:net";

/** What the proxy does with a new connection. */
export type AcceptMode =
  /** Connect to the target and pass bytes both ways. */
  | "forward"
  /**
   * Accept, read the first bytes, then close: a port proxy in front of a server that is not up
   * yet (a container still starting) accepts and drops.
   */
  | "drop"
  /** Accept and read, never answer, never close: a server that never answers. */
  | "blackhole";

/** One client connection through the proxy. */
export class ProxiedConnection {
  /** While true, bytes are dropped both ways and closes are not passed on. */
  silent = false;
  readonly #sockets: net.Socket[] = [];

  constructor(readonly number: number) {}

  /** @internal */
  add(socket: net.Socket): void {
    this.#sockets.push(socket);
  }

  /** Drops every byte of this connection from now on, closing nothing. */
  silence(): void {
    this.silent = true;
  }

  /** Destroys both sides. */
  destroy(): void {
    for (const socket of this.#sockets) socket.destroy();
  }
}

/** A running proxy to one target port of 127.0.0.1 (or to nothing, for "drop" and "blackhole"). */
export class FaultProxy {
  /** What happens to the next connections. */
  mode: AcceptMode;
  /** While true, every connection, present and future, is silent. */
  silent = false;
  /** While true, the server's answers are held back until {@link FaultProxy.flush}. */
  hold = false;
  /** Every connection accepted so far, in order. */
  readonly connections: ProxiedConnection[] = [];

  readonly #server: net.Server;
  readonly #targetPort: number | undefined;
  readonly #held: [net.Socket, Uint8Array][] = [];
  #onHeld: (() => void) | undefined;
  #onAccept: (() => boolean)[] = [];

  private constructor(mode: AcceptMode, targetPort: number | undefined) {
    this.mode = mode;
    this.#targetPort = targetPort;
    this.#server = net.createServer((client) => this.#accept(client));
  }

  /**
   * Starts a proxy on a free port of 127.0.0.1 in front of `target` (a URL whose port is used),
   * or in front of nothing for the modes that need no server.
   */
  static async start(mode: AcceptMode, target?: string): Promise<FaultProxy> {
    const port = target === undefined ? undefined : Number(new URL(target).port || 5432);
    const proxy = new FaultProxy(mode, port);
    await new Promise<void>((resolve) => proxy.#server.listen(0, "127.0.0.1", resolve));
    return proxy;
  }

  /** `url` with its host and port replaced by the proxy's. */
  url(url: string): string {
    const proxied = new URL(url);
    proxied.hostname = "127.0.0.1";
    proxied.port = String((this.#server.address() as net.AddressInfo).port);
    return proxied.href;
  }

  /** Resolves once at least `count` connections were accepted. */
  accepted(count: number): Promise<void> {
    if (this.connections.length >= count) return Promise.resolve();
    return new Promise((resolve) => {
      const check = () => {
        if (this.connections.length < count) return false;
        resolve();
        return true;
      };
      this.#onAccept.push(check);
    });
  }

  /** Resolves once an answer from the server is being held back. */
  held(): Promise<void> {
    if (this.#held.length > 0) return Promise.resolve();
    return new Promise((resolve) => this.#onHeld = resolve);
  }

  /** Stops holding answers back and passes on the held ones. */
  flush(): void {
    this.hold = false;
    this.#onHeld = undefined;
    for (const [to, chunk] of this.#held.splice(0)) to.write(chunk);
  }

  /** Destroys every connection and stops listening. */
  async stop(): Promise<void> {
    for (const connection of this.connections) connection.destroy();
    await new Promise((resolve) => this.#server.close(resolve));
  }

  #accept(client: net.Socket): void {
    const connection = new ProxiedConnection(this.connections.length);
    this.connections.push(connection);
    connection.add(client);
    client.on("error", () => {});
    this.#onAccept = this.#onAccept.filter((check) => !check());
    if (this.mode === "drop") {
      client.once("data", () => client.end());
      return;
    }
    if (this.mode === "blackhole" || this.#targetPort === undefined) {
      client.on("data", () => {});
      return;
    }
    const upstream = net.connect(this.#targetPort, "127.0.0.1");
    connection.add(upstream);
    upstream.on("error", () => {});
    const silent = () => this.silent || connection.silent;
    for (const [from, to] of [[client, upstream], [upstream, client]]) {
      from.on("data", (chunk: Uint8Array) => {
        if (silent()) return;
        if (this.hold && from === upstream) {
          this.#held.push([to, chunk]);
          this.#onHeld?.();
        } else {
          to.write(chunk);
        }
      });
      // A lost network tells the other side nothing: while silent, a close is not passed on.
      from.on("close", () => silent() || to.destroy());
    }
  }
}
