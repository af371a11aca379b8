/**
 * LZ4 frame format (https://github.com/lz4/lz4/blob/dev/doc/lz4_Frame_format.md), our own encoder
 * and decoder.
 *
 * The encoder writes the frames Litestream v0.3.13 writes: version 1, independent blocks, no block
 * checksums, a content checksum, no content size, 4 MiB maximum blocks, so every frame starts
 * `04 22 4D 18 64 70 B9`; blocks that do not shrink are stored raw (bit 31 of the block size).
 *
 * The decoder accepts any conforming frame: dependent or independent blocks, block checksums, content
 * size, any maximum block size, concatenated frames and skippable frames. Every check failure throws
 * a CORRUPT WalshipError naming what is wrong.
 */
import { Transform, type TransformCallback } from "node:stream";
import { ErrorCodes, WalshipError } from "../shared/errors.ts";
import { Xxh32, xxh32 } from "./xxhash32.ts";

export const LZ4_FRAME_MAGIC = 0x184d2204;
/** Skippable frames use magics 0x184D2A50..0x184D2A5F. */
const SKIPPABLE_MAGIC_BASE = 0x184d2a50;
/** The maximum block size our encoder uses (BD 0x70). */
export const LZ4_BLOCK_SIZE = 4 << 20;
/** FLG 0x64: version 1, independent blocks, no block checksum, no content size, content checksum. */
const ENCODER_FLG = 0x64;
/** BD 0x70: 4 MiB maximum block size. */
const ENCODER_BD = 0x70;
/** The 7 bytes every frame we write starts with (magic, FLG, BD, header checksum). */
export const LZ4_FRAME_HEADER = Uint8Array.of(0x04, 0x22, 0x4d, 0x18, ENCODER_FLG, ENCODER_BD, 0xb9);

const MIN_MATCH = 4;
/** The last 5 bytes of a block are always literals. */
const LAST_LITERALS = 5;
/** A match may not start within the last 12 bytes of a block. */
const MF_LIMIT = 12;
const MAX_OFFSET = 65535;
const HASH_LOG = 16;
const HASH_SHIFT = 32 - HASH_LOG;
const HASH_PRIME = 2654435761 | 0;
/** After this many failed probes (2^SKIP_TRIGGER) the search step grows by one. */
const SKIP_TRIGGER = 6;
/** Dependent blocks may reference up to this many bytes of earlier output. */
const WINDOW_SIZE = 64 * 1024;

function corrupt(message: string, details?: Record<string, unknown>): WalshipError {
  return new WalshipError(ErrorCodes.CORRUPT, message, details === undefined ? undefined : { details });
}

/** The worst-case compressed size of an `n`-byte block. */
export function compressBound(n: number): number {
  return n + Math.floor(n / 255) + 16;
}

/**
 * Compresses one LZ4 block (greedy, single hash table of 4-byte sequences) from `src` into `dst`,
 * which must hold at least compressBound(src.length) bytes. `table` is scratch space of 2^16 entries.
 * Returns the compressed length.
 */
export function compressBlock(src: Uint8Array, dst: Uint8Array, table: Int32Array = newHashTable()): number {
  const n = src.length;
  if (dst.length < compressBound(n)) {
    throw new RangeError(`compress block: output buffer ${dst.length} < bound ${compressBound(n)}`);
  }
  let op = 0;
  let anchor = 0;
  if (n >= MF_LIMIT + 1) {
    table.fill(-1);
    const dv = new DataView(src.buffer, src.byteOffset, src.byteLength);
    const mflimit = n - MF_LIMIT;
    const matchLimit = n - LAST_LITERALS;
    table[Math.imul(dv.getInt32(0, true), HASH_PRIME) >>> HASH_SHIFT] = 0;
    let ip = 1;
    outer: for (;;) {
      // Find a match: probe positions, stepping faster through data that does not match.
      let ref = -1;
      let probes = 1 << SKIP_TRIGGER;
      for (;;) {
        if (ip > mflimit) break outer;
        const seq = dv.getInt32(ip, true);
        const h = Math.imul(seq, HASH_PRIME) >>> HASH_SHIFT;
        ref = table[h] as number;
        table[h] = ip;
        if (ref >= 0 && ip - ref <= MAX_OFFSET && dv.getInt32(ref, true) === seq) break;
        ip += probes++ >>> SKIP_TRIGGER;
      }
      // Extend backwards over literals, then forwards.
      while (ip > anchor && ref > 0 && src[ip - 1] === src[ref - 1]) {
        ip--;
        ref--;
      }
      let end = ip + MIN_MATCH;
      let r = ref + MIN_MATCH;
      while (end + 4 <= matchLimit && dv.getInt32(end, true) === dv.getInt32(r, true)) {
        end += 4;
        r += 4;
      }
      while (end < matchLimit && src[end] === src[r]) {
        end++;
        r++;
      }
      op = writeSequence(src, anchor, ip - anchor, ip - ref, end - ip - MIN_MATCH, dst, op);
      ip = end;
      anchor = ip;
      if (ip > mflimit) break;
      // Index a position inside the match so the next search can find nearby repeats.
      table[Math.imul(dv.getInt32(ip - 2, true), HASH_PRIME) >>> HASH_SHIFT] = ip - 2;
    }
  }
  // Last literals.
  const lit = n - anchor;
  const tokenPos = op++;
  op = writeLength(dst, op, lit);
  dst[tokenPos] = Math.min(lit, 15) << 4;
  dst.set(src.subarray(anchor, n), op);
  return op + lit;
}

export function newHashTable(): Int32Array {
  return new Int32Array(1 << HASH_LOG);
}

/** Writes the length extension bytes of a length whose 4-bit nibble is full (>= 15). */
function writeLength(dst: Uint8Array, op: number, len: number): number {
  if (len < 15) return op;
  let l = len - 15;
  while (l >= 255) {
    dst[op++] = 255;
    l -= 255;
  }
  dst[op++] = l;
  return op;
}

function writeSequence(
  src: Uint8Array,
  litStart: number,
  litLen: number,
  offset: number,
  matchLenMinus4: number,
  dst: Uint8Array,
  op: number,
): number {
  const tokenPos = op++;
  op = writeLength(dst, op, litLen);
  if (litLen < 16) {
    for (let i = 0; i < litLen; i++) dst[op + i] = src[litStart + i] as number;
  } else {
    dst.set(src.subarray(litStart, litStart + litLen), op);
  }
  op += litLen;
  dst[op++] = offset & 0xff;
  dst[op++] = offset >>> 8;
  op = writeLength(dst, op, matchLenMinus4);
  dst[tokenPos] = (Math.min(litLen, 15) << 4) | Math.min(matchLenMinus4, 15);
  return op;
}

/**
 * Decompresses one LZ4 block `src` into `dst` starting at `op`, never writing at or past `limit`
 * (bytes between the returned end and `limit` may be overwritten).
 * Matches may reference bytes back to `windowStart` (earlier output, for dependent blocks).
 * Returns the output end. Throws CORRUPT on any malformed input.
 */
export function decompressBlock(
  src: Uint8Array,
  dst: Uint8Array,
  op: number,
  limit: number,
  windowStart: number,
): number {
  const end = src.length;
  const dv = new DataView(dst.buffer, dst.byteOffset, dst.byteLength);
  let ip = 0;
  for (;;) {
    if (ip >= end) throw corrupt("decode lz4 block: block ends without a final literal run", { at: ip });
    const token = src[ip++] as number;
    let lit = token >>> 4;
    if (lit === 15) {
      let b: number;
      do {
        if (ip >= end) throw corrupt("decode lz4 block: literal length runs past the block end", { at: ip });
        b = src[ip++] as number;
        lit += b;
      } while (b === 255);
    }
    if (ip + lit > end) {
      throw corrupt(`decode lz4 block: literal run of ${lit} bytes runs past the block end`, { at: ip });
    }
    if (op + lit > limit)
      throw corrupt("decode lz4 block: output exceeds the maximum block size", { at: ip });
    if (lit < 16) {
      for (let i = 0; i < lit; i++) dst[op + i] = src[ip + i] as number;
    } else {
      dst.set(src.subarray(ip, ip + lit), op);
    }
    ip += lit;
    op += lit;
    if (ip === end) return op;
    if (ip + 2 > end) throw corrupt("decode lz4 block: match offset runs past the block end", { at: ip });
    const offset = (src[ip] as number) | ((src[ip + 1] as number) << 8);
    ip += 2;
    if (offset === 0 || op - offset < windowStart) {
      throw corrupt(`decode lz4 block: match offset ${offset} points before the start of the data`, {
        at: ip,
      });
    }
    let len = token & 15;
    if (len === 15) {
      let b: number;
      do {
        if (ip >= end) throw corrupt("decode lz4 block: match length runs past the block end", { at: ip });
        b = src[ip++] as number;
        len += b;
      } while (b === 255);
    }
    len += MIN_MATCH;
    if (op + len > limit)
      throw corrupt("decode lz4 block: output exceeds the maximum block size", { at: ip });
    const m = op - offset;
    if (len >= 64 && offset >= len) {
      dst.copyWithin(op, m, m + len);
    } else if (offset >= 4 && op + len + 4 <= limit) {
      // Word copy; it may write up to 3 bytes past the match, which later output overwrites.
      for (let i = 0; i < len; i += 4) dv.setInt32(op + i, dv.getInt32(m + i, true), true);
    } else if (len <= 32) {
      for (let i = 0; i < len; i++) dst[op + i] = dst[m + i] as number;
    } else {
      // Overlapping match: the output repeats with period `offset`; copy in doubling chunks.
      let dist = offset;
      let done = 0;
      while (done < len) {
        const n = Math.min(dist, len - done);
        dst.copyWithin(op + done, op + done - dist, op + done - dist + n);
        done += n;
        dist += n;
      }
    }
    op += len;
  }
}

// ---------------------------------------------------------------------------------------------
// Encoder

/** Incremental frame encoder: feed bytes with `write`, finish with `end`; output goes to `emit`. */
class FrameEncoder {
  #block: Uint8Array | null = null;
  #blockLen = 0;
  #out: Uint8Array | null = null;
  #table: Int32Array | null = null;
  #hash = new Xxh32();
  #started = false;

  write(chunk: Uint8Array, emit: (b: Uint8Array) => void): void {
    this.#start(emit);
    this.#hash.update(chunk);
    let i = 0;
    while (i < chunk.length) {
      if (this.#blockLen === 0 && chunk.length - i >= LZ4_BLOCK_SIZE) {
        // A whole block is available in the input: compress it in place.
        this.#emitBlock(chunk.subarray(i, i + LZ4_BLOCK_SIZE), emit);
        i += LZ4_BLOCK_SIZE;
        continue;
      }
      const n = Math.min(LZ4_BLOCK_SIZE - this.#blockLen, chunk.length - i);
      this.#reserve(this.#blockLen + n);
      this.#block!.set(chunk.subarray(i, i + n), this.#blockLen);
      this.#blockLen += n;
      i += n;
      if (this.#blockLen === LZ4_BLOCK_SIZE) {
        this.#emitBlock(this.#block!, emit);
        this.#blockLen = 0;
      }
    }
  }

  end(emit: (b: Uint8Array) => void): void {
    this.#start(emit);
    if (this.#blockLen > 0 && this.#block !== null) {
      this.#emitBlock(this.#block.subarray(0, this.#blockLen), emit);
      this.#blockLen = 0;
    }
    const tail = Buffer.alloc(8);
    tail.writeUInt32LE(0, 0);
    tail.writeUInt32LE(this.#hash.digest(), 4);
    emit(tail);
    this.#block = null;
    this.#out = null;
    this.#table = null;
  }

  #start(emit: (b: Uint8Array) => void): void {
    if (this.#started) return;
    this.#started = true;
    emit(Buffer.from(LZ4_FRAME_HEADER));
  }

  /**
   * Grows the block buffer to hold `size` bytes, doubling from 64 KiB up to the 4 MiB block size:
   * a small WAL segment never costs a 4 MiB allocation.
   */
  #reserve(size: number): void {
    const have = this.#block?.length ?? 0;
    if (have >= size) return;
    const grown = new Uint8Array(Math.min(LZ4_BLOCK_SIZE, Math.max(size, have * 2, 64 * 1024)));
    if (this.#block) grown.set(this.#block.subarray(0, this.#blockLen));
    this.#block = grown;
  }

  #emitBlock(data: Uint8Array, emit: (b: Uint8Array) => void): void {
    const bound = compressBound(data.length);
    if (!this.#out || this.#out.length < bound) this.#out = new Uint8Array(bound);
    this.#table ??= newHashTable();
    const n = compressBlock(data, this.#out, this.#table);
    if (n < data.length) {
      const b = Buffer.allocUnsafe(4 + n);
      b.writeUInt32LE(n, 0);
      b.set(this.#out.subarray(0, n), 4);
      emit(b);
    } else {
      const b = Buffer.allocUnsafe(4 + data.length);
      b.writeUInt32LE((data.length | 0x80000000) >>> 0, 0);
      b.set(data, 4);
      emit(b);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Decoder

/**
 * A FIFO of input chunks from which fixed-size pieces are taken without copying when possible. A piece
 * spanning chunks is assembled in a buffer reused by the next such piece: valid until the next `take`.
 */
class ByteQueue {
  #chunks: Uint8Array[] = [];
  #spare = new Uint8Array(0);
  /** Index of the first live chunk in #chunks (consumed ones are dropped in batches). */
  #first = 0;
  /** Bytes already consumed from the first live chunk. */
  #head = 0;
  length = 0;

  /** Drops every byte, keeping the spare buffer. */
  clear(): void {
    this.#chunks = [];
    this.#first = 0;
    this.#head = 0;
    this.length = 0;
  }

  push(chunk: Uint8Array): void {
    if (chunk.length === 0) return;
    this.#chunks.push(chunk);
    this.length += chunk.length;
  }

  /** Removes and returns the next `n` bytes (the caller has checked `length >= n`); see the class note. */
  take(n: number): Uint8Array {
    const first = this.#chunks[this.#first] as Uint8Array;
    if (first.length - this.#head >= n) {
      const out = first.subarray(this.#head, this.#head + n);
      this.#advance(n);
      return out;
    }
    if (this.#spare.length < n) this.#spare = new Uint8Array(n);
    const out = this.#spare.subarray(0, n);
    let filled = 0;
    while (filled < n) {
      const c = this.#chunks[this.#first] as Uint8Array;
      const k = Math.min(c.length - this.#head, n - filled);
      out.set(c.subarray(this.#head, this.#head + k), filled);
      filled += k;
      this.#advance(k);
    }
    return out;
  }

  /** Drops up to `n` bytes; returns how many were dropped. */
  skip(n: number): number {
    let left = Math.min(n, this.length);
    const dropped = left;
    while (left > 0) {
      const c = this.#chunks[this.#first] as Uint8Array;
      const k = Math.min(c.length - this.#head, left);
      this.#advance(k);
      left -= k;
    }
    return dropped;
  }

  #advance(n: number): void {
    this.#head += n;
    this.length -= n;
    const first = this.#chunks[this.#first];
    if (first !== undefined && this.#head === first.length) {
      this.#chunks[this.#first] = EMPTY;
      this.#first++;
      this.#head = 0;
      if (this.#first === this.#chunks.length) {
        this.#chunks = [];
        this.#first = 0;
      } else if (this.#first >= 1024 && this.#first * 2 >= this.#chunks.length) {
        this.#chunks = this.#chunks.slice(this.#first);
        this.#first = 0;
      }
    }
  }
}

const EMPTY = new Uint8Array(0);

type DecodeState =
  | "magic"
  | "skipSize"
  | "skip"
  | "descriptor"
  | "descriptorRest"
  | "blockSize"
  | "block"
  | "checksum";

const BLOCK_MAX_SIZES: Record<number, number> = { 4: 64 << 10, 5: 256 << 10, 6: 1 << 20, 7: 4 << 20 };

/**
 * Incremental frame decoder: `push` input, `end` when the input is over; output goes to `emit`.
 * With `borrowOutput`, each chunk given to `emit` is a view of the decoder's scratch or of the input,
 * valid only until `emit` returns (no copy, no allocation per block): for callers that consume it on
 * the spot. Otherwise each chunk is a fresh Buffer the caller may keep.
 */
export class Lz4FrameDecoder {
  readonly #borrow: boolean;
  #q = new ByteQueue();
  #state: DecodeState = "magic";
  /** Input bytes consumed so far, for error messages. */
  #inPos = 0;
  #frames = 0;
  #skipLeft = 0;
  // Current frame.
  #flg = 0;
  #bd = 0;
  #independent = true;
  #blockChecksum = false;
  #contentChecksum = false;
  #contentSize: number | null = null;
  #blockMax = 0;
  #blockLen = 0;
  #blockRaw = false;
  #hash = new Xxh32();
  #total = 0;
  /** Decoding scratch: [history (dependent blocks only)][current block]. */
  #scratch = new Uint8Array(0);
  #histLen = 0;

  constructor(opts: { borrowOutput?: boolean } = {}) {
    this.#borrow = opts.borrowOutput ?? false;
  }

  push(chunk: Uint8Array, emit: (b: Uint8Array) => void): void {
    this.#q.push(chunk);
    this.#run(emit);
  }

  /** Forgets all input so far (keeping its buffers) to decode a new stream. */
  reset(): void {
    this.#q.clear();
    this.#state = "magic";
    this.#inPos = 0;
    this.#frames = 0;
    this.#skipLeft = 0;
    this.#histLen = 0;
  }

  end(): void {
    if (this.#state === "magic" && this.#q.length === 0) {
      if (this.#frames === 0) throw corrupt("decode lz4: empty input, no frame");
      return;
    }
    throw corrupt(
      `decode lz4: truncated input: ${this.#q.length} byte(s) left over at input offset ${this.#inPos} while reading ${describe(this.#state)}`,
      { state: this.#state, offset: this.#inPos },
    );
  }

  #take(n: number): Uint8Array {
    this.#inPos += n;
    return this.#q.take(n);
  }

  #run(emit: (b: Uint8Array) => void): void {
    for (;;) {
      switch (this.#state) {
        case "magic": {
          if (this.#q.length < 4) return;
          const at = this.#inPos;
          const magic = u32le(this.#take(4), 0);
          if (magic === LZ4_FRAME_MAGIC) {
            this.#state = "descriptor";
          } else if ((magic & 0xfffffff0) >>> 0 === SKIPPABLE_MAGIC_BASE) {
            this.#state = "skipSize";
          } else {
            throw corrupt(
              `decode lz4: bad frame magic 0x${magic.toString(16).padStart(8, "0")} at input offset ${at}${this.#frames > 0 ? " (after the last frame)" : ""}`,
              { offset: at, magic },
            );
          }
          break;
        }
        case "skipSize": {
          if (this.#q.length < 4) return;
          this.#skipLeft = u32le(this.#take(4), 0);
          this.#state = "skip";
          break;
        }
        case "skip": {
          const n = this.#q.skip(this.#skipLeft);
          this.#inPos += n;
          this.#skipLeft -= n;
          if (this.#skipLeft > 0) return;
          this.#frames++;
          this.#state = "magic";
          break;
        }
        case "descriptor": {
          if (this.#q.length < 2) return;
          const at = this.#inPos;
          const d = this.#take(2);
          this.#parseDescriptor(d[0] as number, d[1] as number, at);
          this.#state = "descriptorRest";
          break;
        }
        case "descriptorRest": {
          const extra = (this.#contentSize !== null ? 8 : 0) + 1;
          if (this.#q.length < extra) return;
          const at = this.#inPos;
          const rest = this.#take(extra);
          const desc = new Uint8Array(1 + extra);
          desc[0] = this.#flg;
          desc[1] = this.#bd;
          desc.set(rest.subarray(0, extra - 1), 2);
          if (this.#contentSize !== null) {
            const lo = u32le(rest, 0);
            const hi = u32le(rest, 4);
            if (hi >= 0x200000)
              throw corrupt(`decode lz4: content size too large at input offset ${at}`, { offset: at });
            this.#contentSize = hi * 0x100000000 + lo;
          }
          const want = (xxh32(desc) >>> 8) & 0xff;
          const got = rest[extra - 1] as number;
          if (want !== got) {
            throw corrupt(
              `decode lz4: frame header checksum mismatch at input offset ${at + extra - 1}: stored 0x${got.toString(16)}, computed 0x${want.toString(16)}`,
              { offset: at + extra - 1 },
            );
          }
          this.#state = "blockSize";
          break;
        }
        case "blockSize": {
          if (this.#q.length < 4) return;
          const at = this.#inPos;
          const v = u32le(this.#take(4), 0);
          if (v === 0) {
            if (this.#contentChecksum) {
              this.#state = "checksum";
            } else {
              this.#finishFrame(at);
            }
            break;
          }
          this.#blockRaw = v >= 0x80000000;
          this.#blockLen = v & 0x7fffffff;
          if (this.#blockLen > this.#blockMax) {
            throw corrupt(
              `decode lz4: block size ${this.#blockLen} at input offset ${at} exceeds the frame's maximum ${this.#blockMax}`,
              { offset: at, size: this.#blockLen },
            );
          }
          this.#state = "block";
          break;
        }
        case "block": {
          const need = this.#blockLen + (this.#blockChecksum ? 4 : 0);
          if (this.#q.length < need) return;
          const at = this.#inPos;
          const data = this.#take(need);
          const body = data.subarray(0, this.#blockLen);
          if (this.#blockChecksum) {
            const stored = u32le(data, this.#blockLen);
            const computed = xxh32(body);
            if (stored !== computed) {
              throw corrupt(`decode lz4: block checksum mismatch for the block at input offset ${at - 4}`, {
                offset: at - 4,
              });
            }
          }
          this.#decodeBlock(body, at - 4, emit);
          this.#state = "blockSize";
          break;
        }
        case "checksum": {
          if (this.#q.length < 4) return;
          const at = this.#inPos;
          const stored = u32le(this.#take(4), 0);
          const computed = this.#hash.digest();
          if (stored !== computed) {
            throw corrupt(
              `decode lz4: content checksum mismatch at input offset ${at}: stored 0x${stored.toString(16)}, computed 0x${computed.toString(16)}`,
              { offset: at },
            );
          }
          this.#finishFrame(at);
          break;
        }
      }
    }
  }

  #parseDescriptor(flg: number, bd: number, at: number): void {
    if (flg >>> 6 !== 1)
      throw corrupt(`decode lz4: unsupported frame version ${flg >>> 6} at input offset ${at}`);
    if ((flg & 0x02) !== 0) throw corrupt(`decode lz4: reserved FLG bit set at input offset ${at}`);
    if ((flg & 0x01) !== 0)
      throw corrupt(`decode lz4: frame needs a dictionary (not supported) at input offset ${at}`);
    if ((bd & 0x8f) !== 0) throw corrupt(`decode lz4: reserved BD bits set at input offset ${at + 1}`);
    const blockMax = BLOCK_MAX_SIZES[(bd >>> 4) & 7];
    if (blockMax === undefined) {
      throw corrupt(
        `decode lz4: invalid block maximum size code ${(bd >>> 4) & 7} at input offset ${at + 1}`,
      );
    }
    this.#flg = flg;
    this.#bd = bd;
    this.#independent = (flg & 0x20) !== 0;
    this.#blockChecksum = (flg & 0x10) !== 0;
    this.#contentSize = (flg & 0x08) !== 0 ? 0 : null;
    this.#contentChecksum = (flg & 0x04) !== 0;
    this.#blockMax = blockMax;
    this.#hash = new Xxh32();
    this.#total = 0;
    this.#histLen = 0;
  }

  #decodeBlock(body: Uint8Array, at: number, emit: (b: Uint8Array) => void): void {
    if (this.#blockRaw && this.#independent) {
      // A stored block needs no window: copy it out directly.
      this.#emitOutput(this.#borrow ? body : Buffer.from(body), at, emit);
      return;
    }
    const hist = this.#independent ? 0 : this.#histLen;
    // A block cannot decode to more than 255 bytes per input byte, nor past the frame's maximum.
    const cap = this.#blockRaw ? body.length : Math.min(this.#blockMax, body.length * 255);
    if (this.#scratch.length < hist + cap) {
      const next = new Uint8Array(
        Math.max(hist + cap, Math.min(this.#scratch.length * 2, WINDOW_SIZE + this.#blockMax)),
      );
      next.set(this.#scratch.subarray(0, hist));
      this.#scratch = next;
    }
    const s = this.#scratch;
    let end: number;
    if (this.#blockRaw) {
      s.set(body, hist);
      end = hist + body.length;
    } else {
      try {
        end = decompressBlock(body, s, hist, hist + cap, 0);
      } catch (err) {
        if (err instanceof WalshipError) {
          throw corrupt(`${err.message} (block at input offset ${at})`, { ...err.details, offset: at });
        }
        throw err;
      }
    }
    const out = this.#borrow ? s.subarray(hist, end) : Buffer.from(s.subarray(hist, end));
    // Emitted before the window moves: a borrowed `out` still views the scratch.
    this.#emitOutput(out, at, emit);
    if (!this.#independent) {
      // Keep the last 64 KiB of output at the front of the scratch as the next block's window.
      const keep = Math.min(end, WINDOW_SIZE);
      s.copyWithin(0, end - keep, end);
      this.#histLen = keep;
    }
  }

  #emitOutput(out: Uint8Array, at: number, emit: (b: Uint8Array) => void): void {
    this.#total += out.length;
    if (this.#contentSize !== null && this.#total > this.#contentSize) {
      throw corrupt(
        `decode lz4: frame content exceeds its declared content size ${this.#contentSize} at input offset ${at}`,
        { offset: at },
      );
    }
    if (this.#contentChecksum) this.#hash.update(out);
    if (out.length > 0) emit(out);
  }

  #finishFrame(at: number): void {
    if (this.#contentSize !== null && this.#total !== this.#contentSize) {
      throw corrupt(
        `decode lz4: frame content is ${this.#total} bytes but its header declares ${this.#contentSize} (frame ends at input offset ${at})`,
        { offset: at },
      );
    }
    this.#frames++;
    this.#state = "magic";
    this.#histLen = 0;
  }
}

function describe(state: DecodeState): string {
  switch (state) {
    case "magic":
      return "a frame magic";
    case "skipSize":
    case "skip":
      return "a skippable frame";
    case "descriptor":
    case "descriptorRest":
      return "a frame descriptor";
    case "blockSize":
      return "a block size";
    case "block":
      return "a block";
    case "checksum":
      return "a content checksum";
  }
}

function u32le(b: Uint8Array, i: number): number {
  return (
    ((b[i] as number) |
      ((b[i + 1] as number) << 8) |
      ((b[i + 2] as number) << 16) |
      ((b[i + 3] as number) << 24)) >>>
    0
  );
}

// ---------------------------------------------------------------------------------------------
// Public API

/** Compresses `buf` into one LZ4 frame as Litestream v0.3.13 writes it. */
export function lz4EncodeFrame(buf: Uint8Array): Buffer {
  const parts: Uint8Array[] = [];
  const enc = new FrameEncoder();
  const emit = (b: Uint8Array): void => {
    parts.push(b);
  };
  enc.write(buf, emit);
  enc.end(emit);
  return Buffer.concat(parts);
}

/**
 * Decodes LZ4 input holding one or more frames (skippable frames are skipped) and returns the
 * concatenated content. Throws CORRUPT on truncated or corrupt input.
 */
export function lz4DecodeFrame(buf: Uint8Array): Buffer {
  const parts: Uint8Array[] = [];
  const dec = new Lz4FrameDecoder();
  dec.push(buf, (b) => {
    parts.push(b);
  });
  dec.end();
  return Buffer.concat(parts);
}

/** A Transform that compresses its input into one LZ4 frame; memory stays within one 4 MiB block. */
export function createLz4Encoder(): Transform {
  const enc = new FrameEncoder();
  return new Transform({
    transform(chunk: Buffer, _encoding, callback: TransformCallback) {
      try {
        enc.write(chunk, (b) => this.push(b));
        callback();
      } catch (err) {
        callback(err as Error);
      }
    },
    flush(callback: TransformCallback) {
      try {
        enc.end((b) => this.push(b));
        callback();
      } catch (err) {
        callback(err as Error);
      }
    },
  });
}

/**
 * A Transform that decodes LZ4 frames (any conforming frame, concatenated and skippable frames too).
 * It errors with CORRUPT on bad or truncated input, so a pipeline never ends successfully on partial
 * output. Memory stays within one block plus its 64 KiB window.
 */
export function createLz4Decoder(): Transform {
  const dec = new Lz4FrameDecoder();
  return new Transform({
    transform(chunk: Buffer, _encoding, callback: TransformCallback) {
      try {
        dec.push(chunk, (b) => this.push(b));
        callback();
      } catch (err) {
        callback(err as Error);
      }
    },
    flush(callback: TransformCallback) {
      try {
        dec.end();
        callback();
      } catch (err) {
        callback(err as Error);
      }
    },
  });
}
