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
  const out = lz4.compressSync(buf);
  const n = out.length - 4;
  if (n >= data.length) {
    const raw = Buffer.allocUnsafe(4 + data.length);
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
  const input = Buffer.allocUnsafe(4 + body.length);
  input.writeUInt32LE(max, 0);
  input.set(body, 4);
  try {
    return lz4.uncompressSync(input);
  } catch (err) {
    throw corrupt(`decode lz4 block: ${(err as Error).message} (block at input offset ${at})`, {
      offset: at,
    });
  }
}
