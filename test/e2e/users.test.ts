/**
 * The app's user decides the replicator's: on the real node, for an app running as the image's uid
 * 1000, as uid 10001 with fsGroup 10001, and as root (in a namespace that allows it), the injected
 * sidecar and restore init container run as the app's user, the data reaches MinIO, a database lost
 * with its pod is restored before the app starts, and an InPlace SqliteRestore (its Jobs as the app's
 * user too) brings the app back with every row.
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { after, before, describe, it } from "node:test";
import { ListObjectsV2Command } from "@aws-sdk/client-s3";
import {
  type AppUser,
  appStatefulSet,
  createS3Secret,
  installOperator,
  podGone,
  readyPod,
  rows,
  s3SqliteReplica,
} from "../helpers/e2e.ts";
import { type Minio, startMinio } from "../helpers/minio.ts";
import { type Cluster, type PodSecurityLevel, startCluster } from "../helpers/node/index.ts";
import { waitFor } from "../helpers/proc.ts";

const BUCKET = "users";
const MOUNT = "/var/lib/app";

interface Variant {
  ns: string;
  level: PodSecurityLevel;
  user?: AppUser;
  /** The uid and gid the app (and so the replicator) runs as. */
  uid: number;
  gid: number;
}

const VARIANTS: Variant[] = [
  { ns: "uid-1000", level: "restricted", uid: 1000, gid: 1000 },
  {
    ns: "uid-10001",
    level: "restricted",
    user: { runAsUser: 10001, runAsGroup: 10001, fsGroup: 10001 },
    uid: 10001,
    gid: 10001,
  },
  { ns: "root", level: "baseline", user: { runAsUser: 0, runAsGroup: 0 }, uid: 0, gid: 0 },
];

describe("the replicator runs as the app's user (real node: uid 1000, uid 10001 + fsGroup, root)", {
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

  const cr = async (ns: string, name: string) =>
    (
      await c.cp.request<{
        status?: {
          phase?: string;
          generation?: string;
          lagSeconds?: number;
          conditions?: Array<{ type: string; status: string; reason: string; message: string }>;
        };
      }>("GET", `/apis/walship.dev/v1alpha1/namespaces/${ns}/sqlitereplicas/${name}`)
    ).body;

  for (const v of VARIANTS) {
    it(`${v.ns}: the sidecar runs as ${v.uid}:${v.gid}; MinIO gets the data; restore on start; InPlace SqliteRestore`, async () => {
      const { ns } = v;
      await c.createNamespace(ns, v.level);
      await createS3Secret(c, ns, minio);
      await c.apply(appStatefulSet(ns, MOUNT, v.user ? { user: v.user } : {}));
      await c.apply(s3SqliteReplica(ns, "db", minio, { mount: MOUNT, bucket: BUCKET, prefix: ns }));
      const p = await readyPod(c, ns, "app-0", (x) =>
        (x.spec.initContainers ?? []).some((i) => i.name === "walship"),
      );
      // The app, the sidecar and the restore init container all run as the app's user.
      const who = JSON.parse(await (await fetch(`http://${p.status?.podIP}:8080/whoami`)).text()) as {
        uid: number;
        gid: number;
      };
      assert.deepEqual(who, { uid: v.uid, gid: v.gid }, "the app's own user");
      const id = await c.exec(ns, "app-0", "walship", ["sh", "-c", "echo $(id -u):$(id -g)"]);
      assert.equal(id.stdout.trim(), `${v.uid}:${v.gid}`, "the sidecar runs as the app's user");
      // The restore init container has ended: its effective user from its spec (container, then pod,
      // then the image's 1000), and its file below (the restored database is created by it).
      const restoreSc = p.spec.initContainers?.find((i) => i.name === "walship-restore")?.securityContext;
      assert.equal(
        restoreSc?.runAsUser ?? p.spec.securityContext?.runAsUser ?? 1000,
        v.uid,
        "the restore init container runs as the app's user",
      );

      await waitFor(
        async () => {
          const s = await cr(ns, "db");
          return s.status?.conditions?.some((x) => x.type === "Ready" && x.status === "True") &&
            s.status.generation &&
            s.status.lagSeconds === 0
            ? true
            : undefined;
        },
        { what: `${ns}: SqliteReplica db Ready with lag 0`, timeoutMs: 120_000, intervalMs: 500 },
      ).catch(async (err) => {
        throw new Error(
          `${(err as Error).message}: ${JSON.stringify((await cr(ns, "db")).status)}\n${await c.describe(ns)}`,
        );
      });
      const listed = await minio
        .client()
        .send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: `${ns}/app-0/generations/` }));
      assert.ok((listed.KeyCount ?? 0) > 0, `objects under ${ns}/app-0/generations/`);

      // Restore on start: the database goes with its pod; the next pod gets it back before the app starts.
      const before0 = await rows(p);
      await new Promise((r) => setTimeout(r, 1500));
      const dir = await c.pvcDir(ns, "data-app-0");
      await c.kubectl(["-n", ns, "scale", "statefulset", "app", "--replicas=0"]);
      await podGone(c, ns, "app-0");
      for (const f of fs.readdirSync(dir)) fs.rmSync(path.join(dir, f), { recursive: true, force: true });
      await c.kubectl(["-n", ns, "scale", "statefulset", "app", "--replicas=1"]);
      const p2 = await readyPod(c, ns, "app-0", (x) => x.metadata.uid !== p.metadata.uid);
      const after2 = await rows(p2);
      assert.deepEqual(after2.slice(0, before0.length), before0, "every synced row is back");
      assert.equal(after2.length, before0.length + 1, "plus the row of this start");
      const st = fs.statSync(path.join(dir, "app.db"));
      assert.equal(st.uid, v.uid, "the restored database belongs to the app's user");

      // InPlace SqliteRestore to the latest state: its Jobs run as the app's user too.
      await waitFor(async () => ((await cr(ns, "db")).status?.lagSeconds === 0 ? true : undefined), {
        what: `${ns}: lag 0 again`,
        timeoutMs: 60_000,
      });
      await new Promise((r) => setTimeout(r, 1500));
      await c.apply({
        apiVersion: "walship.dev/v1alpha1",
        kind: "SqliteRestore",
        metadata: { name: "latest", namespace: ns },
        spec: { sqliteReplicaName: "db", mode: "InPlace" },
      });
      const done = await waitFor(
        async () => {
          const r = await c.cp.request<{ status?: { phase?: string } }>(
            "GET",
            `/apis/walship.dev/v1alpha1/namespaces/${ns}/sqliterestores/latest`,
          );
          return ["Succeeded", "Failed"].includes(r.body.status?.phase ?? "") ? r.body : undefined;
        },
        { what: `${ns}: SqliteRestore latest finished`, timeoutMs: 300_000, intervalMs: 500 },
      ).catch(async (err) => {
        throw new Error(`${(err as Error).message}\n${await c.describe(ns)}`);
      });
      assert.equal(
        done.status?.phase,
        "Succeeded",
        `${JSON.stringify(done.status)}\n${await c.describe(ns)}`,
      );
      const p3 = await readyPod(c, ns, "app-0", (x) => x.metadata.uid !== p2.metadata.uid);
      const after3 = await rows(p3);
      assert.deepEqual(after3.slice(0, after2.length), after2, "every row survives the restore");
      assert.equal(fs.statSync(path.join(dir, "app.db")).uid, v.uid, "the swapped-in database is the app's");
    });
  }
});
