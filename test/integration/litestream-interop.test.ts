/**
 * Two-way compatibility with the real Litestream v0.3.13 binary, on the file destination:
 * - stock `litestream restore` restores a Walship replica (several generations, checkpoints, snapshots);
 * - `walship restore` restores a replica written by `litestream replicate`;
 * - one litestream.yml drives both binaries, one after the other, on the same database and replica.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, describe, it } from "node:test";
import { runLitestream, spawnLitestream } from "../helpers/litestream.ts";
import { integrityCheck, logicalHash, logicalHashOf, openWorkload, writeFor } from "../helpers/sqlite.ts";
import { sleep, startReplicator, walship } from "../helpers/walship.ts";

const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function setup(): { dir: string; cfg: string; db: string; replica: string } {
  const dir = mkdtempSync(path.join(os.tmpdir(), "walship-interop-"));
  dirs.push(dir);
  const db = path.join(dir, "app.db");
  const replica = path.join(dir, "replica");
  const cfg = path.join(dir, "litestream.yml");
  writeFileSync(
    cfg,
    `dbs:
  - path: ${db}
    min-checkpoint-page-count: 64
    replicas:
      - name: backup
        type: file
        path: ${replica}
        sync-interval: 100ms
        snapshot-interval: 2s
`,
  );
  return { dir, cfg, db, replica };
}

describe("litestream v0.3.13 interop (file destination)", () => {
  it("stock litestream restores a Walship replica with several generations", async () => {
    const { dir, cfg, db, replica } = setup();
    const app = openWorkload(db, 11);
    for (let gen = 0; gen < 3; gen++) {
      const rep = startReplicator(["-config", cfg]);
      await writeFor(app, 2500);
      await sleep(400);
      assert.equal(await rep.stop(), 0, rep.output());
      // While no replicator runs, the app truncates the WAL: the next start must begin a new generation.
      app.db.pragma("wal_checkpoint(TRUNCATE)");
      app.step();
    }
    const rep = startReplicator(["-config", cfg]);
    await writeFor(app, 1000);
    await sleep(400);
    assert.equal(await rep.stop(), 0);
    const want = logicalHashOf(app.db);
    app.close();
    const gens = await walship(["generations", "-config", cfg, db]);
    assert.ok(
      gens.stdout.trim().split("\n").length - 1 >= 3,
      `several generations expected:\n${gens.stdout}`,
    );

    const out = path.join(dir, "by-litestream.db");
    const res = await runLitestream(["restore", "-o", out, `file://${replica}`]);
    assert.equal(res.code, 0, res.stderr);
    assert.equal(integrityCheck(out), "ok");
    assert.equal(logicalHash(out), want);
    // And by config path, the way users call it.
    const out2 = path.join(dir, "by-litestream-config.db");
    const res2 = await runLitestream(["restore", "-config", cfg, "-o", out2, db]);
    assert.equal(res2.code, 0, res2.stderr);
    assert.equal(logicalHash(out2), want);
  });

  it("walship restores a replica written by litestream replicate, latest and at a time", async () => {
    const { dir, cfg, db } = setup();
    const app = openWorkload(db, 12);
    const ls = spawnLitestream(["replicate", "-config", cfg]);
    await sleep(1500);
    await writeFor(app, 2000);
    await sleep(1500);
    const mid = { at: new Date(), hash: logicalHashOf(app.db) };
    await sleep(1500);
    await writeFor(app, 2000);
    await sleep(1500);
    await ls.stop();
    const want = logicalHashOf(app.db);
    app.close();

    const out = path.join(dir, "latest.db");
    const res = await walship(["restore", "-config", cfg, "-o", out, db]);
    assert.equal(res.code, 0, res.stderr);
    assert.equal(integrityCheck(out), "ok");
    assert.equal(logicalHash(out), want);

    // Litestream records no commit times: walship falls back to v0.3.13's object-time rule and says so.
    // Writes paused 1.5 s on both sides of `mid`, so upload times cannot straddle it.
    const pitr = path.join(dir, "pitr.db");
    const res2 = await walship([
      "restore",
      "-config",
      cfg,
      "-o",
      pitr,
      "-timestamp",
      mid.at.toISOString(),
      db,
    ]);
    assert.equal(res2.code, 0, res2.stderr);
    assert.match(res2.stderr, /no Walship commit-time index/);
    assert.equal(logicalHash(pitr), mid.hash);
  });

  it("one litestream.yml drives both binaries on the same database and replica", async () => {
    const { dir, cfg, db } = setup();
    const app = openWorkload(db, 13);
    const ls = spawnLitestream(["replicate", "-config", cfg]);
    await sleep(1200);
    await writeFor(app, 1500);
    await sleep(800);
    await ls.stop();
    const rep = startReplicator(["-config", cfg]);
    await writeFor(app, 1500);
    await sleep(800);
    assert.equal(await rep.stop(), 0, rep.output());
    const ls2 = spawnLitestream(["replicate", "-config", cfg]);
    await sleep(1200);
    await writeFor(app, 1000);
    await sleep(1500);
    await ls2.stop();
    const want = logicalHashOf(app.db);
    app.close();
    for (const [name, run] of [
      ["walship", (o: string) => walship(["restore", "-config", cfg, "-o", o, db])],
      ["litestream", (o: string) => runLitestream(["restore", "-config", cfg, "-o", o, db])],
    ] as const) {
      const out = path.join(dir, `${name}.db`);
      const res = await run(out);
      assert.equal(res.code, 0, `${name}: ${res.stderr}`);
      assert.equal(integrityCheck(out), "ok");
      assert.equal(logicalHash(out), want, `${name} restore differs`);
    }
  });
});
