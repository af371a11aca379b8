/**
 * The WAL codec against real WAL files written by SQLite (better-sqlite3): header parsing, the
 * cumulative checksum chain, scanFrames on committed, uncommitted, corrupted and restarted WALs, and
 * big-endian WALs built with encodeFrame that SQLite itself must accept; WalApplier against SQLite's
 * own checkpoints, byte for byte.
 */
import assert from "node:assert/strict";
import { closeSync, fstatSync, openSync } from "node:fs";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import Database from "better-sqlite3";
import {
  alignWalSize,
  type Checksum,
  checksumAt,
  encodeFrame,
  encodeWalHeader,
  frameSize,
  parseFrameHeader,
  parseWalHeader,
  readWalFileHeader,
  scanFrames,
  WAL_FRAME_HEADER_SIZE,
  WAL_HEADER_SIZE,
  WAL_MAGIC_BE,
  WAL_MAGIC_LE,
  WAL_VERSION,
  type WalHeader,
  walChecksum,
  walFileInfo,
} from "../../src/replicator/sqlite/wal.ts";
import { dbHeaderPageSize, pageWriter, WalApplier } from "../../src/replicator/sqlite/wal-apply.ts";
import { ErrorCodes, WalshipError } from "../../src/shared/errors.ts";
import { assertCode } from "../helpers/assert.ts";

let base = "";
before(async () => {
  base = await fs.mkdtemp(path.join(os.tmpdir(), "walship-wal-"));
});
after(async () => {
  await fs.rm(base, { recursive: true, force: true });
});

let seq = 0;
async function freshDir(): Promise<string> {
  seq++;
  const dir = path.join(base, `case-${seq}`);
  await fs.mkdir(dir);
  return dir;
}

/** A WAL-mode database that never auto-checkpoints, plus a second connection holding it open. */
function openWalDb(dbPath: string): { db: Database.Database; holder: Database.Database; close(): void } {
  const db = new Database(dbPath);
  assert.equal(db.pragma("journal_mode = WAL", { simple: true }), "wal");
  db.pragma("wal_autocheckpoint = 0");
  const holder = new Database(dbPath);
  return {
    db,
    holder,
    close() {
      db.close();
      holder.close();
    },
  };
}

function writeTxns(db: Database.Database, txns: number, rowsPerTxn: number, tag = "r"): void {
  db.exec("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT)");
  const ins = db.prepare("INSERT INTO t (v) VALUES (?)");
  for (let t = 0; t < txns; t++) {
    db.transaction(() => {
      for (let r = 0; r < rowsPerTxn; r++) ins.run(`${tag}-${t}-${r}-${"payload ".repeat(20)}`);
    })();
  }
}

/** Slow, obviously-correct reference for the checksum rule, one u32 pair at a time. */
function referenceChecksum(bigEndian: boolean, data: Uint8Array, s0: number, s1: number): Checksum {
  const dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
  let a = s0;
  let b = s1;
  for (let i = 0; i < data.length; i += 8) {
    const x0 = dv.getUint32(i, !bigEndian);
    const x1 = dv.getUint32(i + 4, !bigEndian);
    a = (a + x0 + b) % 2 ** 32;
    b = (b + x1 + a) % 2 ** 32;
  }
  return [a, b];
}

/** XORs one byte of `buf` in place. */
function flip(buf: Uint8Array, at: number, mask: number): void {
  buf[at] = (buf[at] ?? 0) ^ mask;
}

function headerSeed(h: WalHeader): Checksum {
  return [h.checksum1, h.checksum2];
}

function scanAll(wal: Uint8Array, h: WalHeader) {
  return scanFrames(wal.subarray(WAL_HEADER_SIZE), {
    pageSize: h.pageSize,
    bigEndian: h.bigEndianChecksums,
    salt1: h.salt1,
    salt2: h.salt2,
    seed: headerSeed(h),
    startOffset: WAL_HEADER_SIZE,
  });
}

/** A real WAL of `txns` committed transactions, copied while both connections are open. */
async function realWal(
  txns = 6,
  rowsPerTxn = 30,
): Promise<{ dir: string; dbPath: string; wal: Buffer; pageCount: number; rows: number }> {
  const dir = await freshDir();
  const dbPath = path.join(dir, "app.db");
  const h = openWalDb(dbPath);
  try {
    writeTxns(h.db, txns, rowsPerTxn);
    const wal = await fs.readFile(`${dbPath}-wal`);
    const pageCount = h.db.pragma("page_count", { simple: true }) as number;
    const rows = (h.holder.prepare("SELECT count(*) AS n FROM t").get() as { n: number }).n;
    // Keep a copy of the main file as it was with this WAL (no checkpoint has run).
    await fs.copyFile(dbPath, path.join(dir, "base.db"));
    return { dir, dbPath, wal, pageCount, rows };
  } finally {
    h.close();
  }
}

describe("wal header", () => {
  it("parses the header SQLite wrote and re-encodes it byte for byte", async () => {
    const { wal } = await realWal(2, 5);
    const h = parseWalHeader(wal);
    assert.equal(h.version, WAL_VERSION);
    assert.equal(h.pageSize, 4096);
    // x86-64 and arm64 are little-endian hosts: SQLite picks the native order.
    assert.equal(h.bigEndianChecksums, false);
    assert.equal(new DataView(wal.buffer, wal.byteOffset).getUint32(0), WAL_MAGIC_LE);
    const again = encodeWalHeader({
      bigEndianChecksums: h.bigEndianChecksums,
      pageSize: h.pageSize,
      checkpointSeq: h.checkpointSeq,
      salt1: h.salt1,
      salt2: h.salt2,
    });
    assert.deepEqual(Buffer.from(again), wal.subarray(0, WAL_HEADER_SIZE));
  });

  it("rejects a bad magic, version, page size or checksum with CORRUPT naming the field", () => {
    const good = encodeWalHeader({
      bigEndianChecksums: false,
      pageSize: 4096,
      checkpointSeq: 3,
      salt1: 7,
      salt2: 9,
    });
    assert.equal(parseWalHeader(good).checkpointSeq, 3);
    const mutate = (at: number, v: number): Uint8Array => {
      const b = Uint8Array.from(good);
      new DataView(b.buffer).setUint32(at, v);
      return b;
    };
    assertCode(() => parseWalHeader(mutate(0, 0x377f0684)), ErrorCodes.CORRUPT, { magic: true });
    assertCode(() => parseWalHeader(mutate(4, 3007001)), ErrorCodes.CORRUPT, { version: true });
    assertCode(() => parseWalHeader(mutate(8, 4095)), ErrorCodes.CORRUPT, { pageSize: true });
    assertCode(() => parseWalHeader(mutate(8, 256)), ErrorCodes.CORRUPT, { pageSize: true });
    assertCode(() => parseWalHeader(mutate(8, 131072)), ErrorCodes.CORRUPT, { pageSize: true });
    assertCode(() => parseWalHeader(mutate(16, 8)), ErrorCodes.CORRUPT, { computed: true });
    assertCode(() => parseWalHeader(mutate(28, 1)), ErrorCodes.CORRUPT, { computed: true });
    assertCode(() => parseWalHeader(good.subarray(0, 31)), ErrorCodes.CORRUPT, { length: true });
  });

  it("accepts page sizes 512 and 65536 and both magics", () => {
    for (const pageSize of [512, 65536]) {
      for (const bigEndianChecksums of [false, true]) {
        const h = parseWalHeader(
          encodeWalHeader({ bigEndianChecksums, pageSize, checkpointSeq: 0, salt1: 1, salt2: 2 }),
        );
        assert.equal(h.pageSize, pageSize);
        assert.equal(h.bigEndianChecksums, bigEndianChecksums);
      }
    }
    const be = encodeWalHeader({
      bigEndianChecksums: true,
      pageSize: 1024,
      checkpointSeq: 0,
      salt1: 1,
      salt2: 2,
    });
    assert.equal(new DataView(be.buffer).getUint32(0), WAL_MAGIC_BE);
  });

  it("reads a WAL file's header and size; a missing or short file has none", async () => {
    const { dir, wal } = await realWal(2, 5);
    const p = path.join(dir, "copy-wal");
    await fs.writeFile(p, wal.subarray(0, wal.length - 100));
    const info = await walFileInfo(p);
    assert.ok(info?.header);
    assert.equal(info.size, wal.length - 100);
    assert.equal(info.alignedSize, wal.length - frameSize(4096));
    assert.deepEqual(await readWalFileHeader(p), parseWalHeader(wal));
    assert.equal(await walFileInfo(path.join(dir, "nope-wal")), null);
    await fs.writeFile(p, wal.subarray(0, 20));
    assert.deepEqual(await walFileInfo(p), { size: 20, header: null, alignedSize: 0 });
    await fs.writeFile(p, Buffer.alloc(64));
    await assertCode(walFileInfo(p), ErrorCodes.CORRUPT);
  });
});

describe("wal checksum", () => {
  it("matches the reference rule in both byte orders, aligned or not, chained or in one go", () => {
    const data = new Uint8Array(4096 + 8);
    for (let i = 0; i < data.length; i++) data[i] = (i * 131 + 7) & 0xff;
    for (const be of [false, true]) {
      const want = referenceChecksum(be, data, 0x12345678, 0xfedcba98);
      assert.deepEqual(walChecksum(be, data, 0x12345678, 0xfedcba98), want);
      const unaligned = new Uint8Array(data.length + 1).subarray(1);
      unaligned.set(data);
      assert.deepEqual(walChecksum(be, unaligned, 0x12345678, 0xfedcba98), want);
      const first = walChecksum(be, data.subarray(0, 8), 0x12345678, 0xfedcba98);
      assert.deepEqual(walChecksum(be, data.subarray(8), first[0], first[1]), want);
    }
    assert.notDeepEqual(walChecksum(false, data, 0, 0), walChecksum(true, data, 0, 0));
    assertCode(() => walChecksum(false, data.subarray(0, 12), 0, 0), ErrorCodes.WAL);
  });

  it("chains through every frame SQLite wrote", async () => {
    const { wal } = await realWal();
    const h = parseWalHeader(wal);
    const f = frameSize(h.pageSize);
    assert.equal((wal.length - WAL_HEADER_SIZE) % f, 0, "SQLite writes whole frames");
    const n = (wal.length - WAL_HEADER_SIZE) / f;
    assert.ok(n > 10, `expected many frames, got ${n}`);
    let sum: Checksum = headerSeed(h);
    let ref: Checksum = headerSeed(h);
    for (let i = 0; i < n; i++) {
      const at = WAL_HEADER_SIZE + i * f;
      const fh = parseFrameHeader(wal, at);
      assert.equal(fh.salt1, h.salt1);
      assert.equal(fh.salt2, h.salt2);
      sum = walChecksum(false, wal.subarray(at, at + 8), sum[0], sum[1]);
      sum = walChecksum(false, wal.subarray(at + WAL_FRAME_HEADER_SIZE, at + f), sum[0], sum[1]);
      ref = referenceChecksum(false, wal.subarray(at, at + 8), ref[0], ref[1]);
      ref = referenceChecksum(false, wal.subarray(at + WAL_FRAME_HEADER_SIZE, at + f), ref[0], ref[1]);
      assert.deepEqual(sum, ref);
      assert.deepEqual([fh.checksum1, fh.checksum2], sum, `frame ${i}`);
      assert.deepEqual(checksumAt(wal, at + f, h.pageSize), sum);
    }
  });
});

describe("scanFrames", () => {
  it("finds exactly the committed frames of a real WAL and stops at its end", async () => {
    const txns = 6;
    const { wal, pageCount } = await realWal(txns, 30);
    const h = parseWalHeader(wal);
    const f = frameSize(h.pageSize);
    const r = scanAll(wal, h);
    assert.equal(r.stop, "end");
    assert.equal(r.validEnd, wal.length);
    assert.equal(r.lastCommitEnd, wal.length);
    assert.equal(r.frames, (wal.length - WAL_HEADER_SIZE) / f);
    // One commit frame per transaction: CREATE TABLE, then the inserts.
    assert.equal(r.commits.length, txns + 1);
    assert.equal(r.commits.at(-1)?.commitSize, pageCount);
    for (const c of r.commits) {
      assert.equal(parseFrameHeader(wal, c.end - f).commitSize, c.commitSize);
      assert.ok(c.commitSize > 0);
    }
    for (let i = 1; i < r.commits.length; i++) {
      assert.ok((r.commits[i]?.end ?? 0) > (r.commits[i - 1]?.end ?? 0));
    }
    assert.deepEqual(r.lastCommitChecksum, checksumAt(wal, wal.length, h.pageSize));
    assert.deepEqual(r.validEndChecksum, r.lastCommitChecksum);
  });

  it("resumes from any commit with checksumAt as the seed", async () => {
    const { wal } = await realWal(6, 30);
    const h = parseWalHeader(wal);
    const all = scanAll(wal, h);
    for (const c of all.commits.slice(0, -1)) {
      const r = scanFrames(wal.subarray(c.end), {
        pageSize: h.pageSize,
        bigEndian: false,
        salt1: h.salt1,
        salt2: h.salt2,
        seed: checksumAt(wal, c.end, h.pageSize),
        startOffset: c.end,
      });
      assert.equal(r.validEnd, wal.length);
      assert.equal(r.lastCommitEnd, wal.length);
      assert.deepEqual(
        r.commits,
        all.commits.filter((x) => x.end > c.end),
      );
    }
    // A buffer holding only the last frame (bufOffset) gives the same seed.
    const f = frameSize(h.pageSize);
    const tail = wal.subarray(wal.length - f);
    assert.deepEqual(checksumAt(tail, wal.length, h.pageSize, wal.length - f), all.lastCommitChecksum);
    assert.deepEqual(checksumAt(wal, WAL_HEADER_SIZE, h.pageSize), headerSeed(h));
    assertCode(() => checksumAt(wal, WAL_HEADER_SIZE + 10, h.pageSize), ErrorCodes.WAL);
    assertCode(() => checksumAt(tail, wal.length - f, h.pageSize, wal.length - f), ErrorCodes.WAL);
  });

  it("stops at a flipped page byte, keeping only the commits before that frame", async () => {
    const { wal } = await realWal(6, 30);
    const h = parseWalHeader(wal);
    const f = frameSize(h.pageSize);
    const all = scanAll(wal, h);
    const k = Math.floor(all.frames / 2);
    const bad = Buffer.from(wal);
    const at = WAL_HEADER_SIZE + k * f;
    flip(bad, at + WAL_FRAME_HEADER_SIZE + 1000, 0x01);
    const r = scanAll(bad, h);
    assert.equal(r.stop, "checksum");
    assert.equal(r.validEnd, at);
    assert.equal(r.frames, k);
    const before = all.commits.filter((c) => c.end <= at);
    assert.deepEqual(r.commits, before);
    assert.equal(r.lastCommitEnd, before.at(-1)?.end ?? WAL_HEADER_SIZE);
    // A flipped byte in the frame header's checksummed part (db size) also stops it.
    const bad2 = Buffer.from(wal);
    flip(bad2, at + 7, 0x40);
    assert.equal(scanAll(bad2, h).validEnd, at);
    // And so does a flipped stored checksum.
    const bad3 = Buffer.from(wal);
    flip(bad3, at + 20, 0x01);
    assert.equal(scanAll(bad3, h).validEnd, at);
  });

  it("scans alike from a buffer that is not word-aligned, a flipped byte included", async () => {
    // scanFrames reads words through one aligned view when it can and byte offsets otherwise.
    const { wal } = await realWal(6, 30);
    const h = parseWalHeader(wal);
    const f = frameSize(h.pageSize);
    const odd = (w: Uint8Array): Uint8Array => {
      const box = new Uint8Array(w.length + 1);
      box.set(w, 1);
      return box.subarray(1);
    };
    const all = scanAll(wal, h);
    assert.equal(all.stop, "end");
    assert.deepEqual(scanAll(odd(wal), h), all);
    const at = WAL_HEADER_SIZE + Math.floor(all.frames / 2) * f;
    for (const where of [at + 6, at + WAL_FRAME_HEADER_SIZE + 2000, at + f - 1]) {
      const bad = Buffer.from(wal);
      flip(bad, where, 0x10);
      const aligned = scanAll(bad, h);
      assert.equal(aligned.stop, "checksum");
      assert.equal(aligned.validEnd, at);
      assert.deepEqual(scanAll(odd(bad), h), aligned);
    }
  });

  it("stops at a frame with other salts and at a partial frame", async () => {
    const { wal } = await realWal(3, 30);
    const h = parseWalHeader(wal);
    const f = frameSize(h.pageSize);
    const bad = Buffer.from(wal);
    flip(bad, WAL_HEADER_SIZE + 2 * f + 11, 0x01); // salt-1 of frame 2
    const r = scanAll(bad, h);
    assert.equal(r.stop, "salt");
    assert.equal(r.validEnd, WAL_HEADER_SIZE + 2 * f);
    const partial = scanAll(wal.subarray(0, wal.length - 1), h);
    assert.equal(partial.stop, "partial");
    assert.equal(partial.validEnd, wal.length - f);
  });

  it("excludes an uncommitted tail that SQLite spilled mid-transaction", async () => {
    const dir = await freshDir();
    const dbPath = path.join(dir, "spill.db");
    const h0 = openWalDb(dbPath);
    try {
      writeTxns(h0.db, 2, 10);
      const committedSize = (await fs.stat(`${dbPath}-wal`)).size;
      // A tiny page cache makes SQLite spill dirty pages into the WAL before COMMIT.
      h0.db.pragma("cache_size = 10");
      h0.db.exec("BEGIN");
      const ins = h0.db.prepare("INSERT INTO t (v) VALUES (?)");
      for (let i = 0; i < 2000; i++) ins.run(`spill-${i}-${"x".repeat(200)}`);
      const mid = await fs.readFile(`${dbPath}-wal`);
      h0.db.exec("COMMIT");
      const done = await fs.readFile(`${dbPath}-wal`);

      const h = parseWalHeader(mid);
      const r = scanAll(mid, h);
      assert.ok(
        mid.length > committedSize + 10 * frameSize(h.pageSize),
        "SQLite spilled frames before COMMIT",
      );
      assert.equal(r.validEnd, mid.length);
      assert.equal(r.lastCommitEnd, committedSize);
      assert.equal(r.commits.length, 3);
      assert.deepEqual(r.lastCommitChecksum, checksumAt(mid, committedSize, h.pageSize));
      assert.notDeepEqual(r.validEndChecksum, r.lastCommitChecksum);

      // After COMMIT the same scan runs on to the new commit: the spilled frames chain correctly.
      const r2 = scanAll(done, h);
      assert.equal(r2.lastCommitEnd, done.length);
      assert.equal(r2.commits.length, 4);

      // Resuming from the old commit with its checksum also reaches the new commit.
      const r3 = scanFrames(done.subarray(committedSize), {
        pageSize: h.pageSize,
        bigEndian: false,
        salt1: h.salt1,
        salt2: h.salt2,
        seed: r.lastCommitChecksum,
        startOffset: committedSize,
      });
      assert.equal(r3.lastCommitEnd, done.length);
    } finally {
      h0.close();
    }
  });

  it("a truncated copy that lacks a transaction's commit frame keeps only earlier commits", async () => {
    const { wal } = await realWal(4, 60);
    const h = parseWalHeader(wal);
    const f = frameSize(h.pageSize);
    const all = scanAll(wal, h);
    const prev = all.commits.at(-2)?.end ?? 0;
    assert.ok(wal.length - prev >= 2 * f, "last transaction has at least two frames");
    const cut = wal.subarray(0, wal.length - f);
    const r = scanAll(cut, h);
    assert.equal(r.validEnd, cut.length);
    assert.equal(r.lastCommitEnd, prev);
  });

  it("stops at old-salt frames left behind after SQLite restarts the WAL", async () => {
    const dir = await freshDir();
    const dbPath = path.join(dir, "restart.db");
    const h0 = openWalDb(dbPath);
    try {
      writeTxns(h0.db, 5, 40);
      const oldWal = await fs.readFile(`${dbPath}-wal`);
      const oldHeader = parseWalHeader(oldWal);
      // A complete checkpoint; the next write restarts the WAL from the top with new salts.
      const [ck] = h0.db.pragma("wal_checkpoint(PASSIVE)") as Array<{
        busy: number;
        log: number;
        checkpointed: number;
      }>;
      assert.equal(ck?.busy, 0);
      assert.equal(ck?.log, ck?.checkpointed);
      h0.db.prepare("INSERT INTO t (v) VALUES (?)").run("after restart");
      const newWal = await fs.readFile(`${dbPath}-wal`);
      assert.equal(newWal.length, oldWal.length, "the WAL file is reused, not truncated");
      const h = parseWalHeader(newWal);
      assert.equal(h.checkpointSeq, oldHeader.checkpointSeq + 1);
      assert.equal(h.salt1, (oldHeader.salt1 + 1) >>> 0);
      assert.notEqual(h.salt2, oldHeader.salt2);

      const r = scanAll(newWal, h);
      assert.equal(r.stop, "salt");
      assert.equal(r.commits.length, 1);
      assert.equal(r.validEnd, r.lastCommitEnd);
      const next = parseFrameHeader(newWal, r.validEnd);
      assert.equal(next.salt1, oldHeader.salt1);
      assert.equal(next.salt2, oldHeader.salt2);

      // Scanning the new file with the old header's salts and seed accepts nothing.
      const stale = scanAll(newWal, oldHeader);
      assert.equal(stale.frames, 0);
      assert.equal(stale.validEnd, WAL_HEADER_SIZE);
      assert.equal(stale.lastCommitEnd, WAL_HEADER_SIZE);
      assert.deepEqual(stale.lastCommitChecksum, headerSeed(oldHeader));
    } finally {
      h0.close();
    }
  });

  it("rejects a start offset that is not a frame boundary", () => {
    const opts = { pageSize: 4096, bigEndian: false, salt1: 1, salt2: 2, seed: [0, 0] as Checksum };
    assertCode(() => scanFrames(new Uint8Array(0), { ...opts, startOffset: 0 }), ErrorCodes.WAL);
    assertCode(() => scanFrames(new Uint8Array(0), { ...opts, startOffset: 33 }), ErrorCodes.WAL);
    assertCode(
      () => scanFrames(new Uint8Array(0), { ...opts, pageSize: 1000, startOffset: 32 }),
      ErrorCodes.WAL,
    );
    const r = scanFrames(new Uint8Array(0), { ...opts, startOffset: 32 + 4120 });
    assert.deepEqual(
      { validEnd: r.validEnd, lastCommitEnd: r.lastCommitEnd, frames: r.frames, stop: r.stop },
      { validEnd: 4152, lastCommitEnd: 4152, frames: 0, stop: "end" },
    );
  });
});

/** Rebuilds a real WAL frame by frame with our encoder, in either byte order. */
function reencode(wal: Uint8Array, bigEndian: boolean): Buffer {
  const h = parseWalHeader(wal);
  const f = frameSize(h.pageSize);
  const parts: Uint8Array[] = [
    encodeWalHeader({
      bigEndianChecksums: bigEndian,
      pageSize: h.pageSize,
      checkpointSeq: h.checkpointSeq,
      salt1: h.salt1,
      salt2: h.salt2,
    }),
  ];
  const hdr = parseWalHeader(parts[0] as Uint8Array);
  let sum: Checksum = headerSeed(hdr);
  for (let at = WAL_HEADER_SIZE; at + f <= wal.length; at += f) {
    const fh = parseFrameHeader(wal, at);
    const out = encodeFrame(fh, wal.subarray(at + WAL_FRAME_HEADER_SIZE, at + f), bigEndian, sum);
    parts.push(out.bytes);
    sum = out.checksum;
  }
  return Buffer.concat(parts);
}

describe("encodeFrame", () => {
  it("reproduces SQLite's little-endian WAL byte for byte", async () => {
    const { wal } = await realWal(4, 20);
    assert.deepEqual(reencode(wal, false), wal);
  });

  it("builds big-endian WALs that verify and that SQLite reads back", async () => {
    const { dir, wal, rows } = await realWal(4, 20);
    const be = reencode(wal, true);
    const h = parseWalHeader(be);
    assert.equal(h.bigEndianChecksums, true);
    const r = scanAll(be, h);
    assert.equal(r.validEnd, be.length);
    assert.equal(r.lastCommitEnd, be.length);
    assert.equal(r.commits.length, 5);
    // Each stored checksum matches the slow reference in big-endian order.
    const f = frameSize(h.pageSize);
    let sum: Checksum = headerSeed(h);
    for (let at = WAL_HEADER_SIZE; at + f <= be.length; at += f) {
      sum = referenceChecksum(true, be.subarray(at, at + 8), sum[0], sum[1]);
      sum = referenceChecksum(true, be.subarray(at + 24, at + f), sum[0], sum[1]);
      assert.deepEqual(checksumAt(be, at + f, h.pageSize), sum);
    }
    // The real check: SQLite recovers the big-endian WAL and sees every committed row.
    const copy = path.join(dir, "be.db");
    await fs.copyFile(path.join(dir, "base.db"), copy);
    await fs.writeFile(`${copy}-wal`, be);
    const db = new Database(copy);
    try {
      assert.equal((db.prepare("SELECT count(*) AS n FROM t").get() as { n: number }).n, rows);
      assert.equal(db.pragma("integrity_check", { simple: true }), "ok");
    } finally {
      db.close();
    }
    // Control: a big-endian WAL with one page byte flipped loses that transaction and all later ones.
    const broken = Buffer.from(be);
    const lastCommitStart = (r.commits.at(-1)?.end ?? 0) - f;
    flip(broken, lastCommitStart + WAL_FRAME_HEADER_SIZE + 100, 0xff);
    const copy2 = path.join(dir, "be-broken.db");
    await fs.copyFile(path.join(dir, "base.db"), copy2);
    await fs.writeFile(`${copy2}-wal`, broken);
    const db2 = new Database(copy2);
    try {
      assert.equal((db2.prepare("SELECT count(*) AS n FROM t").get() as { n: number }).n, rows - 20);
    } finally {
      db2.close();
    }
  });

  it("handles the sizes helpers", () => {
    assert.equal(frameSize(4096), 4120);
    assert.equal(alignWalSize(0, 4096), 0);
    assert.equal(alignWalSize(31, 4096), 0);
    assert.equal(alignWalSize(32, 4096), 32);
    assert.equal(alignWalSize(32 + 4119, 4096), 32);
    assert.equal(alignWalSize(32 + 4120, 4096), 4152);
    assert.equal(alignWalSize(32 + 3 * 4120 + 5, 4096), 32 + 3 * 4120);
    assert.equal(alignWalSize(32 + 2 * 1048, 1024), 32 + 2 * 1048);
    assertCode(
      () => encodeFrame({ pgno: 1, commitSize: 1, salt1: 0, salt2: 0 }, new Uint8Array(1000), false, [0, 0]),
      ErrorCodes.WAL,
    );
  });
});

describe("walChecksum throughput", {
  skip: process.env.WALSHIP_BENCH === undefined && "set WALSHIP_BENCH=1",
}, () => {
  it("prints MB/s over 64 MiB in 4 KiB pages", () => {
    const data = new Uint8Array(64 << 20);
    for (let i = 0; i < data.length; i += 4096) data[i] = i & 0xff;
    for (const be of [false, true]) {
      let sum: Checksum = [0, 0];
      const run = (): void => {
        for (let i = 0; i < data.length; i += 4096)
          sum = walChecksum(be, data.subarray(i, i + 4096), sum[0], sum[1]);
      };
      run();
      const t = process.cpuUsage();
      for (let k = 0; k < 4; k++) run();
      const used = process.cpuUsage(t);
      const mbps = (4 * data.length) / 1e6 / ((used.user + used.system) / 1e6);
      console.log(`walChecksum ${be ? "big" : "little"}-endian: ${mbps.toFixed(0)} MB/s`);
      assert.ok(mbps > 100);
    }
  });
});

/**
 * WalApplier against SQLite itself: the oracle applies each WAL the way restore did before, by
 * putting it beside the database as `-wal` and running `wal_checkpoint(TRUNCATE)`.
 */
describe("WalApplier", () => {
  type Step = (db: Database.Database) => void;

  /** A snapshot (WAL empty) and the WAL of each step, SQLite restarting the WAL after each. */
  async function history(steps: Step[], pragmas: string[] = []) {
    const dir = await freshDir();
    const dbPath = path.join(dir, "src.db");
    const db = new Database(dbPath);
    for (const p of pragmas) db.pragma(p);
    db.pragma("journal_mode = WAL");
    db.pragma("wal_autocheckpoint = 0");
    db.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)");
    db.pragma("wal_checkpoint(TRUNCATE)");
    const snapshot = await fs.readFile(dbPath);
    const wals: Buffer[] = [];
    try {
      for (const step of steps) {
        step(db);
        wals.push(await fs.readFile(`${dbPath}-wal`));
        const [row] = db.pragma("wal_checkpoint(TRUNCATE)") as Array<{ busy: number }>;
        assert.equal(row?.busy, 0);
      }
    } finally {
      db.close();
    }
    return { dir, snapshot, wals, source: await fs.readFile(dbPath) };
  }

  /** SQLite applies `wals` to `snapshot` one by one; returns the database file's bytes. */
  async function bySqlite(dir: string, snapshot: Uint8Array, wals: Uint8Array[]): Promise<Buffer> {
    const file = path.join(dir, `oracle-${++seq}.db`);
    await fs.writeFile(file, snapshot);
    for (const wal of wals) {
      await fs.writeFile(`${file}-wal`, wal);
      const db = new Database(file, { fileMustExist: true });
      try {
        db.pragma("wal_checkpoint(TRUNCATE)");
      } finally {
        db.close();
      }
    }
    return fs.readFile(file);
  }

  /** WalApplier applies `wals` to `snapshot`, each pushed in chunks of the sizes `chunks` cycles through. */
  async function byApplier(
    dir: string,
    snapshot: Uint8Array,
    wals: Uint8Array[],
    chunks: number[] = [1 << 20],
    limits: Array<number | undefined> = [],
    capacity?: number,
  ): Promise<Buffer> {
    const file = path.join(dir, `applied-${++seq}.db`);
    await fs.writeFile(file, snapshot);
    const fd = openSync(file, "r+");
    try {
      let dbSize = snapshot.length;
      const pages = pageWriter(fd, capacity);
      for (const [w, wal] of wals.entries()) {
        const limit = limits[w];
        const a = new WalApplier({
          pages,
          dbSize,
          dbPageSize: snapshot.length >= 100 ? dbHeaderPageSize(snapshot) : 0,
          ...(limit !== undefined ? { limit } : {}),
        });
        for (let at = 0, k = 0; at < wal.length; k++) {
          const n = chunks[k % chunks.length]!;
          // A fresh copy at an odd byte offset, so word reads are unaligned too.
          const piece = Buffer.alloc(n + 1).subarray(1);
          const got = Buffer.from(wal.subarray(at, at + n));
          got.copy(piece);
          a.push(piece.subarray(0, got.length));
          at += got.length;
        }
        const r = a.finish();
        assert.equal(a.received, wal.length);
        dbSize = r.dbSize;
        assert.equal(fstatSync(fd).size, dbSize);
      }
      pages.flush();
    } finally {
      closeSync(fd);
    }
    return fs.readFile(file);
  }

  const blob = (n: number, k: number) => Buffer.alloc(n, `${k}-${"x".repeat(k % 13)}`);
  const grow: Step = (db) => {
    const ins = db.prepare("INSERT INTO t (v) VALUES (?)");
    for (let k = 0; k < 4; k++)
      db.transaction(() => {
        for (let i = 0; i < 60; i++) ins.run(blob(700 + ((i * 37) % 2500), i + k));
      })();
  };
  const update: Step = (db) => {
    const up = db.prepare("UPDATE t SET v = ? WHERE id = ?");
    for (let k = 0; k < 5; k++)
      db.transaction(() => {
        for (let i = 0; i < 40; i++) up.run(blob(900 + k * 100, i * k), 1 + ((i * 7 + k * 31) % 200));
      })();
  };
  const shrink: Step = (db) => {
    db.exec("DELETE FROM t WHERE id % 4 != 0");
    db.exec("VACUUM");
  };
  const incremental: Step = (db) => {
    db.exec("DELETE FROM t WHERE id % 3 != 0");
    db.pragma("incremental_vacuum");
  };

  it("gives the database SQLite's checkpoints give, byte for byte: growth, updates, VACUUM, growth again", async () => {
    const growThenShrink: Step = (db) => {
      grow(db);
      shrink(db);
    };
    const h = await history([grow, update, shrink, grow, growThenShrink, update]);
    const want = await bySqlite(h.dir, h.snapshot, h.wals);
    assert.deepEqual(want, h.source, "the oracle itself reproduces the source");
    // The cases that matter are there: a WAL whose last commit shrinks the database below an earlier
    // commit's size, holding frames of pages past its final size.
    const shape = h.wals.map((w) => {
      const hdr = parseWalHeader(w);
      const f = frameSize(hdr.pageSize);
      const last = scanAll(w, hdr).commits.at(-1)!.commitSize;
      let maxPgno = 0;
      for (let at = WAL_HEADER_SIZE; at + f <= w.length; at += f)
        maxPgno = Math.max(maxPgno, parseFrameHeader(w, at).pgno);
      return { last, maxPgno };
    });
    assert.ok(shape[2]!.last < shape[1]!.last, JSON.stringify(shape));
    assert.ok(shape[4]!.maxPgno > shape[4]!.last, JSON.stringify(shape));
    assert.deepEqual(await byApplier(h.dir, h.snapshot, h.wals), want);
    // Page writes buffered one page at a time, or a few, shared across WALs.
    assert.deepEqual(await byApplier(h.dir, h.snapshot, h.wals, [8192], [], 1), want);
    assert.deepEqual(await byApplier(h.dir, h.snapshot, h.wals, [8192], [], 20_000), want);
    // Frames split across chunks anywhere, unaligned, even one byte at a time.
    assert.deepEqual(await byApplier(h.dir, h.snapshot, h.wals, [4096, 7, 1000, 33, 4120 * 3 + 5]), want);
    assert.deepEqual(
      await byApplier(h.dir, h.snapshot, h.wals.slice(0, 2), [1]),
      await bySqlite(h.dir, h.snapshot, h.wals.slice(0, 2)),
    );
  });

  it("matches SQLite with incremental auto-vacuum, 512- and 65536-byte pages, and big-endian checksums", async () => {
    for (const pragmas of [["auto_vacuum = INCREMENTAL"], ["page_size = 512"], ["page_size = 65536"]]) {
      const h = await history([grow, incremental, update, grow], pragmas);
      const want = await bySqlite(h.dir, h.snapshot, h.wals);
      assert.deepEqual(want, h.source);
      assert.deepEqual(await byApplier(h.dir, h.snapshot, h.wals, [5000, 3]), want, pragmas.join());
    }
    const h = await history([grow, update]);
    const be = h.wals.map((w) => reencode(w, true));
    assert.equal(parseWalHeader(be[0]!).bigEndianChecksums, true);
    const want = await bySqlite(h.dir, h.snapshot, be);
    assert.deepEqual(want, h.source);
    assert.deepEqual(await byApplier(h.dir, h.snapshot, be, [4096, 9]), want);
  });

  it("with a limit at a commit, applies exactly what SQLite applies from the WAL cut there", async () => {
    const h = await history([grow, update]);
    const wal = h.wals[1]!;
    const hdr = parseWalHeader(wal);
    const commits = scanAll(wal, hdr).commits;
    assert.ok(commits.length >= 4);
    for (const c of [commits[0]!, commits[2]!, commits.at(-1)!]) {
      const want = await bySqlite(h.dir, h.snapshot, [h.wals[0]!, wal.subarray(0, c.end)]);
      assert.deepEqual(await byApplier(h.dir, h.snapshot, h.wals, [3000], [undefined, c.end]), want);
    }
    // The bytes past the limit are not even read: garbage there changes nothing.
    const dirty = Buffer.from(wal);
    dirty.fill(0xee, commits[2]!.end);
    const want = await bySqlite(h.dir, h.snapshot, [h.wals[0]!, wal.subarray(0, commits[2]!.end)]);
    assert.deepEqual(
      await byApplier(h.dir, h.snapshot, [h.wals[0]!, dirty], [3000], [undefined, commits[2]!.end]),
      want,
    );
  });

  it("applies nothing to an empty database file, as SQLite does (it deletes such a WAL unread)", async () => {
    const h = await history([grow]);
    const want = await bySqlite(h.dir, new Uint8Array(0), h.wals);
    assert.equal(want.length, 0);
    assert.equal((await byApplier(h.dir, new Uint8Array(0), h.wals)).length, 0);
    // An empty WAL, or one with a header and no frame, changes nothing either.
    const header = h.wals[0]!.subarray(0, WAL_HEADER_SIZE);
    assert.deepEqual(await byApplier(h.dir, h.snapshot, [new Uint8Array(0), header]), h.snapshot);
  });

  it("rejects a bad frame, a partial frame, an uncommitted tail, a cut header and another page size with CORRUPT", async () => {
    const h = await history([grow]);
    const wal = h.wals[0]!;
    const hdr = parseWalHeader(wal);
    const f = frameSize(hdr.pageSize);
    const commits = scanAll(wal, hdr).commits;
    const attempt =
      (bytes: Uint8Array, snapshot: Uint8Array = h.snapshot) =>
      async () => {
        await byApplier(h.dir, snapshot, [bytes], [2048]);
      };
    const rejects = async (fn: () => Promise<void>, offset?: number) => {
      await assert.rejects(fn, (err: unknown) => {
        assert.ok(err instanceof WalshipError, String(err));
        assert.equal(err.code, ErrorCodes.CORRUPT);
        if (offset !== undefined) assert.equal(err.details.offset, offset);
        return true;
      });
    };
    const pageByte = Buffer.from(wal);
    flip(pageByte, WAL_HEADER_SIZE + 2 * f + WAL_FRAME_HEADER_SIZE + 50, 0x01);
    await rejects(attempt(pageByte), WAL_HEADER_SIZE + 2 * f);
    const salt = Buffer.from(wal);
    flip(salt, WAL_HEADER_SIZE + 3 * f + 9, 0x01);
    await rejects(attempt(salt), WAL_HEADER_SIZE + 3 * f);
    const pgno0 = Buffer.from(
      encodeFrame(
        { pgno: 0, commitSize: 1, salt1: hdr.salt1, salt2: hdr.salt2 },
        new Uint8Array(hdr.pageSize),
        false,
        headerSeed(hdr),
      ).bytes,
    );
    await rejects(attempt(Buffer.concat([wal.subarray(0, WAL_HEADER_SIZE), pgno0])), WAL_HEADER_SIZE);
    await rejects(attempt(wal.subarray(0, wal.length - 100)));
    await rejects(attempt(wal.subarray(0, commits[0]!.end + f)), commits[0]!.end);
    await rejects(attempt(wal.subarray(0, 20)));
    const small = await history([grow], ["page_size = 1024"]);
    await rejects(attempt(wal, small.snapshot));
    // Control: the untouched WAL applies.
    await attempt(wal)();
  });
});
