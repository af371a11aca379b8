/** The SqliteReplica's status derivation (replica/conditions.ts), from literal observations. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { PodReplicationStatus, SqliteReplicaStatus } from "../../src/api/v1alpha1/index.ts";
import {
  blockedStatus,
  type Cond,
  injectedStatus,
  withReady,
} from "../../src/operator/replica/conditions.ts";

const restricted: Cond = { type: "Restricted", status: "True", reason: "Restricted", message: "ok" };
const pod = (name: string, over: Partial<PodReplicationStatus> = {}): PodReplicationStatus => ({
  name,
  ready: true,
  ...over,
});

describe("injectedStatus", () => {
  it("no pod runs the sidecar yet: Injecting, not settled", () => {
    const d = injectedStatus("StatefulSet app", [], restricted);
    assert.equal(d.phase, "Injecting");
    assert.equal(d.settled, false);
    assert.deepEqual(
      d.conditions.map((c) => [c.type, c.status, c.reason]),
      [
        ["Injected", "True", "Injected"],
        ["Replicating", "False", "Waiting"],
        ["Degraded", "False", "NoErrors"],
        ["Restricted", "True", "Restricted"],
        // The guardrails (guardrails.ts): nothing reported yet.
        ["DiskPressure", "Unknown", "NotReported"],
        ["WALGrowing", "Unknown", "NotReported"],
        ["CheckpointFailing", "Unknown", "NotReported"],
        ["WriterConflict", "False", "NoConflict"],
      ],
    );
    assert.equal(d.conditions[0]?.message, "StatefulSet app carries the replicator");
  });

  it("every pod ready: Replicating, settled", () => {
    const d = injectedStatus("StatefulSet app", [pod("app-0"), pod("app-1")], restricted);
    assert.equal(d.phase, "Replicating");
    assert.equal(d.settled, true);
    assert.equal(d.conditions[1]?.message, "2 pod(s) replicating");
  });

  it("a pod with an error: Degraded with the most telling reason, not settled", () => {
    const d = injectedStatus(
      "StatefulSet app",
      [
        pod("app-0", { ready: false, lastError: "boom", reason: "ReplicationError" }),
        pod("app-1", { ready: false, lastError: "killed", reason: "OutOfMemory" }),
      ],
      restricted,
    );
    assert.equal(d.phase, "Degraded");
    assert.equal(d.settled, false);
    const degraded = d.conditions.find((c) => c.type === "Degraded");
    assert.deepEqual([degraded?.status, degraded?.reason], ["True", "OutOfMemory"]);
    assert.equal(degraded?.message, "pod app-0: boom; pod app-1: killed");
  });

  it("a pod not ready without an error: Injecting", () => {
    const d = injectedStatus("StatefulSet app", [pod("app-0", { ready: false })], restricted);
    assert.equal(d.phase, "Injecting");
    assert.equal(d.conditions[1]?.message, "not replicating yet: app-0");
  });
});

describe("blockedStatus and Ready", () => {
  it("a blocked step: Failed, Injected False with the reason, Replicating Unknown; Ready says why", () => {
    const d = blockedStatus("SecretMissing", "spec.destinations[0].s3: Secret ns/x not found");
    assert.equal(d.phase, "Failed");
    assert.deepEqual(
      d.conditions.map((c) => [c.type, c.status, c.reason, c.message]),
      [
        ["Injected", "False", "SecretMissing", "spec.destinations[0].s3: Secret ns/x not found"],
        ["Replicating", "Unknown", "SecretMissing", "not injected"],
        ["DiskPressure", "Unknown", "SecretMissing", "not injected"],
        ["WALGrowing", "Unknown", "SecretMissing", "not injected"],
        ["CheckpointFailing", "Unknown", "SecretMissing", "not injected"],
      ],
    );
    const s: SqliteReplicaStatus = {
      conditions: d.conditions.map((c) => ({ ...c, lastTransitionTime: "2026-01-01T00:00:00Z" })),
    };
    withReady(s, 3);
    const ready = s.conditions?.find((c) => c.type === "Ready");
    assert.deepEqual(
      [ready?.status, ready?.reason, ready?.observedGeneration],
      ["False", "SecretMissing", 3],
    );
  });
});
