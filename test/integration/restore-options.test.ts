/**
 * Restore options and retention on a real replica: -index, -generation, -parallelism, stray segments
 * below the snapshot (ignored), and retention removing old snapshots, WAL and generations while the
 * replica stays restorable.
 */
import assert from "node:assert/strict";
import { cpSync, mkdtempSync, readdirSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { lz4EncodeFrame } from "../../src/replicator/lz4.ts";
import { encodeWalHeader } from "../../src/replicator/sqlite/wal.ts";
import { runLitestream } from "../helpers/litestream.ts";
import { integrityCheck, logicalHash, logicalHashOf, openWorkload } from "../helpers/sqlite.ts";
import {
  fileReplicaConfig,
  replicate,
  sleep,
  startReplicator,
  walship,
  writeConfig,
} from "../helpers/walship.ts";

const dir = mkdtempSync(path.join(os.tmpdir(), "walship-opts-"));
after(() => rmSync(dir, { recursive: true, force: true }));

interface Seg {
  generation: string;
  index: number;
  offset: number;
}

describe("restore options", () => {
  const replica = path.join(dir, "replica");
  const db = path.join(dir, "app.db");
  const cfg = path.join(dir, "walship.yml");
  let finalHash: string;
  let gens: string[];
  /** Source state at the end of each generation but the last. */
  const genEnds = new Map<string, string>();

  before(async () => {
    writeConfig(
      dir,
      fileReplicaConfig(db, replica, {
        dbKeys: {
          "monitor-interval": "50ms",
          "min-checkpoint-page-count": 24,
          "max-checkpoint-page-count": 48,
        },
        replicaKeys: { "sync-interval": "50ms", "snapshot-interval": "1s", retention: 0 },
      }),
    );
    const app = openWorkload(db, 31, { vacuum: false });
    for (let g = 0; g < 2; g++) {
      const rep = startReplicator(["-config", cfg]);
      for (let i = 0; i < 50; i++) {
        app.step();
        await sleep(30);
      }
      await sleep(400);
      assert.equal(await rep.stop(), 0, rep.output());
      const list = readdirSync(path.join(replica, "generations"));
      const live = list.find((gname) => !genEnds.has(gname))!;
      genEnds.set(live, logicalHashOf(app.db));
      app.db.pragma("wal_checkpoint(TRUNCATE)");
      app.step();
    }
    const rep = startReplicator(["-config", cfg]);
    for (let i = 0; i < 30; i++) {
      app.step();
      await sleep(30);
    }
    await sleep(400);
    assert.equal(await rep.stop(), 0, rep.output());
    finalHash = logicalHashOf(app.db);
    app.close();
    gens = readdirSync(path.join(replica, "generations"));
    assert.equal(gens.length, 3, "three generations");
  });

  async function segments(): Promise<Seg[]> {
    const res = await walship(["wal", "-json", `file://${replica}`]);
    assert.equal(res.code, 0, res.stderr);
    return JSON.parse(res.stdout) as Seg[];
  }

  it("-generation restores an older generation to its final state", async () => {
    for (const [gen, hash] of genEnds) {
      const out = path.join(dir, `gen-${gen}.db`);
      const res = await walship(["restore", "-generation", gen, "-o", out, `file://${replica}`]);
      assert.equal(res.code, 0, res.stderr);
      assert.equal(logicalHash(out), hash, `generation ${gen}`);
    }
  });

  it("-index stops after that WAL index; each later index adds state", async () => {
    const segs = await segments();
    const gen = [...genEnds.keys()][0]!;
    const indexes = [...new Set(segs.filter((s) => s.generation === gen).map((s) => s.index))].sort(
      (a, b) => a - b,
    );
    assert.ok(indexes.length >= 3, `several indexes in ${gen}`);
    const hashes: string[] = [];
    for (const idx of indexes) {
      const out = path.join(dir, `idx-${idx}.db`);
      const res = await walship([
        "restore",
        "-generation",
        gen,
        "-index",
        idx.toString(16),
        "-o",
        out,
        `file://${replica}`,
      ]);
      assert.equal(res.code, 0, res.stderr);
      assert.equal(integrityCheck(out), "ok");
      assert.match(res.stderr, new RegExp(`"position":"${gen}/${idx.toString(16).padStart(8, "0")}:`));
      hashes.push(logicalHash(out));
    }
    assert.equal(hashes.at(-1), genEnds.get(gen), "the last index gives the generation's final state");
    assert.ok(new Set(hashes).size > 1, "earlier indexes give earlier states");
  });

  it("-parallelism 1 and 16 give the same database", async () => {
    const a = path.join(dir, "p1.db");
    const b = path.join(dir, "p16.db");
    assert.equal((await walship(["restore", "-parallelism", "1", "-o", a, `file://${replica}`])).code, 0);
    assert.equal((await walship(["restore", "-parallelism", "16", "-o", b, `file://${replica}`])).code, 0);
    assert.equal(logicalHash(a), finalHash);
    assert.equal(logicalHash(b), finalHash);
  });

  it("ignores stray segments below the snapshot's index (Litestream fails on them)", async () => {
    const copy = path.join(dir, "stray");
    cpSync(replica, copy, { recursive: true, preserveTimestamps: true });
    const lastGen = gens.find((g) => !genEnds.has(g))!;
    const snaps = readdirSync(path.join(copy, "generations", lastGen, "snapshots")).sort();
    const snapIndex = Number.parseInt(snaps.at(-1)!.slice(0, 8), 16);
    assert.ok(snapIndex >= 1, "the newest snapshot is past index 0");
    // Below the newest snapshot, only the stray: remove the genuine snapshots and segments there, as
    // retention does. (When a loaded run took a second snapshot, genuine segments at the stray's index
    // started at offset 0 and Litestream read the stray as one more segment of that index.) Litestream
    // restores the replica as retention leaves it.
    const walDir = path.join(copy, "generations", lastGen, "wal");
    const below = (f: string) => Number.parseInt(f.slice(0, 8), 16) < snapIndex;
    for (const f of readdirSync(walDir).filter(below)) rmSync(path.join(walDir, f));
    for (const f of snaps.filter(below)) rmSync(path.join(copy, "generations", lastGen, "snapshots", f));
    const clean = await runLitestream([
      "restore",
      "-o",
      path.join(dir, "clean-litestream.db"),
      `file://${copy}`,
    ]);
    assert.equal(clean.code, 0, clean.stderr);
    assert.equal(logicalHash(path.join(dir, "clean-litestream.db")), finalHash);
    // A leftover with an offset that is not 0 at an index below the snapshot: invalid as a WAL start.
    const junk = lz4EncodeFrame(
      Buffer.from(
        encodeWalHeader({ pageSize: 4096, checkpointSeq: 9, salt1: 1, salt2: 2, bigEndianChecksums: false }),
      ),
    );
    const name = `${(snapIndex - 1).toString(16).padStart(8, "0")}_00001038.wal.lz4`;
    const stray = path.join(walDir, name);
    writeFileSync(stray, junk);
    utimesSync(stray, new Date(0), new Date(0));
    const out = path.join(dir, "stray.db");
    const stock = await runLitestream(
      ["restore", "-o", path.join(dir, "stray-litestream.db"), `file://${copy}`],
      {
        allowFailure: true,
      },
    );
    assert.notEqual(stock.code, 0, "litestream v0.3.13 trips over the stray segment");
    assert.match(stock.stdout + stock.stderr, /missing initial wal segment/);
    const res = await walship(["restore", "-o", out, `file://${copy}`]);
    assert.equal(res.code, 0, res.stderr);
    assert.equal(logicalHash(out), finalHash);
  });
});

describe("retention", () => {
  it("removes snapshots, WAL and generations past the retention period and stays restorable", async () => {
    const d = mkdtempSync(path.join(dir, "ret-"));
    const replica = path.join(d, "replica");
    const cfg = writeConfig(
      d,
      fileReplicaConfig(`${d}/app.db`, replica, {
        dbKeys: { "monitor-interval": "50ms", "min-checkpoint-page-count": 48 },
        replicaKeys: {
          "sync-interval": "50ms",
          "snapshot-interval": "1s",
          retention: "3s",
          "retention-check-interval": "500ms",
        },
      }),
    );
    const app = openWorkload(path.join(d, "app.db"), 41, { vacuum: false });
    // An old generation first, then a new one that lives past the retention period.
    let rep = startReplicator(["-config", cfg]);
    for (let i = 0; i < 20; i++) {
      app.step();
      await sleep(30);
    }
    await sleep(300);
    assert.equal(await rep.stop(), 0);
    const oldGen = readdirSync(path.join(replica, "generations"))[0]!;
    app.db.pragma("wal_checkpoint(TRUNCATE)");
    app.step();
    rep = startReplicator(["-config", cfg]);
    const until = Date.now() + 7000;
    while (Date.now() < until) {
      app.step();
      await sleep(40);
    }
    await sleep(600);
    assert.equal(await rep.stop(), 0, rep.output());
    const want = logicalHashOf(app.db);
    app.close();

    const gensNow = readdirSync(path.join(replica, "generations"));
    const started = rep
      .output()
      .split("\n")
      .filter((l) => l.includes('"new generation"'));
    assert.equal(started.length, 1, `one new generation in the second run:\n${started.join("\n")}`);
    assert.ok(!gensNow.includes(oldGen), "the old generation is gone");
    assert.equal(gensNow.length, 1);
    const snaps = JSON.parse((await walship(["snapshots", "-json", `file://${replica}`])).stdout) as Array<{
      index: number;
      created: string;
    }>;
    const oldest = Math.min(...snaps.map((s) => s.index));
    assert.ok(oldest > 0, "snapshots below the retention cut are deleted");
    assert.ok(snaps.length <= 6, `about retention/interval snapshots kept, got ${snaps.length}`);
    const segs = JSON.parse((await walship(["wal", "-json", `file://${replica}`])).stdout) as Seg[];
    assert.ok(
      segs.every((s) => s.index >= oldest),
      "no WAL below the oldest kept snapshot",
    );
    const out = path.join(d, "restored.db");
    const res = await walship(["restore", "-o", out, `file://${replica}`]);
    assert.equal(res.code, 0, res.stderr);
    assert.equal(logicalHash(out), want);
  });
});

describe("scheduled snapshots", () => {
  it("never replace an earlier snapshot, so earlier points in time stay restorable", async () => {
    const d = mkdtempSync(path.join(dir, "snap-"));
    const replica = path.join(d, "replica");
    const app = openWorkload(path.join(d, "app.db"), 51, { vacuum: false });
    app.step();
    const { rep } = replicate(
      d,
      fileReplicaConfig(`${d}/app.db`, replica, {
        dbKeys: { "monitor-interval": "50ms" },
        replicaKeys: { "sync-interval": "50ms", "snapshot-interval": "700ms" },
      }),
    );
    for (let i = 0; i < 100 && !rep.output().includes("snapshot written"); i++) await sleep(100);
    app.step();
    await sleep(300);
    const early = { at: new Date(), hash: logicalHashOf(app.db) };
    // Idle: the WAL index would not move on its own, yet several snapshots are due.
    await sleep(2500);
    app.step();
    await sleep(300);
    assert.equal(await rep.stop(), 0, rep.output());
    const want = logicalHashOf(app.db);
    app.close();
    const snaps = JSON.parse((await walship(["snapshots", "-json", `file://${replica}`])).stdout) as Array<{
      index: number;
    }>;
    assert.ok(snaps.length >= 3, `several snapshots, got ${snaps.length}`);
    const out = path.join(d, "early.db");
    const res = await walship([
      "restore",
      "-timestamp",
      early.at.toISOString(),
      "-o",
      out,
      `file://${replica}`,
    ]);
    assert.equal(res.code, 0, res.stderr);
    assert.equal(logicalHash(out), early.hash);
    const latest = path.join(d, "latest.db");
    assert.equal((await walship(["restore", "-o", latest, `file://${replica}`])).code, 0);
    assert.equal(logicalHash(latest), want);
  });
});
