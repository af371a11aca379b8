/**
 * DestinationReachable (src/operator/replica/reachable.ts): the pods' probe results taken from their
 * sidecars' /status documents, and the condition derived from them, with literal inputs.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { PodReplicationStatus } from "../../src/api/v1alpha1/index.ts";
import { destinationReachableCondition, probesOf } from "../../src/operator/replica/reachable.ts";
import type { DestinationStatus, ReplicatorStatus } from "../../src/shared/protocol.ts";

const T = "2026-01-01T00:00:00.000Z";

function dest(name: string, probe?: DestinationStatus["probe"]): DestinationStatus {
  return {
    name,
    type: "s3",
    location: `s3://b/${name}`,
    ready: true,
    lagSeconds: 0,
    pendingTransactions: 0,
    pendingBytes: 0,
    window: {},
    syncCount: 1,
    syncErrorCount: 0,
    ...(probe ? { probe } : {}),
  };
}

function doc(databases: Array<{ path: string; replicas: DestinationStatus[] }>): ReplicatorStatus {
  return {
    apiVersion: "walship.dev/v1alpha1",
    kind: "ReplicatorStatus",
    version: "test",
    time: T,
    ready: true,
    databases: databases.map((d) => ({ ...d, ready: true, sizeBytes: 0, walSizeBytes: 0 })),
  };
}

const failed = {
  outcome: "failed" as const,
  at: T,
  step: "write" as const,
  message:
    'put s3://missing/app/walship/probe/app-0-1a2b3c4d: bucket "missing" does not exist (NoSuchBucket)',
  hint: 'missing bucket: bucket "missing" does not exist; create it, or correct the bucket name in the destination',
};

describe("probesOf", () => {
  it("one database: each destination's probe, skipping those not probed yet", () => {
    const d = doc([
      {
        path: "/data/app.db",
        replicas: [dest("s3", { outcome: "ok", at: T }), dest("bad", failed), dest("new")],
      },
    ]);
    assert.deepEqual(probesOf(d, [{ path: "/data/app.db" }]), [
      { destination: "s3", outcome: "ok" },
      { destination: "bad", outcome: "failed", step: "write", message: failed.message, hint: failed.hint },
    ]);
  });

  it("a lone database of an older config's path is the sidecar's only one", () => {
    const d = doc([{ path: "/data/old.db", replicas: [dest("s3", { outcome: "ok", at: T })] }]);
    assert.deepEqual(probesOf(d, [{ path: "/data/app.db" }]), [{ destination: "s3", outcome: "ok" }]);
  });

  it("spec.databases: each named, matched by path", () => {
    const d = doc([
      { path: "/data/a.db", replicas: [dest("s3", { outcome: "ok", at: T })] },
      { path: "/data/b.db", replicas: [dest("s3", failed)] },
    ]);
    const got = probesOf(d, [
      { name: "a", path: "/data/a.db" },
      { name: "b", path: "/data/b.db" },
    ]);
    assert.deepEqual(
      got?.map((p) => [p.database, p.destination, p.outcome]),
      [
        ["a", "s3", "ok"],
        ["b", "s3", "failed"],
      ],
    );
  });

  it("none reported: undefined", () => {
    assert.equal(
      probesOf(doc([{ path: "/data/app.db", replicas: [dest("s3")] }]), [{ path: "/data/app.db" }]),
      undefined,
    );
  });
});

describe("destinationReachableCondition", () => {
  const pod = (name: string, probes?: PodReplicationStatus["probes"]): PodReplicationStatus => ({
    name,
    ready: true,
    ...(probes ? { probes } : {}),
  });

  it("no pod: Unknown", () => {
    assert.deepEqual(destinationReachableCondition([]), {
      type: "DestinationReachable",
      status: "Unknown",
      reason: "Probing",
      message: "no pod runs the injected sidecar yet",
    });
  });

  it("every pod passed for every destination: True", () => {
    const c = destinationReachableCondition([
      pod("app-0", [{ destination: "s3", outcome: "ok" }]),
      pod("app-1", [{ destination: "s3", outcome: "ok" }]),
    ]);
    assert.deepEqual([c.status, c.reason], ["True", "Reachable"]);
    assert.match(c.message, /2 probe\(s\) in 2 pod\(s\)$/);
  });

  it("a pod not probed yet: Unknown naming it", () => {
    const c = destinationReachableCondition([
      pod("app-0", [{ destination: "s3", outcome: "ok" }]),
      pod("app-1"),
    ]);
    assert.deepEqual(
      [c.status, c.reason, c.message],
      ["Unknown", "Probing", "no destination self-test reported yet by pod(s) app-1"],
    );
  });

  it("a failure: False naming pod, destination, step, the store's error and the hint, even with pods unprobed", () => {
    const c = destinationReachableCondition([
      pod("app-0", [
        { destination: "good", outcome: "ok" },
        { destination: "bad", outcome: "failed", step: "write", message: failed.message, hint: failed.hint },
      ]),
      pod("app-1"),
      pod("app-2", [
        { destination: "nd", database: "b", outcome: "failed", step: "delete", message: "AccessDenied" },
      ]),
    ]);
    assert.equal(c.status, "False");
    assert.equal(c.reason, "DestinationUnreachable");
    assert.equal(
      c.message,
      `pod app-0: destination bad: write failed: ${failed.message} (hint: ${failed.hint}); ` +
        "pod app-2: destination nd of database b: delete failed: AccessDenied",
    );
  });
});
