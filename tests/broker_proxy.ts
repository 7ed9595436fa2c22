/**
 * A TCP proxy for the broker tests that can freeze: it then forwards nothing and closes nothing,
 * which is what a half-open connection looks like to both ends. Uses node:net only, so it runs on
 * Deno and Node alike.
 */

import net from "node:net";

/** A running proxy to one target port on 127.0.0.1. */
export interface FreezingProxy {
  /** The `ws://` URL that goes through the proxy. */
  url: string;
  /** From now on, drop every byte in both directions and keep the sockets open. */
  freeze(): void;
  /** Destroys every socket and stops listening. */
  close(): Promise<void>;
}

/** Starts a proxy on a free loopback port that forwards to `targetPort`. */
export async function startFreezingProxy(targetPort: number): Promise<FreezingProxy> {
  let frozen = false;
  const sockets = new Set<net.Socket>();
  const track = (socket: net.Socket) => {
    sockets.add(socket);
    socket.on("error", () => {});
    socket.on("close", () => sockets.delete(socket));
  };
  const server = net.createServer((client) => {
    track(client);
    const upstream = net.connect(targetPort, "127.0.0.1");
    track(upstream);
    client.setNoDelay(true);
    upstream.setNoDelay(true);
    client.on("data", (data) => {
      if (!frozen) upstream.write(data);
    });
    upstream.on("data", (data) => {
      if (!frozen) client.write(data);
    });
    // A frozen link does not pass a close on either: the other end must notice by itself.
    client.on("close", () => {
      if (!frozen) upstream.destroy();
    });
    upstream.on("close", () => {
      if (!frozen) client.destroy();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as net.AddressInfo).port;
  return {
    url: `ws://127.0.0.1:${port}/`,
    freeze() {
      frozen = true;
    },
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
