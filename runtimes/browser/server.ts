/**
 * The HTTP server of `runtimes/browser_test.ts` that the browser page talks to: it serves the
 * page and its bundle, receives the page's reports (`report.ts`), and answers what the page asks
 * about the broker's state (the `LocalState` that the test's broker serves):
 *
 * - `GET /`: the page (an inline script that reports uncaught errors, then the bundle).
 * - `GET /page.js`: the bundle.
 * - `POST /report`: one report of the page.
 * - `POST /served/size`: `{ size }`, the broker's key entries.
 * - `POST /served/hold?key=K`, `POST /served/release?key=K`: take or release `K` on the broker's
 *   state, as another client of the broker would.
 * - `POST /action/NAME`: runs the action `NAME` the test gave (such as stopping a broker).
 *
 * @module
 */

import type { LocalState, Lock } from "../../mod.ts";
import type { Report } from "./report.ts";

/**
 * The page: a classic script first, so that an error while the bundle loads or runs (before the
 * page's own code can report anything) is reported too, and every rejection nothing handled.
 */
const HTML = `<!doctype html>
<html>
<head>
<meta charset="utf-8">
<title>shared-state in the browser</title>
<script>
  function reportUncaught(message) {
    fetch("/report", {
      method: "POST",
      body: JSON.stringify({ type: "uncaught", message: String(message) }),
    }).catch(function () {});
  }
  addEventListener("error", function (event) {
    reportUncaught(event.message + " (" + event.filename + ":" + event.lineno + ")" +
      (event.error && event.error.stack ? "\\n" + event.error.stack : ""));
  });
  addEventListener("unhandledrejection", function (event) {
    var reason = event.reason;
    reportUncaught("unhandled rejection: " + (reason && reason.stack ? reason.stack : reason));
  });
</script>
<script type="module" src="/page.js" onerror="reportUncaught('the bundle did not load')"></script>
</head>
<body></body>
</html>
`;

/** The page's server. */
export interface PageServer {
  /** `http://127.0.0.1:PORT/`. */
  readonly url: string;
  /** Every report so far, in the order they came. */
  readonly reports: Report[];
  /** Calls `listener` on each report from now on. */
  onReport(listener: (report: Report) => void): void;
  /** Stops serving, and releases what the page had the server hold. */
  close(): Promise<void>;
}

function isReport(value: unknown): value is Report {
  const type = (value as { type?: unknown })?.type;
  return type === "started" || type === "result" || type === "uncaught" || type === "done";
}

/**
 * Serves `bundle` and the page on 127.0.0.1, port 0; `served` is the broker's state, `actions`
 * what the page may have the test do.
 */
export function servePage(
  bundle: string,
  served: LocalState,
  actions: Record<string, () => Promise<void>> = {},
): PageServer {
  const reports: Report[] = [];
  const listeners: ((report: Report) => void)[] = [];
  const held = new Map<string, Lock>();
  const receive = (report: Report) => {
    reports.push(report);
    for (const listener of listeners) listener(report);
  };
  const json = (body: unknown) => Response.json(body, { headers: { "cache-control": "no-store" } });

  async function handle(request: Request): Promise<Response> {
    const url = new URL(request.url);
    const key = url.searchParams.get("key") ?? "";
    switch (`${request.method} ${url.pathname}`) {
      case "GET /":
        return new Response(HTML, { headers: { "content-type": "text/html; charset=utf-8" } });
      case "GET /page.js":
        return new Response(bundle, { headers: { "content-type": "text/javascript" } });
      case "POST /report": {
        const text = await request.text();
        let report: unknown;
        try {
          report = JSON.parse(text);
        } catch {
          report = undefined;
        }
        receive(isReport(report) ? report : { type: "uncaught", message: `bad report: ${text}` });
        return new Response(null, { status: 204 });
      }
      case "POST /served/size":
        return json({ size: served.size });
      case "POST /served/hold":
        if (held.has(key)) return new Response(`${key} is held already`, { status: 409 });
        held.set(key, await served.getLock(key, { timeout: 5000 }));
        return json({ size: served.size });
      case "POST /served/release":
        await held.get(key)?.release();
        held.delete(key);
        return json({ size: served.size });
      default: {
        const action = url.pathname.startsWith("/action/") && request.method === "POST"
          ? actions[url.pathname.slice("/action/".length)]
          : undefined;
        if (action === undefined) return new Response("not found", { status: 404 });
        await action();
        return new Response(null, { status: 204 });
      }
    }
  }

  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (request) => {
    try {
      return await handle(request);
    } catch (error) {
      return new Response(String(error), { status: 500 });
    }
  });
  return {
    url: `http://127.0.0.1:${server.addr.port}/`,
    reports,
    onReport: (listener) => void listeners.push(listener),
    async close() {
      await server.shutdown();
      await Promise.all([...held.values()].map((lock) => lock.release()));
      held.clear();
    },
  };
}
