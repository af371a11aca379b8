/**
 * XXH32 (xxHash, 32-bit), one-shot and streaming. Used for LZ4 frame header, block and content
 * checksums. All arithmetic is mod 2^32: Math.imul for products, `| 0` / `>>> 0` for sums.
 */

const P1 = 0x9e3779b1 | 0;
const P2 = 0x85ebca77 | 0;
const P3 = 0xc2b2ae3d | 0;
const P4 = 0x27d4eb2f | 0;
const P5 = 0x165667b1 | 0;

function rotl(x: number, r: number): number {
  return (x << r) | (x >>> (32 - r));
}

function readU32(b: Uint8Array, i: number): number {
  return (
    (b[i] as number) |
    ((b[i + 1] as number) << 8) |
    ((b[i + 2] as number) << 16) |
    ((b[i + 3] as number) << 24)
  );
}

/** Finishes a hash: folds in the tail bytes `b[i..end)` (fewer than 16) and avalanches. */
function finish(h: number, b: Uint8Array, i: number, end: number): number {
  let acc = h;
  for (; i + 4 <= end; i += 4) {
    acc = (acc + Math.imul(readU32(b, i), P3)) | 0;
    acc = Math.imul(rotl(acc, 17), P4);
  }
  for (; i < end; i++) {
    acc = (acc + Math.imul(b[i] as number, P5)) | 0;
    acc = Math.imul(rotl(acc, 11), P1);
  }
  acc ^= acc >>> 15;
  acc = Math.imul(acc, P2);
  acc ^= acc >>> 13;
  acc = Math.imul(acc, P3);
  acc ^= acc >>> 16;
  return acc >>> 0;
}

/**
 * Streaming XXH32. `update` may be called with chunks of any size; `digest` does not reset the state,
 * so it may be called more than once (each call hashes everything seen so far).
 */
export class Xxh32 {
  #seed: number;
  #v1: number;
  #v2: number;
  #v3: number;
  #v4: number;
  /** Total input length mod 2^32 (the algorithm only uses it mod 2^32). */
  #totalLen = 0;
  #large = false;
  /** Up to 15 bytes not yet forming a 16-byte stripe. */
  #mem = new Uint8Array(16);
  #memLen = 0;

  constructor(seed = 0) {
    this.#seed = seed | 0;
    this.#v1 = (this.#seed + P1 + P2) | 0;
    this.#v2 = (this.#seed + P2) | 0;
    this.#v3 = this.#seed;
    this.#v4 = (this.#seed - P1) | 0;
  }

  update(chunk: Uint8Array): this {
    const len = chunk.length;
    if (len === 0) return this;
    this.#totalLen = (this.#totalLen + len) | 0;
    if (!this.#large && (len >= 16 || this.#totalLen >>> 0 >= 16)) this.#large = true;
    let i = 0;
    if (this.#memLen > 0) {
      const need = 16 - this.#memLen;
      if (len < need) {
        this.#mem.set(chunk, this.#memLen);
        this.#memLen += len;
        return this;
      }
      this.#mem.set(chunk.subarray(0, need), this.#memLen);
      this.#stripes(this.#mem, 0, 16);
      this.#memLen = 0;
      i = need;
    }
    const stripeEnd = i + ((len - i) & ~15);
    if (stripeEnd > i) this.#stripes(chunk, i, stripeEnd);
    if (stripeEnd < len) {
      this.#mem.set(chunk.subarray(stripeEnd), 0);
      this.#memLen = len - stripeEnd;
    }
    return this;
  }

  #stripes(b: Uint8Array, start: number, end: number): void {
    const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
    let v1 = this.#v1;
    let v2 = this.#v2;
    let v3 = this.#v3;
    let v4 = this.#v4;
    for (let i = start; i < end; i += 16) {
      v1 = Math.imul(rotl((v1 + Math.imul(dv.getInt32(i, true), P2)) | 0, 13), P1);
      v2 = Math.imul(rotl((v2 + Math.imul(dv.getInt32(i + 4, true), P2)) | 0, 13), P1);
      v3 = Math.imul(rotl((v3 + Math.imul(dv.getInt32(i + 8, true), P2)) | 0, 13), P1);
      v4 = Math.imul(rotl((v4 + Math.imul(dv.getInt32(i + 12, true), P2)) | 0, 13), P1);
    }
    this.#v1 = v1;
    this.#v2 = v2;
    this.#v3 = v3;
    this.#v4 = v4;
  }

  digest(): number {
    let h: number;
    if (this.#large) {
      h = (rotl(this.#v1, 1) + rotl(this.#v2, 7) + rotl(this.#v3, 12) + rotl(this.#v4, 18)) | 0;
    } else {
      h = (this.#seed + P5) | 0;
    }
    h = (h + this.#totalLen) | 0;
    return finish(h, this.#mem, 0, this.#memLen);
  }
}

/** One-shot XXH32 of `buf` (an unsigned 32-bit result). */
export function xxh32(buf: Uint8Array, seed = 0): number {
  const len = buf.length;
  const s = seed | 0;
  let h: number;
  let i = 0;
  if (len >= 16) {
    // DataView reads are as fast as a typed-array view in V8 and need no alignment.
    const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    let v1 = (s + P1 + P2) | 0;
    let v2 = (s + P2) | 0;
    let v3 = s;
    let v4 = (s - P1) | 0;
    const limit = len - 16;
    for (; i <= limit; i += 16) {
      v1 = Math.imul(rotl((v1 + Math.imul(dv.getInt32(i, true), P2)) | 0, 13), P1);
      v2 = Math.imul(rotl((v2 + Math.imul(dv.getInt32(i + 4, true), P2)) | 0, 13), P1);
      v3 = Math.imul(rotl((v3 + Math.imul(dv.getInt32(i + 8, true), P2)) | 0, 13), P1);
      v4 = Math.imul(rotl((v4 + Math.imul(dv.getInt32(i + 12, true), P2)) | 0, 13), P1);
    }
    h = (rotl(v1, 1) + rotl(v2, 7) + rotl(v3, 12) + rotl(v4, 18)) | 0;
  } else {
    h = (s + P5) | 0;
  }
  h = (h + len) | 0;
  return finish(h, buf, i, len);
}
