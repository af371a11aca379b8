/**
 * Builds the seed corpus the fuzzers mutate (committed under test/fuzz/corpus/): real WAL files
 * written by SQLite (512- and 1024-byte pages, commits, an uncommitted tail, a big-endian WAL built
 * with our encoder), LZ4 frames from our encoder and from the reference `lz4` CLI in the variants our
 * encoder never writes (dependent blocks, block checksums, content size, 64 KiB blocks, concatenated
 * and skippable frames), raw LZ4 blocks, the example configs, and restore-planner scenarios.
 *
 *   node test/fuzz/make-corpus.ts        # rewrites the seed-* entries; crash-* findings are kept
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, unlinkSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import Database from "better-sqlite3";
import { compressBlock, compressBound, lz4EncodeFrame, newHashTable } from "../../src/replicator/lz4.ts";
import { encodeFrame, encodeWalHeader } from "../../src/replicator/sqlite/wal.ts";
import { corpusDir, saveCorpusEntry } from "./harness.ts";
import { PLANNER_SEEDS } from "./targets-planner.ts";

const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), "../..");

function clearSeeds(name: string): void {
  let names: string[] = [];
  try {
    names = readdirSync(corpusDir(name));
  } catch {
    return;
  }
  for (const n of names) if (n.startsWith("seed-")) unlinkSync(path.join(corpusDir(name), n));
}

/** The WAL SQLite writes for a few transactions, copied while the database is open (nothing checkpointed). */
function sqliteWal(dir: string, pageSize: number, txs: number, tail: boolean): Uint8Array {
  const file = path.join(dir, `w${pageSize}-${txs}-${tail}.db`);
  const db = new Database(file);
  db.pragma(`page_size = ${pageSize}`);
  db.pragma("journal_mode = wal");
  db.pragma("wal_autocheckpoint = 0");
  db.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)");
  for (let i = 0; i < txs; i++) {
    db.prepare("INSERT INTO t (v) VALUES (?)").run(`row ${i} ${"x".repeat((i * 37) % 300)}`);
    if (i % 3 === 2) db.prepare("DELETE FROM t WHERE id = ?").run(i - 1);
  }
  let wal = new Uint8Array(readFileSync(`${file}-wal`));
  if (tail) {
    // An uncommitted tail: the first frame again with its commit field cleared (checksum now wrong).
    const frame = wal.slice(32, 32 + 24 + pageSize);
    frame.fill(0, 4, 8);
    wal = Buffer.concat([wal, frame]);
  }
  db.close();
  return wal;
}

/** A big-endian-checksum WAL of two commits, built with our encoder (SQLite on x86 writes little-endian). */
function bigEndianWal(): Uint8Array {
  const pageSize = 512;
  const header = encodeWalHeader({
    bigEndianChecksums: true,
    pageSize,
    checkpointSeq: 3,
    salt1: 0x1234,
    salt2: 0xabcd,
  });
  const dv = new DataView(header.buffer);
  let seed: [number, number] = [dv.getUint32(24), dv.getUint32(28)];
  const parts: Uint8Array[] = [header];
  for (const [pgno, commit] of [
    [1, 0],
    [2, 2],
    [2, 3],
    [3, 3],
  ] as const) {
    const page = new Uint8Array(pageSize).map((_, i) => (i * pgno + commit) & 0xff);
    const f = encodeFrame({ pgno, commitSize: commit, salt1: 0x1234, salt2: 0xabcd }, page, true, seed);
    parts.push(f.bytes);
    seed = f.checksum;
  }
  return Buffer.concat(parts);
}

function lz4Cli(dir: string, input: Uint8Array, args: string[]): Uint8Array {
  return new Uint8Array(execFileSync("lz4", ["-q", "-c", ...args], { input, cwd: dir, maxBuffer: 64 << 20 }));
}

function main(): void {
  const dir = mkdtempSync(path.join(os.tmpdir(), "walship-corpus-"));
  try {
    // WAL files.
    clearSeeds("wal-scan");
    clearSeeds("wal-apply");
    const wals = [
      sqliteWal(dir, 512, 6, false),
      sqliteWal(dir, 1024, 4, false),
      sqliteWal(dir, 512, 5, true),
      bigEndianWal(),
    ];
    for (const w of wals) {
      saveCorpusEntry("wal-scan", w, "seed-");
      saveCorpusEntry("wal-apply", w, "seed-");
    }

    // LZ4 frames: ours, and the reference CLI's other shapes.
    clearSeeds("lz4-frame");
    const text = Buffer.from(
      `${"the quick brown fox jumps over the lazy dog ".repeat(40)}${Array.from({ length: 300 }, (_, i) => i.toString(36)).join(",")}`,
    );
    const payloads = [new Uint8Array(0), text, wals[0]!, new Uint8Array(70_000).map((_, i) => (i * 7) % 251)];
    for (const p of payloads) saveCorpusEntry("lz4-frame", lz4EncodeFrame(p), "seed-");
    for (const args of [
      ["-BD"],
      ["-BX"],
      ["--content-size"],
      ["-B4"],
      ["-B4", "-BD", "-BX", "--content-size"],
    ]) {
      saveCorpusEntry("lz4-frame", lz4Cli(dir, payloads[3]!, args), "seed-");
    }
    saveCorpusEntry("lz4-frame", lz4Cli(dir, text, ["-BD", "--no-frame-crc"]), "seed-");
    const skippable = Buffer.from([0x5a, 0x2a, 0x4d, 0x18, 3, 0, 0, 0, 1, 2, 3]);
    saveCorpusEntry(
      "lz4-frame",
      Buffer.concat([lz4EncodeFrame(text), skippable, lz4EncodeFrame(Buffer.from("second frame"))]),
      "seed-",
    );

    // Raw LZ4 blocks.
    clearSeeds("lz4-block");
    for (const p of [
      text,
      Buffer.from("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"),
      wals[1]!.subarray(0, 3000),
    ]) {
      const out = new Uint8Array(compressBound(p.length));
      saveCorpusEntry("lz4-block", out.subarray(0, compressBlock(p, out, newHashTable())), "seed-");
    }

    // Configs: the example configs users wrote.
    clearSeeds("config");
    const fixtures = path.join(ROOT, "test/fixtures/config");
    for (const n of readdirSync(fixtures).filter((f) => f.endsWith(".yml")))
      saveCorpusEntry("config", readFileSync(path.join(fixtures, n)), "seed-");

    // Restore-planner scenarios.
    clearSeeds("planner");
    for (const s of PLANNER_SEEDS) saveCorpusEntry("planner", Buffer.from(JSON.stringify(s)), "seed-");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

main();
