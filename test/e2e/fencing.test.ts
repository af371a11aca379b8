/**
 * Single-writer fencing on the real node (issue #19): two StatefulSets named `app` in two namespaces,
 * each with a SqliteReplica pointed at the same bucket path, so that both pods (`app-0`) write the
 * same replica path `<path>/app-0`. The first holds the claim (`walship/claim.json` beside the
 * layout); the second refuses, and its SqliteReplica says so (WriterConflict, Degraded, a Warning
 * Event naming the first pod and SqliteReplica); the bucket holds only the first's generation; the
 * first keeps replicating. Deleting the first SqliteReplica (its sidecar stops cleanly, releasing the
 * claim) lets the second take over.
 *
 * In each namespace the sidecar also holds a Lease per destination (src/replicator/lease.ts), with
 * the token the operator projects into it and the RoleBinding the operator makes: the Lease names the
 * holder, goes with its SqliteReplica, and fences a second writer in the same namespace (a Deployment
 * whose fixed replica name is that same path) by the Lease itself.
 */
import assert from "node:assert/strict";
import * as path from "node:path";
import { after, before, describe, it } from "node:test";
import { GetObjectCommand, ListObjectsV2Command } from "@aws-sdk/client-s3";
import {
  appDeployment,
  appStatefulSet,
  type Condition,
  createS3Secret,
  insertRow,
  installOperator,
  readyPod,
  s3SqliteReplica,
} from "../helpers/e2e.ts";
import { type Minio, startMinio } from "../helpers/minio.ts";
import { type Cluster, startCluster } from "../helpers/node/index.ts";
import { waitFor } from "../helpers/proc.ts";

const FIRST = "first";
const SECOND = "second";
const BUCKET = "fencing";
const PREFIX = "shared";
const MOUNT = "/var/lib/app";

interface LeaseLite {
  metadata: {
    name: string;
    annotations?: Record<string, string>;
    ownerReferences?: Array<{ kind: string; name: string; uid: string }>;
  };
  spec: { holderIdentity?: string | null };
}

interface CrStatus {
  generation?: string;
  lagSeconds?: number;
  conditions?: Condition[];
  pods?: Array<{ name: string; fencedBy?: string; reason?: string }>;
}

describe("single-writer fencing (real node): two StatefulSets on one replica path", {
  timeout: 1_800_000,
}, () => {
  let c: Cluster;
  let minio: Minio;

  before(async () => {
    c = await startCluster();
    minio = await startMinio({ host: c.gateway });
    await minio.createBucket(BUCKET);
    await installOperator(c);
    for (const ns of [FIRST, SECOND]) {
      await c.createNamespace(ns);
      await createS3Secret(c, ns, minio);
    }
  });
  after(async () => {
    await minio?.close();
    await c?.stop();
  });

  const cr = async (ns: string): Promise<CrStatus> =>
    (
      await c.cp.request<{ status?: CrStatus }>(
        "GET",
        `/apis/walship.dev/v1alpha1/namespaces/${ns}/sqlitereplicas/db`,
      )
    ).body.status ?? {};
  const cond = (s: CrStatus, type: string) => s.conditions?.find((x) => x.type === type);
  const until = <T>(what: string, ns: string, fn: (s: CrStatus) => T | undefined, timeoutMs = 180_000) =>
    waitFor(
      async () => {
        const s = await cr(ns);
        return fn(s);
      },
      { what, timeoutMs, intervalMs: 500 },
    ).catch(async (err) => {
      throw new Error(`${(err as Error).message}: ${JSON.stringify(await cr(ns))}\n${await c.describe(ns)}`);
    });
  const keys = async (prefix: string): Promise<string[]> => {
    const out: string[] = [];
    let token: string | undefined;
    do {
      const r = await minio.client().send(
        new ListObjectsV2Command({
          Bucket: BUCKET,
          Prefix: prefix,
          ...(token ? { ContinuationToken: token } : {}),
        }),
      );
      for (const o of r.Contents ?? []) if (o.Key) out.push(o.Key);
      token = r.IsTruncated ? r.NextContinuationToken : undefined;
    } while (token);
    return out;
  };
  const generations = async () =>
    [...new Set((await keys(`${PREFIX}/app-0/generations/`)).map((k) => k.split("/")[3]))].sort();
  /** The Leases the sidecars of SqliteReplica `cr` made in `ns`. */
  const leases = async (ns: string, cr = "db"): Promise<LeaseLite[]> =>
    (
      await c.cp.request<{ items: LeaseLite[] }>(
        "GET",
        `/apis/coordination.k8s.io/v1/namespaces/${ns}/leases?labelSelector=walship.dev%2Fsqlitereplica%3D${cr}`,
      )
    ).body.items;
  const warnings = async (ns: string) =>
    (
      await c.cp.request<{
        items: Array<{ type: string; reason: string; message: string; involvedObject: { name: string } }>;
      }>("GET", `/api/v1/namespaces/${ns}/events`)
    ).body.items.filter((e) => e.involvedObject.name === "db" && e.type === "Warning");

  it("the second refuses, naming the first; only the first's generation is there; the first keeps replicating", async () => {
    // The first StatefulSet replicates.
    await c.apply(appStatefulSet(FIRST, MOUNT));
    await c.apply(s3SqliteReplica(FIRST, "db", minio, { mount: MOUNT, bucket: BUCKET, prefix: PREFIX }));
    const first = await readyPod(c, FIRST, "app-0", (x) =>
      (x.spec.initContainers ?? []).some((i) => i.name === "walship"),
    );
    const gen1 = await until("first Ready, lag 0", FIRST, (s) =>
      cond(s, "Ready")?.status === "True" && s.lagSeconds === 0 ? s.generation : undefined,
    );
    assert.ok(gen1, "the first reports its generation");
    assert.deepEqual(await generations(), [gen1]);
    const claim = JSON.parse(
      await (
        await minio
          .client()
          .send(new GetObjectCommand({ Bucket: BUCKET, Key: `${PREFIX}/app-0/walship/claim.json` }))
      ).Body!.transformToString(),
    ) as { holder: { pod?: { namespace: string; name: string; uid: string }; sqliteReplica?: string } };
    assert.deepEqual(claim.holder.pod, { namespace: FIRST, name: "app-0", uid: first.metadata.uid });
    assert.equal(claim.holder.sqliteReplica, `${FIRST}/db`);

    // The sidecar holds the path's Lease in its namespace too: the operator's RoleBinding gave its
    // service account the right, and the token projected into it reached the API server.
    const binding = await c.cp.request<{ roleRef: { name: string }; subjects: Array<{ name: string }> }>(
      "GET",
      `/apis/rbac.authorization.k8s.io/v1/namespaces/${FIRST}/rolebindings/db-walship-lease`,
    );
    assert.equal(binding.status, 200, "the operator's RoleBinding of the Lease role");
    assert.equal(binding.body.roleRef.name, "walship-replicator");
    assert.deepEqual(
      binding.body.subjects.map((x) => x.name),
      ["default"],
    );
    const [lease, ...more] = await waitFor(
      async () => {
        const l = await leases(FIRST);
        return l.some((x) => x.metadata.annotations?.["walship.dev/claim"]) ? l : undefined;
      },
      { what: "the first sidecar's Lease", timeoutMs: 60_000, intervalMs: 500 },
    );
    assert.equal(more.length, 0, "one Lease: one destination");
    assert.match(lease!.spec.holderIdentity ?? "", /^app-0_[0-9a-f]{12}$/);
    assert.equal(lease!.metadata.annotations?.["walship.dev/replica-path"], `s3://${BUCKET}/${PREFIX}/app-0`);
    const leaseDoc = JSON.parse(lease!.metadata.annotations?.["walship.dev/claim"] ?? "{}");
    assert.deepEqual(leaseDoc.holder.pod, { namespace: FIRST, name: "app-0", uid: first.metadata.uid });
    assert.equal(lease!.metadata.ownerReferences?.[0]?.kind, "SqliteReplica");
    assert.equal(lease!.metadata.ownerReferences?.[0]?.name, "db");

    // The second, same names in another namespace, same bucket path.
    await c.apply(appStatefulSet(SECOND, MOUNT));
    await c.apply(s3SqliteReplica(SECOND, "db", minio, { mount: MOUNT, bucket: BUCKET, prefix: PREFIX }));
    await readyPod(c, SECOND, "app-0", (x) =>
      (x.spec.initContainers ?? []).some((i) => i.name === "walship"),
    );
    const holder = `pod ${FIRST}/app-0 (uid ${first.metadata.uid}) of SqliteReplica ${FIRST}/db`;
    const conflict = await until("second WriterConflict", SECOND, (s) =>
      cond(s, "WriterConflict")?.status === "True" ? s : undefined,
    );
    assert.match(
      cond(conflict, "WriterConflict")?.message ?? "",
      new RegExp(`^pod app-0 refuses to replicate: destination minio: ${reEscape(holder)}`),
    );
    assert.equal(cond(conflict, "Degraded")?.status, "True");
    assert.equal(cond(conflict, "Degraded")?.reason, "WriterConflict");
    assert.equal(cond(conflict, "Ready")?.status, "False");
    assert.equal(conflict.pods?.[0]?.reason, "WriterConflict");
    assert.equal(conflict.pods?.[0]?.fencedBy, `destination minio: ${holder}`);
    const event = await waitFor(
      async () => (await warnings(SECOND)).find((e) => e.reason === "WriterConflict"),
      { what: "a WriterConflict Warning Event on second/db", timeoutMs: 30_000, intervalMs: 500 },
    );
    assert.match(event.message, new RegExp(reEscape(holder)));
    assert.equal(cond(await cr(FIRST), "WriterConflict")?.status, "False", "the first has no conflict");

    // The first keeps replicating: a row written now reaches its generation; nothing of the second's
    // is in the bucket.
    const walBefore = (await keys(`${PREFIX}/app-0/generations/${gen1}/wal/`)).length;
    const dir = await c.pvcDir(FIRST, "data-app-0");
    for (let i = 0; i < 3; i++) insertRow(path.join(dir, "app.db"), `first-${i}`);
    await waitFor(
      async () =>
        (await keys(`${PREFIX}/app-0/generations/${gen1}/wal/`)).length > walBefore ? true : undefined,
      { what: "the first's new WAL segments in the bucket", timeoutMs: 60_000, intervalMs: 500 },
    );
    await until("first Ready, lag 0 again", FIRST, (s) =>
      cond(s, "Ready")?.status === "True" && s.lagSeconds === 0 ? true : undefined,
    );
    assert.deepEqual(await generations(), [gen1], "only the first's generation at the shared path");
    assert.equal(cond(await cr(SECOND), "WriterConflict")?.status, "True", "the second still refuses");

    // The first SqliteReplica goes: its sidecar stops cleanly and releases the claim; the second
    // takes over with its own generation, and its conflict clears.
    await c.kubectl(["-n", FIRST, "delete", "sqlitereplica", "db", "--wait=true", "--timeout=120s"]);
    const gen2 = await until("second Ready", SECOND, (s) =>
      cond(s, "Ready")?.status === "True" && cond(s, "WriterConflict")?.status === "False"
        ? s.generation
        : undefined,
    );
    assert.ok(gen2 && gen2 !== gen1, `the second's own generation: ${gen2}`);
    assert.ok((await generations()).includes(gen2!));
    // The first's Lease went with its SqliteReplica (owner reference, garbage collection).
    await waitFor(async () => ((await leases(FIRST)).length === 0 ? true : undefined), {
      what: "the first's Lease deleted with its SqliteReplica",
      timeoutMs: 60_000,
      intervalMs: 500,
    });
  });

  it("in one namespace, a second writer is fenced by the first's Lease, which it names", async () => {
    // SECOND's app-0 now holds shared/app-0 and its Lease. A Deployment named app-0 replicates to
    // that same path (a Deployment's replica is named after it) from the same namespace.
    const lease = await waitFor(
      async () => (await leases(SECOND)).find((l) => l.metadata.annotations?.["walship.dev/claim"]),
      { what: "the second sidecar's Lease", timeoutMs: 60_000, intervalMs: 500 },
    );
    const gensBefore = await generations();
    const objs = appDeployment(SECOND, MOUNT, { name: "app-0" }) as Array<{
      kind: string;
      metadata: { name: string };
      spec: { template?: { spec: { volumes: Array<{ persistentVolumeClaim?: { claimName: string } }> } } };
    }>;
    // The StatefulSet's own claim is data-app-0: the Deployment gets another.
    objs[0]!.metadata.name = "dup-data";
    objs[1]!.spec.template!.spec.volumes[0]!.persistentVolumeClaim!.claimName = "dup-data";
    for (const o of objs) await c.apply(o);
    const dup = s3SqliteReplica(SECOND, "dup", minio, { mount: MOUNT, bucket: BUCKET, prefix: PREFIX }) as {
      spec: Record<string, unknown>;
    };
    delete dup.spec.statefulSetName;
    dup.spec.workloadRef = { kind: "Deployment", name: "app-0" };
    await c.apply(dup);

    const status = async () =>
      (
        await c.cp.request<{ status?: CrStatus }>(
          "GET",
          `/apis/walship.dev/v1alpha1/namespaces/${SECOND}/sqlitereplicas/dup`,
        )
      ).body.status ?? {};
    const conflict = await waitFor(
      async () => {
        const s = await status();
        return cond(s, "WriterConflict")?.status === "True" ? s : undefined;
      },
      { what: "dup WriterConflict", timeoutMs: 180_000, intervalMs: 500 },
    ).catch(async (err) => {
      throw new Error(
        `${(err as Error).message}: ${JSON.stringify(await status())}\n${await c.describe(SECOND)}`,
      );
    });
    const msg = cond(conflict, "WriterConflict")?.message ?? "";
    assert.match(msg, new RegExp(`pod ${SECOND}/app-0 \\(uid [^)]+\\) of SqliteReplica ${SECOND}/db`));
    assert.match(
      msg,
      new RegExp(`\\(Lease ${SECOND}/${lease.metadata.name}\\)`),
      "fenced by the Lease, named",
    );
    // The holder keeps replicating; only its generation is at the path.
    assert.equal(cond(await cr(SECOND), "WriterConflict")?.status, "False");
    assert.deepEqual(await generations(), gensBefore, "no generation of the fenced writer's");
    assert.deepEqual(await leases(SECOND, "dup"), [], "the fenced writer made no Lease of its own");
  });
});

function reEscape(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}
