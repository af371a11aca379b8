/**
 * A Deployment as a SqliteReplica's workload: `spec.workloadRef` beside `statefulSetName` (exactly one,
 * zod and the CRD's CEL rule at a real kube-apiserver), the refusals (more than one replica, a rolling
 * update, the database not on a claim), the apply configuration (kind Deployment, the replica named
 * after the Deployment), and the SqliteRestore machine on a Deployment (scale, claim, no pod). Pure
 * but for the admission block.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  databasesOf,
  SqliteReplicaSpec,
  SqliteRestoreStatus,
  withDatabase,
  workloadOf,
} from "../../src/api/v1alpha1/index.ts";
import type { Deployment } from "../../src/operator/kube/types.ts";
import { ensureNoConflict } from "../../src/operator/replica/steps.ts";
import { decide } from "../../src/operator/restore/machine.ts";
import type { Observed } from "../../src/operator/restore/types.ts";
import { deploymentProblem } from "../../src/operator/specs/deployment.ts";
import { buildNewClaim, buildRestoreJob } from "../../src/operator/specs/restorejob.ts";
import {
  buildApplyPatch,
  claimEnv,
  isTargetProblem,
  removalPatch,
  resolveTarget,
  type Target,
} from "../../src/operator/specs/statefulset.ts";
import { specAdmission } from "../helpers/admission.ts";

const base = {
  database: { path: "/data/app.db", volumeName: "data" },
  destinations: [{ name: "minio", s3: { bucket: "backups", credentials: { fromServiceAccount: true } } }],
};
const input = { ...base, workloadRef: { kind: "Deployment", name: "web" } };
const parsedSpec = SqliteReplicaSpec.parse(input);
const spec = withDatabase(parsedSpec, databasesOf(parsedSpec)[0]!);

function deployment(over: { replicas?: number; strategy?: string; volume?: object } = {}): Deployment {
  return {
    metadata: { name: "web", namespace: "shop" },
    spec: {
      replicas: over.replicas ?? 1,
      strategy: { type: over.strategy ?? "Recreate" },
      selector: { matchLabels: { app: "web" } },
      template: {
        spec: {
          containers: [{ name: "app", image: "x", volumeMounts: [{ name: "data", mountPath: "/data" }] }],
          volumes: [over.volume ?? { name: "data", persistentVolumeClaim: { claimName: "data-web" } }],
        },
      },
    },
    status: { replicas: over.replicas ?? 1, readyReplicas: over.replicas ?? 1 },
  } as Deployment;
}

describe("spec.workloadRef (zod, the CEL rule's twin)", () => {
  it("takes a Deployment or a StatefulSet; statefulSetName alone still works", () => {
    assert.deepEqual(workloadOf(spec), { kind: "Deployment", name: "web" });
    const old = SqliteReplicaSpec.parse({ ...base, statefulSetName: "app" });
    assert.deepEqual(workloadOf(old), { kind: "StatefulSet", name: "app" });
    const sts = SqliteReplicaSpec.parse({ ...base, workloadRef: { kind: "StatefulSet", name: "app" } });
    assert.deepEqual(workloadOf(sts), { kind: "StatefulSet", name: "app" });
  });

  it("refuses both, neither, and another kind, naming the field", () => {
    for (const bad of [
      { ...base, statefulSetName: "app", workloadRef: { kind: "Deployment", name: "web" } },
      base,
    ]) {
      const r = SqliteReplicaSpec.safeParse(bad);
      assert.equal(r.success, false);
      assert.equal(r.error?.issues[0]?.message, "set exactly one of statefulSetName or workloadRef");
    }
    const r = SqliteReplicaSpec.safeParse({ ...base, workloadRef: { kind: "DaemonSet", name: "x" } });
    assert.deepEqual(r.error?.issues[0]?.path, ["workloadRef", "kind"]);
  });
});

describe("deploymentProblem", () => {
  it("accepts one replica (or none), Recreate, the database on a claim", () => {
    assert.equal(deploymentProblem(deployment(), spec), undefined);
    assert.equal(deploymentProblem(deployment({ replicas: 0 }), spec), undefined);
  });

  it("refuses more than one replica", () => {
    assert.deepEqual(deploymentProblem(deployment({ replicas: 2 }), spec), {
      reason: "TooManyReplicas",
      field: "spec.workloadRef",
      message:
        "Deployment web has 2 replicas; a Deployment is replicated only with replicas: 1 (two pods would " +
        "write the same database and the same replica); use a StatefulSet for more",
    });
  });

  it("refuses a rolling update, also when no strategy is given (Kubernetes' default)", () => {
    const expected = {
      reason: "RollingUpdateStrategy",
      field: "spec.workloadRef",
      message:
        "Deployment web has strategy RollingUpdate: a rollout would start the new pod while the old one " +
        "still writes the database; set spec.strategy.type: Recreate",
    };
    assert.deepEqual(deploymentProblem(deployment({ strategy: "RollingUpdate" }), spec), expected);
    const unset = deployment();
    delete unset.spec?.strategy;
    assert.deepEqual(deploymentProblem(unset, spec), expected);
  });

  it("refuses the database on a volume that is not a claim", () => {
    assert.deepEqual(deploymentProblem(deployment({ volume: { name: "data", emptyDir: {} } }), spec), {
      reason: "VolumeNotAClaim",
      field: "spec.database.volumeName",
      message:
        "volume data of Deployment web is not a PersistentVolumeClaim: the database /data/app.db would not outlive " +
        "its pod; put it on a claim",
    });
  });
});

describe("injection into a Deployment", () => {
  it("resolves the target with the replica named after the Deployment", () => {
    const t = resolveTarget(spec, deployment());
    assert.equal(isTargetProblem(t), false);
    assert.equal((t as Target).replicaName, "web");
    assert.equal((t as Target).mounts[0]?.mountPath, "/data");
    const missing = resolveTarget(
      { ...spec, database: { ...spec.database, volumeName: "other" } },
      deployment(),
    );
    assert.deepEqual(missing, {
      reason: "VolumeNotFound",
      field: "spec.database.volumeName",
      message: "Deployment web has no volume named other",
    });
  });

  it("the apply configuration is a Deployment's; POD_NAME is the Deployment's name, in both containers", () => {
    const t = resolveTarget(spec, deployment()) as Target;
    const patch = buildApplyPatch({ name: "web", namespace: "shop", kind: "Deployment" }, "db", spec, t, "h");
    assert.equal(patch.kind, "Deployment");
    assert.deepEqual(patch.metadata, { name: "web", namespace: "shop" });
    const init = patch.spec?.template.spec?.initContainers ?? [];
    assert.deepEqual(
      init.map((c) => [c.name, c.env]),
      [
        ["walship-restore", [{ name: "POD_NAME", value: "web" }]],
        ["walship", [{ name: "POD_NAME", value: "web" }, ...claimEnv()]],
      ],
    );
    assert.deepEqual(removalPatch({ name: "web", namespace: "shop", kind: "Deployment" }), {
      apiVersion: "apps/v1",
      kind: "Deployment",
      metadata: { name: "web", namespace: "shop" },
    });
  });

  it("a StatefulSet's pods keep their own names (the downward API)", () => {
    const sts = SqliteReplicaSpec.parse({ ...base, statefulSetName: "web" });
    const t = resolveTarget(sts, deployment()) as Target;
    assert.equal(t.replicaName, undefined);
    const patch = buildApplyPatch({ name: "web", namespace: "shop" }, "db", sts, t, "h");
    assert.equal(patch.kind, "StatefulSet");
    assert.deepEqual(patch.spec?.template.spec?.initContainers?.[1]?.env, [
      { name: "POD_NAME", valueFrom: { fieldRef: { fieldPath: "metadata.name" } } },
      ...claimEnv(),
    ]);
  });

  it("a second SqliteReplica on the same Deployment conflicts; a StatefulSet of the same name does not", () => {
    const cr = (name: string, s: object, created: string) => ({
      metadata: { name, namespace: "shop", creationTimestamp: created },
      spec: s,
    });
    const mine = cr("b", input, "2026-01-02T00:00:00Z");
    assert.throws(
      () => ensureNoConflict(mine, [cr("a", input, "2026-01-01T00:00:00Z")], deployment(), spec),
      /^Blocked: spec\.workloadRef: Deployment web is already replicated by SqliteReplica a \(the same database\); one SqliteReplica per Deployment: list several databases in its spec\.databases$/,
    );
    ensureNoConflict(
      mine,
      [cr("a", { ...base, statefulSetName: "web" }, "2026-01-01T00:00:00Z")],
      deployment(),
      spec,
    );
  });
});

describe("SqliteRestore of a Deployment's database", () => {
  const obs = (over: Partial<Observed> = {}): Observed => ({
    now: new Date("2026-11-22T04:00:00.000Z"),
    name: "r1",
    creationTimestamp: "2026-11-22T03:58:00Z",
    generation: 1,
    spec: { sqliteReplicaName: "db", mode: "InPlace" },
    status: {},
    replica: input,
    workload: deployment(),
    podsRemaining: 1,
    jobs: {},
    others: [],
    ...over,
  });
  const step = (o: Observed) => {
    const d = decide(o);
    SqliteRestoreStatus.parse(d.status);
    return d;
  };

  it("admits InPlace: records the Deployment and its claim, no pod; the plan reads the Deployment's replica", () => {
    const d = step(obs());
    assert.equal(d.status.phase, "Planning");
    assert.deepEqual(d.status.workloadRef, { kind: "Deployment", name: "web" });
    assert.equal(d.status.statefulSetName, undefined);
    assert.equal(d.status.pod, undefined);
    assert.equal(d.status.claimName, "data-web");
    assert.equal(
      d.status.message,
      "checking that latest can be restored from Deployment web's replica (plan Job)",
    );
    assert.deepEqual(d.actions, [{ kind: "createJob", step: "plan" }]);
  });

  it("scales the Deployment to 0 after the plan, and back to the recorded count", () => {
    const admitted = step(obs()).status;
    const down = step(obs({ status: admitted, jobs: { plan: { state: "Succeeded" } } }));
    assert.equal(down.status.phase, "ScalingDown");
    assert.equal(down.status.originalReplicas, 1);
    assert.equal(down.status.message, "plan passed; scaling Deployment web from 1 to 0");
    assert.deepEqual(down.actions, [{ kind: "scale", replicas: 0 }]);
    const up = step(
      obs({
        status: { ...down.status, phase: "Swapping" },
        workload: deployment({ replicas: 0 }),
        podsRemaining: 0,
        jobs: { swap: { state: "Succeeded" } },
      }),
    );
    assert.equal(up.status.phase, "ScalingUp");
    assert.equal(up.status.message, "swapped; scaling Deployment web back to 1");
    assert.deepEqual(up.actions, [{ kind: "scale", replicas: 1 }]);
  });

  it("a Deployment scaled up again before the swap fails ScaledUp; one gone fails DeploymentNotFound", () => {
    const admitted = step(obs()).status;
    const verifying = { ...admitted, phase: "Verifying" as const, originalReplicas: 1 };
    const scaled = step(obs({ status: verifying, workload: deployment({ replicas: 1 }), podsRemaining: 1 }));
    assert.equal(scaled.status.failure?.reason, "ScaledUp");
    assert.match(scaled.status.failure?.message ?? "", /^Deployment web was scaled to 1 \(1 pod\(s\)\)/);
    const { workload: _, ...gone } = obs({
      status: { ...admitted, phase: "ScalingDown", originalReplicas: 1 },
    });
    const d = step(gone);
    assert.equal(d.status.failure?.reason, "DeploymentNotFound");
    assert.equal(d.status.failure?.message, "Deployment web is gone");
  });

  it("refuses spec.pod: the Deployment's pods share one replica", () => {
    const d = step(obs({ spec: { sqliteReplicaName: "db", mode: "InPlace", pod: "web-0" } }));
    assert.equal(d.status.phase, "Failed");
    const complete = d.status.conditions?.find((c) => c.type === "Complete");
    assert.equal(complete?.reason, "PodNotFound");
    assert.equal(
      complete?.message,
      "spec.pod: the pods of Deployment web share one replica, named after the Deployment; leave spec.pod unset",
    );
  });

  it("the restore Job reads the Deployment's replica; NewClaim copies the source claim's size and class", () => {
    const restoreSpec = { sqliteReplicaName: "db", mode: "NewClaim", newClaim: { name: "copy" } } as const;
    const parsed = { ...restoreSpec, timeout: "1h", previousDatabase: "Retain" } as const;
    const t = resolveTarget(spec, deployment()) as Target;
    const job = buildRestoreJob({
      step: "restore",
      restore: { name: "r1", namespace: "shop", uid: "u" },
      spec: parsed,
      replica: spec,
      sts: deployment(),
      pod: "web",
      claimName: "copy",
      mount: { mountPath: "/data" },
      identity: t.identity,
    });
    assert.deepEqual(job.spec.template.spec.containers[0]?.env, [{ name: "POD_NAME", value: "web" }]);
    const claim = buildNewClaim({
      restore: { name: "r1", namespace: "shop", uid: "u" },
      spec: parsed,
      replica: spec,
      sts: deployment(),
      sourceClaim: {
        spec: {
          accessModes: ["ReadWriteOncePod"],
          storageClassName: "fast",
          resources: { requests: { storage: "5Gi" } },
        },
      },
    });
    assert.deepEqual(claim.spec, {
      accessModes: ["ReadWriteOncePod"],
      storageClassName: "fast",
      resources: { requests: { storage: "5Gi" } },
    });
  });
});

describe("spec.workloadRef at admission (real kube-apiserver, the CRD's CEL rule)", {
  timeout: 240_000,
}, () => {
  const admit = specAdmission();

  it("admits workloadRef or statefulSetName, refuses both or neither with the rule's message", async () => {
    for (const ok of [input, { ...base, statefulSetName: "app" }]) {
      const r = await admit(ok);
      assert.equal(r.code, 0, r.stderr);
    }
    for (const bad of [{ ...input, statefulSetName: "app" }, base]) {
      const r = await admit(bad);
      assert.notEqual(r.code, 0, `admitted: ${JSON.stringify(bad)}`);
      assert.ok(r.stderr.includes("set exactly one of statefulSetName or workloadRef"), r.stderr);
    }
    const r = await admit({ ...base, workloadRef: { kind: "DaemonSet", name: "x" } });
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /spec\.workloadRef\.kind: Unsupported value: "DaemonSet"/);
  });
});
