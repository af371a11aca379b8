/**
 * XXH32 and the LZ4 frame codec, cross-checked with the real `lz4` CLI (/usr/bin/lz4) and `xxhsum`
 * (both installed by test/infra/install): frames we write decode with `lz4 -d`, frames the CLI
 * writes with every option decode with ours, and any corruption or truncation is a CORRUPT error.
 */
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { Readable, Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { after, before, describe, it } from "node:test";
import v8 from "node:v8";
import vm from "node:vm";
import Database from "better-sqlite3";
import { Xxh32, xxh32 } from "../../src/replicator/lz4/xxhash32.ts";
import {
  compressBlock,
  compressBound,
  createLz4Decoder,
  createLz4Encoder,
  decompressBlock,
  LZ4_BLOCK_SIZE,
  LZ4_FRAME_HEADER,
  Lz4FrameDecoder,
  lz4DecodeFrame,
  lz4EncodeChunks,
  lz4EncodeFrame,
} from "../../src/replicator/lz4.ts";
import { ErrorCodes, WalshipError } from "../../src/shared/errors.ts";
import { assertCode } from "../helpers/assert.ts";
import { noise } from "../helpers/noise.ts";

function which(cmd: string): boolean {
  try {
    execFileSync("sh", ["-c", `command -v ${cmd}`], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}
assert.ok(which("lz4"), "the lz4 CLI is required (Debian package lz4)");
assert.ok(which("xxhsum"), "xxhsum is required (Debian package xxhash)");

let base = "";
before(async () => {
  base = await fs.mkdtemp(path.join(os.tmpdir(), "walship-lz4-"));
});
after(async () => {
  await fs.rm(base, { recursive: true, force: true });
});

let seq = 0;
function tmpFile(name: string): string {
  seq++;
  return path.join(base, `${seq}-${name}`);
}

/** Text-like rows, compressible about 2:1 like SQLite pages of text. */
function rows(n: number, seed = 7): Buffer {
  const words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "theta", "kappa", "lambda", "sigma"];
  let x = seed;
  const rnd = (): number => {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    return x >>> 8;
  };
  const parts: string[] = [];
  let len = 0;
  for (let i = 0; len < n; i++) {
    const s = `${i}|user${rnd() % 10000}@example.com|${words[rnd() % 10]} ${words[rnd() % 10]} ${rnd()}\n`;
    parts.push(s);
    len += s.length;
  }
  return Buffer.from(parts.join("")).subarray(0, n);
}

function cliDecode(frame: Uint8Array): Buffer {
  return execFileSync("lz4", ["-d", "-c"], { input: frame, maxBuffer: 1 << 30 });
}

async function cliEncode(data: Uint8Array, flags: string[]): Promise<Buffer> {
  const inPath = tmpFile("in.bin");
  const outPath = `${inPath}.lz4`;
  await fs.writeFile(inPath, data);
  execFileSync("lz4", ["-q", "-f", ...flags, inPath, outPath]);
  return fs.readFile(outPath);
}

function assertCorrupt(fn: () => unknown, what = ""): void {
  assertCode(fn, ErrorCodes.CORRUPT, undefined, what);
}

function flipped(buf: Uint8Array, at: number, mask: number): Buffer {
  const b = Buffer.from(buf);
  b[at] = (b[at] ?? 0) ^ mask;
  return b;
}

function u32le(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n >>> 0);
  return b;
}

describe("xxh32", () => {
  it("matches the published vectors", () => {
    assert.equal(xxh32(new Uint8Array(0)), 0x02cc5d05);
    assert.equal(xxh32(new Uint8Array(0), 1), 0x0b2cb792);
    assert.equal(xxh32(Buffer.from("a")), 0x550d7456);
    assert.equal(xxh32(Buffer.from("abc")), 0x32d153ff);
    assert.equal(xxh32(Buffer.from("Nobody inspects the spammish repetition")), 0xe2293b2f);
  });

  it("streams to the same value whatever the chunking", () => {
    const data = noise(10_000, 3);
    const want = xxh32(data);
    for (const step of [1, 3, 15, 16, 17, 64, 4095]) {
      const h = new Xxh32();
      for (let i = 0; i < data.length; i += step) h.update(data.subarray(i, i + step));
      assert.equal(h.digest(), want, `chunks of ${step}`);
    }
    const h = new Xxh32(0);
    h.update(data.subarray(0, 5));
    assert.equal(h.digest(), xxh32(data.subarray(0, 5)));
    h.update(data.subarray(5));
    assert.equal(h.digest(), want, "digest does not reset the state");
  });

  it("agrees with the content checksum the lz4 CLI writes", async () => {
    for (const n of [0, 1, 15, 16, 17, 1000, 100_003]) {
      const data = noise(n, n + 1);
      const frame = await cliEncode(data, []);
      assert.equal(frame.readUInt32LE(frame.length - 4), xxh32(data), `length ${n}`);
    }
  });

  it("agrees with xxhsum -H0", async () => {
    for (const n of [0, 1, 3, 4, 15, 16, 17, 31, 32, 33, 255, 65_537]) {
      const p = tmpFile("xx.bin");
      await fs.writeFile(p, noise(n, n + 11));
      const out = execFileSync("xxhsum", ["-H0", p]).toString();
      const want = Number.parseInt(out.split(/\s+/)[0] ?? "", 16);
      assert.equal(xxh32(noise(n, n + 11)), want, `length ${n}`);
    }
  });
});

describe("lz4 encoder", () => {
  it("starts every frame with Litestream's 7 header bytes", () => {
    for (const data of [Buffer.alloc(0), Buffer.from("x"), rows(10_000)]) {
      const frame = lz4EncodeFrame(data);
      assert.deepEqual(frame.subarray(0, 7), Buffer.from([0x04, 0x22, 0x4d, 0x18, 0x64, 0x70, 0xb9]));
    }
    assert.deepEqual(Buffer.from(LZ4_FRAME_HEADER), Buffer.from("04224d186470b9", "hex"));
    assert.equal((xxh32(Uint8Array.of(0x64, 0x70)) >>> 8) & 0xff, 0xb9);
  });

  it("writes the empty frame as header, end mark and xxh32 of nothing", () => {
    assert.deepEqual(
      lz4EncodeFrame(Buffer.alloc(0)),
      Buffer.from("04224d186470b9" + "00000000" + "055dcc02", "hex"),
    );
  });

  for (const [name, make] of [
    ["empty", () => Buffer.alloc(0)],
    ["one byte", () => Buffer.from("z")],
    ["12 bytes (too short to match)", () => Buffer.from("abcabcabcabc")],
    ["13 bytes", () => Buffer.from("abcabcabcabca")],
    ["text, 3 blocks", () => rows(2 * LZ4_BLOCK_SIZE + 12_345)],
    ["exactly one block", () => rows(LZ4_BLOCK_SIZE)],
    ["one block + 1 byte", () => rows(LZ4_BLOCK_SIZE + 1)],
    ["random (stored raw)", () => noise(LZ4_BLOCK_SIZE + 5000)],
    ["zeros", () => Buffer.alloc(9 << 20)],
    [
      "long overlapping runs",
      () => Buffer.from("ab".repeat(50_000) + "abc".repeat(70_000) + "x".repeat(100)),
    ],
  ] as const) {
    it(`${name}: lz4 -d gives back the input byte for byte, and so do we`, () => {
      const data = make();
      const frame = lz4EncodeFrame(data);
      assert.deepEqual(cliDecode(frame), data);
      assert.deepEqual(lz4DecodeFrame(frame), data);
    });
  }

  it("stores a block that does not shrink raw, with bit 31 set", () => {
    const data = noise(1000, 9);
    const frame = lz4EncodeFrame(data);
    assert.equal(frame.readUInt32LE(7), (0x80000000 | 1000) >>> 0);
    assert.deepEqual(frame.subarray(11, 1011), data);
    assert.equal(frame.length, 7 + 4 + 1000 + 4 + 4);
  });

  it("compresses text about as well as lz4 -1", async () => {
    const data = rows(3 << 20);
    const ours = lz4EncodeFrame(data).length;
    const cli = (await cliEncode(data, ["-1", "-B7", "-BI"])).length;
    assert.ok(ours < data.length * 0.6, `ratio ${data.length / ours}`);
    assert.ok(ours < cli * 1.1, `ours ${ours} vs lz4 -1 ${cli}`);
  });

  it("streams through createLz4Encoder to a frame lz4 -d accepts", async () => {
    const data = rows(LZ4_BLOCK_SIZE + 777_777, 5);
    const child = spawn("lz4", ["-d", "-c"], { stdio: ["pipe", "pipe", "inherit"] });
    const out: Buffer[] = [];
    child.stdout.on("data", (b: Buffer) => out.push(b));
    const exited = new Promise<number | null>((resolve) => child.on("close", resolve));
    const chunks = function* () {
      for (let i = 0; i < data.length; i += 65_536) yield data.subarray(i, i + 65_536);
    };
    await pipeline(Readable.from(chunks()), createLz4Encoder(), child.stdin);
    assert.equal(await exited, 0);
    assert.deepEqual(Buffer.concat(out), data);
  });

  it("lz4EncodeChunks takes a source that refills one buffer, whole blocks and odd sizes alike", async () => {
    const data = rows(2 * LZ4_BLOCK_SIZE + 333_333, 7);
    const sizes = [LZ4_BLOCK_SIZE, 100_000, LZ4_BLOCK_SIZE, LZ4_BLOCK_SIZE];
    const reused = Buffer.alloc(LZ4_BLOCK_SIZE);
    const source = async function* () {
      for (let at = 0, k = 0; at < data.length; k++) {
        const n = Math.min(sizes[k % sizes.length] ?? LZ4_BLOCK_SIZE, data.length - at);
        data.copy(reused, 0, at, at + n);
        yield reused.subarray(0, n);
        reused.fill(0xa5); // what the next step would do to a piece that kept a view of it
        at += n;
      }
    };
    const pieces: Uint8Array[] = [];
    for await (const p of lz4EncodeChunks(source())) pieces.push(p);
    const frame = Buffer.concat(pieces);
    assert.deepEqual(lz4DecodeFrame(frame), data);
    assert.deepEqual(cliDecode(frame), data, "lz4 -d reads it too");
  });

  it("lz4EncodeChunks throws its source's error", async () => {
    const source = async function* () {
      yield Buffer.alloc(10);
      throw new Error("disk gone");
    };
    await assert.rejects(async () => {
      for await (const _ of lz4EncodeChunks(source())) {
        // drained
      }
    }, /disk gone/);
  });
});

describe("lz4 decoder", () => {
  const text = rows(600_000, 11);
  for (const flags of [
    [],
    ["--content-size"],
    ["-BD"],
    ["-BX"],
    ["--no-frame-crc"],
    ["-B4"],
    ["-B4", "-BD"],
    ["-B4", "-BD", "-BX", "--content-size"],
    ["-B5", "-BD"],
    ["-B6"],
    ["-B7"],
    ["-9", "-B4", "-BD"],
    ["--fast=5", "-B5"],
  ]) {
    it(`decodes lz4 CLI frames written with [${flags.join(" ")}]`, async () => {
      const frame = await cliEncode(text, flags);
      assert.deepEqual(lz4DecodeFrame(frame), text);
      const empty = await cliEncode(Buffer.alloc(0), flags);
      assert.deepEqual(lz4DecodeFrame(empty), Buffer.alloc(0));
    });
  }

  it("decodes CLI dependent blocks that reach back into earlier blocks", async () => {
    // A repeated 40 KiB unit over 64 KiB blocks: later blocks are mostly matches into the previous one.
    const unit = noise(40_000, 21);
    const data = Buffer.concat(Array.from({ length: 12 }, () => unit));
    const frame = await cliEncode(data, ["-B4", "-BD"]);
    const independent = await cliEncode(data, ["-B4", "-BI"]);
    assert.ok(frame.length < independent.length * 0.75, "the CLI used the 64 KiB window across blocks");
    assert.deepEqual(lz4DecodeFrame(frame), data);
    const raw = await cliEncode(data, ["-B4", "-BD", "-BX"]);
    assert.deepEqual(lz4DecodeFrame(raw), data);
  });

  it("with borrowed output, gives the same bytes for any chunking, and decodes again after reset", async () => {
    const data = Buffer.concat([rows(300_000, 5), noise(200_000, 6)]);
    const frames = [
      lz4EncodeFrame(data),
      await cliEncode(data, ["-B4", "-BD"]),
      await cliEncode(data, ["-B4", "-BD", "-BX"]),
      await cliEncode(data, ["-B5", "--content-size"]),
    ];
    const dec = new Lz4FrameDecoder({ borrowOutput: true });
    for (const frame of frames) {
      for (const step of [frame.length, 65_536, 4_099, 1_000]) {
        dec.reset();
        const out: Buffer[] = [];
        // The views are only valid during the call: copy them out there.
        const keep = (b: Uint8Array): void => {
          out.push(Buffer.from(b));
        };
        for (let at = 0; at < frame.length; at += step) dec.push(frame.subarray(at, at + step), keep);
        dec.end();
        assert.ok(Buffer.concat(out).equals(data), `chunks of ${step}`);
      }
    }
    // A reset in the middle of a frame forgets it: the next stream decodes on its own.
    dec.reset();
    dec.push(frames[1]!.subarray(0, 70_000), () => undefined);
    dec.reset();
    const again: Buffer[] = [];
    dec.push(frames[0]!, (b) => again.push(Buffer.from(b)));
    dec.end();
    assert.ok(Buffer.concat(again).equals(data));
    // And an empty stream after a reset is an error, as it is for a new decoder.
    dec.reset();
    assertCorrupt(() => dec.end());
  });

  it("decodes concatenated and skippable frames", async () => {
    const a = rows(5000, 1);
    const b = rows(7000, 2);
    const skippable = (magicLow: number, payload: Buffer): Buffer =>
      Buffer.concat([u32le(0x184d2a50 + magicLow), u32le(payload.length), payload]);
    const input = Buffer.concat([
      skippable(0, Buffer.from("metadata")),
      lz4EncodeFrame(a),
      skippable(15, Buffer.alloc(0)),
      await cliEncode(b, ["-BD", "--content-size"]),
      skippable(7, noise(100)),
    ]);
    assert.deepEqual(lz4DecodeFrame(input), Buffer.concat([a, b]));
    assert.deepEqual(cliDecode(Buffer.concat([lz4EncodeFrame(a), lz4EncodeFrame(b)])), Buffer.concat([a, b]));
  });

  it("never returns wrong data for a single-byte corruption of a frame", async () => {
    // A flipped bit may leave the content unchanged (a match offset that points at equal bytes); the
    // checksums catch every flip that changes it, and every flip in the frame header.
    const data = rows(3000, 4);
    for (const frame of [
      lz4EncodeFrame(data),
      await cliEncode(data, ["-BD", "-BX", "--content-size", "-B4"]),
    ]) {
      let corrupt = 0;
      let total = 0;
      for (let at = 0; at < frame.length; at++) {
        for (const mask of [0x01, 0x80, 0xff]) {
          total++;
          let out: Buffer;
          try {
            out = lz4DecodeFrame(flipped(frame, at, mask));
          } catch (err) {
            assert.ok(
              err instanceof WalshipError && err.code === ErrorCodes.CORRUPT,
              `at ${at}: ${String(err)}`,
            );
            corrupt++;
            continue;
          }
          assert.ok(at >= 7, `a flip at header byte ${at} was accepted`);
          assert.deepEqual(out, data, `a flip at ${at} mask ${mask} changed the output without an error`);
        }
      }
      assert.ok(corrupt > total * 0.9, `${corrupt} of ${total} flips detected`);
    }
  });

  it("rejects every truncation, and trailing garbage", () => {
    const frame = lz4EncodeFrame(rows(5000, 8));
    for (let n = 0; n < frame.length; n++)
      assertCorrupt(() => lz4DecodeFrame(frame.subarray(0, n)), `length ${n}`);
    assertCorrupt(() => lz4DecodeFrame(Buffer.concat([frame, Buffer.from([0x04, 0x22])])));
    assertCorrupt(() => lz4DecodeFrame(Buffer.concat([frame, Buffer.from("garbage!")])));
    const skip = Buffer.concat([u32le(0x184d2a50), u32le(100), Buffer.alloc(50)]);
    assertCorrupt(() => lz4DecodeFrame(skip), "short skippable frame");
  });

  it("rejects a wrong content size, a block over the maximum and a dictionary frame", async () => {
    const data = rows(1000, 3);
    const withSize = await cliEncode(data, ["--content-size"]);
    // Rewrite the declared size (bytes 6..13) and fix the header checksum so only the size is wrong.
    const bad = Buffer.from(withSize);
    bad.writeUInt32LE(data.length + 1, 6);
    bad[14] = (xxh32(bad.subarray(4, 14)) >>> 8) & 0xff;
    assertCorrupt(() => lz4DecodeFrame(bad), "content size");
    bad.writeUInt32LE(data.length - 1, 6);
    bad[14] = (xxh32(bad.subarray(4, 14)) >>> 8) & 0xff;
    assertCorrupt(() => lz4DecodeFrame(bad), "content size");

    // A 64 KiB-max frame holding a block that claims 65537 bytes.
    const desc = Uint8Array.of(0x64, 0x40);
    const header = Buffer.concat([u32le(0x184d2204), desc, Buffer.from([(xxh32(desc) >>> 8) & 0xff])]);
    assertCorrupt(() =>
      lz4DecodeFrame(Buffer.concat([header, u32le(0x80000000 + 65_537), Buffer.alloc(65_537)])),
    );
    // The same frame with a legal raw block decodes.
    const ok = Buffer.concat([
      header,
      u32le(0x80000000 + 3),
      Buffer.from("abc"),
      u32le(0),
      u32le(xxh32(Buffer.from("abc"))),
    ]);
    assert.deepEqual(lz4DecodeFrame(ok), Buffer.from("abc"));

    const dict = Uint8Array.of(0x65, 0x70, 1, 2, 3, 4);
    const dictFrame = Buffer.concat([
      u32le(0x184d2204),
      dict,
      Buffer.from([(xxh32(dict) >>> 8) & 0xff]),
      u32le(0),
    ]);
    assertCorrupt(() => lz4DecodeFrame(dictFrame), "dictionary");
  });

  it("streams frames fed one byte at a time, and errors a stream on truncated input", async () => {
    const data = rows(200_000, 6);
    const frame = await cliEncode(data, ["-B4", "-BD", "-BX"]);
    const out: Buffer[] = [];
    const oneByte = function* () {
      for (let i = 0; i < frame.length; i++) yield frame.subarray(i, i + 1);
    };
    await pipeline(
      Readable.from(oneByte()),
      createLz4Decoder(),
      new Writable({
        write(chunk: Buffer, _enc, cb) {
          out.push(chunk);
          cb();
        },
      }),
    );
    assert.deepEqual(Buffer.concat(out), data);

    await assertCode(
      pipeline(
        Readable.from([frame.subarray(0, frame.length - 3)]),
        createLz4Decoder(),
        new Writable({ write: (_c, _e, cb) => cb() }),
      ),
      ErrorCodes.CORRUPT,
    );
  });

  it("keeps memory bounded while streaming 160 MiB through encoder and decoder", async () => {
    const total = 160 << 20;
    const unit = rows(1 << 20, 13);
    const source = function* () {
      for (let i = 0; i < total; i += unit.length) yield unit;
    };
    // Measure live memory, not garbage waiting for collection: collect before each sample.
    v8.setFlagsFromString("--expose-gc");
    const gc = vm.runInNewContext("gc") as () => void;
    gc();
    const startArrayBuffers = process.memoryUsage().arrayBuffers;
    let peak = 0;
    let seen = 0;
    const h = new Xxh32();
    await pipeline(
      Readable.from(source()),
      createLz4Encoder(),
      createLz4Decoder(),
      new Writable({
        write(chunk: Buffer, _enc, cb) {
          seen += chunk.length;
          h.update(chunk);
          gc();
          peak = Math.max(peak, process.memoryUsage().arrayBuffers - startArrayBuffers);
          cb();
        },
      }),
    );
    assert.equal(seen, total);
    const want = new Xxh32();
    for (const c of source()) want.update(c);
    assert.equal(h.digest(), want.digest());
    assert.ok(peak < 48 << 20, `peak extra array buffer memory ${peak >> 20} MiB`);
  });
});

describe("lz4 blocks", () => {
  const decode = (block: number[], limit = 1000): Uint8Array => {
    const dst = new Uint8Array(limit);
    return dst.subarray(0, decompressBlock(Uint8Array.from(block), dst, 0, limit, 0));
  };

  it("decodes hand-built sequences, including overlapping matches", () => {
    // Literal "ab", then match offset 2 length 4+6 -> "ab" x 6, then final literal "!".
    assert.equal(Buffer.from(decode([0x26, 0x61, 0x62, 0x02, 0x00, 0x10, 0x21])).toString(), "abababababab!");
    // One literal "a" then offset 1 length 4+15+255+10=284, then a 0-length final literal run.
    const run = decode([0x1f, 0x61, 0x01, 0x00, 255, 10, 0x00]);
    assert.equal(run.length, 285);
    assert.ok(run.every((c) => c === 0x61));
  });

  it("rejects malformed blocks with CORRUPT", () => {
    assertCorrupt(() => decode([]), "empty block");
    assertCorrupt(() => decode([0x50, 0x61]), "literal run past the end");
    assertCorrupt(() => decode([0xf0]), "literal length extension past the end");
    assertCorrupt(() => decode([0x10, 0x61, 0x01]), "truncated offset");
    assertCorrupt(() => decode([0x10, 0x61, 0x00, 0x00, 0x00]), "offset 0");
    assertCorrupt(() => decode([0x10, 0x61, 0x02, 0x00, 0x00]), "offset before the start");
    assertCorrupt(() => decode([0x1f, 0x61, 0x01, 0x00]), "match length extension past the end");
    assertCorrupt(() => decode([0x10, 0x61, 0x01, 0x00]), "block ends after a match");
    assertCorrupt(() => decode([0x1f, 0x61, 0x01, 0x00, 255, 255, 0, 0x00], 300), "output past the limit");
  });

  it("round-trips blocks of every small size and mixed content through our codec and lz4 -d", () => {
    const table = new Int32Array(1 << 16);
    const dst = new Uint8Array(compressBound(5000));
    const back = new Uint8Array(5000);
    const sample = Buffer.concat([rows(2000, 2), noise(1000, 5), Buffer.alloc(2000, 0x41)]);
    for (let n = 0; n <= 200; n++) {
      const src = sample.subarray(1900, 1900 + n);
      const c = compressBlock(src, dst, table);
      const end = decompressBlock(dst.subarray(0, c), back, 0, back.length, 0);
      assert.deepEqual(Buffer.from(back.subarray(0, end)), Buffer.from(src), `size ${n}`);
    }
    assert.deepEqual(cliDecode(lz4EncodeFrame(sample)), sample);
  });
});

describe("codec throughput", {
  skip: process.env.WALSHIP_BENCH === undefined && "set WALSHIP_BENCH=1",
}, () => {
  it("prints MB/s for text-like and random data", () => {
    // CPU time of this process, so that other load on the machine does not skew the figures.
    const mbps = (bytes: number, fn: () => void): number => {
      fn();
      const t = process.cpuUsage();
      for (let i = 0; i < 5; i++) fn();
      const used = process.cpuUsage(t);
      return (5 * bytes) / 1e6 / ((used.user + used.system) / 1e6);
    };
    // (a) the pages of a real SQLite database of text-ish rows, (b) random bytes.
    const dbPath = tmpFile("bench.db");
    const db = new Database(dbPath);
    db.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, email TEXT, note TEXT, n INTEGER)");
    const ins = db.prepare("INSERT INTO t (name, email, note, n) VALUES (?, ?, ?, ?)");
    const lines = rows(40 << 20, 17)
      .toString()
      .split("\n");
    db.transaction(() => {
      for (let i = 0; i + 1 < lines.length; i += 2) {
        const [a = "", b = "", c = ""] = (lines[i] ?? "").split("|");
        ins.run(b, `${a}@example.org`, `${c} ${lines[i + 1] ?? ""}`, i);
      }
    })();
    db.close();
    const pages = readFileSync(dbPath);
    for (const [name, data] of [
      [`sqlite pages (${pages.length >> 20} MiB)`, pages],
      ["random (32 MiB)", noise(32 << 20)],
    ] as const) {
      const frame = lz4EncodeFrame(data);
      const c = mbps(data.length, () => lz4EncodeFrame(data));
      const d = mbps(data.length, () => lz4DecodeFrame(frame));
      console.log(
        `${name}: ratio ${(data.length / frame.length).toFixed(2)}, compress ${c.toFixed(0)} MB/s, decompress ${d.toFixed(0)} MB/s`,
      );
      assert.ok(c > 20 && d > 20);
    }
    const x = noise(64 << 20);
    console.log(`xxh32: ${mbps(x.length, () => xxh32(x)).toFixed(0)} MB/s`);
  });
});
