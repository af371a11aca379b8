/**
 * The LZ4 frame encoder: frames as Litestream v0.3.13 writes them (version 1, independent blocks, no
 * block checksums, a content checksum, no content size, 4 MiB maximum blocks); blocks that do not
 * shrink are stored raw (bit 31 of the block size).
 */
import { compressBlock, compressBound, newHashTable } from "./block.ts";
import { nativeCompressFrameBlock } from "./native.ts";
import { Xxh32 } from "./xxhash32.ts";

/** The maximum block size our encoder uses (BD 0x70). */
export const LZ4_BLOCK_SIZE = 4 << 20;
/** FLG 0x64: version 1, independent blocks, no block checksum, no content size, content checksum. */
const ENCODER_FLG = 0x64;
/** BD 0x70: 4 MiB maximum block size. */
const ENCODER_BD = 0x70;
/** The 7 bytes every frame we write starts with (magic, FLG, BD, header checksum). */
export const LZ4_FRAME_HEADER = Uint8Array.of(0x04, 0x22, 0x4d, 0x18, ENCODER_FLG, ENCODER_BD, 0xb9);

/** Incremental frame encoder: feed bytes with `write`, finish with `end`; output goes to `emit`. */
export class FrameEncoder {
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
    const native = nativeCompressFrameBlock(data);
    if (native !== null) {
      emit(native);
      return;
    }
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
