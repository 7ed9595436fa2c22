/**
 * The runtime-specific part of the broker tests, in one place: starting a broker (`Deno.serve`
 * under Deno, `serveBroker` with node:http + ws under Node), the client's WebSocket class, and
 * the command that runs a worker script as an OS process.
 */

import type { StateABC } from "../mod.ts";
import { scriptCommand } from "./child_script.ts";
import {
  type BrokerHandler,
  brokerHandler,
  type BrokerOptions,
  type BrokerStateOptions,
  type WebSocketConstructor,
} from "../backends/broker.ts";
import { serveBroker } from "../backends/broker_node.ts";

/** A broker listening on a loopback port. */
export interface RunningBroker {
  /** The `ws://` URL of the broker. */
  url: string;
  port: number;
  handler: BrokerHandler;
  /** Ends every connection (releasing their locks) and stops listening. */
  close(): Promise<void>;
}

interface DenoServe {
  serve(
    options: { hostname: string; port: number; onListen(addr: { port: number }): void },
    handler: (request: Request) => Response | Promise<Response>,
  ): { addr: { port: number }; shutdown(): Promise<void> };
}

const deno = (globalThis as { Deno?: DenoServe }).Deno;

/** `true` under Deno, `false` under Node and Bun. */
export const isDeno: boolean = deno !== undefined;

/** `true` under Bun (`bun test` on the npm build, runtimes/bun.ts). */
export const isBun: boolean = (globalThis as { Bun?: unknown }).Bun !== undefined;

/** Starts a broker serving `state` on 127.0.0.1 (port 0 picks a free one). */
export async function startBroker(
  state: StateABC,
  options: BrokerOptions,
  port = 0,
): Promise<RunningBroker> {
  if (deno !== undefined) {
    const handler = brokerHandler(state, options);
    const server = deno.serve({ hostname: "127.0.0.1", port, onListen() {} }, handler);
    const actual = server.addr.port;
    return {
      url: `ws://127.0.0.1:${actual}/`,
      port: actual,
      handler,
      async close() {
        await handler.close();
        await server.shutdown();
      },
    };
  }
  const server = await serveBroker({ ...options, state, port, hostname: "127.0.0.1" });
  return { url: server.url, port: server.port, handler: server.handler, close: server.close };
}

let wsClass: WebSocketConstructor | undefined;

/** Client options: the token, plus the `ws` WebSocket class where there is no global one. */
export async function clientOptions(
  token: string,
  extra: Partial<BrokerStateOptions> = {},
): Promise<BrokerStateOptions> {
  if ((globalThis as { WebSocket?: unknown }).WebSocket !== undefined) {
    return { token, ...extra };
  }
  wsClass ??= ((await import("ws")) as unknown as { WebSocket: WebSocketConstructor }).WebSocket;
  return { token, WebSocket: wsClass, ...extra };
}

/** The WebSocket class a raw test client uses. */
export async function webSocketClass(): Promise<WebSocketConstructor> {
  const options = await clientOptions("x");
  return options.WebSocket ??
    (globalThis as unknown as { WebSocket: WebSocketConstructor }).WebSocket;
}

/** The command that runs `tests/workers/<name>` as an OS process, under the current runtime. */
export function workerCommand(name: string, args: string[]): { command: string; args: string[] } {
  return scriptCommand(`workers/${name}`, args);
}
