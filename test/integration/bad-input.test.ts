/**
 * Bad input: a corrupt or truncated segment, a bad frame checksum, a missing snapshot, a gap in WAL
 * indexes, a bad config. Each gives a clear error and a non-zero exit, leaves no partial output, and
 * leaves an existing database untouched. Case ids (B1...) are rows of the table in
 * docs/reliability-bad-input.md; more objects (on file and MinIO) are in bad-objects.test.ts, configs
 * in bad-config.test.ts, Secret values in bad-secrets.test.ts, CLI arguments in bad-args.test.ts.
 */
import assert from "node:assert/strict";
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { lz4DecodeFrame, lz4EncodeFrame } from "../../src/replicator/lz4.ts";
import { hasShape } from "../helpers/bad-input.ts";
import { openWorkload } from "../helpers/sqlite.ts";
import { fileReplicaConfig, replicate, sleep, walship } from "../helpers/walship.ts";

let dir: string;
let replica: string;
let gen: string;

function errorCode(stderr: string): string | undefined {
  return /\[(WALSHIP_ERR_[A-Z_]+)\]/.exec(stderr)?.[1];
}

/** A copy of the good replica to damage. */
function copyReplica(name: string): string {
  const to = path.join(dir, name);
  cpSync(replica, to, { recursive: true, preserveTimestamps: true });
  return to;
}

function walFiles(root: string): string[] {
  return readdirSync(path.join(root, "generations", gen, "wal")).sort();
}

/** Restores over an existing database (with -overwrite, so only the damage can stop it) and checks it survived. */
async function expectRestoreFailure(root: string, code: string, mention: RegExp): Promise<void> {
  const outDir = mkdtempSync(path.join(dir, "out-"));
  const out = path.join(outDir, "app.db");
  writeFileSync(out, "existing database bytes");
  const res = await walship(["restore", "-overwrite", "-o", out, `file://${root}`]);
  assert.notEqual(res.code, 0, "restore must fail");
  assert.equal(errorCode(res.stderr), code, res.stderr);
  assert.match(res.stderr, mention);
  assert.deepEqual(readdirSync(outDir), ["app.db"], "no partial or temporary output");
  assert.equal(readFileSync(out, "utf8"), "existing database bytes", "the existing database is untouched");
}

describe("bad input", () => {
  before(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), "walship-bad-"));
    replica = path.join(dir, "replica");
    const app = openWorkload(path.join(dir, "app.db"), 7, { vacuum: false });
    const { rep } = replicate(
      dir,
      fileReplicaConfig(`${dir}/app.db`, replica, {
        dbKeys: {
          "monitor-interval": "50ms",
          "min-checkpoint-page-count": 32,
          "max-checkpoint-page-count": 64,
        },
        replicaKeys: { "sync-interval": "50ms" },
      }),
    );
    // Until there are several WAL indexes (more steps on a busy machine).
    const end = Date.now() + 60_000;
    for (let i = 0; ; i++) {
      app.step();
      await sleep(20);
      if (i >= 60 && i % 20 === 0 && (hasShape(replica) || Date.now() > end)) break;
    }
    await sleep(500);
    assert.equal(await rep.stop(), 0, rep.output());
    app.close();
    gen = readdirSync(path.join(replica, "generations"))[0]!;
    const indexes = new Set(walFiles(replica).map((n) => n.slice(0, 8)));
    assert.ok(indexes.size >= 3, `need several WAL indexes, got ${[...indexes].join(",")}`);
    const ok = await walship(["restore", "-o", path.join(dir, "good.db"), `file://${replica}`]);
    assert.equal(ok.code, 0, `the undamaged replica restores: ${ok.stderr}`);
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it("B1 a corrupt segment (LZ4 bytes flipped)", async () => {
    const root = copyReplica("corrupt");
    const name = walFiles(root).at(-2)!;
    const file = path.join(root, "generations", gen, "wal", name);
    const buf = readFileSync(file);
    for (let i = 12; i < buf.length - 4; i += 7) buf[i]! ^= 0x5a;
    writeFileSync(file, buf);
    await expectRestoreFailure(root, "WALSHIP_ERR_CORRUPT", new RegExp(name.replace(/\./g, "\\.")));
  });

  it("B2 a truncated segment", async () => {
    const root = copyReplica("truncated");
    const name = walFiles(root).at(-1)!;
    const file = path.join(root, "generations", gen, "wal", name);
    const buf = readFileSync(file);
    writeFileSync(file, buf.subarray(0, Math.floor(buf.length / 2)));
    await expectRestoreFailure(root, "WALSHIP_ERR_CORRUPT", new RegExp(name.replace(/\./g, "\\.")));
  });

  it("B3 a valid LZ4 frame holding a WAL frame with a bad checksum", async () => {
    const root = copyReplica("checksum");
    const name = walFiles(root).find((n) => !n.endsWith("_00000000.wal.lz4"))!;
    const file = path.join(root, "generations", gen, "wal", name);
    const raw = lz4DecodeFrame(readFileSync(file));
    raw[24 + 100]! ^= 0xff; // a byte of the first frame's page
    writeFileSync(file, lz4EncodeFrame(raw));
    await expectRestoreFailure(root, "WALSHIP_ERR_CORRUPT", /bad frame \(checksum or salt\)/);
  });

  it("B4 a missing snapshot", async () => {
    const root = copyReplica("nosnap");
    rmSync(path.join(root, "generations", gen, "snapshots"), { recursive: true });
    await expectRestoreFailure(
      root,
      "WALSHIP_ERR_RESTORE",
      new RegExp(`${gen} has WAL segments but no snapshot`),
    );
  });

  it("B5 a gap in WAL indexes", async () => {
    const root = copyReplica("gap");
    const indexes = [...new Set(walFiles(root).map((n) => n.slice(0, 8)))];
    const middle = indexes[Math.floor(indexes.length / 2)]!;
    for (const n of walFiles(root).filter((n) => n.startsWith(middle)))
      rmSync(path.join(root, "generations", gen, "wal", n));
    await expectRestoreFailure(root, "WALSHIP_ERR_RESTORE", new RegExp(`missing WAL index ${middle}`));
  });

  it("R1 refuses to overwrite an existing database unless asked", async () => {
    const out = path.join(dir, "exists.db");
    writeFileSync(out, "keep me");
    const res = await walship(["restore", "-o", out, `file://${replica}`]);
    assert.equal(res.code, 1);
    assert.equal(errorCode(res.stderr), "WALSHIP_ERR_EXISTS", res.stderr);
    assert.equal(readFileSync(out, "utf8"), "keep me");
    const skip = await walship(["restore", "-if-db-not-exists", "-o", out, `file://${replica}`]);
    assert.equal(skip.code, 0, skip.stderr);
    assert.equal(readFileSync(out, "utf8"), "keep me");
  });

  it("R2 -verify-sql: a query that returns a row lets the restore through; none or an error stops it", async () => {
    const ok = path.join(dir, "verify-ok.db");
    const good = await walship([
      "restore",
      "-verify-sql",
      "SELECT 1 FROM items LIMIT 1",
      "-o",
      ok,
      `file://${replica}`,
    ]);
    assert.equal(good.code, 0, good.stderr);
    assert.ok(readdirSync(dir).includes("verify-ok.db"));
    // The integrity check, silent while it runs, is logged before and after (JSON: not a terminal).
    const lines = good.stderr
      .split("\n")
      .filter((l) => l.startsWith("{"))
      .map((l) => JSON.parse(l) as { msg: string; bytes?: number; elapsedMs?: number });
    const started = lines.findIndex((l) => l.msg === "integrity check started");
    const passed = lines.findIndex((l) => l.msg === "integrity check passed");
    assert.ok(started >= 0 && passed > started, good.stderr);
    assert.ok((lines[started]!.bytes ?? 0) > 0, "the size of the file checked");
    assert.equal(typeof lines[passed]!.elapsedMs, "number");
    for (const [sql, why] of [
      ["SELECT 1 FROM items WHERE qty < 0", /returned no row/],
      ["SELECT * FROM no_such_table", /-verify-sql failed: no such table/],
    ] as const) {
      const out = path.join(dir, "verify-bad.db");
      const res = await walship(["restore", "-verify-sql", sql, "-o", out, `file://${replica}`]);
      assert.equal(res.code, 1);
      assert.equal(errorCode(res.stderr), "WALSHIP_ERR_INTEGRITY", res.stderr);
      assert.match(res.stderr, why);
      assert.ok(!readdirSync(dir).some((n) => n.startsWith("verify-bad.db")), "no output, no temporaries");
    }
  });

  it("R3 an empty destination: an error, or exit 0 with -if-replica-exists", async () => {
    const empty = path.join(dir, "empty-replica");
    const res = await walship(["restore", "-o", path.join(dir, "none.db"), `file://${empty}`]);
    assert.equal(res.code, 1);
    assert.equal(errorCode(res.stderr), "WALSHIP_ERR_RESTORE");
    const ok = await walship([
      "restore",
      "-if-replica-exists",
      "-o",
      path.join(dir, "none.db"),
      `file://${empty}`,
    ]);
    assert.equal(ok.code, 0, ok.stderr);
    assert.ok(!readdirSync(dir).includes("none.db"));
  });

  it("a bad config names the key, for replicate and restore", async () => {
    const cfg = path.join(dir, "bad.yml");
    writeFileSync(
      cfg,
      `dbs:\n  - path: ${dir}/app.db\n    replicas:\n      - url: file://${replica}\n        sync-interval: 5parsecs\n`,
    );
    for (const args of [
      ["replicate", "-config", cfg],
      ["restore", "-config", cfg, "-o", path.join(dir, "x.db"), `${dir}/app.db`],
    ]) {
      const res = await walship(args);
      assert.equal(res.code, 1, res.stderr);
      assert.equal(errorCode(res.stderr), "WALSHIP_ERR_CONFIG", res.stderr);
      assert.match(res.stderr, /dbs\[0\]\.replicas\[0\]\.sync-interval/);
    }
    assert.ok(!readdirSync(dir).includes("x.db"));
  });

  it("bad flags and timestamps are usage errors with help", async () => {
    const res = await walship([
      "restore",
      "-timestamp",
      "yesterday",
      "-o",
      path.join(dir, "y.db"),
      `file://${replica}`,
    ]);
    assert.equal(res.code, 2);
    assert.equal(errorCode(res.stderr), "WALSHIP_ERR_USAGE");
    assert.match(res.stderr, /RFC 3339/);
    const unknown = await walship(["restore", "-bogus"]);
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /unknown flag -bogus/);
  });
});
