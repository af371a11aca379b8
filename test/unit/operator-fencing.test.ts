/**
 * Single-writer fencing as the operator reports it: a pod whose sidecar refuses a destination another
 * writer holds gets `fencedBy` and the WriterConflict reason; the SqliteReplica's WriterConflict
 * condition names the pod and the other holder, and its change is a Warning Event.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { databasesOf, SqliteReplicaSpec } from "../../src/api/v1alpha1/index.ts";
import type { EventInput, EventRecorder } from "../../src/operator/kube/events.ts";
import { injectedStatus } from "../../src/operator/replica/conditions.ts";
import { recordChanges } from "../../src/operator/replica/events.ts";
import { writerConflictCondition } from "../../src/operator/replica/fencing.ts";
import { podFacts } from "../../src/operator/replica/pods.ts";
import { conditionChanges, setCondition } from "../../src/operator/status.ts";
import { nullLogger } from "../../src/shared/log.ts";
import type { DestinationStatus, ReplicatorStatus } from "../../src/shared/protocol.ts";

const spec = SqliteReplicaSpec.parse({
  statefulSetName: "app",
  database: { path: "/data/app.db", volumeName: "data" },
  destinations: [
    { name: "minio", s3: { bucket: "bkt", path: "p", credentials: { fromServiceAccount: true } } },
  ],
});
const HOLDER = "pod shop/app-0 (uid 1111) of SqliteReplica shop/app";

function doc(replica: Partial<DestinationStatus>): ReplicatorStatus {
  return {
    apiVersion: "walship.dev/v1alpha1",
    kind: "ReplicatorStatus",
    version: "0",
    time: "2026-01-01T00:00:10Z",
    ready: false,
    databases: [
      {
        path: "/data/app.db",
        ready: true,
        generation: "aaaaaaaaaaaaaaaa",
        sizeBytes: 1,
        walSizeBytes: 0,
        replicas: [
          {
            name: "minio",
            type: "s3",
            location: "s3://b/p/app-0",
            ready: false,
            lagSeconds: 3,
            pendingTransactions: 4,
            pendingBytes: 100,
            window: {},
            syncCount: 0,
            syncErrorCount: 0,
            ...replica,
          },
        ],
      },
    ],
  };
}

const fenced = {
  fenced: {
    holder: HOLDER,
    pod: { namespace: "shop", name: "app-0", uid: "1111" },
    sqliteReplica: "shop/app",
    expiresAt: "2026-01-01T00:00:30Z",
    since: "2026-01-01T00:00:01Z",
  },
};

describe("fencing in the pods' facts", () => {
  it("a fenced destination: fencedBy names it and the holder, reason WriterConflict", () => {
    const p = podFacts("app-0", doc(fenced), databasesOf(spec));
    assert.equal(p.ready, false);
    assert.equal(p.reason, "WriterConflict");
    assert.equal(p.fencedBy, `destination minio: ${HOLDER}`);
    assert.equal(
      p.lastError,
      `destination minio: another writer holds the replica path s3://b/p/app-0 (${HOLDER}); ` +
        "nothing is written there until its claim is released or expires",
    );
  });

  it("no fencing: no fencedBy", () => {
    const p = podFacts("app-0", doc({ ready: true, lastSyncAt: "2026-01-01T00:00:09Z" }), databasesOf(spec));
    assert.equal(p.fencedBy, undefined);
    assert.equal(p.reason, undefined);
  });

  it("with spec.databases, the database is named too", () => {
    const several = SqliteReplicaSpec.parse({
      statefulSetName: "app",
      databases: [{ name: "main", path: "/data/app.db", volumeName: "data" }],
      destinations: [
        { name: "minio", s3: { bucket: "bkt", path: "p", credentials: { fromServiceAccount: true } } },
      ],
    });
    const p = podFacts("app-0", doc(fenced), databasesOf(several));
    assert.equal(p.reason, "WriterConflict");
    assert.equal(p.fencedBy, `database main: destination minio: ${HOLDER}`);
  });
});

describe("WriterConflict condition", () => {
  it("False with no fenced pod", () => {
    assert.deepEqual(writerConflictCondition([{ name: "app-0", ready: true }]), {
      type: "WriterConflict",
      status: "False",
      reason: "NoConflict",
      message: "",
    });
  });

  it("True naming the pod and the other holder; Degraded says why; a Warning Event", async () => {
    const pod = podFacts("app-0", doc(fenced), databasesOf(spec));
    const c = writerConflictCondition([{ name: "app-1", ready: true }, pod]);
    assert.equal(c.status, "True");
    assert.equal(c.reason, "WriterConflict");
    assert.equal(
      c.message,
      `pod app-0 refuses to replicate: destination minio: ${HOLDER}; two writers on one replica path ` +
        "would interleave: stop the other writer, or give this one another path",
    );
    const restricted = { type: "Restricted", status: "True", reason: "Restricted", message: "" } as const;
    const d = injectedStatus("StatefulSet app", [pod], restricted);
    const degraded = d.conditions.find((x) => x.type === "Degraded");
    assert.equal(degraded?.status, "True");
    assert.equal(degraded?.reason, "WriterConflict");
    assert.equal(d.settled, false);

    // Before: no conflict; after: the conflict. Its Event is a Warning naming the holder.
    let before = setCondition([], writerConflictCondition([]));
    const after = setCondition(before, c);
    const events: EventInput[] = [];
    const recorder = { record: async (_o: unknown, ev: EventInput) => void events.push(ev) };
    await recordChanges(
      recorder as unknown as EventRecorder,
      nullLogger(),
      { metadata: { name: "app", namespace: "other" } },
      conditionChanges(before, after),
    );
    assert.deepEqual(events, [{ type: "Warning", reason: "WriterConflict", message: c.message }]);
    // Resolved: a Normal Event; the first False (no conflict ever) is no Event.
    events.length = 0;
    before = after;
    const resolved = setCondition(before, writerConflictCondition([]));
    await recordChanges(
      recorder as unknown as EventRecorder,
      nullLogger(),
      {},
      conditionChanges(before, resolved),
    );
    assert.deepEqual(
      events.map((e) => [e.type, e.reason]),
      [["Normal", "NoConflict"]],
    );
    events.length = 0;
    await recordChanges(
      recorder as unknown as EventRecorder,
      nullLogger(),
      {},
      conditionChanges([], setCondition([], writerConflictCondition([]))),
    );
    assert.deepEqual(events, []);
  });
});
