/**
 * SqliteRestore end to end: the real control plane (with kube-controller-manager's Job controller),
 * the process kubelet, MinIO, and the operator with only deploy/rbac. Rows are written with their
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
import { stringify } from "yaml";
import { type OperatorOptions, type RunningOperator, startOperator } from "../../src/operator/main.ts";
import { nullLogger } from "../../src/shared/log.ts";
import { type ControlPlane, startControlPlane } from "../helpers/controlplane.ts";
import { appStatefulSet } from "../helpers/e2e.ts";
import { type Kubelet, startKubelet } from "../helpers/kubelet/index.ts";
import { type Minio, startMinio } from "../helpers/minio.ts";
import { waitFor } from "../helpers/proc.ts";

const ROOT = path.resolve(import.meta.dirname, "../..");
const APP = path.join(ROOT, "test/fixtures/apps/app.ts");
const WALSHIP = path.join(ROOT, "bin/walship");
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

interface Row {
  id: number;
  pod: string;
  at: string;
}
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
interface PodLite {
  metadata: { name: string; uid: string; deletionTimestamp?: string; labels?: Record<string, string> };
  status?: {
    phase?: string;
    podIP?: string;
    conditions?: Array<{ type: string; status: string }>;
    containerStatuses?: Array<{
      name: string;
      restartCount: number;
      state?: { terminated?: { exitCode: number; message?: string } };
    }>;
  };
}

describe("SqliteRestore (control plane, process kubelet, MinIO)", { timeout: 900_000 }, () => {
  let cp: ControlPlane;
  let kubelet: Kubelet;
  let minio: Minio;
  let op: RunningOperator | undefined;
  let opKubeconfig = "";
  const kubeletLines: string[] = [];

  const apply = async (obj: unknown) => {
    const file = path.join(cp.dir, `obj-${Math.random().toString(16).slice(2)}.yaml`);
    fs.writeFileSync(file, stringify(obj));
    await cp.kubectl(["apply", "-f", file]);
  };
  const pod = async (name: string) => {
    const r = await cp.request<PodLite>("GET", `/api/v1/namespaces/${NS}/pods/${name}`);
    return r.status === 200 ? r.body : undefined;
  };
  const restoreCr = async (name: string) =>
    (await cp.request<RestoreCr>("GET", `/apis/walship.dev/v1alpha1/namespaces/${NS}/sqliterestores/${name}`))
      .body;
  const readyPod = (name: string, pred: (p: PodLite) => boolean = () => true) =>
    waitFor(
      async () => {
        const p = await pod(name);
        return p &&
          !p.metadata.deletionTimestamp &&
          p.status?.phase === "Running" &&
          p.status.conditions?.some((c) => c.type === "Ready" && c.status === "True") &&
          pred(p)
          ? p
          : undefined;
      },
      { what: `pod ${name} Running and Ready`, timeoutMs: 120_000, intervalMs: 250 },
    );
  const rows = async (p: PodLite) => {
    const res = await fetch(`http://${p.status?.podIP}:8080/rows`);
    return (await res.json()) as Row[];
  };
  const operatorOptions = (identity: string): OperatorOptions => ({
    kubeconfig: opKubeconfig,
    leaderElection: false,
    leaderElectionNamespace: "walship-system",
    leaderElectionId: "walship-operator",
    identity,
    addr: "127.0.0.1:0",
    image: "walship-test/walship:dev",
    bindPodIP: true,
    workers: 2,
    resyncMs: 30_000,
    pollMs: 2_000,
    shutdownTimeoutMs: 5_000,
  });
  const dbFile = () => path.join(kubelet.pvcDir(NS, "data-app-0"), "app.db");
  /** Inserts one row with its time straight into the app's database (the app keeps it open too). */
  const writeRow = (label: string): Row => {
    const db = new Database(dbFile());
    try {
      const at = new Date().toISOString();
      const r = db.prepare("INSERT INTO starts (pod, at) VALUES (?, ?)").run(label, at);
      return { id: Number(r.lastInsertRowid), pod: label, at };
    } finally {
      db.close();
    }
  };
  const replicaGeneration = async () =>
    (
      await cp.request<{ status?: { generation?: string } }>(
        "GET",
        `/apis/walship.dev/v1alpha1/namespaces/${NS}/sqlitereplicas/db`,
      )
    ).body.status?.generation;
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
  const eventReasons = async (name: string) =>
    (
      await cp.request<{ items: Array<{ reason: string; involvedObject: { name: string } }> }>(
        "GET",
        `/api/v1/namespaces/${NS}/events`,
      )
    ).body.items
      .filter((e) => e.involvedObject.name === name)
      .map((e) => e.reason);
  const stsReplicas = async () =>
    (
      await cp.request<{ spec: { replicas: number }; metadata: { generation: number } }>(
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
        `${(err as Error).message}: ${JSON.stringify((await restoreCr(name)).status)}\n${kubeletLines.slice(-15).join("\n")}`,
      );
    });

  before(async () => {
    // The restore Job runs `sh -c '... walship restore ...'`: walship must be on the kubelet's PATH.
    process.env.PATH = `${path.join(ROOT, "bin")}:${process.env.PATH}`;
    cp = await startControlPlane();
    minio = await startMinio();
    await minio.createBucket(BUCKET);
    kubelet = await startKubelet({
      kubeconfig: cp.kubeconfig,
      images: {
        "walship-test/app": { command: [process.execPath, APP] },
        "walship-test/walship": { command: [WALSHIP], commandMap: { walship: [WALSHIP] } },
      },
      restartBackoffMs: { initial: 500, max: 4000 },
      log: (l) => kubeletLines.push(l),
    });
    await cp.kubectl(["apply", "-f", path.join(ROOT, "crds")]);
    await cp.kubectl(["wait", "--for=condition=Established", "crd/sqliterestores.walship.dev"]);
    await cp.kubectl(["create", "namespace", "walship-system"]);
    await cp.kubectl(["create", "namespace", NS]);
    await cp.kubectl(["-n", "walship-system", "create", "serviceaccount", "walship-operator"]);
    await cp.kubectl(["apply", "-f", path.join(ROOT, "deploy/rbac/clusterrole.yaml")]);
    await cp.kubectl([
      "create",
      "clusterrolebinding",
      "walship-operator",
      "--clusterrole=walship-operator",
      "--serviceaccount=walship-system:walship-operator",
    ]);
    opKubeconfig = await cp.kubeconfigFor(await cp.tokenFor("walship-system", "walship-operator"));
    op = await startOperator(operatorOptions("restore-1"), nullLogger());
    await cp.kubectl([
      "-n",
      NS,
      "create",
      "secret",
      "generic",
      "s3-creds",
      `--from-literal=id=${minio.accessKeyId}`,
      `--from-literal=secret=${minio.secretAccessKey}`,
    ]);
    await apply(appStatefulSet(NS, DATA_MOUNT));
    await apply({
      apiVersion: "walship.dev/v1alpha1",
      kind: "SqliteReplica",
      metadata: { name: "db", namespace: NS },
      spec: {
        statefulSetName: "app",
        database: { path: `${DATA_MOUNT}/app.db`, volumeName: "data" },
        destinations: [
          {
            name: "minio",
            s3: {
              bucket: BUCKET,
              path: "app",
              endpoint: minio.endpoint,
              region: minio.region,
              forcePathStyle: true,
              credentials: {
                accessKeyId: { name: "s3-creds", key: "id" },
                secretAccessKey: { name: "s3-creds", key: "secret" },
              },
            },
          },
        ],
        syncInterval: "200ms",
        restoreOnStart: "None",
      },
    });
    await waitFor(
      async () => {
        const r = await cp.request<{ status?: { phase?: string } }>(
          "GET",
          `/apis/walship.dev/v1alpha1/namespaces/${NS}/sqlitereplicas/db`,
        );
        return r.body.status?.phase === "Replicating" ? true : undefined;
      },
      { what: "SqliteReplica db Replicating", timeoutMs: 120_000, intervalMs: 500 },
    );
  });

  after(async () => {
    await op?.stop();
    await kubelet?.stop();
    await minio?.close();
    await cp?.stop();
  });

  it("the process kubelet reports termination messages as a kubelet does (file, cap, log fallback)", async () => {
    const long = "x".repeat(5000);
    await apply({
      apiVersion: "v1",
      kind: "Pod",
      metadata: { name: "term-msg", namespace: NS },
      spec: {
        restartPolicy: "Never",
        containers: [
          {
            name: "file",
            image: "walship-test/walship",
            command: ["sh", "-c", `printf 'a%s' '${long}' > /dev/termination-log; echo not-this`],
          },
          {
            name: "fallback",
            image: "walship-test/walship",
            command: ["sh", "-c", "for i in $(seq 1 100); do echo line-$i; done; exit 3"],
            terminationMessagePolicy: "FallbackToLogsOnError",
          },
          {
            name: "custom",
            image: "walship-test/walship",
            command: ["sh", "-c", "echo done > /var/run/walship-e2e-term/msg"],
            terminationMessagePath: "/var/run/walship-e2e-term/msg",
          },
          {
            name: "nofallback",
            image: "walship-test/walship",
            command: ["sh", "-c", "echo failing; exit 4"],
          },
        ],
      },
    });
    const done = await waitFor(
      async () => {
        const p = await pod("term-msg");
        return p?.status?.phase === "Failed" ? p : undefined;
      },
      { what: "pod term-msg Failed", timeoutMs: 60_000, intervalMs: 250 },
    );
    const term = (c: string) => done.status?.containerStatuses?.find((x) => x.name === c)?.state?.terminated;
    assert.equal(term("file")?.message, "x".repeat(4096), "the file's last 4096 bytes");
    const fallback = term("fallback")?.message ?? "";
    assert.equal(term("fallback")?.exitCode, 3);
    assert.ok(fallback.endsWith("line-99\nline-100\n"), fallback.slice(-40));
    assert.ok(!fallback.includes("line-20\n"), "only the last 80 lines");
    assert.equal(fallback.split("\n").filter(Boolean)[0], "line-21");
    assert.equal(term("custom")?.message, "done\n");
    assert.equal(term("nofallback")?.message, undefined, "policy File: no log fallback");
    await cp.request("DELETE", `/api/v1/namespaces/${NS}/pods/term-msg`);
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
    const table = (await cp.kubectl(["-n", NS, "get", "sqliterestores"])).stdout;
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
    const copy = new Database(path.join(kubelet.pvcDir(NS, "restored-copy"), "app.db"), { readonly: true });
    try {
      const got = copy.prepare("SELECT id, pod, at FROM starts ORDER BY id").all();
      assert.deepEqual(got, before);
    } finally {
      copy.close();
    }
    // The new claim is labelled with its SqliteRestore but not owned by it: deleting the
    // SqliteRestore garbage-collects its Jobs and leaves the restored data.
    await cp.request("DELETE", `/apis/walship.dev/v1alpha1/namespaces/${NS}/sqliterestores/copy`);
    await waitFor(
      async () => {
        const jobs = await cp.request<{ items: unknown[] }>(
          "GET",
          `/apis/batch/v1/namespaces/${NS}/jobs?labelSelector=walship.dev%2Fsqliterestore%3Dcopy`,
        );
        return jobs.body.items.length === 0 ? true : undefined;
      },
      { what: "the Jobs of SqliteRestore copy garbage-collected", timeoutMs: 60_000, intervalMs: 250 },
    );
    const pvc = await cp.request<{
      metadata: { labels?: Record<string, string>; ownerReferences?: unknown[]; deletionTimestamp?: string };
    }>("GET", `/api/v1/namespaces/${NS}/persistentvolumeclaims/restored-copy`);
    assert.equal(pvc.status, 200, "the restored claim outlives its SqliteRestore");
    assert.equal(pvc.body.metadata.deletionTimestamp, undefined);
    assert.equal(pvc.body.metadata.ownerReferences, undefined);
    assert.equal(pvc.body.metadata.labels?.["walship.dev/sqliterestore"], "copy");
    assert.ok(fs.existsSync(path.join(kubelet.pvcDir(NS, "restored-copy"), "app.db")));
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
    const jobPod = await waitFor(
      async () => {
        const r = await cp.request<{ items: PodLite[] }>(
          "GET",
          `/api/v1/namespaces/${NS}/pods?labelSelector=job-name%3Dkilled-restore`,
        );
        return r.body.items.find((x) => x.status?.phase === "Running");
      },
      { what: "the restore Job's pod running", timeoutMs: 120_000, intervalMs: 25 },
    );
    await cp.request("DELETE", `/api/v1/namespaces/${NS}/pods/${jobPod.metadata.name}`);
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
    await op?.stop();
    op = undefined;
    const mid = await restoreCr("resumed");
    assert.ok(["ScalingDown", "Restoring", "Verifying", "Swapping"].includes(mid.status?.phase ?? ""));
    assert.equal(mid.status?.originalReplicas, 1, "the count recorded before the scale survives");
    await sleep(1000);
    op = await startOperator(operatorOptions("restore-2"), nullLogger());
    const done = await waitPhase("resumed", ["Succeeded", "Failed"]);
    assert.equal(done.status?.phase, "Succeeded", JSON.stringify(done.status));
    const p2 = await readyPod("app-0", (x) => x.metadata.uid !== p.metadata.uid);
    const after = await rows(p2);
    assert.deepEqual(after.slice(0, before.length), before);
  });
});
