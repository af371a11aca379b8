/** The single-writer claim's judgement (src/replicator/claim.ts), with literal claims. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  type ClaimHolder,
  claimDoc,
  describeHolder,
  holderFromEnv,
  judgeClaim,
  parseClaim,
} from "../../src/replicator/claim.ts";

const T0 = Date.parse("2026-01-01T00:00:00Z");
const TTL = 30_000;
const podA: ClaimHolder = {
  pod: { namespace: "a", name: "app-0", uid: "uid-a" },
  sqliteReplica: "a/app",
  host: "app-0",
  pid: 7,
};
const podB: ClaimHolder = { pod: { namespace: "b", name: "app-0", uid: "uid-b" }, host: "app-0", pid: 7 };
const hostA: ClaimHolder = { host: "box", pid: 100, bootId: "boot-1" };
const me = (holder: ClaimHolder, alive: (pid: number) => boolean = () => true) => ({
  holder,
  token: "mine",
  alive,
});

describe("judgeClaim", () => {
  it("no claim: free", () => {
    assert.deepEqual(judgeClaim({ doc: undefined, unchangedMs: 0 }, me(podB), T0), {
      kind: "free",
      why: "absent",
    });
  });

  it("our token: ours", () => {
    const doc = claimDoc(podB, "mine", T0, TTL);
    assert.deepEqual(judgeClaim({ doc, unchangedMs: 0 }, me(podB), T0 + 1000), { kind: "ours" });
  });

  it("another pod of the same name (another namespace): held until it expires", () => {
    const doc = claimDoc(podA, "theirs", T0, TTL);
    assert.deepEqual(judgeClaim({ doc, unchangedMs: 0 }, me(podB), T0 + 1000), {
      kind: "held",
      holder: podA,
      expiresAt: new Date(T0 + TTL),
    });
  });

  it("expired by its stamp but seen changing within a TTL: still held (clocks may disagree)", () => {
    const doc = claimDoc(podA, "theirs", T0, TTL);
    assert.equal(judgeClaim({ doc, unchangedMs: TTL - 1 }, me(podB), T0 + TTL + 60_000).kind, "held");
  });

  it("unchanged for a TTL but not expired by its stamp: still held", () => {
    const doc = claimDoc(podA, "theirs", T0, TTL);
    assert.equal(judgeClaim({ doc, unchangedMs: 5 * TTL }, me(podB), T0 + TTL - 1).kind, "held");
  });

  it("expired by its stamp and unchanged for a TTL: free", () => {
    const doc = claimDoc(podA, "theirs", T0, TTL);
    assert.deepEqual(judgeClaim({ doc, unchangedMs: TTL }, me(podB), T0 + TTL), {
      kind: "free",
      why: "expired",
    });
  });

  it("the same pod (uid) restarted: free at once", () => {
    const doc = claimDoc(podB, "old-token", T0, TTL);
    assert.deepEqual(judgeClaim({ doc, unchangedMs: 0 }, me(podB), T0 + 1), {
      kind: "free",
      why: "restarted",
    });
  });

  it("a pod and a process are never the same writer", () => {
    const doc = claimDoc({ ...hostA, host: "app-0" }, "theirs", T0, TTL);
    assert.equal(
      judgeClaim(
        { doc, unchangedMs: 0 },
        me(podB, () => false),
        T0 + 1,
      ).kind,
      "held",
    );
  });

  it("same machine and boot: a dead claimant's claim is free, a live one's held", () => {
    const doc = claimDoc(hostA, "theirs", T0, TTL);
    const other = { ...hostA, pid: 200 };
    assert.equal(
      judgeClaim(
        { doc, unchangedMs: 0 },
        me(other, () => false),
        T0 + 1,
      ).kind,
      "free",
    );
    assert.equal(
      judgeClaim(
        { doc, unchangedMs: 0 },
        me(other, () => true),
        T0 + 1,
      ).kind,
      "held",
    );
    // Our own pid in an old claim: a previous life of this process's pid (a container restarted).
    assert.equal(
      judgeClaim(
        { doc, unchangedMs: 0 },
        me(hostA, () => true),
        T0 + 1,
      ).kind,
      "free",
    );
  });

  it("another machine or boot: the pid says nothing", () => {
    const doc = claimDoc(hostA, "theirs", T0, TTL);
    for (const other of [
      { ...hostA, host: "other", pid: 200 },
      { ...hostA, bootId: "boot-2", pid: 200 },
    ]) {
      assert.equal(
        judgeClaim(
          { doc, unchangedMs: 0 },
          me(other, () => false),
          T0 + 1,
        ).kind,
        "held",
      );
    }
  });
});

describe("claim documents", () => {
  it("round-trips and names its holder", () => {
    const doc = claimDoc(podA, "t", T0, TTL);
    const parsed = parseClaim(Buffer.from(JSON.stringify(doc)));
    assert.deepEqual(parsed, { doc });
    assert.equal(describeHolder(podA), "pod a/app-0 (uid uid-a) of SqliteReplica a/app");
    assert.equal(describeHolder(hostA), "process 100 on host box");
  });

  it("something else is no claim, with the field named", () => {
    assert.ok("problem" in parseClaim(Buffer.from("{")));
    const r = parseClaim(Buffer.from(JSON.stringify({ ...claimDoc(podA, "t", T0, TTL), token: "" })));
    assert.ok("problem" in r && r.problem.startsWith("token:"), JSON.stringify(r));
  });

  it("the holder from the injected env; a process without it", () => {
    const env = {
      WALSHIP_POD_NAMESPACE: "a",
      WALSHIP_POD_NAME: "app-0",
      WALSHIP_POD_UID: "uid-a",
      WALSHIP_SQLITEREPLICA: "app",
    };
    assert.deepEqual(holderFromEnv(env, "app-0", 7, undefined), podA);
    assert.deepEqual(holderFromEnv({}, "box", 100, "boot-1"), hostA);
  });
});
