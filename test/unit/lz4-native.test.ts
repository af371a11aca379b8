/**
 * The native LZ4 block codec (lz4-napi) against our TypeScript one (WALSHIP_LZ4=js, in a child
 * process: the choice is made once per process) and the lz4 CLI: frames either writes decode with the
 * other and with `lz4 -d`, byte for byte, and a corrupt block is a CORRUPT error naming its offset.
 * The native blocks' buffers are freed by a young-generation collection between blocks, which keeps
 * a process compressing blocks within a few MiB of where it started.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import path from "node:path";
import { describe, it } from "node:test";
import Database from "better-sqlite3";
import {
  lz4Implementation,
  nativeCompressFrameBlock,
  nativeDecompressBlock,
  setBlockCollector,
} from "../../src/replicator/lz4/native.ts";
import { LZ4_FRAME_HEADER, lz4DecodeFrame, lz4EncodeFrame } from "../../src/replicator/lz4.ts";
import { ErrorCodes, WalshipError } from "../../src/shared/errors.ts";
import { noise } from "../helpers/noise.ts";

const LZ4_MODULE = path.resolve(import.meta.dirname, "../../src/replicator/lz4.ts");
const NATIVE_MODULE = path.resolve(import.meta.dirname, "../../src/replicator/lz4/native.ts");

/** Runs `lz4EncodeFrame` or `lz4DecodeFrame` over `input` in a child process with the TypeScript codec. */
function jsCodec(op: "encode" | "decode", input: Uint8Array): Buffer {
  const fn = op === "encode" ? "lz4EncodeFrame" : "lz4DecodeFrame";
  const script = `
    import { ${fn} } from ${JSON.stringify(LZ4_MODULE)};
    import { lz4Implementation } from ${JSON.stringify(NATIVE_MODULE)};
    if (lz4Implementation().name !== "js") throw new Error("expected the js codec");
    const chunks = [];
    for await (const c of process.stdin) chunks.push(c);
    process.stdout.write(${fn}(Buffer.concat(chunks)));`;
  return execFileSync(process.execPath, ["--input-type=module", "-e", script], {
    input,
    env: { ...process.env, WALSHIP_LZ4: "js" },
    maxBuffer: 1 << 30,
  });
}

/** Real SQLite pages: a database of text rows, serialized. */
function sqlitePages(rows: number): Buffer {
  const db = new Database(":memory:");
  db.exec("CREATE TABLE t(id INTEGER PRIMARY KEY, email TEXT, note TEXT)");
  const ins = db.prepare("INSERT INTO t(email, note) VALUES (?, ?)");
  db.transaction(() => {
    for (let i = 0; i < rows; i++)
      ins.run(`user${(i * 7919) % 10007}@example.com`, `note ${i} ${noise(12, i + 1).toString("hex")}`);
  })();
  const b = db.serialize();
  db.close();
  return b;
}

const INPUTS: Array<[string, Buffer]> = [
  ["empty", Buffer.alloc(0)],
  ["one byte", Buffer.from([7])],
  ["12 bytes (no match possible)", Buffer.from("abcdefghijkl")],
  ["SQLite pages, 6.5 MiB (two blocks)", sqlitePages(90_000)],
  ["zeros, exactly 4 MiB", Buffer.alloc(4 << 20)],
  ["zeros, 4 MiB + 1", Buffer.alloc((4 << 20) + 1)],
  ["noise, 1 MiB (stored raw)", noise(1 << 20)],
  ["noise then zeros", Buffer.concat([noise(3 << 20, 5), Buffer.alloc(2 << 20)])],
];

describe("native lz4 blocks", () => {
  it("loads the native codec on this platform", () => {
    assert.deepEqual(lz4Implementation(), { name: "native" });
  });

  for (const [name, data] of INPUTS) {
    it(`writes frames the TypeScript codec and lz4 -d read, and reads its frames: ${name}`, () => {
      const native = lz4EncodeFrame(data);
      assert.deepEqual(native.subarray(0, 7), Buffer.from(LZ4_FRAME_HEADER));
      assert.ok(jsCodec("decode", native).equals(data), "the TypeScript decoder reads the native frame");
      assert.ok(
        execFileSync("lz4", ["-d", "-c"], { input: native, maxBuffer: 1 << 30 }).equals(data),
        "lz4 -d",
      );
      const js = jsCodec("encode", data);
      assert.ok(lz4DecodeFrame(js).equals(data), "the native decoder reads the TypeScript frame");
      assert.ok(lz4DecodeFrame(native).equals(data));
    });
  }

  it("compresses SQLite pages as well as the reference lz4 library's default level, within 5 %", () => {
    // Our TypeScript compressor probes more positions than lz4's fast mode and writes about 15 %
    // less on such pages; the native one matches the reference (and Litestream's Go encoder).
    const data = sqlitePages(60_000);
    const native = lz4EncodeFrame(data).length;
    const reference = execFileSync("lz4", ["-1", "-B7", "-BD", "-c"], {
      input: data,
      maxBuffer: 1 << 30,
    }).length;
    assert.ok(native < data.length / 1.3, `native ${native} of ${data.length}`);
    assert.ok(native <= reference * 1.05, `native ${native} vs lz4 -1 ${reference}`);
  });

  it("rejects a corrupt block with CORRUPT and its input offset", () => {
    const frame = Buffer.from(lz4EncodeFrame(sqlitePages(20_000)));
    // The first block starts after the 7-byte header and its 4-byte size. A flipped literal is caught
    // by the content checksum, a flipped token, length or offset by the block codec.
    const size = frame.readUInt32LE(7);
    assert.ok(size < 0x80000000, "the first block is compressed");
    let corrupted = 0;
    for (let at = 11; at < Math.min(11 + size, 400); at++) {
      const bad = Buffer.from(frame);
      bad[at] = (bad[at] as number) ^ 0xff;
      try {
        const out = lz4DecodeFrame(bad);
        assert.fail(`a frame corrupted at ${at} decoded to ${out.length} bytes`);
      } catch (err) {
        assert.ok(err instanceof WalshipError && err.code === ErrorCodes.CORRUPT, String(err));
        assert.match(err.message, /input offset \d+/);
        corrupted++;
      }
    }
    assert.ok(corrupted > 100);
  });
});

/** Half noise, half text, as the bench's rows: LZ4 halves it, so each block's output is ~2 MiB. */
function halfNoise(n: number, seed: number): Buffer {
  const b = Buffer.alloc(n, "walship lz4 block test, the quick brown fox ");
  for (let o = 0; o < n; o += 4096) noise(2048, seed + o).copy(b, o);
  return b;
}

/**
 * Compresses 120 blocks of 4 MiB in a child (a fresh process, this project's Node flags), as fast
 * as a snapshot does, with a turn of the event loop after each as a snapshot's reads give (lz4-napi
 * lets its buffers go in one; garbage made more slowly than this V8 collects in time on its own), and
 * returns how far its peak RSS rose over the peak before the first block, in MiB. `collect: false`
 * turns the collection between blocks off, as the code without it would run.
 */
function peakRiseMiB(collect: boolean): number {
  const script = `
    import { randomFillSync } from "node:crypto";
    import { readFileSync } from "node:fs";
    import { nativeCompressFrameBlock, setBlockCollector } from ${JSON.stringify(NATIVE_MODULE)};
    const hwm = () => Number(/VmHWM:\\s+(\\d+)/.exec(readFileSync("/proc/self/status", "utf8"))[1]) / 1024;
    if (!${collect}) setBlockCollector(null);
    const block = Buffer.alloc(4 << 20, "walship lz4 block test, the quick brown fox ");
    for (let o = 0; o < block.length; o += 4096) randomFillSync(block, o, 2048);
    nativeCompressFrameBlock(block);
    const before = hwm();
    let out = 0;
    for (let i = 0; i < 120; i++) {
      block.writeUInt32LE(i, 0);
      out += nativeCompressFrameBlock(block).length;
      await new Promise((r) => setImmediate(r)); // a turn of the event loop, as a snapshot's reads give
    }
    if (out < 120 * (1 << 20)) throw new Error("the blocks compressed to " + out + " bytes; expected about half of 480 MiB");
    process.stdout.write(String(hwm() - before));`;
  const r = execFileSync(process.execPath, ["--max-semi-space-size=2", "--input-type=module", "-e", script], {
    env: { ...process.env, MALLOC_MMAP_THRESHOLD_: "131072" },
  });
  return Number(r.toString());
}

describe("native lz4 blocks: their buffers freed between blocks", () => {
  it("runs a young-generation collection once a mebibyte of blocks was handed out, not for small blocks", () => {
    const calls: (string | undefined)[] = [];
    const before = setBlockCollector((opts) => calls.push(opts?.type));
    try {
      for (let i = 0; i < 20; i++) assert.ok(nativeCompressFrameBlock(sqlitePages(200).subarray(0, 16384)));
      assert.equal(calls.length, 0, "20 blocks of a few KiB: no collection");
      const big = [halfNoise(4 << 20, 1), halfNoise(4 << 20, 2), halfNoise(4 << 20, 3)];
      const frames = big.map((b) => nativeCompressFrameBlock(b) as Buffer);
      assert.deepEqual([...calls], ["minor", "minor"], "before the second and the third");
      setBlockCollector((opts) => calls.push(opts?.type)); // the count starts again
      calls.length = 0;
      for (const [i, f] of frames.entries()) {
        const out = nativeDecompressBlock(f.subarray(4), 4 << 20, 0) as Buffer;
        assert.ok(out.equals(big[i] as Buffer));
      }
      assert.equal(calls.length, 2, "decompression too: before the second and the third");
    } finally {
      setBlockCollector(before);
    }
  });

  it("keeps a process compressing 480 MiB within a few MiB of its start; without it, tens of MiB more", () => {
    const withIt = peakRiseMiB(true);
    const without = peakRiseMiB(false);
    assert.ok(withIt < 24, `peak RSS rose ${withIt.toFixed(1)} MiB with the collection`);
    assert.ok(
      without > withIt + 32,
      `without it ${without.toFixed(1)} MiB, with it ${withIt.toFixed(1)} MiB`,
    );
  });
});
