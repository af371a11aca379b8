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
import { Lz4FrameDecoder } from "./lz4/decoder.ts";
import { FrameEncoder } from "./lz4/encoder.ts";

export { compressBlock, compressBound, decompressBlock, newHashTable } from "./lz4/block.ts";
export { LZ4_FRAME_MAGIC, Lz4FrameDecoder } from "./lz4/decoder.ts";
export { LZ4_BLOCK_SIZE, LZ4_FRAME_HEADER } from "./lz4/encoder.ts";

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

/**
 * Compresses the chunks of `src` into one LZ4 frame, yielding its pieces. Each chunk is done with
 * before the next is asked for, so `src` may fill one buffer again and again (snapshot-image.ts), and
 * no piece yielded is a view of a chunk. An error of `src` is thrown through.
 */
export async function* lz4EncodeChunks(src: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
  const enc = new FrameEncoder();
  const out: Uint8Array[] = [];
  const emit = (b: Uint8Array): void => {
    out.push(b);
  };
  for await (const chunk of src) {
    enc.write(chunk, emit);
    yield* out.splice(0);
  }
  enc.end(emit);
  yield* out.splice(0);
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
