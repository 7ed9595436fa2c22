/**
 * The in-process subjects: LocalState and the libraries users would pick instead, each behind the
 * same small {@link Locker} interface and each driven through its own fastest idiomatic API.
 *
 * Runtime-neutral: under Node, `bench/node.ts` compiles this file with the `npm:` specifiers
 * turned into package names and `../mod.ts` into the npm build.
 *
 * @module
 */

import { LocalState } from "../mod.ts";
import { Mutex } from "npm:async-mutex@^0.5.0";
import createMortice from "npm:mortice@^3.3.1";
import { Lock as RocicorpLock, RWLock as RocicorpRWLock } from "npm:@rocicorp/lock@^2.0.1";
import { RWLock as AsyncRWLock } from "npm:async-rwlock@^1.1.1";
import AsyncLock from "npm:async-lock@^1.4.1";
import ReadWriteLock from "npm:rwlock@^5.0.0";

/** Runs a critical section under a named lock. */
export interface Locker {
  /** Holds `key` (exclusively or shared) while `body` runs, then releases it. */
  run(key: string, exclusive: boolean, body: () => unknown): Promise<void>;
}

/** A library under test. */
export interface Subject {
  /** Column title. */
  name: string;
  /** How the library is driven, for the notes under the table. */
  how: string;
  /** Whether it has shared (read) locks at all; scenarios with readers skip it otherwise. */
  shared: boolean;
  /** Why it is missing in this runtime, if it is. */
  unavailable?: string;
  /** A fresh set of named locks; `needsShared` lets a library pick its mutex when no reader comes. */
  create(needsShared: boolean): Locker;
}

/**
 * Named locks for a library that has no names: a Map of locks, each made on first use and deleted
 * when its last user leaves, so that unused keys take no memory (as with LocalState).
 */
class LockMap<L> {
  readonly #entries = new Map<string, { lock: L; users: number }>();
  readonly #make: () => L;

  constructor(make: () => L) {
    this.#make = make;
  }

  enter(key: string): { lock: L; users: number } {
    let entry = this.#entries.get(key);
    if (entry === undefined) {
      entry = { lock: this.#make(), users: 0 };
      this.#entries.set(key, entry);
    }
    entry.users++;
    return entry;
  }

  leave(key: string, entry: { users: number }): void {
    if (--entry.users === 0) this.#entries.delete(key);
  }
}

const SHARED = Object.freeze({ exclusive: false });

const localState: Subject = {
  name: "LocalState",
  how: "`getLock(key, { exclusive })` then `await lock.release()` (what `await using` does)",
  shared: true,
  create() {
    const state = new LocalState();
    return {
      async run(key, exclusive, body) {
        const lock = await state.getLock(key, exclusive ? undefined : SHARED);
        try {
          await body();
        } finally {
          await lock.release();
        }
      },
    };
  },
};

const asyncMutex: Subject = {
  name: "async-mutex",
  how: "Map of `Mutex` (no names, no shared mode): `await mutex.acquire()` then `release()`",
  shared: false,
  create() {
    const locks = new LockMap(() => new Mutex());
    return {
      async run(key, _exclusive, body) {
        const entry = locks.enter(key);
        const release = await entry.lock.acquire();
        try {
          await body();
        } finally {
          release();
          locks.leave(key, entry);
        }
      },
    };
  },
};

const mortice: Subject = {
  name: "mortice",
  how: "named: `mortice({ name: key, singleProcess: true, autoFinalize: true })` per use, " +
    "then `await writeLock()`/`readLock()` and `release()`",
  shared: true,
  create() {
    return {
      async run(key, exclusive, body) {
        const mutex = createMortice({ name: key, singleProcess: true, autoFinalize: true });
        const release = await (exclusive ? mutex.writeLock() : mutex.readLock());
        try {
          await body();
        } finally {
          release();
        }
      },
    };
  },
};

const rocicorp: Subject = {
  name: "@rocicorp/lock",
  how: "Map of `Lock` (exclusive-only scenarios) or `RWLock`: `await lock()`/`write()`/`read()` " +
    "then the returned release",
  shared: true,
  create(needsShared) {
    if (!needsShared) {
      const locks = new LockMap(() => new RocicorpLock());
      return {
        async run(key, _exclusive, body) {
          const entry = locks.enter(key);
          const release = await entry.lock.lock();
          try {
            await body();
          } finally {
            release();
            locks.leave(key, entry);
          }
        },
      };
    }
    const locks = new LockMap(() => new RocicorpRWLock());
    return {
      async run(key, exclusive, body) {
        const entry = locks.enter(key);
        const release = await (exclusive ? entry.lock.write() : entry.lock.read());
        try {
          await body();
        } finally {
          release();
          locks.leave(key, entry);
        }
      },
    };
  },
};

const asyncRWLock: Subject = {
  name: "async-rwlock",
  how: "Map of `RWLock`: `await writeLock()`/`readLock()` then `unlock()`",
  shared: true,
  create() {
    const locks = new LockMap(() => new AsyncRWLock());
    return {
      async run(key, exclusive, body) {
        const entry = locks.enter(key);
        await (exclusive ? entry.lock.writeLock() : entry.lock.readLock());
        try {
          await body();
        } finally {
          entry.lock.unlock();
          locks.leave(key, entry);
        }
      },
    };
  },
};

const asyncLock: Subject = {
  name: "async-lock",
  how: "one `AsyncLock` (keyed, no shared mode): `await lock.acquire(key, body)`, its promise API",
  shared: false,
  create() {
    const lock = new AsyncLock();
    return {
      async run(key, _exclusive, body) {
        await lock.acquire(key, body);
      },
    };
  },
};

/** rwlock's release function; its lock functions call back with it once the lock is held. */
type Release = () => void;
interface ReadWriteLockLike {
  readLock(key: string, callback: (release: Release) => void): void;
  writeLock(key: string, callback: (release: Release) => void): void;
}

const rwlock: Subject = {
  name: "rwlock",
  how: "one `ReadWriteLock` (keyed, callbacks): `writeLock(key, cb)`/`readLock(key, cb)`, " +
    "wrapped in a Promise that runs the body and then calls `release()`",
  shared: true,
  create() {
    const lock: ReadWriteLockLike = new ReadWriteLock();
    return {
      run(key, exclusive, body) {
        return new Promise<void>((resolve, reject) => {
          const held = async (release: Release) => {
            try {
              await body();
            } finally {
              release();
            }
          };
          const callback = (release: Release) => void held(release).then(resolve, reject);
          if (exclusive) lock.writeLock(key, callback);
          else lock.readLock(key, callback);
        });
      },
    };
  },
};

type LockManagerLike = {
  request(name: string, options: object, callback: () => unknown): Promise<unknown>;
};
const lockManager = (globalThis.navigator as { locks?: LockManagerLike } | undefined)?.locks;
const EXCLUSIVE_MODE = Object.freeze({ mode: "exclusive" });
const SHARED_MODE = Object.freeze({ mode: "shared" });

const webLocks: Subject = {
  name: "navigator.locks",
  how: "the Web Locks API: `navigator.locks.request(key, { mode }, body)`",
  shared: true,
  unavailable: lockManager === undefined ? "no `navigator.locks` in this runtime" : undefined,
  create() {
    const locks = lockManager!;
    return {
      async run(key, exclusive, body) {
        await locks.request(key, exclusive ? EXCLUSIVE_MODE : SHARED_MODE, body);
      },
    };
  },
};

/** Every in-process subject, LocalState first (the others are compared against it). */
export const SUBJECTS: readonly Subject[] = [
  localState,
  asyncMutex,
  mortice,
  rocicorp,
  asyncRWLock,
  asyncLock,
  rwlock,
  webLocks,
];
