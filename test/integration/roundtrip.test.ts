/**
 * Replicate real workloads to a file destination through the CLI, then restore: the latest state and
 * 20+ points in time must equal the source exactly (logical hash of every table), integrity ok; the
 * latest restore must be the very file stock Litestream restores from the same replica.
 */
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { runLitestream } from "../helpers/litestream.ts";
import { freePort } from "../helpers/ports.ts";
import {
  integrityCheck,
  logicalHash,
  logicalHashOf,
  openWorkload,
  rng,
  type WorkloadKind,
} from "../helpers/sqlite.ts";
import { fileReplicaConfig, sleep, startReplicator, walship, writeConfig } from "../helpers/walship.ts";

/** The database's shadow position on the replicator's /status, `generation/index:offset`. */
async function shadowPosition(port: number): Promise<{ key: string; offset: number } | undefined> {
  try {
    const res = await fetch(`http://127.0.0.1:${port}/status`, { signal: AbortSignal.timeout(2000) });
    const doc = (await res.json()) as {
      databases: Array<{ position?: { generation: string; index: number; offset: number } }>;
    };
    const p = doc.databases[0]?.position;
    return p ? { key: `${p.generation}/${p.index}:${p.offset}`, offset: p.offset } : undefined;
  } catch {
    return undefined;
  }
}

/**
 * When the replicator's shadow position first moved past `before` (a copy that began after the
 * commit just made, hence holds it), polled every 5 ms for up to 10 s. A new WAL index that holds
 * no frame yet (offset 32, its header) is not a copy. After 10 s without one: that time, so that the
 * interval stays conservative.
 */
async function copiedAfter(port: number, before: { key: string } | undefined): Promise<number> {
  const end = Date.now() + 10_000;
  while (Date.now() < end) {
    const p = await shadowPosition(port);
    if (p && p.key !== before?.key && p.offset > 32) return Date.now();
    await sleep(5);
  }
  return Date.now();
}

/** Restores into its own empty directory, then checks that only the database file is there. */
async function restoreAlone(cfg: string, dir: string, name: string, extra: string[]): Promise<string> {
  const outDir = path.join(dir, name);
  mkdirSync(outDir);
  const out = path.join(outDir, "restored.db");
  const res = await walship(["restore", "-config", cfg, "-o", out, ...extra, path.join(dir, "app.db")]);
  assert.equal(res.code, 0, res.stderr);
  // No temporary, -wal or -shm file is left (checked before anything opens the output).
  assert.deepEqual(readdirSync(outDir), ["restored.db"]);
  return out;
}

function config(dir: string, extra = "", port?: number): string {
  const text = fileReplicaConfig(`${dir}/app.db`, `${dir}/replica`, {
    ...(port ? { top: `addr: 127.0.0.1:${port}` } : {}),
    dbKeys: {
      "monitor-interval": "100ms",
      "min-checkpoint-page-count": 64,
      "max-checkpoint-page-count": 400,
    },
    replicaKeys: { name: "local", "sync-interval": "100ms", "snapshot-interval": "3s" },
  });
  return writeConfig(dir, `${text}${extra}`);
}

describe("round trip through a file destination", () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), "walship-rt-"));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it("restores the latest state and every sampled point in time exactly", async () => {
    const port = await freePort();
    const cfg = config(dir, "", port);
    const seed = Number(process.env.WALSHIP_TEST_SEED ?? Date.now() % 100000);
    const app = openWorkload(path.join(dir, "app.db"), seed);
    const rep = startReplicator(["-config", cfg]);
    for (let i = 0; i < 100 && !rep.output().includes("snapshot written"); i++) await sleep(100);
    // Each commit's state, stamped just after the commit returned (t), with when it began (t0) and
    // when the replicator's /status first showed it copied (seen). The replicator stamps a commit
    // with its own clock when it copies it, so that stamp lies in [t0, seen]: a T outside every such
    // interval has exactly one right answer, whatever the machine's load made the copy wait.
    const states: Array<{ t0: number; t: number; seen: number; hash: string; what: string }> = [];
    const r = rng(seed + 1);
    const deadline = Date.now() + 14_000;
    try {
      // Random transactions until the deadline; then each kind the draw happened to miss, once (on
      // a loaded machine a run can be too short to draw a 7% kind by chance).
      const must: WorkloadKind[] = ["insert", "update", "delete", "blob", "schema"];
      for (;;) {
        const missing = must.find((k) => !states.some((s) => s.what.split(" ")[0] === k));
        if (Date.now() >= deadline && missing === undefined) break;
        const before = await shadowPosition(port);
        const t0 = Date.now();
        const what = app.step(Date.now() >= deadline ? missing : undefined);
        const t = Date.now();
        states.push({ t0, t, seen: await copiedAfter(port, before), hash: logicalHashOf(app.db), what });
        await sleep(150 + Math.floor(r() * 200));
      }
      await sleep(800);
    } finally {
      assert.equal(await rep.stop(), 0, rep.output());
    }
    const newGens = rep
      .output()
      .split("\n")
      .filter((l) => l.includes('"new generation"'));
    console.log(`generations started: ${newGens.length}\n${newGens.join("\n")}`);
    const finalHash = logicalHashOf(app.db);
    app.close();
    const gens = await walship(["generations", "-config", cfg, path.join(dir, "app.db")]);
    assert.equal(gens.code, 0, gens.stderr);
    const kinds = new Set(states.map((s) => s.what.split(" ")[0]));
    for (const k of ["insert", "update", "delete", "blob", "schema"])
      assert.ok(kinds.has(k), `workload ran no ${k} (seed ${seed})`);

    // The shadow WAL rolled over several indexes and there are several snapshots.
    const snaps = await walship(["snapshots", "-config", cfg, path.join(dir, "app.db")]);
    assert.equal(snaps.code, 0, snaps.stderr);
    assert.ok(snaps.stdout.trim().split("\n").length >= 3, `expected several snapshots:\n${snaps.stdout}`);
    const wal = await walship(["wal", "-json", "-config", cfg, path.join(dir, "app.db")]);
    const segs = JSON.parse(wal.stdout) as Array<{ index: number }>;
    assert.ok(new Set(segs.map((s) => s.index)).size >= 3, "expected several WAL indexes");

    // Latest.
    const latest = await restoreAlone(cfg, dir, "latest", []);
    assert.equal(integrityCheck(latest), "ok");
    assert.equal(logicalHash(latest), finalHash, `latest restore differs (seed ${seed})`);
    // Byte for byte the file stock Litestream v0.3.13 restores from the same replica: it lets SQLite
    // checkpoint each WAL index; Walship writes the pages itself (src/replicator/sqlite/wal-apply.ts).
    const byLitestream = path.join(dir, "latest-by-litestream.db");
    const ls = await runLitestream(["restore", "-o", byLitestream, `file://${path.join(dir, "replica")}`]);
    assert.equal(ls.code, 0, ls.stderr);
    assert.ok(
      readFileSync(latest).equals(readFileSync(byLitestream)),
      `walship's and litestream's restores differ in bytes (seed ${seed})`,
    );

    // Points in time: the state after the last commit at or before T. The replicator stamps a commit
    // when it copies it (typically within a few milliseconds of the commit, hundreds of milliseconds
    // on a loaded machine), so T is drawn outside each commit's [began, seen copied] interval.
    const picks: number[] = [];
    const lo = states[0]!.t + 50;
    const hi = states.at(-1)!.t;
    while (picks.length < 24) {
      const T = lo + Math.floor(r() * (hi - lo));
      if (states.some((s) => T >= s.t0 - 1 && T <= s.seen + 1)) continue;
      picks.push(T);
    }
    for (const [i, T] of picks.entries()) {
      const want = states.filter((s) => s.t <= T).at(-1)!;
      const ts = new Date(T).toISOString();
      const out = await restoreAlone(cfg, dir, `pitr-${i}`, ["-timestamp", ts]);
      assert.equal(integrityCheck(out), "ok");
      const got = logicalHash(out);
      if (got !== want.hash) {
        const at = states.findIndex((s) => s.hash === got);
        const wantAt = states.indexOf(want);
        const near = states
          .slice(Math.max(0, wantAt - 2), wantAt + 3)
          .map((s) => `${new Date(s.t).toISOString()} ${s.what}`);
        assert.fail(
          `restore to ${ts} gave state #${at} (${at >= 0 ? new Date(states[at]!.t).toISOString() : "none"}), want #${wantAt} (seed ${seed}); near: ${near.join(", ")}\n`,
        );
      }
    }
  });
});
