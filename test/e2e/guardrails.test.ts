/**
 * Guardrails on the real node (issue 19): the app's database lives on an emptyDir of medium Memory
 * with a sizeLimit, which the kubelet mounts as a tmpfs of that size (checked on the node). From the
 * node, through that tmpfs (SQLite's locks and shared memory work across the pod's processes and
 * ours, one kernel):
 * - a reader that keeps its transaction open while commits pile up: WALGrowing=True, False once it ends;
 * - SQLite's write lock held across the sidecar's checkpoints: CheckpointFailing=True, False after;
 * - the volume filled on purpose: DiskPressure=True (LowFreeSpace, naming the pod and the numbers)
 *   with a Warning Event and the pod's facts in its status; freed, DiskPressure=False.
 */
import assert from "node:assert/strict";
import { rmSync, statfsSync, statSync, writeFileSync } from "node:fs";
import * as path from "node:path";
import { after, before, describe, it } from "node:test";
import Database from "better-sqlite3";
import {
  appStatefulSet,
  type Condition,
  createS3Secret,
  installOperator,
  readyPod,
  s3SqliteReplica,
} from "../helpers/e2e.ts";
import { type Minio, startMinio } from "../helpers/minio.ts";
import { KUBELET_ROOT } from "../helpers/node/host.ts";
import { type Cluster, startCluster } from "../helpers/node/index.ts";
import { waitFor } from "../helpers/proc.ts";

const NS = "guard";
const BUCKET = "guardrails";
const MOUNT = "/var/lib/app";
const MiB = 1024 * 1024;
const SIZE_MIB = 32;

interface Cr {
  status?: {
    conditions?: Condition[];
    pods?: Array<{
      name: string;
      guardrails?: Array<{ path: string; volumeFreeBytes?: number; volumeTotalBytes?: number }>;
    }>;
  };
}

describe("guardrails on the real node: a small database volume filled on purpose", {
  timeout: 900_000,
}, () => {
  let c: Cluster;
  let minio: Minio;
  let filler = "";

  before(async () => {
    c = await startCluster();
    minio = await startMinio({ host: c.gateway });
    await minio.createBucket(BUCKET);
    await c.createNamespace(NS);
    await installOperator(c);
  });
  after(async () => {
    if (filler) rmSync(filler, { force: true });
    await minio?.close();
    await c?.stop();
  });

  const cr = async () =>
    (await c.cp.request<Cr>("GET", `/apis/walship.dev/v1alpha1/namespaces/${NS}/sqlitereplicas/db`)).body;
  const cond = (x: Cr, type: string) => x.status?.conditions?.find((k) => k.type === type);
  const until = (what: string, pred: (x: Cr) => boolean) =>
    waitFor(
      async () => {
        const x = await cr();
        return pred(x) ? x : undefined;
      },
      { what, timeoutMs: 120_000, intervalMs: 500 },
    ).catch(async (err) => {
      throw new Error(
        `${(err as Error).message}: ${JSON.stringify((await cr()).status)}\n${await c.describe(NS)}`,
      );
    });

  it("WALGrowing, CheckpointFailing and DiskPressure turn True with their cause, and False once it goes", async () => {
    await createS3Secret(c, NS, minio);
    // The app's volume: a memory-backed emptyDir of SIZE_MIB instead of the claim.
    const sts = appStatefulSet(NS, MOUNT) as {
      spec: { volumeClaimTemplates?: unknown; template: { spec: Record<string, unknown> } };
    };
    delete sts.spec.volumeClaimTemplates;
    sts.spec.template.spec.volumes = [
      { name: "data", emptyDir: { medium: "Memory", sizeLimit: `${SIZE_MIB}Mi` } },
    ];
    await c.apply(sts);
    // Snapshots every 5 s: each begins with a RESTART checkpoint (which restarts the WAL, or fails).
    await c.apply(
      s3SqliteReplica(
        NS,
        "db",
        minio,
        { mount: MOUNT, bucket: BUCKET, prefix: NS },
        { snapshotInterval: "5s" },
      ),
    );
    const p = await readyPod(c, NS, "app-0", (x) =>
      (x.spec.initContainers ?? []).some((i) => i.name === "walship"),
    );
    const clear = await until(
      "Ready, every guardrail False",
      (x) =>
        cond(x, "Ready")?.status === "True" &&
        ["DiskPressure", "WALGrowing", "CheckpointFailing"].every((t) => cond(x, t)?.status === "False"),
    );
    assert.equal(cond(clear, "DiskPressure")?.reason, "EnoughFreeSpace");

    // On the node: the kubelet mounted the emptyDir as a tmpfs of the sizeLimit.
    const dir = path.join(KUBELET_ROOT, "pods", p.metadata.uid, "volumes", "kubernetes.io~empty-dir", "data");
    const fs0 = statfsSync(dir);
    assert.equal(fs0.blocks * fs0.bsize, SIZE_MIB * MiB, `${dir} is a ${SIZE_MIB} MiB file system`);
    const facts = clear.status?.pods?.find((x) => x.name === "app-0")?.guardrails?.[0];
    assert.equal(facts?.path, `${MOUNT}/app.db`);
    assert.equal(facts?.volumeTotalBytes, SIZE_MIB * MiB, "the sidecar sees the same volume");

    // WALGrowing: a reader keeps its transaction open while one row is rewritten over and over (the
    // WAL grows by a frame per commit, the database not at all) past a quarter of the volume.
    const file = path.join(dir, "app.db");
    const reader = new Database(file, { readonly: true });
    const writer = new Database(file);
    try {
      writer.pragma("busy_timeout = 10000");
      writer.exec("CREATE TABLE IF NOT EXISTS hot (id INTEGER PRIMARY KEY, v BLOB)");
      writer.exec("INSERT OR REPLACE INTO hot VALUES (1, x'00')");
      reader.exec("BEGIN");
      reader.prepare("SELECT count(*) FROM starts").get();
      const rewrite = writer.prepare("UPDATE hot SET v = ? WHERE id = 1");
      for (let i = 0; statSync(`${file}-wal`).size < 8.5 * MiB; i++) rewrite.run(Buffer.alloc(100, i & 0xff));
      const grown = await until("WALGrowing True", (x) => cond(x, "WALGrowing")?.status === "True");
      assert.equal(cond(grown, "WALGrowing")?.reason, "WALTakesVolume");
      assert.match(
        cond(grown, "WALGrowing")!.message,
        /^pod app-0 \/var\/lib\/app\/app\.db: [\d.]+ MiB written to the WAL since it last restarted, more than 25% of its 32\.0 MiB volume/,
      );
      assert.equal(
        cond(grown, "CheckpointFailing")?.status,
        "False",
        "a pinned WAL is not a failed checkpoint",
      );
      reader.exec("COMMIT");
      await until("WALGrowing False", (x) => cond(x, "WALGrowing")?.status === "False");

      // CheckpointFailing: SQLite's write lock held across three of the sidecar's checkpoints.
      writer.exec("BEGIN IMMEDIATE");
      let failing: Cr;
      try {
        failing = await until(
          "CheckpointFailing True",
          (x) => cond(x, "CheckpointFailing")?.status === "True",
        );
      } finally {
        writer.exec("ROLLBACK");
      }
      assert.equal(cond(failing, "CheckpointFailing")?.reason, "CheckpointErrors");
      assert.match(
        cond(failing, "CheckpointFailing")!.message,
        /^pod app-0 \/var\/lib\/app\/app\.db: \d+ checkpoints failed in a row, the last: checkpoint \/var\/lib\/app\/app\.db \(RESTART\): .*locked/,
      );
      await until("CheckpointFailing False", (x) => cond(x, "CheckpointFailing")?.status === "False");
    } finally {
      reader.close();
      writer.close();
    }

    // Filled on purpose: 2 MiB left of 32 (6%).
    filler = path.join(dir, "filler");
    const fs1 = statfsSync(dir);
    writeFileSync(filler, Buffer.alloc(fs1.bavail * fs1.bsize - 2 * MiB));
    const full = await until("DiskPressure True", (x) => cond(x, "DiskPressure")?.status === "True");
    const dp = cond(full, "DiskPressure")!;
    assert.equal(dp.reason, "LowFreeSpace");
    assert.match(
      dp.message,
      /^pod app-0 \/var\/lib\/app\/app\.db: [\d.]+ MiB free of 32\.0 MiB \(below 10%\)$/,
    );
    const pf = full.status?.pods?.find((x) => x.name === "app-0")?.guardrails?.[0];
    assert.ok(pf?.volumeFreeBytes !== undefined && pf.volumeFreeBytes < 3.2 * MiB, JSON.stringify(pf));
    await waitFor(
      async () => {
        const r = await c.cp.request<{
          items: Array<{ reason: string; type: string; involvedObject: { name: string } }>;
        }>("GET", `/api/v1/namespaces/${NS}/events`);
        return r.body.items.some(
          (e) => e.involvedObject.name === "db" && e.reason === "LowFreeSpace" && e.type === "Warning",
        )
          ? true
          : undefined;
      },
      { what: "a Warning Event LowFreeSpace", timeoutMs: 30_000, intervalMs: 500 },
    );

    // Space returns.
    rmSync(filler);
    filler = "";
    const freed = await until("DiskPressure False", (x) => cond(x, "DiskPressure")?.status === "False");
    assert.equal(cond(freed, "DiskPressure")?.reason, "EnoughFreeSpace");
    await until("Ready again", (x) => cond(x, "Ready")?.status === "True");
  });
});
