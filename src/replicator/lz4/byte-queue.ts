/**
 * A FIFO of input chunks from which fixed-size pieces are taken without copying when possible. A piece
 * spanning chunks is assembled in a buffer reused by the next such piece: valid until the next `take`.
 */
export class ByteQueue {
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
    if (n === 0) return this.#spare.subarray(0, 0);
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
