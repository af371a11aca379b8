/**
 * A Deployment as a SqliteReplica's workload, end to end on the real node (the helm-installed
 * operator with only the chart's RBAC, MinIO on the node's bridge, a restricted namespace): a
 * one-replica Recreate Deployment on a claim gets the sidecar and the restore init container and
 * replicates under `<path>/<Deployment name>`; its next pod (another name) restores the database the
 * previous one replicated; a SqliteRestore InPlace scales it to 0, restores onto its claim and scales
 * it back, NewClaim copies its claim's size; a Deployment that could run two pods on the database is
 * refused with a condition saying why (and loses the replicator it had).
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { after, before, describe, it } from "node:test";
import { ListObjectsV2Command } from "@aws-sdk/client-s3";
import Database from "better-sqlite3";
import {
  appDeployment,
  type Condition,
  createS3Secret,
  insertRow,
  installOperator,
  type PodLite,
  type Row,
  rows,
  s3SqliteReplica,
} from "../helpers/e2e.ts";
import { type Minio, startMinio } from "../helpers/minio.ts";
import { type Cluster, startCluster } from "../helpers/node/index.ts";
import { waitFor } from "../helpers/proc.ts";

const NS = "e2e-deploy";
const DATA_MOUNT = "/var/lib/walship-e2e/data";
const BUCKET = "replicas";
const API = `/apis/walship.dev/v1alpha1/namespaces/${NS}`;

interface ReplicaCr {
  metadata: { generation?: number };
  status?: {
    phase?: string;
    generation?: string;
    lagSeconds?: number;
    observedGeneration?: number;
    conditions?: Condition[];
    pods?: Array<{ name: string; ready: boolean }>;
  };
}
interface RestoreCr {
  status?: {
    phase?: string;
    message?: string;
    workloadRef?: { kind: string; name: string };
    statefulSetName?: string;
    pod?: string;
    originalReplicas?: number;
    claimName?: string;
    restored?: { position: string; lastCommitTime?: string };
  };
}
interface DeploymentLite {
  spec: {
    replicas: number;
    template: { spec: { initContainers?: Array<{ name: string }> } };
  };
  status?: { readyReplicas?: number };
}

describe("a Deployment as the workload (real node, helm-installed operator, MinIO)", {
  timeout: 1_200_000,
}, () => {
  let c: Cluster;
  let minio: Minio;
  let dataDir = "";

  const apply = (obj: unknown) => c.apply(obj);
  const get = async <T>(p: string) => (await c.cp.request<T>("GET", p)).body;
  const replicaCr = (name: string) => get<ReplicaCr>(`${API}/sqlitereplicas/${name}`);
  const restoreCr = (name: string) => get<RestoreCr>(`${API}/sqliterestores/${name}`);
  const deployment = (name: string) =>
    get<DeploymentLite>(`/apis/apps/v1/namespaces/${NS}/deployments/${name}`);
  const cond = (cr: ReplicaCr, type: string) => cr.status?.conditions?.find((x) => x.type === type);
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
  const describeNs = async (err: unknown) => {
    throw new Error(`${(err as Error).message}\n${await c.describe(NS)}`);
  };

  /** The Deployment's one Running and Ready pod that is not being deleted (and `pred`). */
  const webPod = (pred: (p: PodLite) => boolean = () => true, timeoutMs = 180_000) =>
    waitFor(
      async () => {
        const list = await get<{ items: PodLite[] }>(`/api/v1/namespaces/${NS}/pods?labelSelector=app%3Dweb`);
        const live = list.items.filter((p) => !p.metadata.deletionTimestamp);
        const p = live.length === 1 ? live[0] : undefined;
        return p?.status?.phase === "Running" &&
          p.status.conditions?.some((x) => x.type === "Ready" && x.status === "True") &&
          pred(p)
          ? p
          : undefined;
      },
      { what: "the one pod of Deployment web Running and Ready", timeoutMs, intervalMs: 250 },
    ).catch(describeNs);
  const noWebPod = () =>
    waitFor(
      async () => {
        const list = await get<{ items: unknown[] }>(`/api/v1/namespaces/${NS}/pods?labelSelector=app%3Dweb`);
        return list.items.length === 0 ? true : undefined;
      },
      { what: "no pod of Deployment web", timeoutMs: 120_000, intervalMs: 250 },
    ).catch(describeNs);
  const scale = (name: string, replicas: number) =>
    c.kubectl(["-n", NS, "scale", `deployment/${name}`, `--replicas=${replicas}`]);
  const waitReplica = (name: string, pred: (cr: ReplicaCr) => boolean, what: string, timeoutMs = 120_000) =>
    waitFor(
      async () => {
        const cr = await replicaCr(name);
        return pred(cr) ? cr : undefined;
      },
      { what, timeoutMs, intervalMs: 500 },
    ).catch(async (err) => {
      throw new Error(
        `${(err as Error).message}: ${JSON.stringify((await replicaCr(name)).status)}\n${await c.describe(NS)}`,
      );
    });
  const waitRestore = (name: string) =>
    waitFor(
      async () => {
        const r = await restoreCr(name);
        return r.status?.phase === "Succeeded" || r.status?.phase === "Failed" ? r : undefined;
      },
      { what: `SqliteRestore ${name} done`, timeoutMs: 240_000, intervalMs: 250 },
    ).catch(describeNs);
  const writeRow = (label: string): Row => insertRow(path.join(dataDir, "app.db"), label);
  const synced = () =>
    waitReplica("web-db", (cr) => cr.status?.lagSeconds === 0, "lag 0", 30_000).then(() => sleep(1000));
  const replicaSpec = (name: string, deploymentName: string, over: Record<string, unknown> = {}) => {
    const r = s3SqliteReplica(
      NS,
      name,
      minio,
      { mount: DATA_MOUNT, bucket: BUCKET, prefix: "apps" },
      over,
    ) as {
      spec: Record<string, unknown>;
    };
    delete r.spec.statefulSetName;
    r.spec.workloadRef = { kind: "Deployment", name: deploymentName };
    return r;
  };

  before(async () => {
    c = await startCluster();
    minio = await startMinio({ host: c.gateway });
    await minio.createBucket(BUCKET);
    await installOperator(c);
    await c.createNamespace(NS);
    await createS3Secret(c, NS, minio);
    await apply(appDeployment(NS, DATA_MOUNT));
  });

  after(async () => {
    await minio?.close();
    await c?.stop();
  });

  it("injects into a one-replica Recreate Deployment; replicates under <path>/<Deployment name>; Ready", async () => {
    const first = await webPod();
    assert.equal(first.spec.initContainers, undefined);
    await apply(replicaSpec("web-db", "web"));
    const p = await webPod((x) => (x.spec.initContainers ?? []).some((ic) => ic.name === "walship"));
    assert.deepEqual(
      p.spec.initContainers?.map((ic) => ic.name),
      ["walship-restore", "walship"],
    );
    const ready = await waitReplica(
      "web-db",
      (cr) => cond(cr, "Ready")?.status === "True" && cr.status?.generation !== undefined,
      "SqliteReplica web-db Ready with a generation",
    );
    assert.equal(ready.status?.phase, "Replicating");
    assert.equal(cond(ready, "Injected")?.message, "Deployment web carries the replicator");
    assert.deepEqual(
      ready.status?.pods?.map((x) => [x.name, x.ready]),
      [[p.metadata.name, true]],
    );
    // The replica is named after the Deployment, not after the pod (whose name changes).
    const listed = await minio
      .client()
      .send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: "apps/web/generations/" }));
    assert.ok((listed.KeyCount ?? 0) > 0, "objects under apps/web/generations/");
    const byPod = await minio
      .client()
      .send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: `apps/${p.metadata.name}/` }));
    assert.equal(byPod.KeyCount ?? 0, 0, "nothing under the pod's own name");
    dataDir = await c.pvcDir(NS, "data-web");
  });

  it("the next pod (another name) restores the database the previous one replicated, before the app starts", async () => {
    const p = await webPod();
    const before = await rows(p);
    await synced();
    await scale("web", 0);
    await noWebPod();
    for (const f of fs.readdirSync(dataDir))
      fs.rmSync(path.join(dataDir, f), { recursive: true, force: true });
    await scale("web", 1);
    const p2 = await webPod((x) => x.metadata.uid !== p.metadata.uid);
    assert.notEqual(p2.metadata.name, p.metadata.name);
    const after = await rows(p2);
    assert.deepEqual(after.slice(0, before.length), before, "every row synced before is back");
    assert.equal(after.length, before.length + 1, "plus the row of this start");
    assert.match(await c.logs(NS, p2.metadata.name, "walship-restore"), /restor/i);
    await waitReplica("web-db", (cr) => cond(cr, "Ready")?.status === "True", "Ready again");
  });

  it("SqliteRestore InPlace to a time: scales the Deployment to 0, restores onto its claim, scales back", async () => {
    const p = await webPod();
    await synced();
    const kept = writeRow("kept");
    await synced();
    const target = new Date().toISOString();
    await sleep(1100);
    const dropped = writeRow("dropped");
    await synced();
    const before = await rows(p);
    assert.ok(before.some((r) => r.id === dropped.id));
    await apply({
      apiVersion: "walship.dev/v1alpha1",
      kind: "SqliteRestore",
      metadata: { name: "pit", namespace: NS },
      spec: { sqliteReplicaName: "web-db", mode: "InPlace", target: { timestamp: target } },
    });
    const done = await waitRestore("pit");
    assert.equal(done.status?.phase, "Succeeded", JSON.stringify(done.status));
    assert.deepEqual(done.status?.workloadRef, { kind: "Deployment", name: "web" });
    assert.equal(done.status?.statefulSetName, undefined);
    assert.equal(done.status?.pod, undefined);
    assert.equal(done.status?.originalReplicas, 1);
    assert.equal(done.status?.claimName, "data-web");
    assert.ok(done.status?.restored?.lastCommitTime && done.status.restored.lastCommitTime <= target);
    const dep = await deployment("web");
    assert.equal(dep.spec.replicas, 1, "scaled back to 1");
    const p2 = await webPod((x) => x.metadata.uid !== p.metadata.uid);
    const after = await rows(p2);
    const upTo = before.filter((r) => r.id <= kept.id);
    assert.deepEqual(after.slice(0, upTo.length), upTo, "the rows at or before the target");
    assert.equal(
      after.some((r) => r.id === dropped.id && r.pod === "dropped"),
      false,
      "the row after the target is gone",
    );
    assert.ok(fs.existsSync(path.join(dataDir, "app.db.pre-restore-pit")), "the previous database is kept");
  });

  it("SqliteRestore NewClaim: a new claim the size of the Deployment's, the app untouched", async () => {
    const p = await webPod();
    await synced();
    const before = await rows(p);
    await apply({
      apiVersion: "walship.dev/v1alpha1",
      kind: "SqliteRestore",
      metadata: { name: "copy", namespace: NS },
      spec: { sqliteReplicaName: "web-db", mode: "NewClaim", newClaim: { name: "web-copy" } },
    });
    const done = await waitRestore("copy");
    assert.equal(done.status?.phase, "Succeeded", JSON.stringify(done.status));
    const same = await webPod();
    assert.equal(same.metadata.uid, p.metadata.uid, "the app pod was not touched");
    const pvc = await get<{ spec: { resources: { requests: { storage: string } } } }>(
      `/api/v1/namespaces/${NS}/persistentvolumeclaims/web-copy`,
    );
    assert.equal(pvc.spec.resources.requests.storage, "1Gi");
    const copy = new Database(path.join(await c.pvcDir(NS, "web-copy"), "app.db"), { readonly: true });
    try {
      assert.deepEqual(copy.prepare("SELECT id, pod, at FROM starts ORDER BY id").all(), before);
    } finally {
      copy.close();
    }
  });

  it("refuses a Deployment that could run two pods on the database, with a condition saying why", async () => {
    // No pod runs: replicas 0, and the claim does not exist (the pods of step 3 stay Pending).
    const roll = (opts: Parameters<typeof appDeployment>[2]) =>
      appDeployment(NS, DATA_MOUNT, {
        name: "roll",
        volume: { name: "data", persistentVolumeClaim: { claimName: "nope" } },
        ...opts,
      })[1];
    await apply(roll({ replicas: 0 }));
    await apply(replicaSpec("roll-db", "roll"));
    await waitReplica("roll-db", (cr) => cond(cr, "Injected")?.status === "True", "roll-db injected");
    assert.ok(
      (await deployment("roll")).spec.template.spec.initContainers?.some((x) => x.name === "walship"),
    );

    const refused = async (reason: string) => {
      const cr = await waitReplica(
        "roll-db",
        (x) => cond(x, "Injected")?.reason === reason,
        `roll-db refused: ${reason}`,
      );
      assert.equal(cond(cr, "Injected")?.status, "False");
      assert.equal(cond(cr, "Ready")?.status, "False");
      assert.equal(cr.status?.phase, "Failed");
      return cond(cr, "Injected")?.message ?? "";
    };
    // A rolling update (Kubernetes' default strategy): the replicator is taken out of the template.
    await apply(roll({ replicas: 0, strategy: "RollingUpdate" }));
    const rolling = await refused("RollingUpdateStrategy");
    assert.match(rolling, /^spec\.workloadRef: Deployment roll has strategy RollingUpdate/);
    assert.match(
      rolling,
      /set spec\.strategy\.type: Recreate; the replicator is kept out of its pod template while this stands$/,
    );
    assert.equal(
      (await deployment("roll")).spec.template.spec.initContainers,
      undefined,
      "no walship container left in the template",
    );
    // More than one replica.
    await apply(roll({ replicas: 2 }));
    assert.match(
      await refused("TooManyReplicas"),
      /^spec\.workloadRef: Deployment roll has 2 replicas; a Deployment is replicated only with replicas: 1/,
    );
    // The database on an emptyDir.
    await apply(roll({ replicas: 0, volume: { name: "data", emptyDir: {} } }));
    assert.match(
      await refused("VolumeNotAClaim"),
      /^spec\.database\.volumeName: volume data of Deployment roll is not a PersistentVolumeClaim/,
    );
    // The operator records the Event after the status it reports (just seen): wait for the last one.
    const want = ["RollingUpdateStrategy", "TooManyReplicas", "VolumeNotAClaim"];
    const warnings = async () =>
      (
        await get<{
          items: Array<{ type: string; reason: string; involvedObject: { name: string } }>;
        }>(`/api/v1/namespaces/${NS}/events`)
      ).items
        .filter((e) => e.involvedObject.name === "roll-db" && e.type === "Warning")
        .map((e) => e.reason);
    await waitFor(
      async () => {
        const list = await warnings();
        return want.every((r) => list.includes(r)) ? true : undefined;
      },
      {
        what: "a Warning Event for each refusal",
        timeoutMs: 30_000,
        intervalMs: 250,
      },
    ).catch(async (err) => {
      throw new Error(`${(err as Error).message}: ${(await warnings()).join(",")}`);
    });
  });
});
