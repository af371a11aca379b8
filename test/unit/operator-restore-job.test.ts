/**
 * The SqliteRestore Jobs and claim, checked against literal expected objects; and the swap and
 * rollback scripts run for real with /bin/sh on real files (killed mid-way, then re-run).
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, describe, it } from "node:test";
import {
  databasesOf,
  SqliteReplicaSpec,
  SqliteRestoreSpec,
  withDatabase,
} from "../../src/api/v1alpha1/index.ts";
import type { StatefulSet } from "../../src/operator/kube/types.ts";
import {
  buildNewClaim,
  buildRestoreJob,
  jobDeadlineSeconds,
  type RestoreJobInput,
  restoreJobName,
  restorePaths,
} from "../../src/operator/specs/restorejob.ts";

const parsedReplica = SqliteReplicaSpec.parse({
  statefulSetName: "app",
  database: { path: "/data/app.db", volumeName: "data" },
  destinations: [
    {
      name: "minio",
      s3: {
        bucket: "backups",
        endpoint: "http://minio:9000",
        credentials: {
          accessKeyId: { name: "s3", key: "id" },
          secretAccessKey: { name: "s3", key: "secret" },
        },
      },
    },
    { name: "local", file: { claimName: "backups", path: "shop" } },
  ],
});
const replica = withDatabase(parsedReplica, databasesOf(parsedReplica)[0]!);

const sts: StatefulSet = {
  metadata: { name: "app", namespace: "shop" },
  spec: {
    serviceName: "app",
    selector: { matchLabels: { app: "app" } },
    template: {
      spec: {
        securityContext: { runAsUser: 1000, fsGroup: 1000 },
        serviceAccountName: "app",
        containers: [{ name: "app", image: "app" }],
      },
    },
    volumeClaimTemplates: [
      {
        metadata: { name: "data" },
        spec: {
          accessModes: ["ReadWriteOnce"],
          storageClassName: "fast",
          resources: { requests: { storage: "2Gi" } },
        },
      },
    ],
  },
};

function input(step: RestoreJobInput["step"], specIn: unknown): RestoreJobInput {
  return {
    step,
    restore: { name: "r1", namespace: "shop", uid: "u-1" },
    spec: SqliteRestoreSpec.parse(specIn),
    replica,
    sts,
    pod: "app-1",
    claimName: "data-app-1",
    mount: { mountPath: "/data" },
    identity: { runAsUser: 1000, fsGroup: 1000 },
  };
}

const labels = {
  "app.kubernetes.io/managed-by": "walship",
  "walship.dev/sqliterestore": "r1",
  "walship.dev/restore-step": "restore",
};
const resources = { requests: { cpu: "100m", memory: "256Mi" }, limits: { memory: "512Mi" } };
const securityContext = {
  allowPrivilegeEscalation: false,
  capabilities: { drop: ["ALL"] },
  readOnlyRootFilesystem: true,
  runAsNonRoot: true,
  runAsUser: 1000,
  seccompProfile: { type: "RuntimeDefault" },
};

describe("restore Jobs", () => {
  it("InPlace restore: the exact Job", () => {
    const job = buildRestoreJob(
      input("restore", {
        sqliteReplicaName: "db",
        mode: "InPlace",
        destination: "minio",
        target: { timestamp: "2026-11-22T03:59:30Z" },
      }),
      { image: "walship:test" },
    );
    const cmd = job.spec.template.spec.containers[0]?.command ?? [];
    assert.equal(cmd[0], "sh");
    assert.equal(cmd[1], "-c");
    assert.deepEqual(cmd.slice(3), [
      "restore",
      "/data/app.db.restore-r1",
      "-config",
      "/etc/walship/walship.yml",
      "-o",
      "/data/app.db.restore-r1",
      "-replica",
      "minio",
      "-timestamp",
      "2026-11-22T03:59:30Z",
      "/data/app.db",
    ]);
    assert.deepEqual(job, {
      apiVersion: "batch/v1",
      kind: "Job",
      metadata: {
        name: "r1-restore",
        namespace: "shop",
        labels,
        ownerReferences: [
          {
            apiVersion: "walship.dev/v1alpha1",
            kind: "SqliteRestore",
            name: "r1",
            uid: "u-1",
            controller: true,
            blockOwnerDeletion: true,
          },
        ],
      },
      spec: {
        activeDeadlineSeconds: 3600,
        backoffLimit: 3,
        podFailurePolicy: {
          rules: [
            {
              action: "FailJob",
              onExitCodes: { containerName: "walship-restore", operator: "In", values: [1, 2] },
            },
            { action: "Ignore", onPodConditions: [{ type: "DisruptionTarget", status: "True" }] },
          ],
        },
        template: {
          metadata: { labels },
          spec: {
            restartPolicy: "Never",
            securityContext: { runAsUser: 1000, fsGroup: 1000 },
            serviceAccountName: "app",
            containers: [
              {
                name: "walship-restore",
                image: "walship:test",
                command: cmd,
                // No secret in the env: the keys are files of a projected volume.
                env: [{ name: "POD_NAME", value: "app-1" }],
                volumeMounts: [
                  { name: "walship-data", mountPath: "/data" },
                  { name: "walship-config", mountPath: "/etc/walship", readOnly: true },
                  {
                    name: "walship-dest-local",
                    mountPath: "/var/lib/walship/destinations/local",
                    readOnly: true,
                  },
                  {
                    name: "walship-creds-minio",
                    mountPath: "/var/run/walship/credentials/minio",
                    readOnly: true,
                  },
                ],
                resources,
                securityContext,
                terminationMessagePolicy: "FallbackToLogsOnError",
              },
            ],
            volumes: [
              { name: "walship-data", persistentVolumeClaim: { claimName: "data-app-1" } },
              { name: "walship-config", configMap: { name: "db-walship" } },
              { name: "walship-dest-local", persistentVolumeClaim: { claimName: "backups" } },
              {
                name: "walship-creds-minio",
                projected: {
                  sources: [
                    { secret: { name: "s3", items: [{ key: "id", path: "access-key-id" }] } },
                    { secret: { name: "s3", items: [{ key: "secret", path: "secret-access-key" }] } },
                  ],
                },
              },
            ],
          },
        },
      },
    });
  });

  it("generation and index become -generation and hex -index", () => {
    const job = buildRestoreJob(
      input("restore", {
        sqliteReplicaName: "db",
        mode: "InPlace",
        target: { generation: "0123456789abcdef", index: 42 },
      }),
    );
    const cmd = job.spec.template.spec.containers[0]?.command ?? [];
    assert.deepEqual(cmd.slice(-5), [
      "-generation",
      "0123456789abcdef",
      "-index",
      "0000002a",
      "/data/app.db",
    ]);
    assert.equal(job.spec.template.spec.containers[0]?.image, "ghcr.io/walship/walship:latest");
  });

  it("NewClaim restores to /restore/<file> on the new claim", () => {
    const spec = { sqliteReplicaName: "db", mode: "NewClaim", newClaim: { name: "restored" } };
    const i = { ...input("restore", spec), claimName: "restored" };
    const job = buildRestoreJob(i);
    const c = job.spec.template.spec.containers[0];
    assert.deepEqual(c?.command?.slice(3, 9), [
      "restore",
      "/restore/app.db",
      "-config",
      "/etc/walship/walship.yml",
      "-o",
      "/restore/app.db",
    ]);
    assert.deepEqual(c?.volumeMounts?.[0], { name: "walship-data", mountPath: "/restore" });
    assert.deepEqual(job.spec.template.spec.volumes[0], {
      name: "walship-data",
      persistentVolumeClaim: { claimName: "restored" },
    });
    assert.deepEqual(buildNewClaim(i), {
      apiVersion: "v1",
      kind: "PersistentVolumeClaim",
      metadata: {
        name: "restored",
        namespace: "shop",
        labels: { "app.kubernetes.io/managed-by": "walship", "walship.dev/sqliterestore": "r1" },
        annotations: { "walship.dev/sqliterestore-uid": "u-1" },
      },
      spec: {
        accessModes: ["ReadWriteOnce"],
        storageClassName: "fast",
        resources: { requests: { storage: "2Gi" } },
      },
    });
  });

  it("swap and rollback mount only the data claim, with no env", () => {
    for (const step of ["swap", "rollback"] as const) {
      const job = buildRestoreJob(input(step, { sqliteReplicaName: "db", mode: "InPlace" }));
      const c = job.spec.template.spec.containers[0];
      assert.equal(job.metadata.name, `r1-${step}`);
      assert.equal(job.metadata.labels["walship.dev/restore-step"], step);
      assert.deepEqual(c?.command?.slice(3), [
        step,
        "/data/app.db",
        "/data/app.db.pre-restore-r1",
        "/data/app.db.restore-r1",
        ...(step === "swap" ? ["Retain"] : []),
      ]);
      assert.equal(c?.env, undefined);
      assert.deepEqual(c?.volumeMounts, [{ name: "walship-data", mountPath: "/data" }]);
    }
  });

  it("plan: walship restore -dry-run with the restore Job's config, env and destinations, no data claim", () => {
    const spec = {
      sqliteReplicaName: "db",
      mode: "InPlace",
      destination: "minio",
      target: { timestamp: "2026-11-22T03:59:30Z" },
      verify: { sql: "SELECT 1" },
    };
    const plan = buildRestoreJob(input("plan", spec));
    const restore = buildRestoreJob(input("restore", spec));
    const pc = plan.spec.template.spec.containers[0];
    const rc = restore.spec.template.spec.containers[0];
    assert.equal(plan.metadata.name, "r1-plan");
    assert.deepEqual(pc?.command?.slice(3), [
      "plan",
      "-dry-run",
      "-config",
      "/etc/walship/walship.yml",
      "-replica",
      "minio",
      "-timestamp",
      "2026-11-22T03:59:30Z",
      "/data/app.db",
    ]);
    assert.doesNotMatch(pc?.command?.[2] ?? "", /rm -f/, "the plan removes nothing");
    assert.deepEqual(pc?.env, rc?.env);
    assert.equal(pc?.image, rc?.image);
    assert.deepEqual(pc?.volumeMounts, rc?.volumeMounts?.slice(1));
    assert.deepEqual(plan.spec.template.spec.volumes, restore.spec.template.spec.volumes.slice(1));
    assert.equal(plan.spec.activeDeadlineSeconds, 3600);
  });

  it("spec.verify.sql becomes -verify-sql; spec.timeout becomes every Job's activeDeadlineSeconds", () => {
    const spec = {
      sqliteReplicaName: "db",
      mode: "InPlace",
      verify: { sql: "SELECT 1 FROM orders WHERE id = 'x'" },
      timeout: "1h30m",
    };
    const cmd = buildRestoreJob(input("restore", spec)).spec.template.spec.containers[0]?.command ?? [];
    assert.deepEqual(cmd.slice(-3), ["-verify-sql", "SELECT 1 FROM orders WHERE id = 'x'", "/data/app.db"]);
    for (const step of ["plan", "restore", "swap", "rollback"] as const) {
      assert.equal(buildRestoreJob(input(step, spec)).spec.activeDeadlineSeconds, 5400, step);
    }
    assert.equal(jobDeadlineSeconds(SqliteRestoreSpec.parse({ ...spec, timeout: "500ms" })), 1);
  });

  it("long names are shortened with a hash to 63 characters", () => {
    const long = "r".repeat(60);
    const n = restoreJobName(long, "rollback");
    assert.ok(n.length <= 63, n);
    assert.match(n, /-[0-9a-f]{8}-rollback$/);
    assert.notEqual(n, restoreJobName(`${"r".repeat(59)}s`, "rollback"));
  });
});

describe("swap and rollback scripts (real /bin/sh, real files)", () => {
  const dirs: string[] = [];
  after(() => {
    for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
  });
  function setup(previousDatabase = "Retain") {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "walship-swap-"));
    dirs.push(dir);
    const spec = SqliteRestoreSpec.parse({ sqliteReplicaName: "db", mode: "InPlace", previousDatabase });
    const r = { ...replica, database: { ...replica.database, path: path.join(dir, "app.db") } };
    const p = restorePaths({ restore: { name: "r1", namespace: "shop", uid: "u" }, spec, replica: r });
    fs.writeFileSync(p.db, "old");
    fs.writeFileSync(`${p.db}-wal`, "oldwal");
    fs.writeFileSync(p.staged, "new");
    const run = (step: "swap" | "rollback") => {
      const job = buildRestoreJob({ ...input(step, spec), replica: r });
      const cmd = job.spec.template.spec.containers[0]?.command ?? [];
      return spawnSync("/bin/sh", cmd.slice(1), { encoding: "utf8" });
    };
    return { dir, p, run };
  }
  const read = (f: string) => (fs.existsSync(f) ? fs.readFileSync(f, "utf8") : undefined);

  it("swap moves the database and its -wal aside, the staged file in; a re-run is a no-op", () => {
    const { p, run } = setup();
    assert.equal(run("swap").status, 0);
    assert.equal(read(p.db), "new");
    assert.equal(read(p.backup), "old");
    assert.equal(read(`${p.backup}-wal`), "oldwal");
    assert.equal(read(`${p.db}-wal`), undefined);
    assert.equal(read(p.staged), undefined);
    assert.equal(run("swap").status, 0);
    assert.equal(read(p.db), "new");
    assert.equal(read(p.backup), "old");
  });

  it("a swap stopped after moving the database finishes on re-run, or rolls back", () => {
    const a = setup();
    fs.renameSync(a.p.db, a.p.backup); // the first step of a killed swap
    assert.equal(a.run("swap").status, 0);
    assert.equal(read(a.p.db), "new");
    assert.equal(read(a.p.backup), "old");
    const b = setup();
    fs.renameSync(b.p.db, b.p.backup);
    assert.equal(b.run("rollback").status, 0);
    assert.equal(read(b.p.db), "old");
    assert.equal(read(`${b.p.db}-wal`), "oldwal");
    assert.equal(read(b.p.staged), undefined);
    assert.equal(read(b.p.backup), undefined);
  });

  it("rollback after a full swap puts the original back; before any swap it only drops the staged file", () => {
    const a = setup();
    assert.equal(a.run("swap").status, 0);
    assert.equal(a.run("rollback").status, 0);
    assert.equal(read(a.p.db), "old");
    assert.equal(read(`${a.p.db}-wal`), "oldwal");
    const b = setup();
    fs.writeFileSync(`${b.p.staged}.tmp`, "partial");
    assert.equal(b.run("rollback").status, 0);
    assert.equal(read(b.p.db), "old");
    assert.equal(read(b.p.staged), undefined);
    assert.equal(read(`${b.p.staged}.tmp`), undefined);
  });

  it("swap with previousDatabase Delete removes the moved database and its -wal; a re-run still passes", () => {
    const { p, run } = setup("Delete");
    const r = run("swap");
    assert.equal(r.status, 0, r.stderr);
    assert.equal(read(p.db), "new");
    assert.equal(read(p.backup), undefined);
    assert.equal(read(`${p.backup}-wal`), undefined);
    assert.equal(read(`${p.db}-wal`), undefined);
    assert.match(r.stdout, /previous database deleted/);
    assert.equal(run("swap").status, 0);
    assert.equal(read(p.db), "new");
  });

  it("swap without a staged file and without a database fails", () => {
    const { p, run } = setup();
    fs.rmSync(p.staged);
    fs.rmSync(p.db);
    assert.notEqual(run("swap").status, 0);
  });
});
