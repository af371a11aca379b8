/**
 * XXH32 (xxHash, 32-bit), one-shot and streaming, for the LZ4 frame header, block and content
 * checksums: xxhash-wasm (the reference C code compiled to WebAssembly). It replaced a hand-written
 * TypeScript XXH32: on the codec's hot path, the streaming content checksum, it hashes 2-3 times as
 * fast (docs/benchmarks.md, "XXH32"); test/unit/lz4.test.ts keeps the published known answers.
 */
import xxhash from "xxhash-wasm";

const api = await xxhash();
/**
 * The most handed to the WebAssembly module at once: it copies its input into its memory, which
 * grows to the largest input and never shrinks, so larger updates are fed in slices of this size.
 */
const MAX_UPDATE_BYTES = 1 << 20;

/**
 * Streaming XXH32. `update` may be called with chunks of any size; `digest` does not reset the state,
 * so it may be called more than once (each call hashes everything seen so far).
 */
export class Xxh32 {
  readonly #state: ReturnType<typeof api.create32>;

  constructor(seed = 0) {
    this.#state = api.create32(seed >>> 0);
  }

  update(chunk: Uint8Array): this {
    for (let i = 0; i < chunk.length; i += MAX_UPDATE_BYTES) {
      this.#state.update(chunk.subarray(i, i + MAX_UPDATE_BYTES));
    }
    return this;
  }

  digest(): number {
    return this.#state.digest() >>> 0;
  }
}

/**
 * One-shot XXH32 of `buf` (an unsigned 32-bit result). The codec hashes at most a block (4 MiB) or a
 * frame descriptor at once this way.
 */
export function xxh32(buf: Uint8Array, seed = 0): number {
  return api.h32Raw(buf, seed >>> 0) >>> 0;
}
