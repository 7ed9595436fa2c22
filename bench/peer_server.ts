/**
 * A peer's lock server for the broker group, in a Node process of its own: `mutex-server`
 * (`MutexServer.open(port, …)`, accepting clients that present the password) or `live-mutex`
 * (`new Broker({ port })`). Prints `ready` once it listens; ends when its stdin closes.
 *
 * Usage: `peer_server.js mutex-server|live-mutex PORT [PASSWORD]` (compiled by `bench/node.ts`).
 *
 * @module
 */

import process from "node:process";

interface Acceptor {
  header: string;
  accept(provider: null): Promise<void>;
  reject(): Promise<void>;
}

const [kind, portText, password] = process.argv.slice(2);
const port = Number(portText);
let close: () => Promise<void>;
if (kind === "mutex-server") {
  const module = await import("npm:mutex-server@^0.3.2");
  const MutexServer = (module as unknown as {
    MutexServer: new () => {
      open(port: number, handler: (acceptor: Acceptor) => Promise<void>): Promise<void>;
      close(): Promise<void>;
    };
  }).MutexServer;
  const server = new MutexServer();
  await server.open(port, async (acceptor) => {
    if (acceptor.header === password) await acceptor.accept(null);
    else await acceptor.reject();
  });
  close = () => server.close();
} else if (kind === "live-mutex") {
  const module = await import("npm:live-mutex@^0.2.25");
  const Broker = (module as unknown as {
    Broker: new (options: object) => { ensure(): Promise<unknown>; close(cb: () => void): void };
  }).Broker;
  const broker = new Broker({ port, host: "127.0.0.1" });
  await broker.ensure();
  close = () => new Promise<void>((resolve) => broker.close(() => resolve()));
} else {
  throw new Error(`unknown peer server ${kind}`);
}
process.stdout.write("ready\n");
process.stdin.resume();
process.stdin.on("end", () => {
  void close().finally(() => process.exit(0));
  setTimeout(() => process.exit(0), 2000);
});
