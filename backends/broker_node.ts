/**
 * The broker's server on Node and Bun: {@link serveBroker} serves the broker protocol on
 * `node:http`, with the `ws` package (`npm install ws`). It has an entry point of its own so that
 * `@momotor/shared-state/broker` (the client, `BrokerState`, and the web-standard handler,
 * `brokerHandler`) imports nothing of Node: bundlers for Cloudflare Workers and browsers see no
 * `node:` module there.
 *
 * @example A broker on Node
 * ```ts ignore
 * import { LocalState } from "@momotor/shared-state";
 * import { serveBroker } from "@momotor/shared-state/broker/node";
 *
 * const broker = await serveBroker({ state: new LocalState(), token: process.env.TOKEN!, port: 8787 });
 * console.log(`broker on ${broker.url}`); // broker.close() ends every connection, releasing all
 * ```
 *
 * @module
 */

export { type BrokerServer, serveBroker, type ServeBrokerOptions } from "./broker/node_server.ts";
