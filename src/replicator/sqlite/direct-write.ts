/**
 * Direct I/O for a restore's snapshot blocks: large, aligned writes that go from our buffer to the
 * disk without passing through the page cache.
 *
 * Why: a buffered write of a page the file has not had before costs the kernel a fresh page-cache
 * page and a copy into it, and on the virtual machines measured that is most of a restore's time
 * (2.1–2.9 s of system time per GiB here, against 0.15 s for the same 1 GiB written with O_DIRECT;
 * docs/benchmarks.md, "Restores: the snapshot written with direct I/O"). Each block is read back
 * through the ordinary descriptor right after: pages read into the cache cost the kernel less than
 * pages written there, and the WAL's pages (still written through the page cache: single pages,
 * where direct writes would each wait on the device) and the integrity check at the end find them
 * there.
 *
 * O_DIRECT asks for the file offset, the length and the buffer's address to be aligned. Offsets and
 * lengths are checked here; the address is that of a staging buffer taken from a WebAssembly memory,
 * whose backing store V8 allocates page-aligned (a Node Buffer's is not: malloc puts a header in
 * front). Where the file system or the device refuses anyway (EINVAL, EOPNOTSUPP), the writes fall
 * back to the ordinary descriptor for the rest of the file, silently: the result is the same file.
 */
import { constants, openSync, readSync, writeSync } from "node:fs";

/** Offsets and lengths written directly are multiples of this (a page; covers 512 and 4096-byte sectors). */
export const DIRECT_ALIGN = 4096;
/** The staging buffer: the largest block of a Litestream snapshot's LZ4 frame. */
export const DIRECT_STAGE_BYTES = 4 * 1024 * 1024;
const WASM_PAGE = 64 * 1024;
/** What a file system answers to a direct write it will not do (as opposed to a failed write). */
const REFUSED = new Set(["EINVAL", "EOPNOTSUPP", "ENOTSUP"]);
/** The one part of the WebAssembly API used here (the project compiles without the DOM's types). */
declare const WebAssembly: { Memory: new (d: { initial: number }) => { buffer: ArrayBuffer } };

/**
 * Opens `file` (already created) for direct writes; undefined where the platform has no O_DIRECT or
 * the file system refuses it. The descriptor is the caller's to close.
 */
export function openDirect(file: string): number | undefined {
  const flag = constants.O_DIRECT;
  if (!flag) return undefined;
  try {
    return openSync(file, constants.O_WRONLY | flag);
  } catch {
    return undefined;
  }
}

/** A page-aligned buffer of `bytes` (a multiple of 64 KiB). */
export function alignedBuffer(bytes: number): Uint8Array {
  return new Uint8Array(new WebAssembly.Memory({ initial: Math.ceil(bytes / WASM_PAGE) }).buffer, 0, bytes);
}

export class DirectWrites {
  readonly #fd: number;
  readonly #readFd: number;
  #stage: Uint8Array | undefined;
  #off = false;
  /** Bytes written directly so far. */
  written = 0;

  /**
   * `fd` is an O_DIRECT descriptor of the file (openDirect), `readFd` an ordinary one the blocks are
   * read back through; `stage` is for tests.
   */
  constructor(fd: number, readFd: number, stage?: Uint8Array) {
    this.#fd = fd;
    this.#readFd = readFd;
    this.#stage = stage;
  }

  /** False once the descriptor has refused a write: every later write goes the ordinary way. */
  get enabled(): boolean {
    return !this.#off;
  }

  /**
   * Writes `data` at `position` directly, reads it back into the page cache and returns true, or
   * returns false (writing nothing that matters) when it cannot be: unaligned, too large for the
   * stage, or refused. On false the caller writes `data` through the ordinary descriptor. Other
   * errors (ENOSPC, EIO) are thrown.
   */
  write(data: Uint8Array, position: number): boolean {
    const n = data.length;
    if (this.#off || n === 0 || n % DIRECT_ALIGN !== 0 || position % DIRECT_ALIGN !== 0) return false;
    if (n > (this.#stage?.length ?? DIRECT_STAGE_BYTES)) return false;
    this.#stage ??= alignedBuffer(DIRECT_STAGE_BYTES);
    const stage = this.#stage;
    stage.set(data);
    let done = 0;
    try {
      while (done < n) done += writeSync(this.#fd, stage, done, n - done, position + done);
    } catch (err) {
      if (!REFUSED.has((err as NodeJS.ErrnoException).code ?? "")) throw err;
      // A short direct write can leave the rest unaligned; the ordinary descriptor rewrites all of it.
      this.#off = true;
      return false;
    }
    this.written += n;
    // Into the stage, which holds the same bytes: nothing else is allocated for it.
    for (let got = 0; got < n; ) {
      const r = readSync(this.#readFd, stage, got, n - got, position + got);
      if (r === 0) break;
      got += r;
    }
    return true;
  }
}
