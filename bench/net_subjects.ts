/**
 * The subjects of the broker group: lock services reached over the network (our broker,
 * PostgresState, and the npm packages users pick for locks across processes), and the floors they
 * are judged against (a WebSocket echo, a Redis `PING`, `select 1`, the raw advisory-lock pair).
 * Each lock client is behind the same small {@link NetLocker} interface, driven through its
 * documented API.
 *
 * Runtime-neutral: the measuring processes of the Deno subjects run this file under Deno; those
 * of the Node subjects run it compiled by `bench/node.ts` (which turns `npm:` specifiers into
 * package names and `../backends/*.ts` into the npm build). Libraries are imported when a subject
 * is created, so that a process loads only what it measures.
 *
 * @module
 */

/** Named exclusive locks over the network, one client (connection) of them. */
export interface NetLocker {
  /** Holds `key` exclusively while `body` runs, then releases it. */
  run(key: string, body: () => unknown): Promise<void>;
  /** Ends the client's connections. */
  close(): Promise<void>;
}

/** Where the services of one group run live. */
export interface NetEndpoints {
  /** Our broker (a Deno server, `brokerHandler` over a LocalState). */
  brokerUrl: string;
  /** The broker's token. */
  token: string;
  /** A WebSocket echo endpoint in the broker's own server process. */
  echoUrl: string;
  /** mutex-server's `ws://` URL. */
  mutexServerUrl: string;
  /** mutex-server's password (its `header`). */
  mutexServerPassword: string;
  /** live-mutex's broker port on 127.0.0.1. */
  liveMutexPort: number;
  /** `redis://` URL. */
  redisUrl: string;
  /** PostgreSQL URL. */
  databaseUrl: string;
  /** `application_name` of PostgreSQL connections. */
  applicationName: string;
}

/** A round trip measured alongside the locks. */
export interface Floor {
  /** Sends one round trip (or, for the advisory pair, one lock+unlock) and awaits its answer. */
  ping(): Promise<void>;
  close(): Promise<void>;
}

/** The floors, by name. */
export type FloorName = "ws-deno" | "ws-node" | "redis-ping" | "select-1" | "pg-pair";

/** What a floor row says about itself. */
export interface FloorInfo {
  name: FloorName;
  /** Column title. */
  title: string;
  how: string;
  /** How many round trips one `ping()` takes (the advisory pair: two). */
  roundTrips: number;
  runtime: "deno" | "node";
}

/** A lock service under test. */
export interface NetSubject {
  /** Row title. */
  name: string;
  /** How it is driven, for the notes under the table. */
  how: string;
  /** The runtime of its measuring processes. */
  runtime: "deno" | "node";
  /** What it needs running. */
  needs: "broker" | "mutex-server" | "live-mutex" | "redis" | "postgres";
  /** The floor its uncontended latency is judged against, measured alongside in its process. */
  floor: FloorName;
  /** More floors timed alongside (shown in their own rows). */
  extraFloors?: FloorName[];
  /**
   * One client per process, shared by its tasks, instead of one per simulated client (where one
   * connection per client would exhaust the server: PostgreSQL's `max_connections`).
   */
  oneClientPerProcess?: boolean;
  /** One client (connection). */
  create(endpoints: NetEndpoints): Promise<NetLocker>;
}

/** The broker's shared token in the benchmark. */
/** One of our states as a locker: `getLock(key)`, the body, then `await lock.release()`. */
function stateLocker(state: {
  getLock(key: string): Promise<{ release(): Promise<void> }>;
  close(): Promise<void>;
}): NetLocker {
  return {
    async run(key, body) {
      const lock = await state.getLock(key);
      try {
        await body();
      } finally {
        await lock.release();
      }
    },
    close: () => state.close(),
  };
}

export const BENCH_TOKEN = "bench-token";

/** The PostgreSQL namespace of the benchmark's lock ids, apart from the tests' and apps'. */
const PG_NAMESPACE = "shared-state-bench";

const brokerDeno: NetSubject = {
  name: "BrokerState (Deno)",
  how: "a Deno client (the runtime's WebSocket) of a Deno broker (`Deno.serve(brokerHandler(" +
    "new LocalState(), { token }))`): `getLock(key)` then `await lock.release()`",
  runtime: "deno",
  needs: "broker",
  floor: "ws-deno",
  async create({ brokerUrl, token }) {
    const { BrokerState } = await import("../backends/broker.ts");
    const state = new BrokerState(brokerUrl, { token });
    return stateLocker(state);
  },
};

const brokerNode: NetSubject = {
  name: "BrokerState (Node, ws)",
  how: "the same, from Node 20 on the npm build, with `WebSocket` from `ws`",
  runtime: "node",
  needs: "broker",
  floor: "ws-node",
  async create({ brokerUrl, token }) {
    const { BrokerState } = await import("../backends/broker.ts");
    const { WebSocket } = await import("npm:ws@^8.18.0");
    const state = new BrokerState(brokerUrl, {
      token,
      WebSocket: WebSocket as unknown as ConstructorParameters<typeof BrokerState>[1]["WebSocket"],
    });
    return stateLocker(state);
  },
};

const postgresState: NetSubject = {
  name: "PostgresState",
  how: "Deno, one `PostgresState` per process (default options): `getLock(key)` then " +
    "`await lock.release()`",
  runtime: "deno",
  needs: "postgres",
  floor: "pg-pair",
  extraFloors: ["select-1"],
  oneClientPerProcess: true,
  async create({ databaseUrl, applicationName }) {
    const { PostgresState } = await import("../backends/postgres.ts");
    const state = new PostgresState(databaseUrl, {
      namespace: PG_NAMESPACE,
      clientOptions: { connection: { application_name: applicationName } },
    });
    return stateLocker(state);
  },
};

interface RemoteMutexLike {
  lock(): Promise<void>;
  unlock(): Promise<void>;
}
interface MutexConnectorLike {
  connect(url: string): Promise<void>;
  getMutex(key: string): Promise<RemoteMutexLike>;
  close(): Promise<void>;
}

const mutexServer: NetSubject = {
  name: "mutex-server",
  how: "npm `mutex-server` 0.3 (WebSocket, TGrid RPC; Node): a `MutexConnector` per client, " +
    "`await connector.getMutex(key)` (once per key), then `await mutex.lock()` and `unlock()`",
  runtime: "node",
  needs: "mutex-server",
  floor: "ws-node",
  async create({ mutexServerUrl, mutexServerPassword }) {
    const module = await import("npm:mutex-server@^0.3.2");
    const Connector = (module as unknown as {
      MutexConnector: new (header: string, provider: null) => MutexConnectorLike;
    }).MutexConnector;
    const connector = new Connector(mutexServerPassword, null);
    await connector.connect(mutexServerUrl);
    const mutexes = new Map<string, Promise<RemoteMutexLike>>();
    return {
      async run(key, body) {
        let mutex = mutexes.get(key);
        if (mutex === undefined) mutexes.set(key, mutex = connector.getMutex(key));
        const remote = await mutex;
        await remote.lock();
        try {
          await body();
        } finally {
          await remote.unlock();
        }
      },
      close: () => connector.close(),
    };
  },
};

interface LiveMutexClient {
  connect(): Promise<unknown>;
  acquire(key: string, options?: object): Promise<{ id: string }>;
  release(key: string, options: { id: string }): Promise<unknown>;
  close(): void;
}

const liveMutex: NetSubject = {
  name: "live-mutex",
  how: "npm `live-mutex` 0.2 (TCP, JSON lines; Node): a `Client` per client, " +
    "`const { id } = await client.acquire(key)` then `await client.release(key, { id })`; " +
    "`lockRequestTimeout` 60 s (default 3 s, then 3 retries)",
  runtime: "node",
  needs: "live-mutex",
  floor: "ws-node",
  async create({ liveMutexPort }) {
    const module = await import("npm:live-mutex@^0.2.25");
    const Client = (module as unknown as {
      Client: new (options: object) => LiveMutexClient;
    }).Client;
    const client = new Client({ port: liveMutexPort, host: "127.0.0.1" });
    await client.connect();
    return {
      async run(key, body) {
        const { id } = await client.acquire(key, { lockRequestTimeout: 60_000 });
        try {
          await body();
        } finally {
          await client.release(key, { id });
        }
      },
      close: () => Promise.resolve(client.close()),
    };
  },
};

/** An ioredis client that fails fast instead of queueing commands while disconnected. */
async function redisClient(url: string) {
  const { Redis } = await import("npm:ioredis@^5.4.1");
  const redis = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  await redis.connect();
  return redis;
}

const redisSemaphore: NetSubject = {
  name: "redis-semaphore",
  how: "npm `redis-semaphore` 5 with ioredis (Node): `new Mutex(redis, key, { acquireTimeout: " +
    "60_000 })` per acquire, `await mutex.acquire()` then `await mutex.release()`; it polls " +
    "every `retryInterval` (10 ms, the default) while the key is taken",
  runtime: "node",
  needs: "redis",
  floor: "redis-ping",
  async create({ redisUrl }) {
    const { Mutex } = await import("npm:redis-semaphore@^5.6.2");
    const redis = await redisClient(redisUrl);
    return {
      async run(key, body) {
        const mutex = new Mutex(redis, `ssbench:rs:${key}`, { acquireTimeout: 60_000 });
        await mutex.acquire();
        try {
          await body();
        } finally {
          await mutex.release();
        }
      },
      close: async () => void await redis.quit(),
    };
  },
};

const redlock: NetSubject = {
  name: "@sesamecare-oss/redlock",
  how: "npm `@sesamecare-oss/redlock` 1 with ioredis, one Redis (Node): `await redlock.acquire(" +
    "[key], 5000)` then `await lock.release()`; `retryCount: -1` (wait for ever; default 10 " +
    "tries), `retryDelay` 10 ms ± 10 (default 200 ± 100 ms, which makes the crowded rows " +
    "minutes long)",
  runtime: "node",
  needs: "redis",
  floor: "redis-ping",
  async create({ redisUrl }) {
    const { Redlock } = await import("npm:@sesamecare-oss/redlock@^1.4.0");
    const redis = await redisClient(redisUrl);
    const locks = new Redlock([redis], { retryCount: -1, retryDelay: 10, retryJitter: 10 });
    return {
      async run(key, body) {
        const lock = await locks.acquire([`ssbench:rl:${key}`], 5000);
        try {
          await body();
        } finally {
          await lock.release();
        }
      },
      close: async () => void await redis.quit(),
    };
  },
};

/** Every lock service, ours first. */
export const NET_SUBJECTS: readonly NetSubject[] = [
  brokerDeno,
  brokerNode,
  postgresState,
  mutexServer,
  liveMutex,
  redisSemaphore,
  redlock,
];

/** Every floor, in table order. */
export const FLOORS: readonly FloorInfo[] = [
  {
    name: "ws-deno",
    title: "WebSocket echo (Deno)",
    how: "a text frame to an echo endpoint in the broker's own server process and back, from " +
      "Deno's WebSocket",
    roundTrips: 1,
    runtime: "deno",
  },
  {
    name: "ws-node",
    title: "WebSocket echo (Node, ws)",
    how: "the same from Node with `ws`",
    roundTrips: 1,
    runtime: "node",
  },
  {
    name: "redis-ping",
    title: "Redis `PING`",
    how: "ioredis `redis.ping()` (Node)",
    roundTrips: 1,
    runtime: "node",
  },
  {
    name: "select-1",
    title: "`select 1`",
    how: "postgres.js, simple protocol, one connection (Deno)",
    roundTrips: 1,
    runtime: "deno",
  },
  {
    name: "pg-pair",
    title: "raw `pg_advisory_lock` + `unlock`",
    how: "postgres.js on one connection: `select pg_advisory_lock(id)` then " +
      "`select pg_advisory_unlock(id)`, simple protocol, id precomputed (Deno)",
    roundTrips: 2,
    runtime: "deno",
  },
];

interface EchoSocket {
  readonly readyState: number;
  send(data: string): void;
  close(): void;
  addEventListener(type: string, listener: (event: { data?: unknown }) => void): void;
}

/** A WebSocket echo client: one frame out, one back. */
async function echoFloor(url: string, WebSocketClass: new (url: string) => EchoSocket) {
  const socket = new WebSocketClass(url);
  let answer: (() => void) | undefined;
  await new Promise<void>((resolve, reject) => {
    socket.addEventListener("open", () => resolve());
    socket.addEventListener("error", () => reject(new Error(`no WebSocket echo at ${url}`)));
  });
  socket.addEventListener("message", () => {
    const done = answer;
    answer = undefined;
    done?.();
  });
  // A frame as long as an acquire request of the broker.
  const frame = JSON.stringify({ op: "acquire", id: 1, key: "bench/u", exclusive: true });
  return {
    ping: () =>
      new Promise<void>((resolve) => {
        answer = resolve;
        socket.send(frame);
      }),
    close: () => Promise.resolve(socket.close()),
  };
}

/** Opens a floor's client. */
export async function createFloor(name: FloorName, endpoints: NetEndpoints): Promise<Floor> {
  switch (name) {
    case "ws-deno":
      return await echoFloor(
        endpoints.echoUrl,
        (globalThis as unknown as { WebSocket: new (url: string) => EchoSocket }).WebSocket,
      );
    case "ws-node": {
      const { WebSocket } = await import("npm:ws@^8.18.0");
      return await echoFloor(
        endpoints.echoUrl,
        WebSocket as unknown as new (url: string) => EchoSocket,
      );
    }
    case "redis-ping": {
      const redis = await redisClient(endpoints.redisUrl);
      return {
        ping: async () => void await redis.ping(),
        close: async () => void await redis.quit(),
      };
    }
    case "select-1":
    case "pg-pair": {
      const { default: postgres } = await import("npm:postgres@^3.4.9");
      const { advisoryLockId } = await import("../backends/postgres.ts");
      const sql = postgres(endpoints.databaseUrl, {
        max: 1,
        idle_timeout: 0,
        max_lifetime: null,
        prepare: false,
        fetch_types: false,
        onnotice: () => {},
        connection: { application_name: `${endpoints.applicationName}-floor` },
      });
      const id = `'${advisoryLockId(PG_NAMESPACE, "bench/floor")}'::int8`;
      const lock = `select pg_advisory_lock(${id})`;
      const unlock = `select pg_advisory_unlock(${id})`;
      return {
        ping: name === "select-1" ? async () => void await sql.unsafe("select 1") : async () => {
          await sql.unsafe(lock);
          await sql.unsafe(unlock);
        },
        close: () => sql.end({ timeout: 1 }),
      };
    }
  }
}
