/**
 * LZ4 block compression in native code: lz4-napi (lz4_flex, compiled per platform and shipped
 * prebuilt in its npm package, as better-sqlite3's binary is). It compresses 2-3 times and
 * decompresses about 3 times as fast as our TypeScript block codec on SQLite pages
 * (docs/benchmarks.md, "Native LZ4 blocks"). Only the block codec is native: the frame around the
 * blocks (header, block sizes, content checksum) is still ours, so frames stay exactly what
 * Litestream v0.3.13 writes and reads.
 *
 * Loaded on first use, so commands that never touch LZ4 do not pay for it. Where the binary cannot
 * load (a platform lz4-napi has no build for), or with WALSHIP_LZ4=js, the TypeScript codec in
 * block.ts does the work instead; `lz4Implementation()` says which one is in use.
 */
import { createRequire } from "node:module";
import { type Collect, v8Collector } from "../../shared/v8-gc.ts";
import { corrupt } from "./block.ts";

interface Lz4Napi {
  /** Compresses `data` into one LZ4 block, preceded by its uncompressed length (u32 little-endian). */
  compressSync(data: Buffer): Buffer;
  /**
   * Decompresses a block preceded by a u32 little-endian capacity: the output may be shorter, and a
   * block that would decode to more throws.
   */
  uncompressSync(data: Uint8Array): Buffer;
}

let binding: Lz4Napi | null | undefined;
let loadError: string | undefined;

function load(): Lz4Napi | null {
  if (binding !== undefined) return binding;
  if (process.env.WALSHIP_LZ4 === "js") {
    binding = null;
    loadError = "WALSHIP_LZ4=js";
    return binding;
  }
  try {
    binding = createRequire(import.meta.url)("lz4-napi") as Lz4Napi;
  } catch (err) {
    binding = null;
    loadError = (err as Error).message.split("\n")[0];
  }
  return binding;
}

/**
 * Every block lz4-napi hands back is a fresh native buffer, freed only once V8 has collected its
 * wrapper (at the next turn of the event loop). V8 lets such memory pile up to tens of MiB before it
 * runs a full collection. So once a mebibyte of blocks has been handed out, the next call first runs
 * a young-generation collection: by then the earlier blocks are garbage (their bytes were copied into
 * an upload part or the output), and a scavenge finds them at a fraction of a full collection's cost.
 * A 4 GiB snapshot to MinIO: peak RSS 127-131 MiB against 201-203, 7.1-8.1 CPU-seconds against
 * 8.0-9.9 (docs/benchmarks.md, "Snapshots: each block's buffer freed at once").
 */
const COLLECT_AFTER_BYTES = 1 << 20;
let handedOut = 0;
/** What setBlockCollector put in place of V8's own; undefined for V8's. */
let replaced: Collect | null | undefined;

function collectHandedOut(): void {
  if (handedOut < COLLECT_AFTER_BYTES) return;
  handedOut = 0;
  (replaced === undefined ? v8Collector() : replaced)?.({ type: "minor" });
}

/**
 * Replaces the collection run between blocks (tests count its calls, or pass null for none;
 * undefined puts V8's back) and starts the count again; returns what it replaced.
 */
export function setBlockCollector(c: Collect | null | undefined): Collect | null | undefined {
  const before = replaced;
  replaced = c;
  handedOut = 0;
  return before;
}

/** Which block codec compresses and decompresses: "native" (lz4-napi) or "js" (block.ts), and why. */
export function lz4Implementation(): { name: "native" | "js"; reason?: string } {
  return load() !== null ? { name: "native" } : { name: "js", reason: loadError };
}

/**
 * Compresses `data` (at most 4 MiB) into one frame block: the u32 block size then the compressed
 * bytes, in a single Buffer the caller may keep. A block that does not shrink is stored raw (bit 31
 * of the size). Returns null when the native codec is not available.
 */
export function nativeCompressFrameBlock(data: Uint8Array): Buffer | null {
  const lz4 = load();
  if (lz4 === null) return null;
  const buf = Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  collectHandedOut();
  const out = lz4.compressSync(buf);
  handedOut += out.length;
  const n = out.length - 4;
  if (n >= data.length) {
    const raw = Buffer.allocUnsafe(4 + data.length);
    handedOut += raw.length;
    raw.writeUInt32LE((data.length | 0x80000000) >>> 0, 0);
    raw.set(data, 4);
    return raw;
  }
  // The first four bytes held the uncompressed length; the frame wants the compressed one there.
  out.writeUInt32LE(n, 0);
  return out;
}

/**
 * Decompresses one independent block of at most `max` bytes of output. Returns null when the native
 * codec is not available. Throws CORRUPT, naming the input offset `at`, on a malformed block.
 */
export function nativeDecompressBlock(body: Uint8Array, max: number, at: number): Buffer | null {
  const lz4 = load();
  if (lz4 === null) return null;
  collectHandedOut();
  const input = Buffer.allocUnsafe(4 + body.length);
  input.writeUInt32LE(max, 0);
  input.set(body, 4);
  try {
    const out = lz4.uncompressSync(input);
    handedOut += input.length + out.length;
    return out;
  } catch (err) {
    throw corrupt(`decode lz4 block: ${(err as Error).message} (block at input offset ${at})`, {
      offset: at,
    });
  }
}
