/**
 * The broker's brake on token guessing (issue 9, item 7): failed authentications counted per
 * client address, an address refused after too many, memory bounded. The table logic runs on a
 * fake clock; the sessions on pretend sockets whose address the test picks (on loopback every
 * client has the same one); and once over loopback, end to end.
 */

import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { LocalState, LockFailed } from "../mod.ts";
import { brokerHandler, BrokerState, CloseCode } from "../backends/broker.ts";
import { AuthFailureLimiter } from "../backends/broker/auth_failures.ts";
import { clientAddressKey } from "../backends/broker/client_address.ts";
import { clientOptions, startBroker } from "./broker_env.ts";
import { FakeSocket } from "./broker_fake_socket.ts";
import { refusalMessage, TcpClient, upgradeAttempt } from "./broker_tcp.ts";

const TOKEN = "auth-failures-token";

/** A limiter on a clock the test moves. */
function limiter(maxFailures: number, window: number, maxAddresses?: number) {
  const clock = { now: 1000 };
  const limits = new AuthFailureLimiter({
    maxFailures,
    window,
    maxAddresses,
    now: () => clock.now,
  });
  return { limits, clock };
}

describe("broker: failed authentications, counted per address", () => {
  it("blocks an address for a window after maxFailures failures within one", () => {
    const { limits, clock } = limiter(3, 60_000);
    for (let i = 0; i < 2; i++) limits.recordFailure("198.51.100.7");
    assert.equal(limits.blockedFor("198.51.100.7"), 0);
    clock.now += 1000;
    limits.recordFailure("198.51.100.7");
    assert.equal(limits.blockedFor("198.51.100.7"), 60_000);
    assert.equal(limits.begin("198.51.100.7"), false, "a blocked address's tokens are not checked");
    assert.equal(limits.blockedFor("198.51.100.8"), 0, "another address is not blocked");
    assert.equal(limits.begin("198.51.100.8"), true);
    clock.now += 59_999;
    assert.equal(limits.blockedFor("198.51.100.7"), 1);
    clock.now += 1;
    assert.equal(limits.blockedFor("198.51.100.7"), 0);
    assert.equal(limits.begin("198.51.100.7"), true, "a block ends after its window");
  });

  it("forgets failures older than the window", () => {
    const { limits, clock } = limiter(3, 10_000);
    limits.recordFailure("198.51.100.7");
    limits.recordFailure("198.51.100.7");
    clock.now += 10_000;
    limits.recordFailure("198.51.100.7");
    limits.recordFailure("198.51.100.7");
    assert.equal(limits.blockedFor("198.51.100.7"), 0, "2 old failures and 2 new ones");
    limits.recordFailure("198.51.100.7");
    assert.ok(limits.blockedFor("198.51.100.7") > 0);
  });

  it("counts token checks under way, so that hellos sent together get no more tries", () => {
    const { limits } = limiter(3, 60_000);
    const address = "203.0.113.9";
    assert.deepEqual([1, 2, 3, 4, 5].map(() => limits.begin(address)), [
      true,
      true,
      true,
      false,
      false,
    ]);
    limits.end(address, true); // a right token gives its try back
    assert.equal(limits.begin(address), true);
    for (let i = 0; i < 3; i++) limits.end(address, false);
    assert.ok(limits.blockedFor(address) > 0);
    limits.end(address, false); // the last one, answered after the block began
    assert.equal(limits.begin(address), false);
  });

  it("never blocks a client whose address is unknown", () => {
    const { limits } = limiter(1, 60_000);
    for (let i = 0; i < 5; i++) limits.recordFailure(undefined);
    assert.equal(limits.blockedFor(undefined), 0);
    assert.equal(limits.begin(undefined), true);
    assert.equal(limits.size, 0);
  });

  it("counts an IPv6 address with its /64, and an IPv4-mapped address as IPv4", () => {
    const { limits } = limiter(2, 60_000);
    limits.recordFailure("2001:db8:1:2::1");
    limits.recordFailure("[2001:0db8:0001:0002:ffff::9]");
    assert.ok(limits.blockedFor("2001:db8:1:2:abcd::5") > 0);
    assert.equal(limits.blockedFor("2001:db8:1:3::1"), 0);
    limits.recordFailure("::ffff:192.0.2.1");
    limits.recordFailure("192.0.2.1");
    assert.ok(limits.blockedFor("192.0.2.1") > 0);
  });

  it("keeps at most maxAddresses addresses, forgetting the expired and then the oldest", () => {
    const { limits, clock } = limiter(2, 1000, 100);
    for (let i = 0; i < 1000; i++) limits.recordFailure(`10.0.${i >> 8}.${i & 255}`);
    assert.equal(limits.size, 100);
    assert.equal(limits.blockedFor("10.0.0.0"), 0); // forgotten: memory is the bound
    clock.now += 1000;
    limits.recordFailure("192.0.2.1");
    assert.equal(limits.size, 1, "expired addresses are dropped when a new one comes");
  });
});

describe("broker: client address keys", () => {
  it("normalises IPv4, IPv6 (to its /64), mapped, bracketed and zoned addresses", () => {
    assert.equal(clientAddressKey("203.0.113.7"), "203.0.113.7");
    assert.equal(clientAddressKey("::1"), "0:0:0:0::/64");
    assert.equal(clientAddressKey("[2001:DB8::1]"), "2001:db8:0:0::/64");
    assert.equal(clientAddressKey("2001:db8:0:0:1:2:3:4"), "2001:db8:0:0::/64");
    assert.equal(clientAddressKey("fe80::1%eth0"), "fe80:0:0:0::/64");
    assert.equal(clientAddressKey("::ffff:192.0.2.1"), "192.0.2.1");
    assert.equal(clientAddressKey("64:ff9b::192.0.2.1"), "64:ff9b:0:0::/64");
    assert.equal(clientAddressKey("not:an:address::x"), "not:an:address::x");
    assert.equal(clientAddressKey("Example.ORG"), "example.org");
  });
});

describe("broker: failed authentications, through the handler", () => {
  const served = new LocalState({ name: "served" });
  const handler = brokerHandler(served, { token: TOKEN, maxAuthFailures: 3 });
  after(async () => {
    await handler.close();
    await served.close();
  });

  /** Accepts a pretend connection from `address` and sends a hello with `token`. */
  function hello(address: string, token: string): FakeSocket {
    const socket = new FakeSocket();
    handler.accept(socket, address);
    socket.receive({ op: "hello", version: 1, token });
    return socket;
  }

  it("refuses an address after maxAuthFailures wrong tokens, and not another address", async () => {
    for (let i = 0; i < 3; i++) {
      const answer = await hello("198.51.100.7", "wrong").answer();
      assert.deepEqual([answer.op, answer.message], ["refused", "wrong token"]);
    }
    // Refused as it connects, the right token or not: its tokens are no longer checked.
    const blocked = new FakeSocket();
    handler.accept(blocked, "198.51.100.7");
    const refusal = await blocked.answer();
    assert.equal(refusal.op, "refused");
    assert.match(String(refusal.message), /too many failed authentications.*try again in 60 s/);
    assert.equal(blocked.closeCode, CloseCode.unauthorized);
    // Another address is served.
    const other = hello("198.51.100.8", TOKEN);
    assert.equal((await other.answer()).op, "welcome");
    other.close(1000);
  });

  it("gives hellos sent together on many connections no more tries than one by one", async () => {
    const sockets = Array.from({ length: 8 }, () => {
      const socket = new FakeSocket();
      handler.accept(socket, "2001:db8:7::1");
      return socket;
    });
    for (const socket of sockets) socket.receive({ op: "hello", version: 1, token: "wrong" });
    const answers = await Promise.all(sockets.map((socket) => socket.answer()));
    const messages = answers.map((answer) => String(answer.message));
    assert.equal(messages.filter((message) => message === "wrong token").length, 3);
    assert.equal(messages.filter((message) => /too many failed/.test(message)).length, 5);
    // The same /64 is the same client.
    const neighbour = new FakeSocket();
    handler.accept(neighbour, "2001:db8:7::2");
    assert.equal((await neighbour.answer()).op, "refused");
  });

  it("counts a connection that sends no hello in time as a failure", async () => {
    const quick = brokerHandler(served, { token: TOKEN, maxAuthFailures: 2, authTimeout: 20 });
    try {
      for (let i = 0; i < 2; i++) {
        const silent = new FakeSocket();
        quick.accept(silent, "192.0.2.44");
        await new Promise<void>((resolve) => silent.addEventListener("close", () => resolve()));
        assert.equal(silent.closeCode, CloseCode.unauthorized);
      }
      const late = new FakeSocket();
      quick.accept(late, "192.0.2.44");
      assert.match(String((await late.answer()).message), /too many failed/);
    } finally {
      await quick.close();
    }
  });
});

describe("broker: failed authentications, over loopback", () => {
  it("refuses an address after maxAuthFailures wrong tokens as it connects; its client fails at once", async () => {
    const served = new LocalState({ name: "served" });
    const broker = await startBroker(served, { token: TOKEN, maxAuthFailures: 3 });
    const state = new BrokerState(broker.url, await clientOptions(TOKEN));
    try {
      for (let i = 0; i < 3; i++) {
        const client = await TcpClient.upgraded(broker.port);
        assert.deepEqual(await client.hello("wrong"), { op: "refused", message: "wrong token" });
        await client.destroy();
      }
      const attempt = await upgradeAttempt(broker.port, 10_000);
      assert.match(
        refusalMessage(attempt.text) ?? attempt.text,
        /^refused: .*too many failed authentications/,
      );
      assert.ok(attempt.closedByServer, "the refused connection is still open");
      // Even with the right token, and with no timeout: the refusal fails the request at once.
      const error = await state.getLock("k").then(() => assert.fail("granted"), (e) => e);
      assert.ok(error instanceof LockFailed);
      assert.match(error.message, /refused the connection.*failed authentications/);
    } finally {
      await state.close();
      await broker.close();
      await served.close();
    }
  });
});
