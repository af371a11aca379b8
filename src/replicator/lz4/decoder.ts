/**
 * The LZ4 frame decoder: any conforming frame (dependent or independent blocks, block checksums,
 * content size, any maximum block size), concatenated frames and skippable frames, incrementally.
 * Every check failure throws a CORRUPT WalshipError naming what is wrong and where.
 */
import { WalshipError } from "../../shared/errors.ts";
import { hex8 } from "../../shared/format.ts";
import { corrupt, decompressBlock } from "./block.ts";
import { ByteQueue } from "./byte-queue.ts";
import { nativeDecompressBlock } from "./native.ts";
import { Xxh32, xxh32 } from "./xxhash32.ts";

export const LZ4_FRAME_MAGIC = 0x184d2204;
/** Skippable frames use magics 0x184D2A50..0x184D2A5F. */
const SKIPPABLE_MAGIC_BASE = 0x184d2a50;
/** Dependent blocks may reference up to this many bytes of earlier output. */
const WINDOW_SIZE = 64 * 1024;

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
              `decode lz4: bad frame magic 0x${hex8(magic)} at input offset ${at}${this.#frames > 0 ? " (after the last frame)" : ""}`,
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
          // A size of 0 ends the frame whatever the uncompressed flag says, as the reference lz4
          // decoder reads it (0x80000000 is an end mark there too, not an empty raw block).
          if ((v & 0x7fffffff) === 0) {
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
    if (this.#independent && !this.#borrow) {
      // Independent blocks need no window either: the native codec decodes them into a fresh Buffer.
      // Not when borrowing: restore decodes into the scratch, with no 4 MiB allocation per block
      // (native decoding there raised restore's peak RSS from 282 to 338 MiB, docs/benchmarks.md).
      const out = nativeDecompressBlock(body, this.#blockMax, at);
      if (out !== null) {
        this.#emitOutput(out, at, emit);
        return;
      }
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
