/**
 * The chart's namespaced mode on the real node (issue 13): `helm install` with
 * `operator.watchNamespaces={shop}` gives the operator a Role in `shop` and nothing cluster-wide; with
 * only those rights it injects, replicates to MinIO, restores a lost database on start, and runs an
 * InPlace and a NewClaim SqliteRestore in `shop`, and leaves a SqliteReplica in another namespace
 * alone. Its ServiceAccount is refused anything cluster-wide.
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { after, before, describe, it } from "node:test";
import { ListObjectsV2Command } from "@aws-sdk/client-s3";
import {
  appStatefulSet,
  type Condition,
  createS3Secret,
  installOperator,
  OPERATOR_NS,
  podGone,
  readyPod,
  rows,
  s3SqliteReplica,
} from "../helpers/e2e.ts";
import { type Minio, startMinio } from "../helpers/minio.ts";
import { type Cluster, startCluster } from "../helpers/node/index.ts";
import { waitFor } from "../helpers/proc.ts";

const NS = "shop";
const OTHER = "elsewhere";
const BUCKET = "namespaced";
const MOUNT = "/var/lib/app";

describe("the chart's namespaced mode (real node): only a Role in the watched namespace", {
  timeout: 1_800_000,
}, () => {
  let c: Cluster;
  let minio: Minio;

  before(async () => {
    c = await startCluster();
    minio = await startMinio({ host: c.gateway });
    await minio.createBucket(BUCKET);
    // The watched namespace exists first: helm puts the operator's Role there.
    await c.createNamespace(NS);
    await c.createNamespace(OTHER);
    await installOperator(c, [`operator.watchNamespaces={${NS}}`]);
  });
  after(async () => {
    await minio?.close();
    await c?.stop();
  });

  const cr = async (ns: string, name: string) =>
    (
      await c.cp.request<{ status?: { generation?: string; lagSeconds?: number; conditions?: Condition[] } }>(
        "GET",
        `/apis/walship.dev/v1alpha1/namespaces/${ns}/sqlitereplicas/${name}`,
      )
    ).body;
  const restoreDone = (name: string) =>
    waitFor(
      async () => {
        const r = await c.cp.request<{ status?: { phase?: string } }>(
          "GET",
          `/apis/walship.dev/v1alpha1/namespaces/${NS}/sqliterestores/${name}`,
        );
        return ["Succeeded", "Failed"].includes(r.body.status?.phase ?? "") ? r.body : undefined;
      },
      { what: `SqliteRestore ${name} finished`, timeoutMs: 300_000, intervalMs: 500 },
    ).catch(async (err) => {
      throw new Error(`${(err as Error).message}\n${await c.describe(NS)}`);
    });

  it("the operator's identity has no cluster-wide rights and none outside its namespace", async () => {
    const kinds = (await c.kubectl(["get", "clusterrolebindings", "-o", "name"])).stdout;
    assert.doesNotMatch(kinds, /clusterrolebinding\.rbac\.authorization\.k8s\.io\/walship$/m);
    const token = await c.cp.tokenFor(OPERATOR_NS, "walship");
    for (const p of [
      "/apis/walship.dev/v1alpha1/sqlitereplicas",
      "/apis/apps/v1/statefulsets",
      `/apis/walship.dev/v1alpha1/namespaces/${OTHER}/sqlitereplicas`,
      `/api/v1/namespaces/${OTHER}/secrets/s3-creds`,
      "/api/v1/nodes",
    ]) {
      const r = await c.cp.request("GET", p, undefined, token);
      assert.equal(r.status, 403, `${p}: ${r.status}`);
    }
    const own = await c.cp.request(
      "GET",
      `/apis/walship.dev/v1alpha1/namespaces/${NS}/sqlitereplicas`,
      undefined,
      token,
    );
    assert.equal(own.status, 200);
  });

  it("injects, replicates, restores on start, and runs InPlace and NewClaim restores in its namespace", async () => {
    await createS3Secret(c, NS, minio);
    await c.apply(appStatefulSet(NS, MOUNT));
    await c.apply(s3SqliteReplica(NS, "db", minio, { mount: MOUNT, bucket: BUCKET, prefix: NS }));
    const p = await readyPod(c, NS, "app-0", (x) =>
      (x.spec.initContainers ?? []).some((i) => i.name === "walship"),
    );
    await waitFor(
      async () => {
        const s = await cr(NS, "db");
        return s.status?.conditions?.some((x) => x.type === "Ready" && x.status === "True") &&
          s.status.lagSeconds === 0
          ? true
          : undefined;
      },
      { what: "db Ready, lag 0", timeoutMs: 120_000, intervalMs: 500 },
    ).catch(async (err) => {
      throw new Error(
        `${(err as Error).message}: ${JSON.stringify((await cr(NS, "db")).status)}\n${await c.describe(NS)}`,
      );
    });
    const listed = await minio
      .client()
      .send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: `${NS}/app-0/` }));
    assert.ok((listed.KeyCount ?? 0) > 0, "objects in MinIO");

    // Restore on start.
    const before0 = await rows(p);
    await new Promise((r) => setTimeout(r, 1500));
    const dir = await c.pvcDir(NS, "data-app-0");
    await c.kubectl(["-n", NS, "scale", "statefulset", "app", "--replicas=0"]);
    await podGone(c, NS, "app-0");
    for (const f of fs.readdirSync(dir)) fs.rmSync(path.join(dir, f), { recursive: true, force: true });
    await c.kubectl(["-n", NS, "scale", "statefulset", "app", "--replicas=1"]);
    const p2 = await readyPod(c, NS, "app-0", (x) => x.metadata.uid !== p.metadata.uid);
    assert.deepEqual((await rows(p2)).slice(0, before0.length), before0, "restored on start");

    // InPlace, then NewClaim.
    await new Promise((r) => setTimeout(r, 1500));
    await c.apply({
      apiVersion: "walship.dev/v1alpha1",
      kind: "SqliteRestore",
      metadata: { name: "inplace", namespace: NS },
      spec: { sqliteReplicaName: "db", mode: "InPlace" },
    });
    assert.equal((await restoreDone("inplace")).status?.phase, "Succeeded");
    await readyPod(c, NS, "app-0", (x) => x.metadata.uid !== p2.metadata.uid);
    await c.apply({
      apiVersion: "walship.dev/v1alpha1",
      kind: "SqliteRestore",
      metadata: { name: "copy", namespace: NS },
      spec: { sqliteReplicaName: "db", mode: "NewClaim", newClaim: { name: "restored-copy" } },
    });
    assert.equal((await restoreDone("copy")).status?.phase, "Succeeded");
  });

  it("a SqliteReplica in a namespace it does not watch is left alone", async () => {
    await createS3Secret(c, OTHER, minio);
    await c.apply(appStatefulSet(OTHER, MOUNT));
    await c.apply(s3SqliteReplica(OTHER, "db", minio, { mount: MOUNT, bucket: BUCKET, prefix: OTHER }));
    const p = await readyPod(c, OTHER, "app-0");
    await new Promise((r) => setTimeout(r, 10_000));
    assert.equal((await cr(OTHER, "db")).status, undefined, "no status: not seen");
    const again = await readyPod(c, OTHER, "app-0");
    assert.equal(again.metadata.uid, p.metadata.uid, "not rolled");
    assert.equal(again.spec.initContainers, undefined, "nothing injected");
  });
});
