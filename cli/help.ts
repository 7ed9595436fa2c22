/** The `--help` texts of `shared-state` and of each subcommand (issue 11). */

import { VERSION } from "./version.ts";

const WHERE = `Where the locks live: --url URL, else $SHARED_STATE_URL, else $DATABASE_URL:
  postgres://… or postgresql://…   PostgreSQL advisory locks (every machine on that database)
  ws://… or wss://…                a shared-state broker; its token from --token or
                                   $SHARED_STATE_TOKEN`;

const RUN_EXIT_CODES = `Exit codes:
  N        COMMAND's own exit code; 128+N when signal N ended it
  64       bad usage: unknown flag, missing KEY or COMMAND, bad number, no URL
  69       the backend is unreachable or refused (wrong token, pooler, missing driver)
  74       the lock was lost while COMMAND ran: COMMAND got SIGTERM, then SIGKILL after
           --kill-after
  75       the lock was not acquired (busy, or timed out): COMMAND never ran
  126/127  COMMAND could not be executed / was not found
  128+N    signal N reached shared-state while it waited: COMMAND never ran`;

/** `shared-state --help`. */
export const MAIN_HELP: string =
  `shared-state ${VERSION}: run a command under a named lock shared by every machine
that uses the same PostgreSQL database or shared-state broker (flock(1) across machines).

Usage:
  shared-state run [options] KEY -- COMMAND [ARGS…]   run COMMAND holding the lock on KEY
  shared-state test [options] KEY                      exit 0 if the lock on KEY is free now
  shared-state id [--namespace NS] KEY                 KEY's PostgreSQL advisory lock id
  shared-state locks [options] [KEY…]                  who holds and awaits locks, and since when
  shared-state broker [options]                        serve locks over WebSocket
  shared-state SUBCOMMAND --help                       the options of a subcommand
  shared-state --version

${WHERE}

Exit codes of run: COMMAND's own (128+N if signal N ended it); 64 bad usage; 69 backend
unreachable or refused; 74 lock lost while COMMAND ran (it got SIGTERM, then SIGKILL); 75 lock
not acquired (busy or timed out; COMMAND never ran). test: 0 free, 1 held, 64, 69.
`;

/** `shared-state run --help`. */
export const RUN_HELP: string = `Usage: shared-state run [options] KEY -- COMMAND [ARGS…]

Takes the lock on KEY, runs COMMAND, and releases the lock when COMMAND exits. COMMAND
inherits stdin, stdout and stderr, and finds SHARED_STATE_KEY (KEY) and SHARED_STATE_MODE
("exclusive", "shared" or "permit") in its environment.

Options:
  --shared          take the lock in shared mode (many holders at once); default exclusive
  --limit N         take a permit of KEY instead: at most N runs hold one at once (a permit
                    key is not a lock key); COMMAND finds N in SHARED_STATE_LIMIT
  --timeout MS      give up after MS milliseconds; 0 tries once; default: wait for ever
  --url URL         where the locks live (default $SHARED_STATE_URL, then $DATABASE_URL)
  --token TOKEN     the broker's token (default $SHARED_STATE_TOKEN)
  --namespace NS    the namespace of PostgreSQL lock ids (default: none)
  --kill-after MS   when the lock is lost, COMMAND gets SIGTERM, then SIGKILL MS milliseconds
                    later (default 10000)
  --quiet           no "waiting" lines on stderr, no line when the lock is not acquired
  -h, --help        this help

While it waits longer than a second, a line on stderr says so (unless --quiet).

Signals: SIGINT, SIGTERM and SIGHUP sent to shared-state go to COMMAND; the lock is released
when COMMAND exits, never before. A signal while waiting ends the wait.

${WHERE}

${RUN_EXIT_CODES}
`;

/** `shared-state test --help`. */
export const TEST_HELP: string = `Usage: shared-state test [options] KEY

Whether a \`run --timeout 0\` on KEY would get the lock right now (the answer is transient).

Options:
  --shared          test for the shared mode; default exclusive
  --limit N         test for a permit of KEY with limit N instead (run --limit)
  --url URL         where the locks live (default $SHARED_STATE_URL, then $DATABASE_URL)
  --token TOKEN     the broker's token (default $SHARED_STATE_TOKEN)
  --namespace NS    the namespace of PostgreSQL lock ids (default: none)
  -h, --help        this help

${WHERE}

Exit codes: 0 free; 1 held; 64 bad usage; 69 the backend is unreachable or refused.
`;

/** `shared-state id --help`. */
export const ID_HELP: string = `Usage: shared-state id [--namespace NS] KEY

Prints the 64-bit PostgreSQL advisory lock id that run and test use for KEY, and how to find
it in pg_locks (classid = its high 32 bits, objid = its low 32 bits, objsubid = 1).
Connects to nothing.

Options:
  --namespace NS    the namespace of PostgreSQL lock ids (default: none)
  -h, --help        this help

Exit codes: 0; 64 bad usage.
`;

/** `shared-state locks --help` (issue 12). */
export const LOCKS_HELP: string = `Usage: shared-state locks [options] [KEY…]

Lists who holds and who awaits the locks on each KEY, in every process on the PostgreSQL
database or every client of the broker: a table of KEY, MODE (exclusive or shared), STATE
(held or waiting), SINCE, PID/CLIENT and APPLICATION. On PostgreSQL without KEY: every
advisory lock of the database (their keys unknown: the lock id instead). SINCE is when a
waiter began waiting; for a holder, what the backend knows (a broker: when it granted it;
PostgreSQL: the start of its transaction in transaction mode, else "-").

Options:
  --json            one JSON array on stdout instead of the table (one object per entry)
  --url URL         where the locks live (default $SHARED_STATE_URL, then $DATABASE_URL)
  --token TOKEN     the broker's token (default $SHARED_STATE_TOKEN)
  --namespace NS    the namespace of PostgreSQL lock ids (default: none)
  -h, --help        this help

${WHERE}

Exit codes: 0 (whether or not anything is locked); 64 bad usage (a broker without KEY);
69 the backend is unreachable or refused.
`;

/** `shared-state broker --help`. */
export const BROKER_HELP: string = `Usage: shared-state broker [options]

Serves locks over WebSocket to \`run --url ws://HOST:PORT\` and BrokerState clients: a
PostgresState when --url or $DATABASE_URL is a PostgreSQL URL (a gateway for clients that
cannot reach the database), else an in-memory LocalState. Prints the URL it serves on stdout.
Stops on SIGINT, SIGTERM or SIGHUP; its clients' locks are then released.

Options:
  --port P          TCP port (default 8787; 0 picks a free one)
  --hostname H      interface to listen on (default 127.0.0.1; 0.0.0.0 serves other machines)
  --token TOKEN     the token clients must present (default $TOKEN, then $SHARED_STATE_TOKEN)
  --url URL         a PostgreSQL database to serve (default $DATABASE_URL; none: in memory)
  --namespace NS    the namespace of PostgreSQL lock ids (default: none)
  -h, --help        this help

Limits and heartbeat from the environment (unset: the defaults of the broker guide):
$HEARTBEAT_INTERVAL, $AUTH_TIMEOUT and $AUTH_FAILURE_WINDOW (ms), $MAX_CONNECTIONS,
$MAX_UNAUTHENTICATED, $MAX_AUTH_FAILURES. On Deno, a broker that runs out of file
descriptors (a flood of connections) listens again once it can, serving those it has.

Exit codes: 0 once stopped; 64 bad usage (no token, bad port or limit); 69 cannot listen, or
the driver is missing.
`;
