/**
 * The SqliteRestore state machine, pure: each phase from recorded status and observed objects, the
 * one-restore-at-a-time rule, failures putting the original back, resuming from a recorded phase,
 * and the restored position read from the CLI's log.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { SqliteRestoreSpec, SqliteRestoreStatus } from "../../src/api/v1alpha1/index.ts";
import type { StatefulSet } from "../../src/operator/kube/types.ts";
import { checkResult, claimFor, describeTarget } from "../../src/operator/restore/findings.ts";
import { decide } from "../../src/operator/restore/machine.ts";
import { parseRestoreResult } from "../../src/operator/restore/result.ts";
import type { Observed } from "../../src/operator/restore/types.ts";

const replica = {
  statefulSetName: "app",
  database: { path: "/data/app.db", volumeName: "data" },
  destinations: [{ name: "minio", s3: { bucket: "backups", credentials: { fromServiceAccount: true } } }],
};

function sts(replicas: number, ready = replicas): StatefulSet {
  return {
    metadata: { name: "app", namespace: "shop" },
    spec: {
      replicas,
      serviceName: "app",
      selector: { matchLabels: { app: "app" } },
      template: { spec: { containers: [{ name: "app", image: "x" }] } },
      volumeClaimTemplates: [{ metadata: { name: "data" } }],
    },
    status: { replicas, readyReplicas: ready },
  };
}

const NOW = new Date("2026-11-22T04:00:00.000Z");
const GEN = "0123456789abcdef";
const PLAN_LINE = JSON.stringify({
  level: 30,
  msg: "restore plan",
  replica: "minio",
  generation: GEN,
  upTo: `${GEN}/0000000a:4152`,
  lastCommit: "2026-11-22T03:59:00.000Z",
});
const RESTORED_LINE = JSON.stringify({
  level: 30,
  msg: "restored",
  replica: "minio",
  generation: GEN,
  position: `${GEN}/0000000a:4152`,
  lastCommit: "2026-11-22T03:59:00.000Z",
});

function obs(over: Partial<Observed> = {}): Observed {
  return {
    now: NOW,
    name: "r1",
    creationTimestamp: "2026-11-22T03:58:00Z",
    generation: 1,
    spec: { sqliteReplicaName: "db", mode: "InPlace", target: { timestamp: "2026-11-22T03:59:30Z" } },
    status: {},
    replica,
    workload: sts(2),
    podsRemaining: 2,
    jobs: {},
    others: [],
    ...over,
  };
}

/** Runs `decide` and feeds its status back, as the controller does after writing it. */
function step(o: Observed) {
  const d = decide(o);
  SqliteRestoreStatus.parse(d.status); // every status written fits the CRD's schema
  return d;
}

describe("SqliteRestore machine: InPlace", () => {
  it("Pending records the claim and runs the plan Job; nothing is scaled yet", () => {
    const d = step(obs());
    assert.equal(d.status.phase, "Planning");
    assert.equal(d.status.originalReplicas, undefined);
    assert.equal(d.status.claimName, "data-app-0");
    assert.equal(d.status.pod, "app-0");
    assert.equal(d.status.backupPath, "/data/app.db.pre-restore-r1");
    assert.equal(d.status.target, "2026-11-22T03:59:30Z");
    assert.equal(d.status.startedAt, "2026-11-22T04:00:00Z");
    assert.deepEqual(d.actions, [{ kind: "createJob", step: "plan" }]);
    assert.deepEqual(
      d.events.map((e) => [e.type, e.reason]),
      [["Normal", "Planning"]],
    );
    assert.equal(d.status.conditions?.find((c) => c.type === "Admitted")?.status, "True");
  });

  it("a plan that passes records the replica count and scales to 0", () => {
    const planning = { phase: "Planning" as const, claimName: "data-app-0", statefulSetName: "app" };
    const running = step(obs({ status: planning, jobs: { plan: { state: "Running" } } }));
    assert.equal(running.status.phase, "Planning");
    assert.deepEqual(running.actions, []);
    const d = step(obs({ status: planning, jobs: { plan: { state: "Succeeded", message: PLAN_LINE } } }));
    assert.equal(d.status.phase, "ScalingDown");
    assert.equal(d.status.originalReplicas, 2);
    assert.deepEqual(d.actions, [{ kind: "scale", replicas: 0 }]);
    assert.match(d.status.message ?? "", new RegExp(`plan: generation ${GEN}, up to ${GEN}/0000000a:4152`));
  });

  it("a plan that fails (target too early, no backup, bucket down) fails at once and never scales", () => {
    const planning = { phase: "Planning" as const, claimName: "data-app-0", statefulSetName: "app" };
    const failed = {
      state: "Failed" as const,
      reason: "PodFailurePolicy",
      message:
        "walship restore: restore: no snapshot was taken at or before 2001-01-01T00:00:00.000Z (backups start 2026-11-22T03:00:00.000Z); nothing to restore that early [WALSHIP_ERR_RESTORE]",
    };
    const d = step(obs({ status: planning, jobs: { plan: failed } }));
    assert.equal(d.status.phase, "Failed");
    assert.deepEqual(d.actions, []);
    assert.equal(d.status.originalReplicas, undefined);
    assert.equal(d.status.failure, undefined);
    const complete = d.status.conditions?.find((c) => c.type === "Complete");
    assert.equal(complete?.reason, "PlanFailed");
    assert.match(
      complete?.message ?? "",
      /the plan Job failed: .*nothing to restore that early.*nothing was changed/,
    );
    assert.deepEqual(
      d.events.map((e) => [e.type, e.reason]),
      [["Warning", "Failed"]],
    );
  });

  it("walks every phase to Succeeded, one Event per phase", () => {
    let o = obs();
    const phases: string[] = [];
    const script: Array<Partial<Observed>> = [
      {},
      { jobs: { plan: { state: "Running" } } },
      { jobs: { plan: { state: "Succeeded", message: PLAN_LINE } } },
      { podsRemaining: 1, workload: sts(0, 1) },
      { podsRemaining: 0, workload: sts(0, 0) },
      { jobs: { restore: { state: "Running" } } },
      { jobs: { restore: { state: "Succeeded", message: `noise\n${RESTORED_LINE}\n` } } },
      {},
      { jobs: { swap: { state: "Succeeded" } } },
      { workload: sts(2, 1) },
      { workload: sts(2, 2) },
    ];
    for (const change of script) {
      const d = step({ ...o, ...change });
      for (const e of d.events) phases.push(e.reason);
      o = { ...o, ...change, status: d.status };
    }
    assert.deepEqual(phases, [
      "Planning",
      "ScalingDown",
      "Restoring",
      "Verifying",
      "Swapping",
      "ScalingUp",
      "Succeeded",
    ]);
    assert.match(o.status.message ?? "", /previous database kept as \/data\/app.db.pre-restore-r1/);
    assert.equal(o.status.phase, "Succeeded");
    assert.equal(o.status.completedAt, "2026-11-22T04:00:00Z");
    assert.deepEqual(o.status.restored, {
      destination: "minio",
      generation: GEN,
      index: 10,
      offset: 4152,
      position: `${GEN}/0000000a:4152`,
      lastCommitTime: "2026-11-22T03:59:00.000Z",
    });
    assert.equal(o.status.conditions?.find((c) => c.type === "Complete")?.reason, "Restored");
  });

  it("ScalingDown waits while pods remain, then creates the restore Job", () => {
    const s = { phase: "ScalingDown" as const, originalReplicas: 2, claimName: "data-app-0" };
    const waiting = step(obs({ status: s, workload: sts(0, 0), podsRemaining: 1 }));
    assert.equal(waiting.status.phase, "ScalingDown");
    assert.deepEqual(waiting.actions, []);
    assert.equal(waiting.requeueAfterMs, 2000);
    const go = step(obs({ status: s, workload: sts(0, 0), podsRemaining: 0 }));
    assert.equal(go.status.phase, "Restoring");
    assert.deepEqual(go.actions, [{ kind: "createJob", step: "restore" }]);
  });

  it("a restarted operator resumes from the recorded phase (re-creating a missing Job)", () => {
    const d = step(obs({ status: { phase: "Restoring", originalReplicas: 2 }, podsRemaining: 0 }));
    assert.equal(d.status.phase, "Restoring");
    assert.deepEqual(d.actions, [{ kind: "createJob", step: "restore" }]);
    assert.deepEqual(d.events, []);
    const swap = step(
      obs({ status: { phase: "Swapping", originalReplicas: 2 }, workload: sts(0, 0), podsRemaining: 0 }),
    );
    assert.deepEqual(swap.actions, [{ kind: "createJob", step: "swap" }]);
  });

  it("a failed restore Job records the failure, rolls back, scales back, then Failed", () => {
    const failing = {
      state: "Failed" as const,
      message: '{"level":50,"msg":"[WALSHIP_ERR_NOT_FOUND] restore: no backups at or before the time"}',
    };
    const base = { originalReplicas: 2, backupPath: "/data/app.db.pre-restore-r1" };
    let d = step(obs({ status: { ...base, phase: "Restoring" }, jobs: { restore: failing } }));
    assert.equal(d.status.phase, "ScalingUp");
    assert.equal(d.status.failure?.reason, "RestoreFailed");
    assert.equal(d.status.failure?.phase, "Restoring");
    assert.match(d.status.failure?.message ?? "", /WALSHIP_ERR_NOT_FOUND/);
    assert.deepEqual(d.actions, [{ kind: "createJob", step: "rollback" }]);
    assert.equal(d.events[0]?.type, "Warning");
    const o = obs({ status: d.status, workload: sts(0, 0), podsRemaining: 0 });
    d = step({ ...o, jobs: { rollback: { state: "Running" } } });
    assert.deepEqual(d.actions, []);
    d = step({ ...o, jobs: { rollback: { state: "Succeeded" } } });
    assert.deepEqual(d.actions, [{ kind: "scale", replicas: 2 }]);
    assert.equal(d.status.phase, "ScalingUp");
    d = step({ ...o, workload: sts(2, 2), jobs: { rollback: { state: "Succeeded" } } });
    assert.equal(d.status.phase, "Failed");
    assert.equal(d.status.conditions?.find((c) => c.type === "Complete")?.reason, "RestoreFailed");
  });

  it("a failed swap rolls back", () => {
    const d = step(
      obs({ status: { phase: "Swapping", originalReplicas: 1 }, jobs: { swap: { state: "Failed" } } }),
    );
    assert.equal(d.status.failure?.reason, "SwapFailed");
    assert.deepEqual(d.actions, [{ kind: "createJob", step: "rollback" }]);
  });

  it("Verifying refuses a position past the target", () => {
    const late = {
      generation: GEN,
      index: 10,
      offset: 0,
      position: "p",
      lastCommitTime: "2026-11-22T03:59:31Z",
    };
    const d = step(obs({ status: { phase: "Verifying", originalReplicas: 1, restored: late } }));
    assert.equal(d.status.failure?.reason, "VerificationFailed");
    assert.equal(d.status.phase, "ScalingUp");
  });

  it("a restore Job that succeeds without a position (no termination message) still verifies and swaps", () => {
    let d = step(
      obs({ status: { phase: "Restoring", originalReplicas: 1 }, jobs: { restore: { state: "Succeeded" } } }),
    );
    assert.equal(d.status.phase, "Verifying");
    assert.equal(d.status.restored, undefined);
    d = step(obs({ status: d.status, workload: sts(0, 0), podsRemaining: 0 }));
    assert.equal(d.status.phase, "Swapping");
  });
});

describe("SqliteRestore machine: timeouts, checks and the previous database", () => {
  it("a Job past spec.timeout (DeadlineExceeded) rolls back, scales back, then Failed DeadlineExceeded", () => {
    const spec = { sqliteReplicaName: "db", mode: "InPlace", timeout: "30m" };
    const timedOut = {
      state: "Failed" as const,
      reason: "DeadlineExceeded",
      message: "Job was active longer than specified deadline",
    };
    const base = {
      originalReplicas: 2,
      backupPath: "/data/app.db.pre-restore-r1",
      phase: "Restoring" as const,
    };
    let d = step(obs({ spec, status: base, jobs: { restore: timedOut } }));
    assert.equal(d.status.phase, "ScalingUp");
    assert.equal(d.status.failure?.reason, "DeadlineExceeded");
    assert.equal(
      d.status.failure?.message,
      "the restore Job did not finish within spec.timeout 30m (activeDeadlineSeconds 1800)",
    );
    assert.deepEqual(d.actions, [{ kind: "createJob", step: "rollback" }]);
    const o = obs({ spec, status: d.status, workload: sts(0, 0), podsRemaining: 0 });
    d = step({ ...o, jobs: { rollback: { state: "Succeeded" } } });
    assert.deepEqual(d.actions, [{ kind: "scale", replicas: 2 }]);
    d = step({ ...o, workload: sts(2, 2), jobs: { rollback: { state: "Succeeded" } } });
    assert.equal(d.status.phase, "Failed");
    assert.equal(d.status.conditions?.find((c) => c.type === "Complete")?.reason, "DeadlineExceeded");
    assert.match(d.status.message ?? "", /spec\.timeout 30m/);
  });

  it("a plan Job past the timeout fails at once; a swap past it rolls back", () => {
    const plan = step(
      obs({
        status: { phase: "Planning" },
        jobs: { plan: { state: "Failed", reason: "DeadlineExceeded" } },
      }),
    );
    assert.equal(plan.status.phase, "Failed");
    assert.equal(plan.status.conditions?.find((c) => c.type === "Complete")?.reason, "DeadlineExceeded");
    assert.match(
      plan.status.message ?? "",
      /the plan Job did not finish within spec\.timeout 1h \(activeDeadlineSeconds 3600\)/,
    );
    assert.deepEqual(plan.actions, []);
    const swap = step(
      obs({
        status: { phase: "Swapping", originalReplicas: 1 },
        jobs: { swap: { state: "Failed", reason: "DeadlineExceeded" } },
      }),
    );
    assert.equal(swap.status.failure?.reason, "DeadlineExceeded");
    assert.deepEqual(swap.actions, [{ kind: "createJob", step: "rollback" }]);
  });

  it("a failed check of the restored file (integrity_check or spec.verify.sql) is VerificationFailed", () => {
    const failing = {
      state: "Failed" as const,
      reason: "PodFailurePolicy",
      message:
        '{"level":30,"msg":"snapshot restored"}\nwalship restore: restore: -verify-sql returned no row: SELECT 1 [WALSHIP_ERR_INTEGRITY]',
    };
    const d = step(
      obs({
        spec: { sqliteReplicaName: "db", mode: "InPlace", verify: { sql: "SELECT 1" } },
        status: { phase: "Restoring", originalReplicas: 1 },
        jobs: { restore: failing },
      }),
    );
    assert.equal(d.status.failure?.reason, "VerificationFailed");
    assert.match(d.status.failure?.message ?? "", /-verify-sql returned no row/);
    assert.deepEqual(d.actions, [{ kind: "createJob", step: "rollback" }]);
  });

  it("previousDatabase: Delete says so when swapping and when done", () => {
    const spec = { sqliteReplicaName: "db", mode: "InPlace", previousDatabase: "Delete" };
    let d = step(
      obs({
        spec,
        status: { phase: "Verifying", originalReplicas: 1, backupPath: "/b" },
        workload: sts(0, 0),
        podsRemaining: 0,
      }),
    );
    assert.equal(d.status.phase, "Swapping");
    assert.match(d.status.message ?? "", /deleted once the restored file is in place/);
    d = step(obs({ spec, status: { ...d.status, phase: "ScalingUp" }, workload: sts(1, 1) }));
    assert.equal(d.status.phase, "Succeeded");
    assert.match(d.status.message ?? "", /previous database deleted/);
  });
});

describe("SqliteRestore machine: refusals", () => {
  it("a second restore of the same SqliteReplica is refused while one runs", () => {
    const d = step(
      obs({ others: [{ name: "r0", phase: "Restoring", creationTimestamp: "2026-11-22T03:59:00Z" }] }),
    );
    assert.equal(d.status.phase, "Failed");
    const admitted = d.status.conditions?.find((c) => c.type === "Admitted");
    assert.equal(admitted?.status, "False");
    assert.equal(admitted?.reason, "RestoreInProgress");
    assert.match(admitted?.message ?? "", /SqliteRestore r0/);
    assert.deepEqual(d.actions, []);
  });

  it("of two Pending restores the older goes first; finished ones do not count", () => {
    const older = [{ name: "r0", phase: "Pending" as const, creationTimestamp: "2026-11-22T03:57:00Z" }];
    assert.equal(step(obs({ others: older })).status.phase, "Failed");
    const newer = [{ name: "r2", creationTimestamp: "2026-11-22T03:59:00Z" }];
    assert.equal(step(obs({ others: newer })).status.phase, "Planning");
    const done = [{ name: "r0", phase: "Succeeded" as const, creationTimestamp: "2026-11-22T03:57:00Z" }];
    assert.equal(step(obs({ others: done })).status.phase, "Planning");
    const planning = [{ name: "r0", phase: "Planning" as const, creationTimestamp: "2026-11-22T03:59:00Z" }];
    assert.equal(step(obs({ others: planning })).status.phase, "Failed", "a Planning restore holds it");
  });

  it("fails at once, changing nothing, when the SqliteReplica, the StatefulSet or the pod is wrong", () => {
    for (const [over, reason] of [
      [{ replica: undefined }, "SqliteReplicaNotFound"],
      [{ workload: undefined }, "StatefulSetNotFound"],
      [{ spec: { sqliteReplicaName: "db", mode: "InPlace", pod: "other-0" } }, "PodNotFound"],
      [{ spec: { sqliteReplicaName: "db", mode: "InPlace", destination: "nope" } }, "DestinationNotFound"],
      [{ spec: { sqliteReplicaName: "db", mode: "NewClaim" } }, "InvalidSpec"],
    ] as const) {
      const d = step(obs(over as Partial<Observed>));
      assert.equal(d.status.phase, "Failed", reason);
      assert.equal(d.status.conditions?.find((c) => c.type === "Complete")?.reason, reason);
      assert.deepEqual(d.actions, [], reason);
      assert.equal(d.events[0]?.type, "Warning");
    }
  });

  it("a final phase does nothing", () => {
    const d = step(obs({ status: { phase: "Succeeded" } }));
    assert.deepEqual(d.actions, []);
    assert.deepEqual(d.events, []);
  });
});

describe("SqliteRestore machine: a scale-up during an InPlace restore", () => {
  const restored = {
    generation: GEN,
    index: 10,
    offset: 4152,
    position: `${GEN}/0000000a:4152`,
    lastCommitTime: "2026-11-22T03:59:00.000Z",
  };
  const status = { phase: "Verifying" as const, originalReplicas: 2, backupPath: "/d.pre", restored };

  it("is checked before the swap: the database is not swapped, the restore rolls back", () => {
    for (const [replicas, pods] of [
      [1, 0],
      [0, 1],
      [3, 3],
    ] as const) {
      const d = step(obs({ status, workload: sts(replicas, 0), podsRemaining: pods }));
      assert.equal(d.status.phase, "ScalingUp", `${replicas}/${pods}`);
      assert.equal(d.status.failure?.reason, "ScaledUp");
      assert.match(
        d.status.failure?.message ?? "",
        new RegExp(
          `^StatefulSet app was scaled to ${replicas} \\(${pods} pod\\(s\\)\\) while the restore ran`,
        ),
      );
      assert.deepEqual(d.actions, [{ kind: "createJob", step: "rollback" }], "no swap Job");
    }
  });

  it("and again in Swapping while the swap Job is not created yet; a running swap is left to finish", () => {
    const swapping = { ...status, phase: "Swapping" as const };
    let d = step(obs({ status: swapping, workload: sts(1, 0), podsRemaining: 0 }));
    assert.equal(d.status.failure?.reason, "ScaledUp");
    d = step(obs({ status: swapping, workload: sts(1, 0), jobs: { swap: { state: "Running" } } }));
    assert.equal(d.status.phase, "Swapping");
    assert.equal(d.status.failure, undefined);
  });

  it("at 0 with no pod left the swap goes ahead", () => {
    const d = step(obs({ status, workload: sts(0, 0), podsRemaining: 0 }));
    assert.equal(d.status.phase, "Swapping");
    assert.deepEqual(d.actions, [{ kind: "createJob", step: "swap" }]);
  });
});

describe("SqliteRestore machine: a Job it did not create is never reused", () => {
  const foreign = { state: "Succeeded" as const, foreign: true };

  it("a leftover plan Job (even a succeeded one) fails the restore before anything changed", () => {
    const planning = step(obs()).status;
    const d = step(obs({ status: planning, jobs: { plan: foreign } }));
    assert.equal(d.status.phase, "Failed");
    assert.deepEqual(d.actions, [], "nothing scaled, nothing created");
    const c = d.status.conditions?.find((x) => x.type === "Complete");
    assert.equal(c?.reason, "JobExists");
    assert.match(c?.message ?? "", /^Job r1-plan exists and was not created by this SqliteRestore/);
  });

  it("a leftover restore or swap Job after the scale-down: rolled back and scaled back, never read", () => {
    const base = { originalReplicas: 2, backupPath: "/data/app.db.pre-restore-r1" };
    for (const phase of ["Restoring", "Swapping"] as const) {
      const job = phase === "Restoring" ? "restore" : "swap";
      const d = step(obs({ status: { ...base, phase }, workload: sts(0, 0), jobs: { [job]: foreign } }));
      assert.equal(d.status.phase, "ScalingUp", phase);
      assert.equal(d.status.failure?.reason, "JobExists");
      assert.equal(d.status.restored, undefined, "its termination message was not read");
      assert.deepEqual(d.actions, [{ kind: "createJob", step: "rollback" }]);
    }
  });

  it("a leftover rollback Job is not waited for: scale back and say where the database may be", () => {
    const status = {
      phase: "ScalingUp" as const,
      originalReplicas: 1,
      backupPath: "/data/app.db.pre-restore-r1",
      failure: { phase: "Swapping", reason: "SwapFailed", message: "the swap Job failed" },
    };
    let d = step(obs({ status, workload: sts(0, 0), jobs: { rollback: foreign } }));
    assert.deepEqual(d.actions, [{ kind: "scale", replicas: 1 }]);
    assert.match(d.status.message ?? "", /Job r1-rollback exists .*: the previous database may be at/);
    d = step(obs({ status: d.status, workload: sts(1, 1), jobs: { rollback: foreign } }));
    assert.equal(d.status.phase, "Failed");
  });
});

describe("SqliteRestore machine: NewClaim", () => {
  it("creates the claim, then the Job once the claim is its own, verifies, and never scales", () => {
    const spec = { sqliteReplicaName: "db", mode: "NewClaim", newClaim: { name: "restored" } };
    let d = step(obs({ spec, newClaim: "missing" }));
    assert.equal(d.status.phase, "Planning");
    assert.deepEqual(d.actions, [{ kind: "createJob", step: "plan" }], "no claim before the plan passed");
    d = step(
      obs({
        spec,
        status: d.status,
        newClaim: "missing",
        jobs: { plan: { state: "Succeeded", message: PLAN_LINE } },
      }),
    );
    assert.equal(d.status.phase, "Restoring");
    assert.equal(d.status.claimName, "restored");
    assert.equal(d.status.originalReplicas, undefined);
    assert.deepEqual(d.actions, [{ kind: "createClaim" }], "the Job waits for the claim");
    d = step(obs({ spec, status: d.status, newClaim: "missing" }));
    assert.deepEqual(d.actions, [{ kind: "createClaim" }], "not seen yet: created again (idempotent)");
    d = step(obs({ spec, status: d.status, newClaim: "ours" }));
    assert.deepEqual(d.actions, [{ kind: "createJob", step: "restore" }]);
    d = step(
      obs({
        spec,
        status: d.status,
        newClaim: "ours",
        jobs: { restore: { state: "Succeeded", message: RESTORED_LINE } },
      }),
    );
    assert.equal(d.status.phase, "Verifying");
    d = step(obs({ spec, status: d.status }));
    assert.equal(d.status.phase, "Succeeded");
    assert.deepEqual(d.actions, []);
  });

  it("a failed Job fails at once (the app was never touched)", () => {
    const spec = { sqliteReplicaName: "db", mode: "NewClaim", newClaim: { name: "restored" } };
    const d = step(
      obs({ spec, status: { phase: "Restoring" }, newClaim: "ours", jobs: { restore: { state: "Failed" } } }),
    );
    assert.equal(d.status.phase, "Failed");
    assert.deepEqual(d.actions, []);
  });

  it("never writes into a claim it did not create: refused at the start, after the plan, or later", () => {
    const spec = { sqliteReplicaName: "db", mode: "NewClaim", newClaim: { name: "data-app-0" } };
    const refused = (d: ReturnType<typeof step>) => {
      assert.equal(d.status.phase, "Failed");
      assert.deepEqual(d.actions, [], "no Job, no claim");
      const c = d.status.conditions?.find((x) => x.type === "Complete");
      assert.equal(c?.reason, "ClaimExists");
      assert.match(
        c?.message ?? "",
        /^spec\.newClaim\.name: PersistentVolumeClaim data-app-0 already exists/,
      );
    };
    refused(step(obs({ spec, newClaim: "foreign" })));
    const planning = step(obs({ spec, newClaim: "missing" })).status;
    refused(
      step(obs({ spec, status: planning, newClaim: "foreign", jobs: { plan: { state: "Succeeded" } } })),
    );
    refused(step(obs({ spec, status: { ...planning, phase: "Restoring" }, newClaim: "foreign" })));
  });
});

describe("SqliteRestore helpers", () => {
  it("describeTarget", () => {
    const p = (t: unknown) =>
      SqliteRestoreSpec.parse({ sqliteReplicaName: "db", mode: "InPlace", target: t });
    assert.equal(describeTarget(p(undefined)), "latest");
    assert.equal(describeTarget(p({ timestamp: "2026-01-01T00:00:00Z" })), "2026-01-01T00:00:00Z");
    assert.equal(describeTarget(p({ generation: GEN })), GEN);
    assert.equal(describeTarget(p({ generation: GEN, index: 42 })), `${GEN}/0000002a`);
  });

  it("claimFor: a template's claim per pod, a pod volume's claim, else none", () => {
    const s = sts(1);
    assert.equal(claimFor(s, "data", "app-3"), "data-app-3");
    s.spec!.volumeClaimTemplates = [];
    assert.equal(claimFor(s, "data", "app-0"), undefined);
    s.spec!.template.spec!.volumes = [{ name: "data", persistentVolumeClaim: { claimName: "shared" } }];
    assert.equal(claimFor(s, "data", "app-0"), "shared");
  });

  it("parseRestoreResult reads the last restored line; nothing without one", () => {
    assert.equal(parseRestoreResult(`${RESTORED_LINE}\n`)?.index, 10);
    assert.equal(parseRestoreResult('{"msg":"restore progress"}\nnot json'), undefined);
    assert.equal(parseRestoreResult(JSON.stringify({ msg: "restored", position: "bad" })), undefined);
  });

  it("checkResult: generation, index and destination", () => {
    const spec = SqliteRestoreSpec.parse({
      sqliteReplicaName: "db",
      mode: "InPlace",
      destination: "minio",
      target: { generation: GEN, index: 9 },
    });
    const r = { destination: "minio", generation: GEN, index: 9, offset: 0, position: "p" };
    assert.equal(checkResult(spec, r), undefined);
    assert.match(checkResult(spec, { ...r, index: 10 }) ?? "", /past the target/);
    assert.match(checkResult(spec, { ...r, generation: "f".repeat(16) }) ?? "", /generation/);
    assert.match(checkResult(spec, { ...r, destination: "aws" }) ?? "", /destination aws/);
  });
});
