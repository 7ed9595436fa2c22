/**
 * `instrument` (issue 12), read back through the OpenTelemetry SDK's in-memory exporters: waits
 * by outcome, held locks, failures and losses by reason, and a span per request, on LocalState and
 * PostgresState; a state that is not instrumented is left as it was.
 */

import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import {
  AggregationTemporality,
  type DataPoint,
  DataPointType,
  type Histogram,
  InMemoryMetricExporter,
  MeterProvider,
  PeriodicExportingMetricReader,
} from "@opentelemetry/sdk-metrics";
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  SimpleSpanProcessor,
} from "@opentelemetry/sdk-trace-base";
import { LocalState, LockFailed, type StateABC } from "../mod.ts";
import { BrokerState } from "../backends/broker.ts";
import { instrument } from "../opentelemetry.ts";
import { clientOptions, startBroker } from "./broker_env.ts";
import {
  aborted,
  adminClient,
  lockPids,
  postgresSkip,
  terminate,
  testState,
  within,
} from "./postgres_env.ts";

/** Providers backed by the SDK's in-memory exporters. */
class Telemetry {
  readonly metrics = new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE);
  readonly reader = new PeriodicExportingMetricReader({
    exporter: this.metrics,
    // Exported on demand only (forceFlush).
    exportIntervalMillis: 3_600_000,
  });
  readonly meterProvider = new MeterProvider({ readers: [this.reader] });
  readonly spans = new InMemorySpanExporter();
  readonly tracerProvider = new BasicTracerProvider({
    spanProcessors: [new SimpleSpanProcessor(this.spans)],
  });

  /** The data points of metric `name` now, as `[attributes, value]`, sorted by attributes. */
  async points(name: string): Promise<[Record<string, unknown>, unknown][]> {
    await this.reader.forceFlush();
    const exported = this.metrics.getMetrics().at(-1);
    const metric = exported?.scopeMetrics
      .flatMap((scope) => scope.metrics)
      .find((metric) => metric.descriptor.name === name);
    if (metric === undefined) return [];
    return (metric.dataPoints as DataPoint<unknown>[])
      .map((point): [Record<string, unknown>, unknown] => [{ ...point.attributes }, point.value])
      .sort(([a], [b]) => JSON.stringify(a).localeCompare(JSON.stringify(b)));
  }

  /** `[attributes, count]` of the wait histogram. */
  async waits(): Promise<[Record<string, unknown>, number][]> {
    const points = await this.points("shared_state.lock.wait.duration");
    return points.map(([attributes, value]) => [attributes, (value as Histogram).count]);
  }

  async descriptors(): Promise<Record<string, { unit: string; type: string }>> {
    await this.reader.forceFlush();
    const found: Record<string, { unit: string; type: string }> = {};
    for (const scope of this.metrics.getMetrics().at(-1)?.scopeMetrics ?? []) {
      for (const metric of scope.metrics) {
        const type = metric.dataPointType === DataPointType.HISTOGRAM
          ? "histogram"
          : metric.dataPointType === DataPointType.SUM
          ? (metric.isMonotonic ? "counter" : "up-down counter")
          : "other";
        found[metric.descriptor.name] = { unit: metric.descriptor.unit, type };
      }
    }
    return found;
  }

  /** The options of `instrument`. */
  get providers(): { meterProvider: MeterProvider; tracerProvider: BasicTracerProvider } {
    return { meterProvider: this.meterProvider, tracerProvider: this.tracerProvider };
  }

  async shutdown(): Promise<void> {
    await this.meterProvider.shutdown();
    await this.tracerProvider.shutdown();
  }
}

const attrs = (backend: string, mode: string, extra: Record<string, string> = {}) => ({
  "shared_state.backend": backend,
  "shared_state.lock.mode": mode,
  ...extra,
});

/** What every backend must record for the same few requests. */
async function recordsRequests(state: StateABC, backend: string, telemetry: Telemetry) {
  const key = `otel/${backend}/${Date.now()}`;
  const a = await state.getLock(key);
  await assert.rejects(state.getLock(key, { timeout: 0 }), { reason: "busy" });
  await assert.rejects(state.getLock(key, { exclusive: false, timeout: 20 }), {
    reason: "timeout",
  });
  assert.deepEqual(await telemetry.points("shared_state.lock.held"), [
    [attrs(backend, "exclusive"), 1],
  ]);
  await a.release();
  await a.release(); // twice: counted once
  const readers = [
    await state.getLock(key, { exclusive: false }),
    await state.getLock(key, {
      exclusive: false,
    }),
  ];
  assert.deepEqual(await telemetry.points("shared_state.lock.held"), [
    [attrs(backend, "exclusive"), 0],
    [attrs(backend, "shared"), 2],
  ]);
  await readers[0].release();
  assert.deepEqual(await telemetry.waits(), [
    [attrs(backend, "exclusive", { "shared_state.lock.outcome": "acquired" }), 1],
    [attrs(backend, "exclusive", { "shared_state.lock.outcome": "busy" }), 1],
    [attrs(backend, "shared", { "shared_state.lock.outcome": "acquired" }), 2],
    [attrs(backend, "shared", { "shared_state.lock.outcome": "timeout" }), 1],
  ]);
  // Closing loses the last reader; later requests are refused before they reach the backend.
  await state.close();
  await assert.rejects(state.getLock(key), LockFailed);
  await assert.rejects(state.withLock(key, () => 1, { exclusive: false }), LockFailed);
  assert.deepEqual(await telemetry.points("shared_state.lock.held"), [
    [attrs(backend, "exclusive"), 0],
    [attrs(backend, "shared"), 0],
  ]);
  assert.deepEqual(await telemetry.points("shared_state.lock.losses"), [
    [attrs(backend, "shared", { "error.type": "closed" }), 1],
  ]);
  assert.deepEqual(await telemetry.points("shared_state.lock.failures"), [
    [attrs(backend, "exclusive", { "error.type": "busy" }), 1],
    [attrs(backend, "exclusive", { "error.type": "closed" }), 1],
    [attrs(backend, "shared", { "error.type": "closed" }), 1],
    [attrs(backend, "shared", { "error.type": "timeout" }), 1],
  ]);
  const spans = telemetry.spans.getFinishedSpans();
  assert.equal(spans.length, 5, "a span per request that reached the backend");
  assert.ok(spans.every((span) => span.name === "acquire lock"));
  assert.ok(spans.every((span) => span.attributes["shared_state.lock.key"] === key));
  const failed = spans.filter((span) => span.status.code === 2);
  assert.deepEqual(failed.map((span) => span.attributes["error.type"]).sort(), ["busy", "timeout"]);
}

const skip = await postgresSkip();

describe("instrument", () => {
  const telemetries: Telemetry[] = [];
  const telemetry = () => {
    const made = new Telemetry();
    telemetries.push(made);
    return made;
  };
  after(() => Promise.all(telemetries.map((t) => t.shutdown())));

  it("records waits, held locks, failures, losses and spans of a LocalState", async () => {
    const t = telemetry();
    const state = instrument(new LocalState(), t.providers);
    await recordsRequests(state, "local", t);
    const descriptors = await t.descriptors();
    assert.deepEqual(descriptors["shared_state.lock.wait.duration"], {
      unit: "s",
      type: "histogram",
    });
    assert.deepEqual(descriptors["shared_state.lock.held"], {
      unit: "{lock}",
      type: "up-down counter",
    });
    assert.deepEqual(descriptors["shared_state.lock.failures"], {
      unit: "{failure}",
      type: "counter",
    });
    assert.deepEqual(descriptors["shared_state.lock.losses"], { unit: "{lock}", type: "counter" });
  });

  it("times a wait in seconds", async () => {
    const t = telemetry();
    const state = instrument(new LocalState(), { meterProvider: t.meterProvider });
    const holder = await state.getLock("k");
    const waiting = state.getLock("k");
    await new Promise((resolve) => setTimeout(resolve, 30)); // the wait being measured
    await holder.release();
    await (await waiting).release();
    const points = await t.points("shared_state.lock.wait.duration");
    const max = Math.max(...points.map(([, value]) => (value as Histogram).max ?? 0));
    assert.ok(max >= 0.025 && max < 10, `the longest wait was ${max} s`);
    await state.close();
  });

  it("leaves a state that is not instrumented as it was, and refuses bad calls", () => {
    const plain = new LocalState();
    const t = telemetry();
    const other = instrument(new LocalState(), t.providers);
    for (const name of ["acquire", "getLock", "withLock"]) {
      assert.equal(Object.hasOwn(plain, name), false, `${name} of a plain state was wrapped`);
      assert.equal(Object.hasOwn(other, name), true);
    }
    assert.throws(() => instrument(other), { name: "TypeError", message: /instrumented already/ });
    assert.throws(() => instrument({} as never), TypeError);
    assert.throws(() => instrument(plain, { meterProvder: t.meterProvider } as never), {
      name: "TypeError",
      message: /unknown option "meterProvder"/,
    });
    assert.throws(() => instrument(plain, { meterProvider: {} as never }), TypeError);
    assert.equal(Object.hasOwn(plain, "getLock"), false, "a refused call wrapped nothing");
  });

  it("records the same on a BrokerState", async () => {
    const served = new LocalState();
    const broker = await startBroker(served, { token: "otel" });
    try {
      const t = telemetry();
      const state = new BrokerState(broker.url, await clientOptions("otel"));
      await recordsRequests(instrument(state, t.providers), "broker", t);
    } finally {
      await broker.close();
      await served.close();
    }
  });

  describe("on PostgresState", () => {
    const admin = skip ? undefined : adminClient();
    after(() => admin?.end());

    it("records the same, and a lock lost with its connection", { skip }, async () => {
      const t = telemetry();
      await recordsRequests(
        instrument(testState("ss-test-otel", { namespace: "otel" }), t.providers),
        "postgres",
        t,
      );
      const lossy = telemetry();
      const app = "ss-test-otel-lost";
      const state = instrument(testState(app, { namespace: "otel-lost" }), lossy.providers);
      try {
        const lock = await state.getLock("k");
        await terminate(admin!, await lockPids(admin!, app, true));
        // The signal is made here, maybe after the loss: aborted() looks before it listens.
        await within(aborted(lock.signal), "the lock lost");
        assert.deepEqual(await lossy.points("shared_state.lock.losses"), [
          [attrs("postgres", "exclusive", { "error.type": "disconnected" }), 1],
        ]);
        assert.deepEqual(await lossy.points("shared_state.lock.held"), [
          [attrs("postgres", "exclusive"), 0],
        ]);
      } finally {
        await state.close();
      }
    });
  });
});
