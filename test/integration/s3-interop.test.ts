/**
 * The S3 destination against a real MinIO, with the real litestream v0.3.13 on the other side:
 * stock litestream restores a Walship S3 replica (several generations, checkpoints, snapshots),
 * walship restores one written by litestream, and one config file drives both binaries.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { runLitestream, spawnLitestream } from "../helpers/litestream.ts";
import { type Minio, startMinio } from "../helpers/minio.ts";
import { integrityCheck, logicalHash, logicalHashOf, openWorkload, writeFor } from "../helpers/sqlite.ts";
import { sleep, startReplicator, walship } from "../helpers/walship.ts";

let minio: Minio;
const dirs: string[] = [];
let env: NodeJS.ProcessEnv;

before(async () => {
  minio = await startMinio();
  // Credentials the way users pass them to Litestream: its own env names, expanded in the file.
  env = {
    LITESTREAM_ACCESS_KEY_ID: minio.accessKeyId,
    LITESTREAM_SECRET_ACCESS_KEY: minio.secretAccessKey,
    S3_ENDPOINT: minio.endpoint,
  };
});
after(async () => {
  await minio?.close();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

async function setup(bucket: string): Promise<{ dir: string; cfg: string; db: string }> {
  const dir = mkdtempSync(path.join(os.tmpdir(), "walship-s3-"));
  dirs.push(dir);
  await minio.createBucket(bucket);
  const db = path.join(dir, "app.db");
  const cfg = path.join(dir, "litestream.yml");
  writeFileSync(
    cfg,
    `access-key-id: $LITESTREAM_ACCESS_KEY_ID
secret-access-key: $LITESTREAM_SECRET_ACCESS_KEY
dbs:
  - path: ${db}
    min-checkpoint-page-count: 64
    replicas:
      - name: minio
        type: s3
        bucket: ${bucket}
        path: apps/app.db
        endpoint: \${S3_ENDPOINT}
        region: us-east-1
        force-path-style: true
        sync-interval: 100ms
        snapshot-interval: 2s
`,
  );
  return { dir, cfg, db };
}

describe("S3 destination on MinIO, interop with litestream v0.3.13", () => {
  it("stock litestream restores a Walship S3 replica with several generations", async () => {
    const { dir, cfg, db } = await setup("walship-to-litestream");
    const app = openWorkload(db, 21);
    for (let gen = 0; gen < 3; gen++) {
      const rep = startReplicator(["-config", cfg], { env });
      await writeFor(app, 2500);
      await sleep(500);
      assert.equal(await rep.stop(), 0, rep.output());
      app.db.pragma("wal_checkpoint(TRUNCATE)");
      app.step();
    }
    const rep = startReplicator(["-config", cfg], { env });
    await writeFor(app, 1000);
    await sleep(500);
    assert.equal(await rep.stop(), 0, rep.output());
    const want = logicalHashOf(app.db);
    app.close();
    const gens = await walship(["generations", "-config", cfg, db], { env });
    assert.equal(gens.code, 0, gens.stderr);
    assert.ok(
      gens.stdout.trim().split("\n").length - 1 >= 3,
      `several generations expected:\n${gens.stdout}`,
    );
    for (const [name, run] of [
      ["litestream", (o: string) => runLitestream(["restore", "-config", cfg, "-o", o, db], { env })],
      ["walship", (o: string) => walship(["restore", "-config", cfg, "-o", o, db], { env })],
    ] as const) {
      const out = path.join(dir, `${name}.db`);
      const res = await run(out);
      assert.equal(res.code, 0, `${name}: ${res.stderr}`);
      assert.equal(integrityCheck(out), "ok");
      assert.equal(logicalHash(out), want, `${name} restore differs`);
    }
  });

  it("walship restores an S3 replica written by litestream, and one config drives both in turn", async () => {
    const { dir, cfg, db } = await setup("litestream-to-walship");
    const app = openWorkload(db, 22);
    const ls = spawnLitestream(["replicate", "-config", cfg], { env });
    await sleep(1500);
    await writeFor(app, 2000);
    await sleep(1500);
    await ls.stop();
    const afterLitestream = logicalHashOf(app.db);
    const first = path.join(dir, "from-litestream.db");
    const r1 = await walship(["restore", "-config", cfg, "-o", first, db], { env });
    assert.equal(r1.code, 0, r1.stderr);
    assert.equal(logicalHash(first), afterLitestream);

    const rep = startReplicator(["-config", cfg], { env });
    await writeFor(app, 1500);
    await sleep(800);
    assert.equal(await rep.stop(), 0, rep.output());
    const ls2 = spawnLitestream(["replicate", "-config", cfg], { env });
    await sleep(1500);
    await writeFor(app, 1000);
    await sleep(1500);
    await ls2.stop();
    const want = logicalHashOf(app.db);
    app.close();
    for (const [name, run] of [
      ["litestream", (o: string) => runLitestream(["restore", "-config", cfg, "-o", o, db], { env })],
      ["walship", (o: string) => walship(["restore", "-config", cfg, "-o", o, db], { env })],
    ] as const) {
      const out = path.join(dir, `${name}-final.db`);
      const res = await run(out);
      assert.equal(res.code, 0, `${name}: ${res.stderr}`);
      assert.equal(integrityCheck(out), "ok");
      assert.equal(logicalHash(out), want, `${name} restore differs`);
    }
  });
});
