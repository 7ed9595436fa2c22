/**
 * One run of the browser page for `runtimes/browser_test.ts`: a broker on `Deno.serve`
 * (`brokerHandler` over a `LocalState`), a second one that the page has stopped, a port where
 * none listens, the page bundled (`bundle.ts`) and served
 * (`server.ts`), headless Chromium on it (`chromium.ts`), then the page's reports until it says
 * it is done, each wait bounded; then everything stopped, Chromium's processes included.
 *
 * @module
 */

import { LocalState } from "../../mod.ts";
import { brokerHandler } from "../../backends/broker.ts";
import { bundlePage } from "./bundle.ts";
import { launchChromium } from "./chromium.ts";
import type { Report, TestResult } from "./report.ts";
import { servePage } from "./server.ts";

/** Bounds on the page: its first report, the time between two reports, the whole run. */
export interface RunBounds {
  startMs: number;
  idleMs: number;
  totalMs: number;
}

/** What a run brought back. */
export interface PageRun {
  /** The page's results, in order. */
  results: TestResult[];
  /** Errors nothing caught in the page, and rejections nothing handled. */
  uncaught: string[];
  /** The browser's user agent, as the page told it. */
  userAgent?: string;
  /** The tests the page registered, as it told when it was done. */
  registered?: number;
  /** Milliseconds the page's tests took, when it was done. */
  pageMs?: number;
  /** Why the run did not end with the page's `done`, if it did not. */
  incomplete?: string;
  /** Chromium's output (its errors and the page's console), for a failure message. */
  output: string;
  /** The broker's key entries when the page said it was done (its states all closed by then). */
  servedSizeAtDone?: number;
}

const TOKEN = "browser-test-token";

/** Runs the page in Chromium (`binary`) and collects its reports. */
export async function runPage(binary: string, bounds: RunBounds): Promise<PageRun> {
  const dir = await Deno.makeTempDir({ prefix: "shared-state-browser-" });
  const served = new LocalState({ name: "served to the browser" });
  const handler = brokerHandler(served, { token: TOKEN });
  const broker = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, handler);
  // A second broker, that the page has stopped under its clients (`/action/stop-doomed`).
  const doomed = new LocalState({ name: "a broker stopped under the page" });
  const doomedHandler = brokerHandler(doomed, { token: TOKEN });
  const doomedBroker = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, doomedHandler);
  let stoppingDoomed: Promise<void> | undefined;
  const stopDoomed = () =>
    stoppingDoomed ??= (async () => {
      await doomedHandler.close();
      await doomedBroker.shutdown();
    })();
  // A port nothing listens on: a broker that cannot be reached.
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const closedPort = listener.addr.port;
  listener.close();
  const run: PageRun = { results: [], uncaught: [], output: "" };
  const stops: (() => Promise<void>)[] = [
    async () => {
      await handler.close();
      await broker.shutdown();
    },
    stopDoomed,
  ];
  try {
    const page = servePage(await bundlePage(dir), served, { "stop-doomed": stopDoomed });
    stops.unshift(() => page.close());
    const url = new URL(page.url);
    url.searchParams.set("broker", `ws://127.0.0.1:${broker.addr.port}/`);
    url.searchParams.set("token", TOKEN);
    url.searchParams.set("doomed", `ws://127.0.0.1:${doomedBroker.addr.port}/`);
    url.searchParams.set("closed", `ws://127.0.0.1:${closedPort}/`);

    // Every report moves the run on; a silent page, an exited browser or the total bound ends it.
    let settle!: (incomplete?: string) => void;
    const ended = new Promise<string | undefined>((resolve) => settle = resolve);
    let idle: ReturnType<typeof setTimeout> | undefined;
    let finished = false;
    const quiet = (ms: number, what: string) => {
      clearTimeout(idle);
      if (finished) return;
      idle = setTimeout(() => settle(`${what} within ${ms} ms`), ms);
    };
    const total = setTimeout(
      () => settle(`the page did not finish within ${bounds.totalMs} ms`),
      bounds.totalMs,
    );
    page.onReport((report: Report) => {
      switch (report.type) {
        case "started":
          run.userAgent = report.userAgent;
          break;
        case "result":
          run.results.push(report.result);
          break;
        case "uncaught":
          run.uncaught.push(report.message);
          break;
        case "done":
          run.registered = report.registered;
          run.pageMs = report.ms;
          run.servedSizeAtDone = served.size;
          settle();
          return;
      }
      quiet(bounds.idleMs, "the page reported nothing more");
    });
    quiet(bounds.startMs, "the page did not start");

    const chromium = await launchChromium(binary, url.href);
    stops.unshift(async () => {
      try {
        await chromium.stop();
      } finally {
        run.output = chromium.output();
      }
    });
    chromium.status.then((status) => settle(`Chromium exited (code ${status.code})`));
    try {
      run.incomplete = await ended;
    } finally {
      finished = true;
      clearTimeout(idle);
      clearTimeout(total);
    }
  } catch (error) {
    run.incomplete = `the run failed: ${error instanceof Error ? error.stack : error}`;
  } finally {
    // Stop in reverse order of start (Chromium, the page's server, the broker), each attempted.
    const failures: unknown[] = [];
    for (const stop of stops) await stop().catch((error) => failures.push(error));
    await served.close();
    await doomed.close();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    if (failures.length > 0) {
      const message = failures.map((e) => e instanceof Error ? e.message : String(e)).join("; ");
      run.incomplete = `${run.incomplete ?? ""}${run.incomplete ? "; " : ""}stopping: ${message}`;
    }
  }
  return run;
}
