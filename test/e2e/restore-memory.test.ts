/**
 * A restore Job restores a 1 GiB database inside its memory limit, on the real node (the limit is a
 * real cgroup limit there: a Job that outgrows it is OOM-killed). The database (1 GiB of
 * incompressible rows plus a WAL written after the snapshot) is replicated to MinIO by bin/walship on
 * the host, under the prefix the SqliteReplica gives its first pod; a NewClaim SqliteRestore then
 * restores it through the operator. The test samples the restore container's cgroup while it runs and
 * prints the peak (the figure docs/operator.md gives for sizing), and checks from the restore's log
 * that the snapshot was written to the claim's volume with direct I/O.
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { after, before, describe, it } from "node:test";
import Database from "better-sqlite3";
import { RESTORE_JOB_CONTAINER } from "../../src/operator/specs/restorejob.ts";
import {
  appStatefulSet,
  createS3Secret,
  installOperator,
  type PodLite,
  s3SqliteReplica,
} from "../helpers/e2e.ts";
import { type Minio, startMinio } from "../helpers/minio.ts";
import { type Cluster, startCluster } from "../helpers/node/index.ts";
import { makeTempDir, waitFor } from "../helpers/proc.ts";
import { type Replicator, startReplicator, walship } from "../helpers/walship.ts";

const NS = "big";
const BUCKET = "big";
const MOUNT = "/var/lib/app";
const ROW_BYTES = 4000;
const ROWS = 262_144; // 1 GiB of incompressible blobs (plus page overhead)

/** The cgroup v1 memory directory of a container on this node, found by its id. */
function memoryCgroup(containerId: string): string | undefined {
  const root = "/sys/fs/cgroup/memory/kubepods";
  const walk = (dir: string, depth: number): string | undefined => {
    if (depth > 4) return undefined;
    for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
      if (!e.isDirectory()) continue;
      const p = path.join(dir, e.name);
      if (e.name === containerId) return p;
      const found = walk(p, depth + 1);
      if (found) return found;
    }
    return undefined;
  };
  return fs.existsSync(root) ? walk(root, 0) : undefined;
}

describe("a 1 GiB restore by a restore Job, inside its memory limit (real node)", {
  timeout: 1_800_000,
}, () => {
  let c: Cluster;
  let minio: Minio;
  let dir = "";
  let rep: Replicator | undefined;
  let sourceRows = 0;

  before(async () => {
    c = await startCluster();
    minio = await startMinio({ host: c.gateway });
    await minio.createBucket(BUCKET);
    await installOperator(c);
    await c.createNamespace(NS);
    await createS3Secret(c, NS, minio);

    // The source: 1 GiB, replicated by the host's walship where the SqliteReplica's first pod would.
    dir = makeTempDir("big");
    const file = path.join(dir, "app.db");
    const db = new Database(file);
    db.pragma("journal_mode = WAL");
    db.exec("CREATE TABLE blobs (id INTEGER PRIMARY KEY, b BLOB NOT NULL)");
    db.exec(
      `WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < ${ROWS}) INSERT INTO blobs SELECT x, randomblob(${ROW_BYTES}) FROM n`,
    );
    db.pragma("wal_checkpoint(TRUNCATE)");
    db.close();
    const config = path.join(dir, "walship.yml");
    fs.writeFileSync(
      config,
      [
        "dbs:",
        `  - path: ${file}`,
        "    replicas:",
        "      - type: s3",
        `        bucket: ${BUCKET}`,
        `        path: ${NS}/app-0`,
        `        endpoint: ${minio.endpoint}`,
        `        region: ${minio.region}`,
        "        force-path-style: true",
        `        access-key-id: ${minio.accessKeyId}`,
        `        secret-access-key: ${minio.secretAccessKey}`,
        "        sync-interval: 200ms",
        "",
      ].join("\n"),
    );
    rep = startReplicator(["-config", config]);
    // After the snapshot, some WAL to apply on top of it.
    await waitFor(
      async () => {
        const r = await walship(["snapshots", "-config", config, "-json", file]);
        return r.code === 0 && r.stdout.trim().startsWith("[") && JSON.parse(r.stdout).length > 0
          ? true
          : undefined;
      },
      { what: "the 1 GiB snapshot in MinIO", timeoutMs: 600_000, intervalMs: 2000 },
    );
    const w = new Database(file);
    w.exec(
      `WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 2000) INSERT INTO blobs SELECT ${ROWS} + x, randomblob(${ROW_BYTES}) FROM n`,
    );
    sourceRows = (w.prepare("SELECT count(*) AS n FROM blobs").get() as { n: number }).n;
    w.close();
    await new Promise((r) => setTimeout(r, 3000));
    assert.equal(await rep.stop(), 0, rep.output().slice(-2000));
    rep = undefined;

    await c.apply(appStatefulSet(NS, MOUNT, { replicas: 0 }));
    await c.apply(
      s3SqliteReplica(
        NS,
        "db",
        minio,
        { mount: MOUNT, bucket: BUCKET, prefix: NS },
        { restoreOnStart: "None" },
      ),
    );
  });
  after(async () => {
    await rep?.kill9();
    await minio?.close();
    await c?.stop();
  });

  it("restores into a new claim through a Job that stays under its memory limit", async () => {
    await c.apply({
      apiVersion: "walship.dev/v1alpha1",
      kind: "SqliteRestore",
      metadata: { name: "big", namespace: NS },
      spec: { sqliteReplicaName: "db", mode: "NewClaim", newClaim: { name: "restored", size: "3Gi" } },
    });
    // Sample the restore container's cgroup while it runs: the peak the limit acts on.
    let peak = 0;
    let rssPeak = 0;
    let limit = 0;
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        const ps = await c.crictl(["ps", "-q", "--name", "walship-restore"], { allowFailure: true });
        for (const id of ps.stdout.split("\n").filter(Boolean)) {
          const cg = memoryCgroup(id);
          if (!cg) continue;
          try {
            peak = Math.max(
              peak,
              Number(fs.readFileSync(path.join(cg, "memory.max_usage_in_bytes"), "utf8")),
            );
            limit = Number(fs.readFileSync(path.join(cg, "memory.limit_in_bytes"), "utf8"));
            const rss = /^total_rss (\d+)$/m.exec(fs.readFileSync(path.join(cg, "memory.stat"), "utf8"));
            if (rss) rssPeak = Math.max(rssPeak, Number(rss[1]));
          } catch {
            // the container ended between the listing and the read
          }
        }
        await new Promise((r) => setTimeout(r, 200));
      }
    })();
    const done = await waitFor(
      async () => {
        const r = await c.cp.request<{ status?: { phase?: string; message?: string; failure?: unknown } }>(
          "GET",
          `/apis/walship.dev/v1alpha1/namespaces/${NS}/sqliterestores/big`,
        );
        return ["Succeeded", "Failed"].includes(r.body.status?.phase ?? "") ? r.body : undefined;
      },
      { what: "SqliteRestore big finished", timeoutMs: 1_200_000, intervalMs: 1000 },
    ).finally(() => {
      sampling = false;
    });
    await sampler;
    const pods = await c.cp.request<{ items: PodLite[] }>(
      "GET",
      `/api/v1/namespaces/${NS}/pods?labelSelector=job-name%3Dbig-restore`,
    );
    const term = pods.body.items
      .flatMap((p) => p.status?.containerStatuses ?? [])
      .map((s) => s.state?.terminated);
    const mib = (n: number) => `${(n / 1048576).toFixed(0)} MiB`;
    console.log(
      `restore of ${sourceRows} rows (~1 GiB): peak cgroup memory ${mib(peak)} (RSS ${mib(rssPeak)}) of a ${mib(limit)} limit`,
    );
    assert.equal(done.status?.phase, "Succeeded", `${JSON.stringify(done.status)}\n${await c.describe(NS)}`);
    assert.ok(term.length >= 1, "the restore Job's pod ran");
    for (const t of term) assert.notEqual(t?.reason, "OOMKilled", "no restore pod was OOM-killed");
    assert.equal(pods.body.items.length, 1, "one pod: the first attempt succeeded");
    assert.ok(limit > 0 && peak > 0, "the container's memory cgroup was sampled");
    // The snapshot's whole blocks went to the claim's volume with direct I/O (the restore's log line
    // "wal applied" counts them), not through the page cache: the container's file system takes it.
    const pod = pods.body.items[0]?.metadata.name ?? "";
    const log = await c.logs(NS, pod, RESTORE_JOB_CONTAINER);
    const direct = /"directBytes":(\d+)/.exec(log);
    assert.ok(
      direct && Number(direct[1]) >= 512 * 1048576,
      `at least 512 MiB of the snapshot written directly; the restore's log ends:\n${log.slice(-2000)}`,
    );

    const restored = new Database(path.join(await c.pvcDir(NS, "restored"), "app.db"), { readonly: true });
    try {
      assert.equal(
        (restored.prepare("SELECT count(*) AS n FROM blobs").get() as { n: number }).n,
        sourceRows,
      );
      assert.equal(restored.prepare("PRAGMA quick_check").pluck().get(), "ok");
    } finally {
      restored.close();
    }
  });
});
