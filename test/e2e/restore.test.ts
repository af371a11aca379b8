/**
 * SqliteRestore end to end on the real node (test/helpers/node), with MinIO on the node's bridge and
 * the operator installed by `helm install` (a pod with only the chart's RBAC); the namespace enforces
 * Pod Security `restricted`, so every restore Job's pod is admitted as restricted. Rows are written with their
 * times into the app's database; restores go to a time between two writes (the exact restore point
 * read from the Job's termination message), into a new claim (which outlives its SqliteRestore), to a
 * time before the recoverability window (refused by the plan Job before anything is scaled), with a
 * user SQL check that fails; the restore Job's pod is killed mid-flow and the operator is restarted
 * mid-flow.
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { after, before, describe, it } from "node:test";
import Database from "better-sqlite3";
import {
  appStatefulSet,
  createS3Secret,
  insertRow,
  installOperator,
  type Operator,
  type PodLite,
  type Row,
  readyPod as readyPodIn,
  rows,
  s3SqliteReplica,
} from "../helpers/e2e.ts";
import { type Minio, startMinio } from "../helpers/minio.ts";
import { type Cluster, startCluster } from "../helpers/node/index.ts";
import { waitFor } from "../helpers/proc.ts";

const NS = "e2e-restore";
const DATA_MOUNT = "/var/lib/walship-e2e-restore/data";
const BUCKET = "restores";
/** The phases of an InPlace restore that succeeds, each also an Event. */
const INPLACE_PHASES = [
  "Planning",
  "ScalingDown",
  "Restoring",
  "Verifying",
  "Swapping",
  "ScalingUp",
  "Succeeded",
];

interface RestoreCr {
  status?: {
    phase?: string;
    message?: string;
    target?: string;
    originalReplicas?: number;
    failure?: { phase: string; reason: string; message: string };
    restored?: {
      destination?: string;
      generation: string;
      index: number;
      offset: number;
      position: string;
      lastCommitTime?: string;
    };
    conditions?: Array<{ type: string; status: string; reason: string; message: string }>;
    startedAt?: string;
    completedAt?: string;
  };
}

describe("SqliteRestore (real node, helm-installed operator, MinIO)", { timeout: 1_200_000 }, () => {
  let c: Cluster;
  let minio: Minio;
  let op: Operator;
  /** The host directory of the app's claim data-app-0 (a local-path volume). */
  let dataDir = "";

  const apply = (obj: unknown) => c.apply(obj);
  const pod = async (name: string) => {
    const r = await c.cp.request<PodLite>("GET", `/api/v1/namespaces/${NS}/pods/${name}`);
    return r.status === 200 ? r.body : undefined;
  };
  const restoreCr = async (name: string) =>
    (
      await c.cp.request<RestoreCr>(
        "GET",
        `/apis/walship.dev/v1alpha1/namespaces/${NS}/sqliterestores/${name}`,
      )
    ).body;
  const readyPod = (name: string, pred: (p: PodLite) => boolean = () => true) =>
    readyPodIn(c, NS, name, pred);
  const dbFile = () => path.join(dataDir, "app.db");
  const writeRow = (label: string): Row => insertRow(dbFile(), label);
  const replicaGeneration = async () =>
    (
      await c.cp.request<{ status?: { generation?: string } }>(
        "GET",
        `/apis/walship.dev/v1alpha1/namespaces/${NS}/sqlitereplicas/db`,
      )
    ).body.status?.generation;
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
  const eventReasons = async (name: string) =>
    (
      await c.cp.request<{ items: Array<{ reason: string; involvedObject: { name: string } }> }>(
        "GET",
        `/api/v1/namespaces/${NS}/events`,
      )
    ).body.items
      .filter((e) => e.involvedObject.name === name)
      .map((e) => e.reason);
  const stsReplicas = async () =>
    (
      await c.cp.request<{ spec: { replicas: number }; metadata: { generation: number } }>(
        "GET",
        `/apis/apps/v1/namespaces/${NS}/statefulsets/app`,
      )
    ).body;
  const waitSynced = async () => {
    // syncInterval 200ms: a few intervals after the last write, the WAL is in MinIO.
    await sleep(2000);
  };
  const restoreObj = (name: string, spec: Record<string, unknown>) => ({
    apiVersion: "walship.dev/v1alpha1",
    kind: "SqliteRestore",
    metadata: { name, namespace: NS },
    spec: { sqliteReplicaName: "db", ...spec },
  });
  const waitPhase = (name: string, phases: string[], timeoutMs = 180_000) =>
    waitFor(
      async () => {
        const c = await restoreCr(name);
        return phases.includes(c.status?.phase ?? "") ? c : undefined;
      },
      { what: `SqliteRestore ${name} in ${phases.join("/")}`, timeoutMs, intervalMs: 250 },
    ).catch(async (err) => {
      throw new Error(
        `${(err as Error).message}: ${JSON.stringify((await restoreCr(name)).status)}\n${await c.describe(NS)}`,
      );
    });

  before(async () => {
    c = await startCluster();
    minio = await startMinio({ host: c.gateway });
    await minio.createBucket(BUCKET);
    op = await installOperator(c);
    await c.createNamespace(NS);
    await createS3Secret(c, NS, minio);
    await apply(appStatefulSet(NS, DATA_MOUNT));
    await apply(
      s3SqliteReplica(NS, "db", minio, { mount: DATA_MOUNT, bucket: BUCKET }, { restoreOnStart: "None" }),
    );
    await waitFor(
      async () => {
        const r = await c.cp.request<{ status?: { phase?: string } }>(
          "GET",
          `/apis/walship.dev/v1alpha1/namespaces/${NS}/sqlitereplicas/db`,
        );
        return r.body.status?.phase === "Replicating" ? true : undefined;
      },
      { what: "SqliteReplica db Replicating", timeoutMs: 180_000, intervalMs: 500 },
    ).catch(async (err) => {
      throw new Error(`${(err as Error).message}\n${await c.describe(NS)}`);
    });
    dataDir = await c.pvcDir(NS, "data-app-0");
  });

  after(async () => {
    await minio?.close();
    await c?.stop();
  });

  it("InPlace to a time between two writes: the app sees exactly the rows at or before it", async () => {
    const p = await readyPod("app-0");
    writeRow("w1");
    await sleep(1500);
    const w2 = writeRow("w2");
    await sleep(2000);
    const target = new Date(Date.parse(w2.at) + 1000).toISOString();
    await sleep(1000);
    const w3 = writeRow("w3");
    await sleep(1500);
    writeRow("w4");
    await waitSynced();
    const all = await rows(p);
    const expected = all.filter((r) => Date.parse(r.at) <= Date.parse(target));
    assert.ok(expected.some((r) => r.pod === "w2") && !expected.some((r) => r.pod === "w3"));

    const generationBefore = await replicaGeneration();
    await apply(
      restoreObj("pit", {
        mode: "InPlace",
        target: { timestamp: target },
        verify: { sql: "SELECT 1 FROM starts WHERE pod = 'w2'" },
      }),
    );
    const done = await waitPhase("pit", ["Succeeded", "Failed"]);
    assert.equal(done.status?.phase, "Succeeded", JSON.stringify(done.status));
    assert.equal(done.status?.target, target);
    assert.equal(done.status?.originalReplicas, 1);
    assert.ok(done.status?.startedAt && done.status.completedAt);
    // The exact restore point, from the restore Job's termination message: the generation that was
    // live at the target, and the commit of w2 (the last one at or before the target, before w3's).
    const restored = done.status?.restored;
    assert.ok(restored, `status.restored is set: ${JSON.stringify(done.status)}`);
    assert.equal(restored.generation, generationBefore);
    assert.equal(restored.destination, "minio");
    assert.ok(restored.index >= 0 && restored.offset > 0, JSON.stringify(restored));
    assert.equal(
      restored.position,
      `${restored.generation}/${restored.index.toString(16).padStart(8, "0")}:${restored.offset}`,
    );
    const last = Date.parse(restored.lastCommitTime ?? "");
    assert.ok(last <= Date.parse(target), `last commit ${restored.lastCommitTime} at or before ${target}`);
    assert.ok(
      last >= Date.parse(w2.at),
      `last commit ${restored.lastCommitTime} is w2's (${w2.at}) or later`,
    );
    assert.ok(last < Date.parse(w3.at), `last commit ${restored.lastCommitTime} is before w3 (${w3.at})`);
    const p2 = await readyPod("app-0", (x) => x.metadata.uid !== p.metadata.uid);
    const after = await rows(p2);
    // The restored rows, then the row this start of the app wrote.
    assert.deepEqual(after.slice(0, -1), expected);
    assert.equal(after.length, expected.length + 1);
    // Replication resumes, in a new generation.
    await waitFor(
      async () => {
        const g = await replicaGeneration();
        return g && g !== generationBefore ? g : undefined;
      },
      { what: "a new generation after the restore", timeoutMs: 60_000, intervalMs: 500 },
    );
    // The previous database is kept under its named backup.
    const backup = `${dbFile()}.pre-restore-pit`;
    assert.ok(fs.existsSync(backup), "the previous database is kept");
    const b = new Database(backup, { readonly: true });
    try {
      const n = (b.prepare("SELECT count(*) AS n FROM starts").get() as { n: number }).n;
      assert.ok(n >= all.length, "the backup holds every row written before the restore");
    } finally {
      b.close();
    }
    const reasons = await eventReasons("pit");
    for (const r of INPLACE_PHASES) {
      assert.ok(reasons.includes(r), `Event ${r} in ${reasons.join(",")}`);
    }
    const table = (await c.kubectl(["-n", NS, "get", "sqliterestores"])).stdout;
    assert.match(table, /NAME\s+REPLICA\s+TARGET\s+PHASE\s+RESTORED TO\s+AGE/);
    assert.match(
      table,
      new RegExp(`pit\\s+db\\s+${target.replace(/[.]/g, "\\.")}\\s+Succeeded\\s+${restored.position}\\s`),
    );
  });

  it("NewClaim restores into a new claim and leaves the app and its volume alone", async () => {
    const p = await readyPod("app-0");
    await sleep(3000); // the new generation is replicated
    const before = await rows(p);
    await apply(restoreObj("copy", { mode: "NewClaim", newClaim: { name: "restored-copy" } }));
    const done = await waitPhase("copy", ["Succeeded", "Failed"]);
    assert.equal(done.status?.phase, "Succeeded", JSON.stringify(done.status));
    const same = await pod("app-0");
    assert.equal(same?.metadata.uid, p.metadata.uid, "the app pod was not touched");
    assert.deepEqual(await rows(p), before, "the original database is unchanged");
    const copy = new Database(path.join(await c.pvcDir(NS, "restored-copy"), "app.db"), { readonly: true });
    try {
      const got = copy.prepare("SELECT id, pod, at FROM starts ORDER BY id").all();
      assert.deepEqual(got, before);
    } finally {
      copy.close();
    }
    // The new claim is labelled with its SqliteRestore but not owned by it: deleting the
    // SqliteRestore garbage-collects its Jobs and leaves the restored data.
    await c.cp.request("DELETE", `/apis/walship.dev/v1alpha1/namespaces/${NS}/sqliterestores/copy`);
    await waitFor(
      async () => {
        const jobs = await c.cp.request<{ items: unknown[] }>(
          "GET",
          `/apis/batch/v1/namespaces/${NS}/jobs?labelSelector=walship.dev%2Fsqliterestore%3Dcopy`,
        );
        return jobs.body.items.length === 0 ? true : undefined;
      },
      { what: "the Jobs of SqliteRestore copy garbage-collected", timeoutMs: 60_000, intervalMs: 250 },
    );
    const pvc = await c.cp.request<{
      metadata: { labels?: Record<string, string>; ownerReferences?: unknown[]; deletionTimestamp?: string };
    }>("GET", `/api/v1/namespaces/${NS}/persistentvolumeclaims/restored-copy`);
    assert.equal(pvc.status, 200, "the restored claim outlives its SqliteRestore");
    assert.equal(pvc.body.metadata.deletionTimestamp, undefined);
    assert.equal(pvc.body.metadata.ownerReferences, undefined);
    assert.equal(pvc.body.metadata.labels?.["walship.dev/sqliterestore"], "copy");
    assert.ok(fs.existsSync(path.join(await c.pvcDir(NS, "restored-copy"), "app.db")));
  });

  it("a second restore while one runs is refused with a condition", async () => {
    await apply(restoreObj("first", { mode: "InPlace", previousDatabase: "Delete" }));
    await waitPhase("first", INPLACE_PHASES);
    await apply(restoreObj("second", { mode: "InPlace" }));
    const refused = await waitPhase("second", ["Failed", "Succeeded"]);
    const admitted = refused.status?.conditions?.find((c) => c.type === "Admitted");
    assert.equal(refused.status?.phase, "Failed");
    assert.equal(admitted?.reason, "RestoreInProgress");
    const first = await waitPhase("first", ["Succeeded", "Failed"]);
    assert.equal(first.status?.phase, "Succeeded", JSON.stringify(first.status));
    // previousDatabase: Delete: the swap removed the replaced database.
    assert.ok(!fs.existsSync(`${dbFile()}.pre-restore-first`), "the previous database was deleted");
    assert.ok(!fs.existsSync(`${dbFile()}.pre-restore-first-wal`));
    await readyPod("app-0");
  });

  it("a target before the recoverability window fails in the plan; nothing is scaled or changed", async () => {
    const p = await readyPod("app-0");
    const before = await rows(p);
    const stsBefore = await stsReplicas();
    await apply(restoreObj("too-old", { mode: "InPlace", target: { timestamp: "2001-01-01T00:00:00Z" } }));
    const done = await waitPhase("too-old", ["Succeeded", "Failed"]);
    assert.equal(done.status?.phase, "Failed");
    assert.equal(done.status?.conditions?.find((c) => c.type === "Complete")?.reason, "PlanFailed");
    // The CLI's own error, from the plan Job's termination message.
    assert.match(
      done.status?.message ?? "",
      /^the plan Job failed: .*no snapshot was taken at or before 2001-01-01T00:00:00\.000Z \(backups start .*\); nothing to restore that early \[WALSHIP_ERR_RESTORE\]; nothing was changed$/,
    );
    assert.equal(done.status?.failure, undefined, "no rollback: nothing to roll back");
    assert.equal(done.status?.originalReplicas, undefined);
    const reasons = await eventReasons("too-old");
    assert.deepEqual(reasons.sort(), ["Failed", "Planning"]);
    const stsAfter = await stsReplicas();
    assert.equal(stsAfter.spec.replicas, stsBefore.spec.replicas, "the StatefulSet was never scaled");
    assert.equal(
      stsAfter.metadata.generation,
      stsBefore.metadata.generation,
      "the StatefulSet was not written",
    );
    const same = await pod("app-0");
    assert.equal(same?.metadata.uid, p.metadata.uid, "the app pod was never stopped");
    assert.equal(same?.status?.containerStatuses?.find((c) => c.name === "app")?.restartCount, 0);
    assert.deepEqual(await rows(p), before, "every row is still there");
    assert.ok(!fs.existsSync(`${dbFile()}.pre-restore-too-old`), "nothing was swapped");
  });

  it("a failing spec.verify.sql fails the restore (VerificationFailed) and keeps the original", async () => {
    const p = await readyPod("app-0");
    const before = await rows(p);
    await apply(
      restoreObj("checked", {
        mode: "InPlace",
        verify: { sql: "SELECT 1 FROM starts WHERE pod = 'no-such-pod'" },
      }),
    );
    const done = await waitPhase("checked", ["Succeeded", "Failed"]);
    assert.equal(done.status?.phase, "Failed", JSON.stringify(done.status));
    assert.equal(done.status?.failure?.reason, "VerificationFailed");
    assert.equal(done.status?.failure?.phase, "Restoring");
    assert.match(
      done.status?.failure?.message ?? "",
      /the restore Job failed: .*-verify-sql returned no row: SELECT 1 FROM starts WHERE pod = 'no-such-pod' \[WALSHIP_ERR_INTEGRITY\]/,
    );
    assert.equal(done.status?.conditions?.find((c) => c.type === "Complete")?.reason, "VerificationFailed");
    const p2 = await readyPod("app-0", (x) => x.metadata.uid !== p.metadata.uid);
    const after = await rows(p2);
    assert.deepEqual(after.slice(0, before.length), before, "every row is still there");
    assert.ok(!fs.existsSync(`${dbFile()}.pre-restore-checked`), "nothing was swapped");
    assert.ok(!fs.existsSync(`${dbFile()}.restore-checked`), "the staged file was removed");
  });

  it("killing the restore Job's pod mid-restore: the original stays intact and the app comes back", async () => {
    const p = await readyPod("app-0");
    const before = await rows(p);
    await apply(restoreObj("killed", { mode: "InPlace" }));
    // A small restore finishes in well under a second, between two looks at the pod: hold it
    // mid-restore by stopping MinIO (SIGSTOP) once the Job exists, so its pod is certainly running
    // and certainly not done when it is deleted.
    await waitFor(
      async () => ((await restoreCr("killed")).status?.phase === "Restoring" ? true : undefined),
      { what: "SqliteRestore killed in Restoring", timeoutMs: 180_000, intervalMs: 25 },
    );
    const server = minio.process;
    assert.ok(server, "MinIO runs");
    server.kill("SIGSTOP");
    try {
      const jobPod = await waitFor(
        async () => {
          const r = await c.cp.request<{ items: PodLite[] }>(
            "GET",
            `/api/v1/namespaces/${NS}/pods?labelSelector=job-name%3Dkilled-restore`,
          );
          return r.body.items.find((x) => x.status?.phase === "Running");
        },
        { what: "the restore Job's pod running", timeoutMs: 120_000, intervalMs: 100 },
      );
      await c.cp.request("DELETE", `/api/v1/namespaces/${NS}/pods/${jobPod.metadata.name}`);
    } finally {
      server.kill("SIGCONT");
    }
    const done = await waitPhase("killed", ["Succeeded", "Failed"]);
    // Either the Job's next pod restored (the CLI only renames a checked file into place), or the
    // Job failed and the original was put back: both leave every row.
    assert.ok((await eventReasons("killed")).includes("ScalingUp"), "scaled back up");
    const p2 = await readyPod("app-0", (x) => x.metadata.uid !== p.metadata.uid);
    const after = await rows(p2);
    assert.deepEqual(after.slice(0, before.length), before, `every row is there (${done.status?.phase})`);
  });

  it("an operator restarted mid-restore resumes from the recorded phase", async () => {
    const p = await readyPod("app-0");
    const before = await rows(p);
    await apply(restoreObj("resumed", { mode: "InPlace" }));
    await waitPhase("resumed", ["ScalingDown", "Restoring"]);
    await op.stop();
    const mid = await restoreCr("resumed");
    assert.ok(["ScalingDown", "Restoring", "Verifying", "Swapping"].includes(mid.status?.phase ?? ""));
    assert.equal(mid.status?.originalReplicas, 1, "the count recorded before the scale survives");
    await sleep(1000);
    await op.start();
    const done = await waitPhase("resumed", ["Succeeded", "Failed"]);
    assert.equal(done.status?.phase, "Succeeded", JSON.stringify(done.status));
    const p2 = await readyPod("app-0", (x) => x.metadata.uid !== p.metadata.uid);
    const after = await rows(p2);
    assert.deepEqual(after.slice(0, before.length), before);
  });
});
