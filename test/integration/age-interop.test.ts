/**
 * age-encrypted replicas with the real litestream v0.3.13 on the other side, on a file destination
 * and on S3 (a real MinIO), both ways: litestream restores what Walship encrypted (several
 * generations, checkpoints, snapshots), and Walship restores, then continues, what litestream
 * encrypted, after which litestream still restores the whole. One config file drives both binaries.
 * And on S3: the bytes MinIO keeps on its disk hold none of the database's contents with age, while
 * the same database replicated without age does show them (the check can fail).
 */
import assert from "node:assert/strict";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { generateX25519Identity, identityToRecipient } from "age-encryption";
import { runLitestream, spawnLitestream } from "../helpers/litestream.ts";
import { type Minio, startMinio } from "../helpers/minio.ts";
import { integrityCheck, logicalHash, logicalHashOf, openWorkload, writeFor } from "../helpers/sqlite.ts";
import { sleep, startReplicator, walship } from "../helpers/walship.ts";

let minio: Minio;
const dirs: string[] = [];
let env: NodeJS.ProcessEnv;
const ID = await generateX25519Identity();
const RCPT = await identityToRecipient(ID);

before(async () => {
  minio = await startMinio();
  env = {
    LITESTREAM_ACCESS_KEY_ID: minio.accessKeyId,
    LITESTREAM_SECRET_ACCESS_KEY: minio.secretAccessKey,
    S3_ENDPOINT: minio.endpoint,
    AGE_IDENTITY: ID,
  };
});
after(async () => {
  await minio?.close();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

type Dest = "file" | "s3";

/** A database path and a config for it with `age:` (the identity from the environment, as users do). */
async function setup(
  dest: Dest,
  name: string,
  age = true,
): Promise<{ dir: string; cfg: string; db: string }> {
  const dir = mkdtempSync(path.join(os.tmpdir(), "walship-age-interop-"));
  dirs.push(dir);
  const db = path.join(dir, "app.db");
  const cfg = path.join(dir, "litestream.yml");
  let target: string;
  if (dest === "s3") {
    await minio.createBucket(name);
    target = `type: s3
        bucket: ${name}
        path: apps/app.db
        endpoint: \${S3_ENDPOINT}
        region: us-east-1
        force-path-style: true`;
  } else {
    target = `type: file
        path: ${path.join(dir, "replica")}`;
  }
  const ageBlock = age
    ? `        age:
          identities:
            - $AGE_IDENTITY
          recipients:
            - ${RCPT}
`
    : "";
  writeFileSync(
    cfg,
    `access-key-id: $LITESTREAM_ACCESS_KEY_ID
secret-access-key: $LITESTREAM_SECRET_ACCESS_KEY
dbs:
  - path: ${db}
    min-checkpoint-page-count: 64
    replicas:
      - name: backup
        ${target}
        sync-interval: 100ms
        snapshot-interval: 2s
${ageBlock}`,
  );
  return { dir, cfg, db };
}

async function restoreBoth(dir: string, cfg: string, db: string, want: string, tag: string): Promise<void> {
  for (const [name, run] of [
    ["litestream", (o: string) => runLitestream(["restore", "-config", cfg, "-o", o, db], { env })],
    ["walship", (o: string) => walship(["restore", "-config", cfg, "-o", o, db], { env })],
  ] as const) {
    const out = path.join(dir, `${name}-${tag}.db`);
    const res = await run(out);
    assert.equal(res.code, 0, `${name}: ${res.stderr}`);
    assert.equal(integrityCheck(out), "ok");
    assert.equal(logicalHash(out), want, `${name} restore differs`);
  }
}

for (const dest of ["file", "s3"] as const) {
  describe(`age on a ${dest} destination, interop with litestream v0.3.13`, () => {
    it("litestream restores a Walship encrypted replica with several generations", async () => {
      const { dir, cfg, db } = await setup(dest, `age-w2l-${dest}`);
      const app = openWorkload(db, 31);
      for (let gen = 0; gen < 3; gen++) {
        const rep = startReplicator(["-config", cfg], { env });
        await writeFor(app, 2000);
        await sleep(500);
        assert.equal(await rep.stop(), 0, rep.output());
        assert.ok(!rep.output().includes(ID.slice(20)), "the identity is in the log");
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
      assert.ok(gens.stdout.trim().split("\n").length - 1 >= 3, `several generations:\n${gens.stdout}`);
      await restoreBoth(dir, cfg, db, want, "final");
    });

    it("walship restores and continues a litestream encrypted replica; litestream restores the whole", async () => {
      const { dir, cfg, db } = await setup(dest, `age-l2w-${dest}`);
      const app = openWorkload(db, 32);
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

      // Walship replicates on (litestream's stop leaves a WAL that Walship's shadow cannot prove
      // continuous, so it starts a new generation, as without age; its restart within its own
      // generation, which reads back its own encrypted segment, is in test/unit/age-cli.test.ts).
      const listed = async () =>
        (
          JSON.parse((await walship(["generations", "-config", cfg, "-json", db], { env })).stdout) as Array<{
            generation: string;
          }>
        ).map((g) => g.generation);
      const fromLitestream = await listed();
      const rep = startReplicator(["-config", cfg], { env });
      await writeFor(app, 1500);
      await sleep(800);
      assert.equal(await rep.stop(), 0, rep.output());
      assert.doesNotMatch(rep.output(), /"level":"(error|warn)"/, rep.output());
      const afterWalship = await listed();
      for (const g of fromLitestream) assert.ok(afterWalship.includes(g), `generation ${g} was kept`);
      const mid = path.join(dir, "after-walship.db");
      const r2 = await runLitestream(["restore", "-config", cfg, "-o", mid, db], { env });
      assert.equal(r2.code, 0, r2.stderr);
      assert.equal(logicalHash(mid), logicalHashOf(app.db), "litestream restores what walship added");
      const ls2 = spawnLitestream(["replicate", "-config", cfg], { env });
      await sleep(1500);
      await writeFor(app, 1000);
      await sleep(1500);
      await ls2.stop();
      const want = logicalHashOf(app.db);
      app.close();
      await restoreBoth(dir, cfg, db, want, "final");
    });
  });
}

/** Every file MinIO keeps for a bucket, concatenated (objects live under <dataDir>/<bucket>/). */
function bucketBytes(bucket: string): Buffer {
  const root = path.join(minio.dataDir, bucket);
  const files = readdirSync(root, { recursive: true, withFileTypes: true }).filter((e) => e.isFile());
  assert.ok(files.length > 0, `MinIO keeps nothing for ${bucket}`);
  return Buffer.concat(files.map((e) => readFileSync(path.join(e.parentPath, e.name))));
}

describe("the bytes stored in the bucket", () => {
  it("hold none of the database's contents with age, and do without it", async () => {
    for (const age of [true, false]) {
      const bucket = age ? "bytes-age" : "bytes-plain";
      const { cfg, db } = await setup("s3", bucket, age);
      const marker = `CONTENT-MARKER-${age ? "a" : "p"}-7f3c9e`;
      const app = openWorkload(db, 33);
      const rep = startReplicator(["-config", cfg], { env });
      await sleep(800);
      const ins = app.db.prepare("INSERT INTO items (name, qty, data) VALUES (?, 0, NULL)");
      for (let i = 0; i < 200; i++) {
        ins.run(`${marker}-${i}`);
        if (i % 20 === 0) await sleep(50);
      }
      await writeFor(app, 1500);
      await sleep(800);
      assert.equal(await rep.stop(), 0, rep.output());
      app.close();
      const stored = bucketBytes(bucket);
      if (age) {
        assert.equal(stored.indexOf(marker), -1, "the encrypted bucket holds a row of the database");
        assert.equal(stored.indexOf("CREATE TABLE items"), -1, "the encrypted bucket holds the schema");
      } else {
        assert.notEqual(stored.indexOf(marker), -1, "control: the plain bucket shows the rows");
      }
    }
  });
});
