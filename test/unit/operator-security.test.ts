/**
 * Who the replicator runs as, Pod Security `restricted`, memory and OOM kills, permission failures
 * (issue 12, "Fix what it shows"): the pure parts with literal inputs.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  databasesOf,
  SqliteReplicaSpec,
  SqliteRestoreStatus,
  withDatabase,
} from "../../src/api/v1alpha1/index.ts";
import type { Pod, StatefulSet } from "../../src/operator/kube/types.ts";
import { degradedCondition, restrictedCondition } from "../../src/operator/replica/conditions.ts";
import { permissionFailure, restoreFailure, sidecarFailure } from "../../src/operator/replica/failures.ts";
import { podFacts } from "../../src/operator/replica/pods.ts";
import { oomKill } from "../../src/operator/restore/controller.ts";
import { decide } from "../../src/operator/restore/machine.ts";
import { buildRestoreJob } from "../../src/operator/specs/restorejob.ts";
import {
  appIdentity,
  replicatorSecurityContext,
  restrictedProblems,
} from "../../src/operator/specs/security.ts";
import { buildApplyPatch, isTargetProblem, resolveTarget } from "../../src/operator/specs/statefulset.ts";
import type { ReplicatorStatus } from "../../src/shared/protocol.ts";

const RESTRICTED = {
  allowPrivilegeEscalation: false,
  capabilities: { drop: ["ALL"] },
  readOnlyRootFilesystem: true,
  runAsNonRoot: true,
  seccompProfile: { type: "RuntimeDefault" },
};

const spec = SqliteReplicaSpec.parse({
  statefulSetName: "app",
  database: { path: "/data/app.db", volumeName: "data" },
  destinations: [{ name: "s3", s3: { bucket: "bkt", credentials: { fromServiceAccount: true } } }],
});

function sts(podSc: object | undefined, containerSc: object | undefined): StatefulSet {
  return {
    metadata: { name: "app", namespace: "shop" },
    spec: {
      serviceName: "app",
      selector: { matchLabels: { app: "app" } },
      template: {
        spec: {
          ...(podSc ? { securityContext: podSc } : {}),
          containers: [
            {
              name: "app",
              image: "app",
              volumeMounts: [{ name: "data", mountPath: "/data" }],
              ...(containerSc ? { securityContext: containerSc } : {}),
            },
          ],
        },
      },
      volumeClaimTemplates: [{ metadata: { name: "data" } }],
    },
  };
}

function injected(s: StatefulSet, sp = spec) {
  const t = resolveTarget(sp, s);
  assert.ok(!isTargetProblem(t));
  const patch = buildApplyPatch({ name: "app", namespace: "shop" }, "db", sp, t, "h");
  return { target: t, containers: patch.spec?.template.spec?.initContainers ?? [] };
}

describe("the replicator runs as the app container's user and group", () => {
  it("the container's runAsUser/runAsGroup over the pod's; fsGroup from the pod", () => {
    assert.deepEqual(
      appIdentity(
        sts({ runAsUser: 1, runAsGroup: 2, fsGroup: 3 }, { runAsUser: 10001 }).spec?.template.spec,
        "app",
      ),
      { runAsUser: 10001, runAsGroup: 2, fsGroup: 3 },
    );
    assert.deepEqual(appIdentity(sts(undefined, undefined).spec?.template.spec, "app"), {});
  });

  it("uid 10001 with fsGroup 10001: sidecar and restore init container as 10001, still restricted", () => {
    const { target, containers } = injected(
      sts({ runAsUser: 10001, runAsGroup: 10001, fsGroup: 10001 }, undefined),
    );
    assert.deepEqual(
      containers.map((c) => [c.name, c.securityContext]),
      [
        ["walship-restore", { ...RESTRICTED, runAsUser: 10001, runAsGroup: 10001 }],
        ["walship", { ...RESTRICTED, runAsUser: 10001, runAsGroup: 10001 }],
      ],
    );
    const cond = restrictedCondition(containers[1]!.securityContext!, target.identity, "app", undefined);
    assert.deepEqual(cond, {
      type: "Restricted",
      status: "True",
      reason: "Restricted",
      message:
        "the walship containers meet Pod Security restricted, running as uid 10001 gid 10001 fsGroup 10001",
    });
  });

  it("an app running as root: the replicator as root with runAsNonRoot false, and a condition says why", () => {
    const { target, containers } = injected(sts(undefined, { runAsUser: 0 }));
    const sc = containers[1]!.securityContext!;
    assert.deepEqual(sc, { ...RESTRICTED, runAsNonRoot: false, runAsUser: 0 });
    assert.deepEqual(restrictedProblems(sc), ["runAsUser 0 (root)", "runAsNonRoot is not true"]);
    assert.deepEqual(restrictedCondition(sc, target.identity, "app", undefined), {
      type: "Restricted",
      status: "False",
      reason: "RunsAsRoot",
      message:
        "the walship containers run as root like container app (runAsUser 0) and are not Pod Security " +
        "restricted (runAsUser 0 (root); runAsNonRoot is not true); a namespace that enforces restricted " +
        "rejects these pods",
    });
  });

  it("the spec's override wins over the app's user, merged over restricted", () => {
    const sp = SqliteReplicaSpec.parse({ ...spec, sidecar: { securityContext: { runAsUser: 2000 } } });
    const { containers } = injected(sts(undefined, { runAsUser: 0, runAsGroup: 0 }), sp);
    assert.deepEqual(containers[1]!.securityContext, { ...RESTRICTED, runAsUser: 2000, runAsGroup: 0 });
    // An override that relaxes a restricted field keeps every other one, and is reported.
    const relaxed = replicatorSecurityContext(
      { runAsUser: 1000 },
      { allowPrivilegeEscalation: true, capabilities: { add: ["SYS_ADMIN"] } },
    );
    assert.deepEqual(relaxed, {
      ...RESTRICTED,
      allowPrivilegeEscalation: true,
      capabilities: { add: ["SYS_ADMIN"], drop: ["ALL"] },
      runAsUser: 1000,
    });
    assert.deepEqual(restrictedCondition(relaxed, { runAsUser: 1000 }, "app", {}).reason, "NotRestricted");
    assert.deepEqual(restrictedProblems(relaxed), [
      "allowPrivilegeEscalation is not false",
      "capabilities.add SYS_ADMIN",
    ]);
  });

  it("every restore Job runs as the app's user too", () => {
    const s = sts({ fsGroup: 3000 }, { runAsUser: 3000, runAsGroup: 3000 });
    const job = buildRestoreJob({
      step: "restore",
      restore: { name: "r", namespace: "shop", uid: "u" },
      spec: { sqliteReplicaName: "db", mode: "InPlace", timeout: "1h", previousDatabase: "Retain" },
      replica: withDatabase(spec, databasesOf(spec)[0]!),
      sts: s,
      pod: "app-0",
      claimName: "data-app-0",
      mount: { mountPath: "/data" },
      identity: appIdentity(s.spec?.template.spec, "app"),
    });
    assert.deepEqual(job.spec.template.spec.securityContext, { fsGroup: 3000 });
    assert.deepEqual(job.spec.template.spec.containers[0]?.securityContext, {
      ...RESTRICTED,
      runAsUser: 3000,
      runAsGroup: 3000,
    });
  });
});

describe("memory: limits from measurement, a spec field, OOM kills reported as such", () => {
  it("defaults: sidecar 128Mi/384Mi, restore 256Mi/512Mi; restoreResources sizes the init container", () => {
    const { containers } = injected(sts({ runAsUser: 1000 }, undefined));
    assert.deepEqual(
      containers.map((c) => [c.name, c.resources]),
      [
        ["walship-restore", { requests: { cpu: "100m", memory: "256Mi" }, limits: { memory: "512Mi" } }],
        ["walship", { requests: { cpu: "50m", memory: "128Mi" }, limits: { memory: "384Mi" } }],
      ],
    );
  });

  const pod = (phase: string, name: string, status: object, limit = "512Mi"): Pod =>
    ({
      metadata: { name: "app-0" },
      spec: {
        securityContext: { fsGroup: 2000 },
        initContainers: [
          {
            name,
            resources: { limits: { memory: limit } },
            securityContext: { runAsUser: 1000, runAsGroup: 1000 },
          },
        ],
        containers: [],
      },
      status: { phase, initContainerStatuses: [{ name, ready: false, restartCount: 1, ...status }] },
    }) as unknown as Pod;
  const oom = { terminated: { exitCode: 137, reason: "OOMKilled", finishedAt: "2026-01-01T00:00:00Z" } };
  const now = new Date("2026-01-01T00:05:00Z");

  it("the restore init container killed out of memory names the limit and the field", () => {
    assert.deepEqual(
      restoreFailure(pod("Pending", "walship-restore", { lastState: oom }), "IfReplicaExists"),
      {
        reason: "OutOfMemory",
        message:
          "init container walship-restore was killed out of memory (limit 512Mi; restarts 1); raise " +
          "spec.restoreResources.limits.memory",
      },
    );
  });

  it("the sidecar killed out of memory: while restarting, and for 10 minutes once running again", () => {
    const want = {
      reason: "OutOfMemory",
      message:
        "container walship was killed out of memory (limit 384Mi; restarts 1); raise " +
        "spec.sidecar.resources.limits.memory",
    };
    const waiting = { state: { waiting: { reason: "CrashLoopBackOff" } }, lastState: oom };
    assert.deepEqual(sidecarFailure(pod("Running", "walship", waiting, "384Mi"), now), want);
    const running = { state: { running: { startedAt: "2026-01-01T00:00:01Z" } }, lastState: oom };
    assert.deepEqual(sidecarFailure(pod("Running", "walship", running, "384Mi"), now), want);
    assert.equal(
      sidecarFailure(pod("Running", "walship", running), new Date("2026-01-01T00:11:00Z")),
      undefined,
    );
    assert.equal(sidecarFailure(pod("Running", "walship", { state: running.state }), now), undefined);
  });

  it("a restore Job killed out of memory fails the SqliteRestore with OutOfMemory and the limit", () => {
    const jobPod = (reason: string) =>
      ({
        spec: { containers: [{ name: "walship-restore", resources: { limits: { memory: "512Mi" } } }] },
        status: {
          phase: "Failed",
          containerStatuses: [{ name: "walship-restore", state: { terminated: { exitCode: 137, reason } } }],
        },
      }) as unknown as Pod;
    assert.deepEqual(oomKill([jobPod("Error"), jobPod("OOMKilled")]), { limit: "512Mi" });
    assert.equal(oomKill([jobPod("Error")]), undefined);
    const d = decide({
      now: now,
      name: "r1",
      creationTimestamp: "2026-01-01T00:00:00Z",
      generation: 1,
      spec: { sqliteReplicaName: "db", mode: "InPlace" },
      status: { phase: "Restoring", originalReplicas: 1 },
      replica: withDatabase(spec, databasesOf(spec)[0]!),
      workload: sts(undefined, undefined),
      podsRemaining: 0,
      jobs: { restore: { state: "Failed", reason: "BackoffLimitExceeded", oomKilled: { limit: "512Mi" } } },
      others: [],
    });
    SqliteRestoreStatus.parse(d.status);
    assert.equal(d.status.failure?.reason, "OutOfMemory");
    assert.equal(
      d.status.failure?.message,
      "the restore Job ran out of memory (limit 512Mi); raise this SqliteRestore's spec.resources.limits.memory " +
        "or the SqliteReplica's spec.restoreResources.limits.memory",
    );
  });
});

describe("permission failures name the file, the errno and the user", () => {
  it("reads Node's error out of a container's last lines", () => {
    assert.deepEqual(
      permissionFailure("walship: EACCES: permission denied, mkdir '/data/.app.db-litestream'\n"),
      { code: "EACCES", op: "mkdir", path: "/data/.app.db-litestream" },
    );
    assert.equal(permissionFailure("walship: open db: SQLITE_CANTOPEN"), undefined);
  });

  it("a sidecar that exits on EACCES: PermissionDenied naming path, uid, gid and fsGroup", () => {
    const p = {
      metadata: { name: "app-0" },
      spec: {
        securityContext: { fsGroup: 2000 },
        initContainers: [{ name: "walship", securityContext: { runAsUser: 1000, runAsGroup: 1000 } }],
        containers: [],
      },
      status: {
        phase: "Pending",
        initContainerStatuses: [
          {
            name: "walship",
            ready: false,
            restartCount: 4,
            state: { waiting: { reason: "CrashLoopBackOff" } },
            lastState: {
              terminated: {
                exitCode: 1,
                message: "walship: EACCES: permission denied, mkdir '/data/.app.db-litestream'\n",
              },
            },
          },
        ],
      },
    } as unknown as Pod;
    assert.deepEqual(sidecarFailure(p, new Date()), {
      reason: "PermissionDenied",
      message:
        "container walship cannot mkdir /data/.app.db-litestream: EACCES, running as uid 1000 gid 1000 " +
        "fsGroup 2000; run the replicator as the database's owner (the app's securityContext " +
        "runAsUser/runAsGroup, or spec.sidecar.securityContext), or make the directory writable by its " +
        "group (fsGroup)",
    });
  });

  it("a running sidecar's /status access problem becomes the pod's PermissionDenied error", () => {
    const doc: ReplicatorStatus = {
      apiVersion: "walship.dev/v1alpha1",
      kind: "ReplicatorStatus",
      version: "0",
      time: "2026-01-01T00:00:10Z",
      ready: false,
      runAs: { uid: 1000, gid: 1000, groups: [1000, 2000] },
      databases: [
        {
          path: "/data/app.db",
          ready: false,
          sizeBytes: 0,
          walSizeBytes: 0,
          lastError: { message: "open /data/app.db: SQLITE_CANTOPEN: unable to open database file" },
          access: { path: "/data/app.db", need: "read and write", code: "EACCES" },
          replicas: [],
        },
      ],
    };
    assert.deepEqual(podFacts("app-0", doc, databasesOf(spec)), {
      name: "app-0",
      ready: false,
      reason: "PermissionDenied",
      lastError:
        "the replicator cannot read and write /data/app.db: EACCES, running as uid 1000 gid 1000 groups " +
        "1000,2000; run the replicator as the database's owner (the app's securityContext " +
        "runAsUser/runAsGroup, or spec.sidecar.securityContext), or make the directory writable by its " +
        "group (fsGroup); database: open /data/app.db: SQLITE_CANTOPEN: unable to open database file",
    });
  });

  it("Degraded takes the most telling reason and lists every pod", () => {
    const c = degradedCondition([
      { name: "app-0", ready: false, lastError: "get http://x: refused", reason: "SidecarUnreachable" },
      { name: "app-1", ready: false, lastError: "cannot mkdir", reason: "PermissionDenied" },
    ]);
    assert.deepEqual(c, {
      type: "Degraded",
      status: "True",
      reason: "PermissionDenied",
      message: "pod app-0: get http://x: refused; pod app-1: cannot mkdir",
    });
  });
});
