/** The operator's workqueue, condition handling and status aggregation (pure parts). */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { Pod } from "../../src/operator/kube/types.ts";
import { WorkQueue } from "../../src/operator/kube/workqueue.ts";
import { deriveReady } from "../../src/operator/replica/conditions.ts";
import { restoreFailure } from "../../src/operator/replica/failures.ts";
import { aggregate, podFacts } from "../../src/operator/replica/pods.ts";
import { conditionChanges, setCondition } from "../../src/operator/status.ts";
import type { ReplicatorStatus } from "../../src/shared/protocol.ts";

/** The databases of a SqliteReplica with one spec.database. */
const ONE_DB = [{ path: "/data/app.db", volumeName: "data" }];

describe("WorkQueue", () => {
  it("de-duplicates keys and never hands out a key being processed", async () => {
    const q = new WorkQueue();
    q.add("a");
    q.add("a");
    q.add("b");
    assert.equal(q.depth, 2);
    assert.equal(await q.get(), "a");
    q.add("a"); // while processing: queued again only after done
    assert.equal(q.depth, 1);
    assert.equal(await q.get(), "b");
    q.done("a");
    assert.equal(await q.get(), "a");
    q.done("a");
    q.done("b");
    q.shutdown();
    assert.equal(await q.get(), undefined);
  });

  it("backs off per key and forgets on success", () => {
    const q = new WorkQueue({ baseDelayMs: 100, maxDelayMs: 350 });
    assert.deepEqual([q.addRateLimited("k"), q.addRateLimited("k"), q.addRateLimited("k")], [100, 200, 350]);
    q.forget("k");
    assert.equal(q.addRateLimited("k"), 100);
    q.shutdown();
  });
});

describe("conditions", () => {
  const t0 = new Date("2026-01-01T00:00:00Z");
  it("keeps lastTransitionTime while the status stays", () => {
    let c = setCondition([], { type: "Injected", status: "True", reason: "Injected", message: "" }, t0);
    c = setCondition(c, { type: "Injected", status: "True", reason: "Injected", message: "x" }, new Date());
    assert.equal(c[0]?.lastTransitionTime, "2026-01-01T00:00:00Z");
  });

  it("derives Ready", () => {
    const base = [
      { type: "Injected", status: "True" as const, reason: "Injected", message: "", lastTransitionTime: "" },
      {
        type: "Replicating",
        status: "True" as const,
        reason: "AllPodsReplicating",
        message: "",
        lastTransitionTime: "",
      },
      { type: "Degraded", status: "False" as const, reason: "NoErrors", message: "", lastTransitionTime: "" },
    ];
    assert.equal(deriveReady(base, 1).status, "True");
    const degraded = base.map((c) =>
      c.type === "Degraded" ? { ...c, status: "True" as const, reason: "ReplicationError" } : c,
    );
    assert.deepEqual(
      [deriveReady(degraded, 1).status, deriveReady(degraded, 1).reason],
      ["False", "ReplicationError"],
    );
    assert.equal(
      conditionChanges(base, degraded)
        .map((c) => c.type)
        .join(),
      "Degraded",
    );
  });
});

describe("pod facts", () => {
  const doc = (over: Partial<ReplicatorStatus["databases"][0]["replicas"][0]> = {}): ReplicatorStatus => ({
    apiVersion: "walship.dev/v1alpha1",
    kind: "ReplicatorStatus",
    version: "0",
    time: "2026-01-01T00:00:10Z",
    ready: true,
    databases: [
      {
        path: "/data/app.db",
        ready: true,
        generation: "0123456789abcdef",
        sizeBytes: 1,
        walSizeBytes: 0,
        replicas: [
          {
            name: "minio",
            type: "s3",
            location: "s3://b/p",
            ready: true,
            lagSeconds: 0.5,
            pendingTransactions: 0,
            pendingBytes: 0,
            lastSyncAt: "2026-01-01T00:00:09Z",
            window: { oldest: "2026-01-01T00:00:00Z", newest: "2026-01-01T00:00:09Z" },
            syncCount: 3,
            syncErrorCount: 0,
            ...over,
          },
        ],
      },
    ],
  });

  it("reads one pod and aggregates pods", () => {
    const a = podFacts("app-0", doc(), ONE_DB);
    assert.deepEqual(a, {
      name: "app-0",
      ready: true,
      generation: "0123456789abcdef",
      lagSeconds: 0.5,
      lastSyncTime: "2026-01-01T00:00:09Z",
      windowOldest: "2026-01-01T00:00:00Z",
      windowNewest: "2026-01-01T00:00:09Z",
    });
    const b = podFacts(
      "app-1",
      doc({
        ready: false,
        lagSeconds: 4,
        lastSyncAt: "2026-01-01T00:00:05Z",
        lastError: { message: "NoSuchBucket" },
      }),
      ONE_DB,
    );
    assert.equal(b.lastError, "destination minio: NoSuchBucket");
    assert.equal(b.reason, "ReplicationError");
    assert.deepEqual(aggregate([a, b]), {
      generation: "0123456789abcdef",
      lagSeconds: 4,
      lastSyncTime: "2026-01-01T00:00:05Z",
      windowOldest: "2026-01-01T00:00:00Z",
      windowNewest: "2026-01-01T00:00:09Z",
    });
  });
});

describe("restoreFailure", () => {
  const pod = (phase: string, restore: object): Pod =>
    ({
      metadata: { name: "app-0" },
      status: { phase, initContainerStatuses: [{ name: "walship-restore", ...restore }] },
    }) as Pod;
  const failed = {
    restartCount: 2,
    ready: false,
    state: { waiting: { reason: "CrashLoopBackOff" } },
    lastState: { terminated: { exitCode: 1, reason: "Error" } },
  };

  it("names the container, the exit code and what the refusing policy means", () => {
    assert.deepEqual(restoreFailure(pod("Pending", failed), "RefuseIfReplicaExists"), {
      reason: "RestoreFailed",
      message:
        "init container walship-restore exited 1 (restarts 2): refusing to start: the database is missing " +
        "while a replica exists (restoreOnStart RefuseIfReplicaExists); restore it, or set restoreOnStart " +
        "IfReplicaExists and delete the pod",
    });
    assert.deepEqual(
      restoreFailure(
        pod("Pending", { ...failed, state: { terminated: { exitCode: 3, message: " boom\n" } } }),
        "IfReplicaExists",
      ),
      {
        reason: "RestoreFailed",
        message:
          "init container walship-restore exited 3 (restarts 2): the restore failed; see the container's log: boom",
      },
    );
  });

  it("nothing for a pod past Init, a restore that succeeded, or one still running its first try", () => {
    assert.equal(restoreFailure(pod("Running", failed), "RefuseIfReplicaExists"), undefined);
    const ok = { restartCount: 0, state: { terminated: { exitCode: 0 } } };
    assert.equal(restoreFailure(pod("Pending", ok), "IfReplicaExists"), undefined);
    const first = { restartCount: 0, state: { running: { startedAt: "2026-01-01T00:00:00Z" } } };
    assert.equal(restoreFailure(pod("Pending", first), "IfReplicaExists"), undefined);
  });
});
