/**
 * The broker: one state served over WebSocket to workers on other processes and machines (and to
 * edge functions that cannot reach a database), the TypeScript form of the
 * worker-to-broker design of Python's `momotor.shared.state`.
 *
 * - {@link brokerHandler}: the server, a web-standard handler for `Deno.serve`. On Node and Bun,
 *   `serveBroker` of `@momotor/shared-state/broker/node` runs it; this module imports nothing of
 *   Node, so that it bundles as it is for Cloudflare Workers and browsers.
 * - {@link BrokerState}: the client, a `StateABC` whose locks the broker holds for as long as the
 *   client's connection lives.
 *
 * @example A broker and a client in one Deno process
 * ```ts ignore
 * import { LocalState } from "@momotor/shared-state";
 * import { brokerHandler, BrokerState } from "@momotor/shared-state/broker";
 *
 * const server = Deno.serve({ port: 8787 }, brokerHandler(new LocalState(), { token: "s3cret" }));
 * await using state = new BrokerState("ws://127.0.0.1:8787", { token: "s3cret" });
 * await state.withLock("report", () => console.log("only one worker runs this at a time"));
 * ```
 *
 * @module
 */

export {
  type BrokerHandler,
  brokerHandler,
  type BrokerOptions,
  type BrokerRequestInfo,
} from "./broker/server.ts";
export {
  BrokerState,
  type BrokerStateOptions,
  type WebSocketConstructor,
} from "./broker/client.ts";
export {
  type BrokerLimits,
  CloseCode,
  DEFAULT_HEARTBEAT_INTERVAL,
  MAX_FRAME_BYTES,
  MAX_KEY_LENGTH,
  type WebSocketLike,
} from "./broker/protocol.ts";
