/**
 * OpenTelemetry for any state (issue 12): {@link instrument} records how long requests wait, how
 * many locks are held, and how many fail or are lost, through `@opentelemetry/api` (an optional
 * peer dependency: only this entry point imports it), and a span for each request.
 *
 * | instrument                        | kind           | unit        | attributes                                                          |
 * | --------------------------------- | -------------- | ----------- | ------------------------------------------------------------------- |
 * | `shared_state.lock.wait.duration` | histogram      | `s`         | `shared_state.backend`, `shared_state.lock.mode`, `shared_state.lock.outcome` |
 * | `shared_state.lock.held`          | up-down counter | `{lock}`   | `shared_state.backend`, `shared_state.lock.mode`                    |
 * | `shared_state.lock.failures`      | counter        | `{failure}` | `shared_state.backend`, `shared_state.lock.mode`, `error.type`      |
 * | `shared_state.lock.losses`        | counter        | `{lock}`    | `shared_state.backend`, `shared_state.lock.mode`, `error.type`      |
 *
 * `shared_state.backend` is `local`, `postgres`, `broker` (else the class name);
 * `shared_state.lock.mode` `exclusive` or `shared`; `shared_state.lock.outcome` `acquired` or the
 * `LockFailed.reason` (`busy`, `timeout`, `aborted`, `closed`, `unreachable`, `refused`,
 * `deadlock`); `error.type` is `LockFailed.reason` for a failure and `LockLost.reason` (`closed`,
 * `disconnected`) for a loss. Keys are never metric attributes (unbounded); the span of a
 * request, `acquire lock`, carries `shared_state.lock.key`.
 *
 * A state that is not instrumented runs exactly the code it ran before: `instrument` wraps the
 * methods of the one state it is given, nothing else.
 *
 * @example
 * ```ts
 * import { metrics } from "@opentelemetry/api";
 * import { LocalState } from "@momotor/shared-state";
 * import { instrument } from "@momotor/shared-state/opentelemetry";
 *
 * // With an SDK registered (e.g. @opentelemetry/sdk-node), or pass { meterProvider }.
 * const state = instrument(new LocalState(), { meterProvider: metrics.getMeterProvider() });
 * await state.withLock("report", () => {});
 * ```
 *
 * @module
 */

import {
  type Attributes,
  type Counter,
  type Histogram,
  type MeterProvider as ApiMeterProvider,
  metrics,
  type Span,
  SpanKind,
  SpanStatusCode,
  trace,
  type Tracer,
  type TracerProvider as ApiTracerProvider,
  type UpDownCounter,
} from "@opentelemetry/api";
import { LockFailed, LockLost, type LockLostReason } from "./errors.ts";
import { BaseLock } from "./internal/base_lock.ts";
import { checkOptions, optionNames, optionTypeError, show } from "./internal/arguments.ts";
import type { Lock, LockOptions, LockRequest } from "./lock.ts";
import { StateABC } from "./state.ts";

/** An OpenTelemetry meter provider (`MeterProvider` of `@opentelemetry/api`). */
export type MeterProvider = ApiMeterProvider;
/** An OpenTelemetry tracer provider (`TracerProvider` of `@opentelemetry/api`). */
export type TracerProvider = ApiTracerProvider;

/** The instrumentation scope: the meter's and the tracer's name. */
export const INSTRUMENTATION_SCOPE = "@momotor/shared-state";

/** Options of {@link instrument}. */
export interface InstrumentOptions {
  /** Where the metrics go. Default: the global one (`metrics.getMeterProvider()`). */
  meterProvider?: MeterProvider;
  /** Where the spans go. Default: the global one (`trace.getTracerProvider()`). */
  tracerProvider?: TracerProvider;
}

const OPTIONS = optionNames<InstrumentOptions>({ meterProvider: true, tracerProvider: true });

/**
 * Bucket boundaries of the wait histogram, in seconds: from an uncontended in-process acquire
 * (microseconds) to a wait of a minute.
 */
const WAIT_BUCKETS = [
  0.00001,
  0.0001,
  0.001,
  0.005,
  0.01,
  0.025,
  0.05,
  0.1,
  0.25,
  0.5,
  1,
  2.5,
  5,
  10,
  30,
  60,
];

/** Longest key recorded on a span. */
const MAX_KEY_ATTRIBUTE = 256;

/** The package's backends by class name; a subclass takes its parent's name. */
const BACKENDS: Record<string, string> = {
  LocalState: "local",
  PostgresState: "postgres",
  BrokerState: "broker",
};

const instrumented = new WeakSet<StateABC>();

function backendName(state: StateABC): string {
  for (
    let prototype = Object.getPrototypeOf(state);
    prototype !== null && prototype !== StateABC.prototype;
    prototype = Object.getPrototypeOf(prototype)
  ) {
    const name = BACKENDS[prototype.constructor?.name];
    if (name !== undefined) return name;
  }
  return state.constructor?.name || "unknown";
}

function lossReason(reason: unknown): string {
  return reason instanceof LockLost ? reason.reason : "error";
}

/** The methods of a state that are wrapped (`acquire` is protected in TypeScript). */
interface Wrapped {
  acquire(key: string, request: LockRequest): Promise<Lock>;
  getLock(key: string, options?: LockOptions): Promise<Lock>;
  withLock<T>(key: string, fn: (lock: Lock) => T | Promise<T>, options?: LockOptions): Promise<T>;
}

/**
 * Records metrics (and spans) of `state` through OpenTelemetry, and returns it: every request's
 * wait (granted or failed), the locks held, failures and losses. See the module documentation for
 * the instruments and their attributes. A request refused before it reached the backend (closed
 * state, signal aborted already) counts as a failure, without a wait.
 *
 * @example With the SDK's in-memory exporter (as the tests do)
 * ```ts
 * import {
 *   AggregationTemporality,
 *   InMemoryMetricExporter,
 *   MeterProvider,
 *   PeriodicExportingMetricReader,
 * } from "@opentelemetry/sdk-metrics";
 * import { LocalState } from "@momotor/shared-state";
 * import { instrument } from "@momotor/shared-state/opentelemetry";
 *
 * const exporter = new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE);
 * const reader = new PeriodicExportingMetricReader({ exporter, exportIntervalMillis: 60_000 });
 * const meterProvider = new MeterProvider({ readers: [reader] });
 * const state = instrument(new LocalState(), { meterProvider });
 * await state.withLock("report", () => {});
 * await reader.forceFlush();
 * console.log(exporter.getMetrics()[0].scopeMetrics[0].metrics.map((m) => m.descriptor.name));
 * await meterProvider.shutdown();
 * ```
 *
 * @param state Any state: LocalState, PostgresState, BrokerState or a backend of your own.
 * @param options The meter and tracer providers; the global ones by default.
 * @returns `state` itself, instrumented.
 * @throws {TypeError} for something that is not a state, a state instrumented already, or bad
 *   options.
 */
export function instrument<T extends StateABC>(state: T, options: InstrumentOptions = {}): T {
  if (!(state instanceof StateABC)) {
    throw new TypeError(`instrument needs a StateABC, got ${show(state)}`);
  }
  checkOptions(options, OPTIONS, "instrument options");
  const { meterProvider = metrics.getMeterProvider(), tracerProvider = trace.getTracerProvider() } =
    options;
  if (typeof (meterProvider as Partial<MeterProvider> | null)?.getMeter !== "function") {
    throw optionTypeError("instrument options", "meterProvider", "a MeterProvider", meterProvider);
  }
  if (typeof (tracerProvider as Partial<TracerProvider> | null)?.getTracer !== "function") {
    throw optionTypeError(
      "instrument options",
      "tracerProvider",
      "a TracerProvider",
      tracerProvider,
    );
  }
  if (instrumented.has(state)) throw new TypeError("this state is instrumented already");
  instrumented.add(state);
  new Instrumentation(
    state as unknown as Wrapped,
    backendName(state),
    meterProvider as MeterProvider,
    (tracerProvider as TracerProvider).getTracer(INSTRUMENTATION_SCOPE),
  );
  return state;
}

/** The instruments of one state, and the wrappers that feed them. */
class Instrumentation {
  readonly #backend: string;
  readonly #tracer: Tracer;
  readonly #wait: Histogram;
  readonly #held: UpDownCounter;
  readonly #failures: Counter;
  readonly #losses: Counter;
  /** Attribute sets, made once each: `${mode}` and `${mode}/${outcome}`. */
  readonly #attributes = new Map<string, Attributes>();
  /** Set when the wrapped `acquire` runs, to tell a request refused before it. */
  #reached = false;

  constructor(state: Wrapped, backend: string, meterProvider: MeterProvider, tracer: Tracer) {
    this.#backend = backend;
    this.#tracer = tracer;
    const meter = meterProvider.getMeter(INSTRUMENTATION_SCOPE);
    this.#wait = meter.createHistogram("shared_state.lock.wait.duration", {
      unit: "s",
      description: "How long lock requests waited, until granted or failed.",
      advice: { explicitBucketBoundaries: WAIT_BUCKETS },
    });
    this.#held = meter.createUpDownCounter("shared_state.lock.held", {
      unit: "{lock}",
      description: "Locks held right now.",
    });
    this.#failures = meter.createCounter("shared_state.lock.failures", {
      unit: "{failure}",
      description: "Lock requests that failed (LockFailed), by reason (error.type).",
    });
    this.#losses = meter.createCounter("shared_state.lock.losses", {
      unit: "{lock}",
      description: "Held locks taken away by the backend (LockLost), by reason (error.type).",
    });
    this.#wrap(state);
  }

  #wrap(state: Wrapped): void {
    const { acquire, getLock, withLock } = state;
    // deno-lint-ignore no-this-alias
    const instrumentation = this;
    state.acquire = function (key: string, request: LockRequest): Promise<Lock> {
      instrumentation.#reached = true;
      return instrumentation.#acquired(
        key,
        request.exclusive,
        () => acquire.call(this, key, request),
      );
    };
    state.getLock = function (key: string, options?: LockOptions): Promise<Lock> {
      instrumentation.#reached = false;
      const pending = getLock.call(this, key, options);
      if (!instrumentation.#reached) instrumentation.#refused(pending, options);
      instrumentation.#reached = false;
      return pending;
    };
    state.withLock = function <T>(
      key: string,
      fn: (lock: Lock) => T | Promise<T>,
      options?: LockOptions,
    ): Promise<T> {
      instrumentation.#reached = false;
      const pending = withLock.call(this, key, fn, options) as Promise<T>;
      // Not reached: refused (or bad arguments), and `fn` never ran, so the error is the refusal.
      if (!instrumentation.#reached) instrumentation.#refused(pending, options);
      instrumentation.#reached = false;
      return pending;
    };
  }

  #attrs(exclusive: boolean, outcome?: string, errorType?: string): Attributes {
    const mode = exclusive ? "exclusive" : "shared";
    const id = `${mode}/${outcome ?? ""}/${errorType ?? ""}`;
    let attributes = this.#attributes.get(id);
    if (attributes === undefined) {
      attributes = { "shared_state.backend": this.#backend, "shared_state.lock.mode": mode };
      if (outcome !== undefined) attributes["shared_state.lock.outcome"] = outcome;
      if (errorType !== undefined) attributes["error.type"] = errorType;
      this.#attributes.set(id, attributes);
    }
    return attributes;
  }

  /** Times a request that reached the backend, and watches the lock it got. */
  #acquired(key: string, exclusive: boolean, run: () => Promise<Lock>): Promise<Lock> {
    const start = performance.now();
    const span = this.#tracer.startSpan("acquire lock", {
      kind: SpanKind.INTERNAL,
      attributes: {
        "shared_state.backend": this.#backend,
        "shared_state.lock.mode": exclusive ? "exclusive" : "shared",
        "shared_state.lock.key": key.length > MAX_KEY_ATTRIBUTE
          ? key.slice(0, MAX_KEY_ATTRIBUTE)
          : key,
      },
    });
    let pending: Promise<Lock>;
    try {
      pending = run();
    } catch (error) {
      pending = Promise.reject(error);
    }
    return pending.then(
      (lock) => {
        this.#wait.record((performance.now() - start) / 1000, this.#attrs(exclusive, "acquired"));
        span.end();
        this.#watch(lock, exclusive);
        return lock;
      },
      (error) => {
        const reason = error instanceof LockFailed ? error.reason : "error";
        this.#wait.record((performance.now() - start) / 1000, this.#attrs(exclusive, reason));
        this.#failures.add(1, this.#attrs(exclusive, undefined, reason));
        this.#endFailed(span, reason, error);
        throw error;
      },
    );
  }

  #endFailed(span: Span, reason: string, error: unknown): void {
    span.setAttribute("error.type", reason);
    span.setStatus({
      code: SpanStatusCode.ERROR,
      message: error instanceof Error ? error.message : String(error),
    });
    span.end();
  }

  /** A request refused before it reached the backend: a failure, if it was a LockFailed. */
  #refused(pending: Promise<unknown>, options: LockOptions | undefined): void {
    const exclusive = typeof options?.exclusive === "boolean" ? options.exclusive : true;
    pending.then(undefined, (error) => {
      if (error instanceof LockFailed) {
        this.#failures.add(1, this.#attrs(exclusive, undefined, error.reason));
      }
    });
  }

  /** Counts `lock` held until it is released or lost. */
  #watch(lock: Lock, exclusive: boolean): void {
    const attributes = this.#attrs(exclusive);
    this.#held.add(1, attributes);
    let done = false;
    const finish = () => {
      if (done) return false;
      done = true;
      this.#held.add(-1, attributes);
      return true;
    };
    const lost = (reason: string) => {
      if (finish()) this.#losses.add(1, this.#attrs(exclusive, undefined, reason));
    };
    if (lock instanceof BaseLock) {
      // The package's locks: their loss is seen where it happens, without making the signal (an
      // AbortController costs more than the rest of an uncontended acquire).
      if (!lock.held) return lost(lossReason(lock.signal.reason));
      const lose = lock.lose;
      lock.lose = function (reason: LockLostReason, message: string, cause?: unknown): void {
        const held = this.held;
        lose.call(this, reason, message, cause);
        if (held && !this.held) lost(reason);
      };
    } else {
      const signal = lock.signal;
      if (signal.aborted) return lost(lossReason(signal.reason));
      signal.addEventListener("abort", () => lost(lossReason(signal.reason)), { once: true });
    }
    const release = lock.release;
    try {
      (lock as { release(): Promise<void> }).release = function (): Promise<void> {
        finish();
        return release.call(this);
      };
    } catch {
      // A frozen lock of another backend: its release is not seen; its loss still is.
    }
  }
}
