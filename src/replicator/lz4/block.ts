/**
 * LZ4 blocks (https://github.com/lz4/lz4/blob/dev/doc/lz4_Block_format.md): our own compressor
 * (greedy, one hash table of 4-byte sequences) and decompressor. Pure functions over byte arrays.
 */
import { ErrorCodes, WalshipError } from "../../shared/errors.ts";

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

export function corrupt(message: string, details?: Record<string, unknown>): WalshipError {
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
