/**
 * The broker of the broker group, in a Deno process of its own: `Deno.serve(brokerHandler(new
 * LocalState(), { token }))` on 127.0.0.1, plus a WebSocket echo endpoint (`/echo`) served by the
 * same server, the floor the broker's latency is judged against, and a minimal lock server on
 * `/minimal` for `bench/decompose.ts`. Prints `{"port": …}` once it listens; ends when its stdin
 * closes.
 *
 * Usage: `broker_server.ts TOKEN`.
 *
 * @module
 */

import { LocalState } from "../mod.ts";
import { brokerHandler } from "../backends/broker.ts";

const state = new LocalState();
const handler = brokerHandler(state, { token: Deno.args[0] });

const server = Deno.serve({
  hostname: "127.0.0.1",
  port: 0,
  onListen: ({ port }) => console.log(JSON.stringify({ port })),
}, (request) => {
  if (new URL(request.url).pathname === "/echo") {
    const { socket, response } = Deno.upgradeWebSocket(request);
    socket.onmessage = (event) => socket.send(event.data);
    return response;
  }
  return handler(request);
});

// The group runner closes stdin when it is done (or dies).
for await (const _ of Deno.stdin.readable) {
  // nothing is read from it
}
await handler.close();
await state.close();
await server.shutdown();
Deno.exit(0);
