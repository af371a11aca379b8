/**
 * Issue 13 on the real node (helm-installed operator, MinIO): a Secret rotated in place reaches the
 * running sidecar without a restart or a roll; a Secret with hostile values leaves the pod starting
 * and shows nowhere (status, Events, `kubectl logs`, the ConfigMap, the pod spec); a replicator that
 * may not write the database reports PermissionDenied naming the file and its uid while the app stays
 * Ready; a restore Job killed out of memory fails the SqliteRestore OutOfMemory naming the limit; the
 * sidecar's port clashing with the app's is refused without touching the pods.
 */
import assert from "node:assert/strict";
import * as path from "node:path";
import { after, before, describe, it } from "node:test";
import Database from "better-sqlite3";
import {
  appStatefulSet,
  type Condition,
  createS3Secret,
  getPod,
  installOperator,
  type PodLite,
  readyPod,
  s3SqliteReplica,
} from "../helpers/e2e.ts";
import { type Minio, startMinio } from "../helpers/minio.ts";
import { type Cluster, startCluster } from "../helpers/node/index.ts";
import { waitFor } from "../helpers/proc.ts";

const BUCKET = "security";
const MOUNT = "/var/lib/app";

interface Cr {
  metadata: { generation?: number };
  status?: { phase?: string; conditions?: Condition[]; pods?: Array<{ name: string; lastError?: string }> };
}

describe("secrets, permissions, memory and ports (real node, helm-installed operator, MinIO)", {
  timeout: 1_800_000,
}, () => {
  let c: Cluster;
  let minio: Minio;

  before(async () => {
    c = await startCluster();
    minio = await startMinio({ host: c.gateway });
    await minio.createBucket(BUCKET);
    await installOperator(c);
  });
  after(async () => {
    await minio?.close();
    await c?.stop();
  });

  const cr = async (ns: string, name = "db") =>
    (await c.cp.request<Cr>("GET", `/apis/walship.dev/v1alpha1/namespaces/${ns}/sqlitereplicas/${name}`))
      .body;
  const cond = (x: Cr, type: string) => x.status?.conditions?.find((k) => k.type === type);
  const until = (ns: string, what: string, pred: (x: Cr) => boolean, timeoutMs = 120_000) =>
    waitFor(
      async () => {
        const x = await cr(ns);
        return pred(x) ? x : undefined;
      },
      { what: `${ns}/db ${what}`, timeoutMs, intervalMs: 500 },
    ).catch(async (err) => {
      throw new Error(
        `${(err as Error).message}: ${JSON.stringify((await cr(ns)).status)}\n${await c.describe(ns)}`,
      );
    });
  const injected = (p: PodLite) => (p.spec.initContainers ?? []).some((i) => i.name === "walship");
  const sidecarRestarts = (p: PodLite | undefined) =>
    p?.status?.initContainerStatuses?.find((s) => s.name === "walship")?.restartCount;
  const events = async (ns: string) =>
    (
      await c.cp.request<{ items: Array<{ reason: string; type: string; message: string }> }>(
        "GET",
        `/api/v1/namespaces/${ns}/events`,
      )
    ).body.items;
  const secret = (ns: string, data: Record<string, Buffer>) =>
    c.apply({
      apiVersion: "v1",
      kind: "Secret",
      metadata: { name: "s3-creds", namespace: ns },
      data: Object.fromEntries(Object.entries(data).map(([k, v]) => [k, v.toString("base64")])),
    });

  it("a Secret rotated in place reaches the running sidecar: no restart, no roll", async () => {
    const ns = "rotate";
    await c.createNamespace(ns);
    await createS3Secret(c, ns, minio);
    await c.apply(appStatefulSet(ns, MOUNT));
    await c.apply(s3SqliteReplica(ns, "db", minio, { mount: MOUNT, bucket: BUCKET, prefix: ns }));
    const p = await readyPod(c, ns, "app-0", injected);
    await until(ns, "Ready", (x) => cond(x, "Ready")?.status === "True");
    const restarts = sidecarRestarts(p);

    // The app keeps writing (a row a second into its database, from the host): a replicator only talks
    // to its destination when it has something to upload.
    const dataDir = await c.pvcDir(ns, "data-app-0");
    const writer = setInterval(() => {
      const db = new Database(path.join(dataDir, "app.db"));
      try {
        db.prepare("INSERT INTO starts (pod, at) VALUES (?, ?)").run("rotation", new Date().toISOString());
      } finally {
        db.close();
      }
    }, 1000);
    try {
      // A wrong secret key, written into the same Secret: the kubelet updates the projected volume
      // (about a minute), the S3 client re-reads it (10 s), the next sync is refused.
      await secret(ns, { id: Buffer.from(minio.accessKeyId), secret: Buffer.from("not-the-secret\n") });
      const bad = await until(
        ns,
        "Degraded by the rotated key",
        (x) => cond(x, "Degraded")?.status === "True",
        240_000,
      );
      assert.match(cond(bad, "Degraded")?.message ?? "", /SignatureDoesNotMatch/);
      // Rotated back (with a trailing newline, as a Secret made from a file has): Ready again.
      await secret(ns, {
        id: Buffer.from(`${minio.accessKeyId}\n`),
        secret: Buffer.from(`${minio.secretAccessKey}\n`),
      });
      await until(
        ns,
        "Ready after the rotation back",
        (x) => cond(x, "Ready")?.status === "True" && cond(x, "Degraded")?.status !== "True",
        240_000,
      );
    } finally {
      clearInterval(writer);
    }

    const now = await getPod(c, ns, "app-0");
    assert.equal(now?.metadata.uid, p.metadata.uid, "the pod was not rolled");
    assert.equal(sidecarRestarts(now), restarts, "the sidecar was not restarted");
  });

  it("a hostile Secret value: the pod starts, and the value shows nowhere", async () => {
    const ns = "hostile";
    await c.createNamespace(ns);
    const canary = "CANARYe2eQ7";
    const hostile = Buffer.concat([
      Buffer.from(`x'"\n$(touch /tmp/pwned)\${HOME}\n---\nexec: touch /tmp/pwned\n...\n${canary}`),
      Buffer.from("y".repeat(4096)),
      Buffer.from([0xff, 0xfe, 0x80, 0x0a]),
    ]);
    await secret(ns, { id: Buffer.from(minio.accessKeyId), secret: hostile });
    await c.apply(appStatefulSet(ns, MOUNT));
    // No restore on start: with a wrong key the restore init container could not list the bucket.
    await c.apply(
      s3SqliteReplica(
        ns,
        "db",
        minio,
        { mount: MOUNT, bucket: BUCKET, prefix: ns },
        { restoreOnStart: "None" },
      ),
    );
    // The sidecar starts (its config does not break on the value) and the app with it.
    await readyPod(c, ns, "app-0", injected);
    const degraded = await until(ns, "Degraded (a wrong key)", (x) => cond(x, "Degraded")?.status === "True");
    assert.equal(cond(degraded, "Injected")?.status, "True");
    const texts: Array<[string, string]> = [
      ["status", JSON.stringify(degraded)],
      ["events", JSON.stringify(await events(ns))],
      ["sidecar log", await c.logs(ns, "app-0", "walship")],
      ["configmap", (await c.kubectl(["-n", ns, "get", "configmap", "db-walship", "-o", "yaml"])).stdout],
      ["statefulset", (await c.kubectl(["-n", ns, "get", "statefulset", "app", "-o", "yaml"])).stdout],
      ["pod", (await c.kubectl(["-n", ns, "get", "pod", "app-0", "-o", "yaml"])).stdout],
      ["operator log", await c.logs("walship-system", (await podOf("walship-system")) ?? "", "operator")],
    ];
    for (const [what, text] of texts) {
      assert.ok(!text.includes(canary), `${what} holds the value`);
      assert.ok(!text.includes("touch /tmp/pwned"), `${what} holds the value`);
      assert.ok(!text.includes(hostile.toString("base64").slice(0, 24)), `${what} holds the value's base64`);
    }
  });

  async function podOf(ns: string): Promise<string | undefined> {
    const r = await c.cp.request<{ items: PodLite[] }>("GET", `/api/v1/namespaces/${ns}/pods`);
    return r.body.items[0]?.metadata.name;
  }

  it("a replicator that may not write the database: PermissionDenied naming the file and its uid; the app stays Ready", async () => {
    const ns = "perm";
    await c.createNamespace(ns);
    await createS3Secret(c, ns, minio);
    await c.apply(
      appStatefulSet(ns, MOUNT, { user: { runAsUser: 10001, runAsGroup: 10001, fsGroup: 10001 } }),
    );
    // The app writes its database as 10001 (0644); a replicator told to run as another user cannot.
    await c.apply(
      s3SqliteReplica(
        ns,
        "db",
        minio,
        { mount: MOUNT, bucket: BUCKET, prefix: ns },
        { sidecar: { securityContext: { runAsUser: 20000, runAsGroup: 20000 } } },
      ),
    );
    const p = await readyPod(c, ns, "app-0", injected);
    const x = await until(
      ns,
      "Degraded PermissionDenied",
      (y) => cond(y, "Degraded")?.reason === "PermissionDenied",
    );
    const msg = cond(x, "Degraded")?.message ?? "";
    assert.match(msg, new RegExp(`${MOUNT}/app\\.db`));
    assert.match(msg, /EACCES/);
    assert.match(msg, /uid 20000 gid 20000/);
    assert.equal(cond(x, "Restricted")?.status, "True", "still restricted: only the user changed");
    await waitFor(
      async () => (await events(ns)).find((e) => e.reason === "PermissionDenied" && e.type === "Warning"),
      { what: "a PermissionDenied Warning Event", timeoutMs: 30_000 },
    );
    const now = await getPod(c, ns, "app-0");
    assert.ok(
      now?.status?.conditions?.some((k) => k.type === "Ready" && k.status === "True"),
      "app Ready",
    );
    assert.equal(now?.metadata.uid, p.metadata.uid);
  });

  it("a restore Job killed out of memory: the SqliteRestore fails OutOfMemory, naming the limit", async () => {
    const ns = "rotate"; // replicating since the first test
    await c.apply({
      apiVersion: "walship.dev/v1alpha1",
      kind: "SqliteRestore",
      metadata: { name: "tight", namespace: ns },
      spec: {
        sqliteReplicaName: "db",
        mode: "NewClaim",
        newClaim: { name: "tight" },
        // Well under what any restore needs (cgroup peaks: from S3 about 22 MiB through Walship's
        // reader, 35 through the SDK; from a file 19). 32Mi sat on the SDK's edge and let one through.
        resources: { requests: { memory: "16Mi" }, limits: { memory: "16Mi" } },
      },
    });
    const done = await waitFor(
      async () => {
        const r = await c.cp.request<{ status?: { phase?: string; conditions?: Condition[] } }>(
          "GET",
          `/apis/walship.dev/v1alpha1/namespaces/${ns}/sqliterestores/tight`,
        );
        return ["Succeeded", "Failed"].includes(r.body.status?.phase ?? "") ? r.body : undefined;
      },
      { what: "SqliteRestore tight finished", timeoutMs: 300_000, intervalMs: 1000 },
    );
    const complete = done.status?.conditions?.find((k) => k.type === "Complete");
    assert.equal(done.status?.phase, "Failed", JSON.stringify(done.status));
    assert.equal(complete?.reason, "OutOfMemory", JSON.stringify(done.status));
    assert.match(complete?.message ?? "", /ran out of memory \(limit 16Mi\)/);
  });

  it("the sidecar's port taken by the app: PortConflict, the pods untouched", async () => {
    const ns = "ports";
    await c.createNamespace(ns);
    await createS3Secret(c, ns, minio);
    await c.apply(appStatefulSet(ns, MOUNT));
    const p = await readyPod(c, ns, "app-0");
    // The test app declares containerPort 8080 ("http").
    await c.apply(
      s3SqliteReplica(
        ns,
        "db",
        minio,
        { mount: MOUNT, bucket: BUCKET, prefix: ns },
        { sidecar: { metricsPort: 8080 } },
      ),
    );
    const x = await until(
      ns,
      "Injected=False PortConflict",
      (y) => cond(y, "Injected")?.reason === "PortConflict",
    );
    assert.match(
      cond(x, "Injected")?.message ?? "",
      /^spec\.sidecar\.metricsPort: container app declares port 8080/,
    );
    await new Promise((r) => setTimeout(r, 3000));
    const now = await getPod(c, ns, "app-0");
    assert.equal(now?.metadata.uid, p.metadata.uid, "not rolled");
    assert.equal(now?.spec.initContainers, undefined, "nothing injected");
  });
});
