/**
 * Applies a WAL to its database file the way one complete SQLite checkpoint does, without opening the
 * database: restore's fast path, byte for byte what `wal_checkpoint(TRUNCATE)` leaves behind.
 *
 * What SQLite does with a WAL that holds committed frames and no reader (recovery, then checkpoint):
 *  - a database file of 0 bytes makes it delete the WAL unread (so nothing is applied);
 *  - recovery accepts frames while each carries the header's salts, a non-zero page number and a
 *    checksum that chains; mxFrame is the last commit frame among them and nPage its database size;
 *  - the checkpoint fails as corrupt when the WAL's page size is not the database's, or when nPage
 *    pages exceed the file size + 64 KiB + mxFrame pages;
 *  - it writes, for every page number <= nPage, the page of the latest frame <= mxFrame at offset
 *    (pgno - 1) * pageSize, then truncates (or extends) the file to nPage * pageSize.
 * Writing every frame in WAL order and truncating last gives the same bytes: a later frame of a page
 * overwrites an earlier one, and pages past nPage fall away with the truncation.
 *
 * Stricter than SQLite, as restore has always been: a bad frame, a partial frame or an uncommitted
 * tail is an error (SQLite would silently keep only what precedes it). Frames are written as they are
 * verified, so after an error the file is half-applied: the caller discards it.
 */
import { ftruncateSync, writeSync, writevSync } from "node:fs";
import { ErrorCodes, WalshipError } from "../../shared/errors.ts";
import { frameSize, parseWalHeader, WAL_FRAME_HEADER_SIZE, WAL_HEADER_SIZE, type WalHeader } from "./wal.ts";

const HOST_LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;
const SQLITE_MAGIC = "SQLite format 3\0";

export interface WalApplyOptions {
  /** Where the pages go: pageWriter(fd) on the database file, or another sink (file-writer.ts). */
  pages: PageSink;
  /** The database file's current size in bytes. */
  dbSize: number;
  /** The page size in the database's header (required when dbSize > 0). */
  dbPageSize: number;
  /** Apply only the WAL bytes before this offset (a commit boundary); later bytes are counted, not read. */
  limit?: number;
}

export interface WalApplyResult {
  /** WAL bytes applied: the length, or the limit when one was given. */
  end: number;
  /** Frames written to the database. */
  frames: number;
  /** The database file's size afterwards. */
  dbSize: number;
}

/** Applies one WAL, pushed in order in chunks of any size; `finish` checks its end and truncates. */
export class WalApplier {
  readonly #pages: PageSink;
  readonly #limit: number;
  readonly #dbSizeBefore: number;
  readonly #dbPageSize: number;
  /** SQLite deletes the WAL of an empty database unread; so do we. */
  readonly #write: boolean;
  /** All bytes pushed, including any past the limit. */
  #received = 0;
  /** WAL offset up to which bytes were consumed (header, whole frames and the carry). */
  #pos = 0;
  #head = new Uint8Array(WAL_HEADER_SIZE);
  #header: WalHeader | null = null;
  #pageSize = 0;
  #frameSize = 0;
  #salt1 = 0;
  #salt2 = 0;
  #s0 = 0;
  #s1 = 0;
  /** A frame split across chunks. */
  #carry = new Uint8Array(0);
  #carryWords = new Int32Array(0);
  #carryView = new DataView(this.#carry.buffer);
  #carryLen = 0;
  #frames = 0;
  #lastCommitEnd = WAL_HEADER_SIZE;
  #lastCommitPages = 0;

  constructor(opts: WalApplyOptions) {
    this.#pages = opts.pages;
    this.#dbSizeBefore = opts.dbSize;
    this.#dbPageSize = opts.dbPageSize;
    this.#limit = opts.limit ?? Number.POSITIVE_INFINITY;
    this.#write = opts.dbSize > 0;
  }

  /** Bytes pushed so far (the WAL's length once every chunk is in). */
  get received(): number {
    return this.#received;
  }

  push(chunk: Uint8Array): void {
    try {
      this.#push(chunk);
    } catch (err) {
      this.#pages.discard();
      throw err;
    }
  }

  /** Checks that the WAL ended on a commit, then sets the database's size as the checkpoint would. */
  finish(): WalApplyResult {
    try {
      return this.#finish();
    } catch (err) {
      this.#pages.discard();
      throw err;
    }
  }

  #push(chunk: Uint8Array): void {
    this.#received += chunk.length;
    const room = this.#limit - this.#pos;
    if (room <= 0 || chunk.length === 0) return;
    let c = chunk.length > room ? chunk.subarray(0, room) : chunk;
    if (this.#header === null) {
      const n = Math.min(WAL_HEADER_SIZE - this.#pos, c.length);
      this.#head.set(c.subarray(0, n), this.#pos);
      this.#pos += n;
      c = c.subarray(n);
      if (this.#pos < WAL_HEADER_SIZE) return;
      this.#start(parseWalHeader(this.#head));
    }
    const F = this.#frameSize;
    let i = 0;
    if (this.#carryLen > 0) {
      const n = Math.min(F - this.#carryLen, c.length);
      this.#carry.set(c.subarray(0, n), this.#carryLen);
      this.#carryLen += n;
      this.#pos += n;
      i = n;
      if (this.#carryLen < F) return;
      this.#carryLen = 0;
      this.#frame(
        this.#carry,
        0,
        this.#nativeWords() ? this.#carryWords : null,
        this.#carryView,
        this.#pos - F,
      );
    }
    const whole = i + Math.floor((c.length - i) / F) * F;
    if (whole > i) {
      const body = c.subarray(i, whole);
      const words =
        (body.byteOffset & 3) === 0 && this.#nativeWords()
          ? new Int32Array(body.buffer, body.byteOffset, body.length >>> 2)
          : null;
      const dv = new DataView(body.buffer, body.byteOffset, body.length);
      for (let p = 0; p < body.length; p += F) {
        this.#frame(body, p, words, dv, this.#pos);
        this.#pos += F;
      }
    }
    if (whole < c.length) {
      this.#carry.set(c.subarray(whole), 0);
      this.#carryLen = c.length - whole;
      this.#pos += this.#carryLen;
    }
  }

  #finish(): WalApplyResult {
    if (this.#received === 0) return { end: 0, frames: 0, dbSize: this.#dbSizeBefore };
    if (this.#header === null) {
      throw corrupt(
        `apply wal: the WAL ends inside its ${WAL_HEADER_SIZE}-byte header, at offset ${this.#pos}`,
        {
          offset: this.#pos,
        },
      );
    }
    if (this.#carryLen > 0) {
      const at = this.#pos - this.#carryLen;
      throw corrupt(
        `apply wal: partial frame at offset ${at} (${this.#carryLen} of ${this.#frameSize} bytes)`,
        {
          offset: at,
        },
      );
    }
    if (this.#lastCommitEnd !== this.#pos) {
      throw corrupt(
        `apply wal: the WAL ends with an uncommitted transaction at offset ${this.#lastCommitEnd}`,
        { offset: this.#lastCommitEnd },
      );
    }
    if (this.#frames === 0 || !this.#write) {
      return { end: this.#pos, frames: 0, dbSize: this.#dbSizeBefore };
    }
    const size = this.#lastCommitPages * this.#pageSize;
    if (this.#dbSizeBefore + 65536 + this.#frames * this.#pageSize < size) {
      throw corrupt(
        `apply wal: the last commit sets the database to ${this.#lastCommitPages} pages, more than the file and the WAL can hold`,
        { pages: this.#lastCommitPages },
      );
    }
    this.#pages.truncate(size);
    return { end: this.#pos, frames: this.#frames, dbSize: size };
  }

  #start(h: WalHeader): void {
    this.#header = h;
    this.#pageSize = h.pageSize;
    this.#frameSize = frameSize(h.pageSize);
    this.#salt1 = h.salt1;
    this.#salt2 = h.salt2;
    this.#s0 = h.checksum1 | 0;
    this.#s1 = h.checksum2 | 0;
    this.#carry = new Uint8Array(this.#frameSize);
    this.#carryWords = new Int32Array(this.#carry.buffer);
    this.#carryView = new DataView(this.#carry.buffer);
  }

  /** SQLite refuses to checkpoint frames of another page size than the database's. */
  #checkPageSize(): void {
    const dbPageSize = this.#dbPageSize;
    if (dbPageSize !== this.#pageSize) {
      throw corrupt(`apply wal: WAL page size ${this.#pageSize} is not the database's ${dbPageSize}`, {
        pageSize: this.#pageSize,
        dbPageSize,
      });
    }
  }

  #nativeWords(): boolean {
    return this.#header !== null && this.#header.bigEndianChecksums !== HOST_LITTLE_ENDIAN;
  }

  /**
   * Verifies the frame at `p` of `buf` (WAL offset `at`) and writes its page. `words`, when given,
   * views `buf` from 0 in the checksum's own byte order; otherwise `dv` (also from 0) is read in it.
   */
  #frame(buf: Uint8Array, p: number, words: Int32Array | null, dv: DataView, at: number): void {
    const F = this.#frameSize;
    if (dv.getUint32(p + 8) !== this.#salt1 || dv.getUint32(p + 12) !== this.#salt2) {
      throw badFrame(at);
    }
    const pgno = dv.getUint32(p);
    if (pgno === 0) throw badFrame(at);
    let a = this.#s0;
    let b = this.#s1;
    if (words !== null) {
      const w = p >>> 2;
      a = (a + (words[w] as number) + b) | 0;
      b = (b + (words[w + 1] as number) + a) | 0;
      const end = (p + F) >>> 2;
      for (let k = w + WAL_FRAME_HEADER_SIZE / 4; k < end; k += 2) {
        a = (a + (words[k] as number) + b) | 0;
        b = (b + (words[k + 1] as number) + a) | 0;
      }
    } else {
      const le = !this.#header!.bigEndianChecksums;
      a = (a + dv.getInt32(p, le) + b) | 0;
      b = (b + dv.getInt32(p + 4, le) + a) | 0;
      for (let k = p + WAL_FRAME_HEADER_SIZE; k < p + F; k += 8) {
        a = (a + dv.getInt32(k, le) + b) | 0;
        b = (b + dv.getInt32(k + 4, le) + a) | 0;
      }
    }
    if (dv.getInt32(p + 16) !== a || dv.getInt32(p + 20) !== b) throw badFrame(at);
    this.#s0 = a;
    this.#s1 = b;
    if (this.#frames === 0 && this.#write) this.#checkPageSize();
    if (this.#write) this.#pages.add(pgno, this.#pageSize, buf, p + WAL_FRAME_HEADER_SIZE);
    this.#frames++;
    const commit = dv.getUint32(p + 4);
    if (commit !== 0) {
      this.#lastCommitEnd = at + F;
      this.#lastCommitPages = commit;
    }
  }
}

/**
 * The page size in a database header (bytes 16..17, 1 meaning 65536), given at least its first 100
 * bytes. Throws CORRUPT when they are not a SQLite header.
 */
export function dbHeaderPageSize(head: Uint8Array): number {
  const magic = Buffer.from(head.buffer, head.byteOffset, Math.min(16, head.length)).toString("latin1");
  if (head.length < 100 || magic !== SQLITE_MAGIC) {
    throw corrupt("read database header: not a SQLite database file", { length: head.length });
  }
  const v = ((head[16] as number) << 8) | (head[17] as number);
  return v === 1 ? 65536 : v;
}

/** Default memory for buffered pages: writes in page order over a 32 MiB batch cost a quarter of random ones. */
export const PAGE_WRITER_BYTES = 32 << 20;
/** Most buffers one writev takes (IOV_MAX on Linux). */
const IOV_MAX = 1024;

/**
 * Receives WALs' pages in WAL order. `truncate` sets the file size after every page added so far;
 * `flush` writes whatever is still buffered (a sink may hold pages across truncations and WALs).
 */
export interface PageSink {
  add(pgno: number, pageSize: number, src: Uint8Array, offset: number): void;
  truncate(size: number): void;
  flush(): void;
  /**
   * Forgets pages not written yet, after an error. They may include pages of WALs applied before
   * the one that failed, so the file is incomplete afterwards: the caller discards it.
   */
  discard(): void;
}

/** A batch of buffered pages, taken in page-number order. */
export interface PageRun {
  arena: Uint8Array;
  pageSize: number;
  /** Page numbers, ascending, and where each page is in the arena (slot * pageSize). */
  pgnos: Float64Array;
  slots: Uint32Array;
}

/**
 * Buffers pages up to a capacity, keeping only the latest content of a page added twice, and hands
 * them over in page-number order. Writing batch after batch, in the order the pages came, gives the
 * file every page's last content, as writing each page in turn would; only the order of the writes
 * differs, which is what makes them cheap (random 4 KiB writes into a large file cost the kernel
 * several times what ascending ones do).
 */
export class PageBatch {
  readonly #capacity: number;
  #arena: Uint8Array | null = null;
  #pageSize = 0;
  #used = 0;
  /** Page number -> slot in the arena. */
  readonly #slots = new Map<number, number>();

  constructor(capacityBytes = PAGE_WRITER_BYTES) {
    this.#capacity = capacityBytes;
  }

  get size(): number {
    return this.#slots.size;
  }

  get pageSize(): number {
    return this.#pageSize;
  }

  /** Pages one arena holds at this page size. */
  slotsFor(pageSize: number): number {
    return Math.max(1, Math.floor(this.#capacity / pageSize));
  }

  /** Gives the batch an (empty) arena to fill; it must hold slotsFor(pageSize) pages. */
  setArena(arena: Uint8Array, pageSize: number): void {
    this.#arena = arena;
    this.#pageSize = pageSize;
  }

  get hasArena(): boolean {
    return this.#arena !== null;
  }

  /** Copies the page in; false (nothing copied) when a new page does not fit or the page size differs. */
  tryAdd(pgno: number, pageSize: number, src: Uint8Array, offset: number): boolean {
    const arena = this.#arena;
    if (arena === null || pageSize !== this.#pageSize) return false;
    let slot = this.#slots.get(pgno);
    if (slot === undefined) {
      if ((this.#used + 1) * pageSize > arena.length) return false;
      slot = this.#used++;
      this.#slots.set(pgno, slot);
    }
    arena.set(src.subarray(offset, offset + pageSize), slot * pageSize);
    return true;
  }

  /** The buffered pages in page order, with the arena; the batch is left empty and without an arena. */
  take(): PageRun | null {
    const arena = this.#arena;
    this.#arena = null;
    const n = this.#slots.size;
    if (arena === null || n === 0) {
      this.#slots.clear();
      this.#used = 0;
      if (arena !== null) this.#arena = arena;
      return null;
    }
    const pgnos = new Float64Array(n);
    let k = 0;
    for (const pgno of this.#slots.keys()) pgnos[k++] = pgno;
    pgnos.sort();
    const slots = new Uint32Array(n);
    for (let i = 0; i < n; i++) slots[i] = this.#slots.get(pgnos[i] as number) as number;
    this.#slots.clear();
    this.#used = 0;
    return { arena, pageSize: this.#pageSize, pgnos, slots };
  }

  /**
   * Forgets the buffered pages past page `last` (a truncation to `last` pages cuts them). Their
   * slots stay used until the batch is taken.
   */
  dropAfter(last: number): void {
    for (const pgno of this.#slots.keys()) if (pgno > last) this.#slots.delete(pgno);
  }

  discard(): void {
    this.#slots.clear();
    this.#used = 0;
  }
}

/**
 * Writes a run of pages to `fd` in page order, one write per stretch of consecutive page numbers;
 * returns how many stretches (writes) that was.
 */
export function writePages(fd: number, run: PageRun): number {
  const { arena, pageSize: ps, pgnos, slots } = run;
  const n = pgnos.length;
  const bufs: Uint8Array[] = [];
  let first = 0;
  let writes = 0;
  for (let i = 0; i <= n; i++) {
    const pgno = i < n ? (pgnos[i] as number) : -1;
    if (bufs.length > 0 && (pgno !== first + bufs.length || bufs.length === IOV_MAX)) {
      writeRun(fd, bufs, (first - 1) * ps);
      writes++;
      bufs.length = 0;
    }
    if (i === n) break;
    if (bufs.length === 0) first = pgno;
    const slot = slots[i] as number;
    bufs.push(arena.subarray(slot * ps, (slot + 1) * ps));
  }
  return writes;
}

/** Where a BatchedPages sends its batches. */
export interface PageTarget {
  /** An empty arena of `bytes` to fill. */
  arena(bytes: number): Uint8Array;
  /** Writes a run (its arena is not used by the sender afterwards). */
  write(run: PageRun): void;
  /** Sets the file size, after the runs written before. */
  truncate(size: number): void;
}

/**
 * A PageSink that collects pages in a PageBatch and sends each full batch to a PageTarget.
 *
 * A truncation does not send the batch: the pages it would cut are dropped from the batch, and the
 * truncation goes to the target at once, ahead of the batch. The file ends the same: every page
 * left in the batch was added after any cut below it, so writing it after the truncations puts it
 * where the truncations leave room for it, and a page cut and then added again is the later one.
 * Batches so stay full across a restore's WAL indexes, which end in a truncation each.
 */
export class BatchedPages implements PageSink {
  readonly #target: PageTarget;
  readonly #batch: PageBatch;

  constructor(target: PageTarget, capacityBytes = PAGE_WRITER_BYTES) {
    this.#target = target;
    this.#batch = new PageBatch(capacityBytes);
  }

  add(pgno: number, pageSize: number, src: Uint8Array, offset: number): void {
    if (this.#batch.tryAdd(pgno, pageSize, src, offset)) return;
    this.#flush();
    if (!this.#batch.hasArena || this.#batch.pageSize !== pageSize) {
      this.#batch.setArena(this.#target.arena(this.#batch.slotsFor(pageSize) * pageSize), pageSize);
    }
    this.#batch.tryAdd(pgno, pageSize, src, offset);
  }

  truncate(size: number): void {
    const ps = this.#batch.pageSize;
    if (ps > 0) this.#batch.dropAfter(Math.floor(size / ps));
    this.#target.truncate(size);
  }

  flush(): void {
    this.#flush();
  }

  discard(): void {
    this.#batch.discard();
  }

  #flush(): void {
    const run = this.#batch.take();
    if (run !== null) this.#target.write(run);
  }
}

/** A PageSink writing to a file descriptor on the calling thread (one arena, reused). */
export function pageWriter(fd: number, capacityBytes = PAGE_WRITER_BYTES): PageSink {
  let spare: Uint8Array | null = null;
  return new BatchedPages(
    {
      arena: (bytes) => (spare !== null && spare.length === bytes ? spare : new Uint8Array(bytes)),
      write: (run) => {
        writePages(fd, run);
        spare = run.arena;
      },
      // Like SQLite, this also extends a file that is shorter (with zeros).
      truncate: (size) => ftruncateSync(fd, size),
    },
    capacityBytes,
  );
}

function writeRun(fd: number, bufs: Uint8Array[], position: number): void {
  if (bufs.length === 1) {
    const b = bufs[0] as Uint8Array;
    let done = 0;
    while (done < b.length) done += writeSync(fd, b, done, b.length - done, position + done);
    return;
  }
  const total = bufs.reduce((a, b) => a + b.length, 0);
  const done = writevSync(fd, bufs, position);
  // A short writev (not expected for a regular file) finishes page by page.
  if (done < total) {
    let at = 0;
    for (const b of bufs) {
      if (at + b.length > done) {
        const from = Math.max(0, done - at);
        writeRun(fd, [b.subarray(from)], position + at + from);
      }
      at += b.length;
    }
  }
}

function badFrame(at: number): WalshipError {
  return corrupt(`apply wal: bad frame (checksum or salt) at offset ${at}`, { offset: at });
}

function corrupt(message: string, details: Record<string, unknown>): WalshipError {
  return new WalshipError(ErrorCodes.CORRUPT, message, { details });
}
