/**
 * `kubectl walship wait` without a cluster: the rule it applies to each sidecar document
 * (`outstanding`) and its loop over pods (`waitReplicated`), against a stand-in for the API server
 * (a fake PluginKube serving scripted /status documents; named so: the real path through the pod
 * proxy is test/e2e/plugin.test.ts's "wait" case).
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { PluginKube, Pod, ReplicaObject } from "../../src/plugin/kube.ts";
import { outstanding, waitReplicated } from "../../src/plugin/wait.ts";
import { ErrorCodes, type WalshipError } from "../../src/shared/errors.ts";
import type { DatabaseStatus, DestinationStatus, ReplicatorStatus } from "../../src/shared/protocol.ts";
import { ReplicatorStatusSchema } from "../../src/shared/protocol.ts";

const T0 = Date.parse("2026-05-01T12:00:00.000Z");
const at = (ms: number) => new Date(T0 + ms).toISOString();

function dest(name: string, pending: number, lastError?: string): DestinationStatus {
  return {
    name,
    type: "s3",
    location: `s3://bucket/${name}`,
    ready: lastError === undefined,
    lagSeconds: pending > 0 ? 2 : 0,
    pendingTransactions: pending,
    pendingBytes: pending * 4120,
    window: {},
    syncCount: 3,
    syncErrorCount: lastError ? 1 : 0,
    ...(lastError ? { lastError: { message: lastError, at: at(0) } } : {}),
  };
}

function database(
  path: string,
  walReadAt: number | undefined,
  replicas: DestinationStatus[],
): DatabaseStatus {
  return {
    path,
    ready: true,
    ...(walReadAt !== undefined ? { walReadAt: at(walReadAt) } : {}),
    sizeBytes: 8192,
    walSizeBytes: 4152,
    replicas,
  };
}

/** A document the way the sidecar serves it (checked against the operator's own schema). */
function doc(time: number, databases: DatabaseStatus[]): ReplicatorStatus {
  return ReplicatorStatusSchema.parse({
    apiVersion: "walship.dev/v1alpha1",
    kind: "ReplicatorStatus",
    version: "test",
    time: at(time),
    ready: true,
    databases,
  });
}

const pod = (name: string, sidecar = true): Pod =>
  ({
    metadata: { name },
    spec: { initContainers: sidecar ? [{ name: "walship" }] : [], containers: [{ name: "app" }] },
    status: { phase: "Running" },
  }) as unknown as Pod;

/** Fake API server: each pod's sidecar answers its scripted documents in turn (the last one repeats). */
function fakeKube(
  pods: Pod[],
  scripts: Record<string, Array<ReplicatorStatus | Error>>,
  databases?: Array<{ name: string; path: string; volumeName: string }>,
) {
  const reads: string[] = [];
  const kube = {
    namespace: "demo",
    getReplica: async (name: string) =>
      ({
        metadata: { name },
        spec: { sidecar: { metricsPort: 9091 }, ...(databases ? { databases } : {}) },
      }) as unknown as ReplicaObject,
    readWorkload: async () => ({ ref: undefined, found: true, pods }),
    sidecarStatus: async (name: string, port: number) => {
      assert.equal(port, 9091, "the SqliteReplica's metricsPort");
      reads.push(name);
      const script = scripts[name]!;
      const next = script.length > 1 ? script.shift()! : script[0]!;
      if (next instanceof Error) throw next;
      return next;
    },
  } as unknown as PluginKube;
  return { kube, reads };
}

describe("kubectl walship wait: what a sidecar document leaves outstanding", () => {
  it("nothing when the WAL was read after the time and no destination has anything pending", () => {
    const d = doc(100, [database("/data/app.db", 50, [dest("s3", 0), dest("gcs", 0)])]);
    assert.deepEqual(outstanding(d, at(10)), []);
  });

  it("a read of the WAL at or before the time does not count, whatever is pending", () => {
    const d = doc(100, [database("/data/app.db", 10, [dest("s3", 0)])]);
    assert.deepEqual(outstanding(d, at(10)), [`the WAL has not been read since ${at(10)}`]);
    const never = doc(100, [database("/data/app.db", undefined, [dest("s3", 0)])]);
    assert.equal(outstanding(never, at(10)).length, 1);
  });

  it("names each destination with commits pending, and why it fails", () => {
    const d = doc(100, [
      database("/data/app.db", 50, [dest("s3", 0), dest("gcs", 7, "connect ECONNREFUSED")]),
    ]);
    assert.deepEqual(outstanding(d, at(10)), ["gcs: 7 transaction(s) pending (connect ECONNREFUSED)"]);
  });

  it("with several databases, names the database; --database checks only that one", () => {
    const d = doc(100, [
      database("/data/a.db", 50, [dest("s3", 0)]),
      database("/data/b.db", 5, [dest("s3", 2)]),
    ]);
    assert.deepEqual(outstanding(d, at(10)), [
      `/data/b.db: the WAL has not been read since ${at(10)}`,
      "/data/b.db: s3: 2 transaction(s) pending",
    ]);
    assert.deepEqual(outstanding(d, at(10), "/data/a.db"), []);
    assert.deepEqual(outstanding(d, at(10), "/data/c.db"), ["the sidecar does not replicate /data/c.db"]);
  });
});

describe("kubectl walship wait: the loop over pods", () => {
  it("takes the first reading's time, then waits until each pod's sidecar shows it all on the destinations", async () => {
    const { kube, reads } = fakeKube([pod("app-0"), pod("app-1"), pod("other", false)], {
      // app-0: nothing pending at the first reading, but its WAL read is older than that reading:
      // a commit made just before it may not be counted yet. Done at the third reading.
      "app-0": [
        doc(100, [database("/data/app.db", 90, [dest("s3", 0)])]),
        doc(200, [database("/data/app.db", 90, [dest("s3", 0)])]),
        doc(300, [database("/data/app.db", 250, [dest("s3", 0)])]),
      ],
      // app-1: read after its first time, with one commit pending, then uploaded.
      "app-1": [
        new Error("HTTP 503: the pod proxy could not connect"),
        doc(100, [database("/data/app.db", 90, [dest("s3", 0)])]),
        doc(200, [database("/data/app.db", 150, [dest("s3", 1)])]),
        doc(300, [database("/data/app.db", 250, [dest("s3", 0)])]),
      ],
    });
    const lines: string[] = [];
    const res = await waitReplicated(kube, "db", {
      timeoutMs: 10_000,
      pollMs: 1,
      progress: (l) => lines.push(l),
    });
    assert.deepEqual(
      res.map((w) => [w.pod, w.since, w.done]),
      [
        ["app-0", at(100), true],
        ["app-1", at(100), true],
      ],
    );
    assert.equal(reads.filter((r) => r === "app-0").length, 3, "app-0 read until done, then left alone");
    assert.equal(reads.filter((r) => r === "app-1").length, 4, "an unreadable sidecar is read again");
    assert.ok(!reads.includes("other"), "a pod without the replicator is not asked");
    assert.deepEqual(lines, [
      `app-0: every commit made before ${at(100)} is on every destination`,
      `app-1: every commit made before ${at(100)} is on every destination`,
    ]);
  });

  it("gives up at the timeout with ABORTED, naming what is pending where and why", async () => {
    const { kube } = fakeKube([pod("app-0")], {
      "app-0": [
        doc(100, [database("/data/app.db", 90, [dest("s3", 0)])]),
        doc(200, [database("/data/app.db", 150, [dest("s3", 3, "HTTP 503: SlowDown")])]),
      ],
    });
    await assert.rejects(waitReplicated(kube, "db", { timeoutMs: 50, pollMs: 5 }), (err: WalshipError) => {
      assert.equal(err.code, ErrorCodes.ABORTED);
      assert.match(
        err.message,
        /^wait db: not replicated in time: app-0: s3: 3 transaction\(s\) pending \(HTTP 503: SlowDown\)$/,
      );
      return true;
    });
  });

  it("--pod: only that pod; one that does not run the replicator is NOT_FOUND, as is a workload without any", async () => {
    const { kube, reads } = fakeKube([pod("app-0"), pod("app-1")], {
      "app-0": [doc(100, [database("/data/app.db", 0, [dest("s3", 9)])])],
      "app-1": [
        doc(100, [database("/data/app.db", 90, [dest("s3", 0)])]),
        doc(200, [database("/data/app.db", 150, [dest("s3", 0)])]),
      ],
    });
    const res = await waitReplicated(kube, "db", { pod: "app-1", timeoutMs: 5_000, pollMs: 1 });
    assert.deepEqual(
      res.map((w) => w.pod),
      ["app-1"],
    );
    assert.ok(!reads.includes("app-0"));
    await assert.rejects(
      waitReplicated(kube, "db", { pod: "app-7", timeoutMs: 100 }),
      (err: WalshipError) => {
        assert.equal(err.code, ErrorCodes.NOT_FOUND);
        assert.match(err.message, /pod app-7 is not one of its pods running the replicator/);
        return true;
      },
    );
    const none = fakeKube([pod("app-0", false)], {});
    await assert.rejects(waitReplicated(none.kube, "db", { timeoutMs: 100 }), /no pod runs the replicator/);
  });

  it("--database: only that database of spec.databases; a name it does not list is a USAGE error", async () => {
    const dbs = [
      { name: "a", path: "/data/a.db", volumeName: "data" },
      { name: "b", path: "/data/b.db", volumeName: "data" },
    ];
    const stuckB = (time: number) =>
      doc(time, [
        database("/data/a.db", time - 10, [dest("s3", 0)]),
        database("/data/b.db", 0, [dest("s3", 4)]),
      ]);
    const { kube } = fakeKube([pod("app-0")], { "app-0": [stuckB(100), stuckB(200)] }, dbs);
    const res = await waitReplicated(kube, "db", { database: "a", timeoutMs: 5_000, pollMs: 1 });
    assert.equal(res[0]!.done, true, "b's pending commits do not hold up a wait for a");
    await assert.rejects(
      waitReplicated(kube, "db", { database: "b", timeoutMs: 30, pollMs: 5 }),
      /b\.db: s3: 4/,
    );
    await assert.rejects(
      waitReplicated(kube, "db", { database: "c", timeoutMs: 30 }),
      (err: WalshipError) => {
        assert.equal(err.code, ErrorCodes.USAGE);
        assert.match(err.message, /--database: SqliteReplica db has no database c \(it has a, b\)/);
        return true;
      },
    );
  });
});
