/**
 * The SQLite WAL file format: header and frame codecs, the cumulative checksum, and the frame scan
 * the replicator uses to copy only committed, valid frames out of the real WAL.
 *
 * Everything here is pure byte work except `readWalFileHeader` and `walFileInfo`, which read a file.
 * Layout (all fields big-endian u32):
 *   header (32 bytes): magic, version, page size, checkpoint seq, salt-1, salt-2, checksum-1, checksum-2
 *   frame header (24): page number, db size after commit (0 if not a commit), salt-1, salt-2,
 *                      checksum-1, checksum-2; then the page.
 * The checksum is cumulative: the header's covers header bytes 0..23 seeded (0, 0); each frame's
 * continues from the previous one over frame-header bytes 0..7 then the page data.
 */
import { open } from "node:fs/promises";
import { ErrorCodes, WalshipError } from "../../shared/errors.ts";
import { hex8 } from "../../shared/format.ts";

export const WAL_HEADER_SIZE = 32;
export const WAL_FRAME_HEADER_SIZE = 24;
/** Magic for checksums computed over little-endian u32 words. */
export const WAL_MAGIC_LE = 0x377f0682;
/** Magic for checksums computed over big-endian u32 words. */
export const WAL_MAGIC_BE = 0x377f0683;
export const WAL_VERSION = 3007000;

export const MIN_PAGE_SIZE = 512;
export const MAX_PAGE_SIZE = 65536;

export interface WalHeader {
  /** True when the magic is 0x377F0683: checksum words are read big-endian. */
  bigEndianChecksums: boolean;
  version: number;
  pageSize: number;
  checkpointSeq: number;
  salt1: number;
  salt2: number;
  checksum1: number;
  checksum2: number;
}

export interface FrameHeader {
  pgno: number;
  /** Database size in pages after this commit; 0 if the frame is not a commit frame. */
  commitSize: number;
  salt1: number;
  salt2: number;
  checksum1: number;
  checksum2: number;
}

export type Checksum = [number, number];

const HOST_LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

function corrupt(message: string, details?: Record<string, unknown>): WalshipError {
  return new WalshipError(ErrorCodes.CORRUPT, message, details === undefined ? undefined : { details });
}

function walError(message: string, details?: Record<string, unknown>): WalshipError {
  return new WalshipError(ErrorCodes.WAL, message, details === undefined ? undefined : { details });
}

function view(buf: Uint8Array): DataView {
  return new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
}

export function isValidPageSize(n: number): boolean {
  return Number.isInteger(n) && n >= MIN_PAGE_SIZE && n <= MAX_PAGE_SIZE && (n & (n - 1)) === 0;
}

function assertPageSize(what: string, pageSize: number): void {
  if (!isValidPageSize(pageSize)) {
    throw walError(`${what}: page size ${pageSize} is not a power of two in 512..65536`, { pageSize });
  }
}

/**
 * SQLite's WAL checksum over `data` (length a multiple of 8), continuing from (s0, s1). Words are read
 * in the byte order the magic names. Returns the new pair as unsigned 32-bit numbers.
 */
export function walChecksum(bigEndian: boolean, data: Uint8Array, s0: number, s1: number): Checksum {
  const len = data.length;
  if ((len & 7) !== 0) {
    throw walError(`compute wal checksum: data length ${len} is not a multiple of 8`, { length: len });
  }
  const sum = Int32Array.of(s0 | 0, s1 | 0);
  sumInto(checksumReader(bigEndian, data), 0, len, sum);
  return [sum[0]! >>> 0, sum[1]! >>> 0];
}

/** How checksum words are read from one buffer: through a word view when in native order and aligned. */
interface ChecksumReader {
  dv: DataView;
  words: Int32Array | undefined;
  le: boolean;
}

function checksumReader(bigEndian: boolean, buf: Uint8Array): ChecksumReader {
  const native = bigEndian !== HOST_LITTLE_ENDIAN && (buf.byteOffset & 3) === 0;
  return {
    dv: view(buf),
    words: native ? new Int32Array(buf.buffer, buf.byteOffset, buf.length >>> 2) : undefined,
    le: !bigEndian,
  };
}

/**
 * Adds bytes [from, to) of the reader's buffer (offsets 8 bytes apart) to the running checksum in
 * `sum`, in place: nothing is allocated, as scanFrames runs it twice per frame of a busy WAL.
 */
function sumInto(r: ChecksumReader, from: number, to: number, sum: Int32Array): void {
  let a = sum[0]!;
  let b = sum[1]!;
  const w = r.words;
  if (w !== undefined) {
    for (let i = from >>> 2, end = to >>> 2; i < end; i += 2) {
      a = (a + (w[i] as number) + b) | 0;
      b = (b + (w[i + 1] as number) + a) | 0;
    }
  } else {
    const { dv, le } = r;
    for (let i = from; i < to; i += 8) {
      a = (a + dv.getInt32(i, le) + b) | 0;
      b = (b + dv.getInt32(i + 4, le) + a) | 0;
    }
  }
  sum[0] = a;
  sum[1] = b;
}

/** Parses and verifies a 32-byte WAL header (magic, version, page size, checksum). Throws CORRUPT. */
export function parseWalHeader(buf: Uint8Array): WalHeader {
  if (buf.length < WAL_HEADER_SIZE) {
    throw corrupt(`parse wal header: need ${WAL_HEADER_SIZE} bytes, got ${buf.length}`, {
      length: buf.length,
    });
  }
  const dv = view(buf);
  const magic = dv.getUint32(0);
  if (magic !== WAL_MAGIC_LE && magic !== WAL_MAGIC_BE) {
    throw corrupt(`parse wal header: bad magic 0x${hex8(magic)}`, { magic });
  }
  const h: WalHeader = {
    bigEndianChecksums: magic === WAL_MAGIC_BE,
    version: dv.getUint32(4),
    pageSize: dv.getUint32(8),
    checkpointSeq: dv.getUint32(12),
    salt1: dv.getUint32(16),
    salt2: dv.getUint32(20),
    checksum1: dv.getUint32(24),
    checksum2: dv.getUint32(28),
  };
  if (h.version !== WAL_VERSION) {
    throw corrupt(`parse wal header: unsupported version ${h.version}, want ${WAL_VERSION}`, {
      version: h.version,
    });
  }
  if (!isValidPageSize(h.pageSize)) {
    throw corrupt(`parse wal header: page size ${h.pageSize} is not a power of two in 512..65536`, {
      pageSize: h.pageSize,
    });
  }
  const [c1, c2] = walChecksum(h.bigEndianChecksums, buf.subarray(0, 24), 0, 0);
  if (c1 !== h.checksum1 || c2 !== h.checksum2) {
    throw corrupt(
      `parse wal header: checksum mismatch, stored ${hex8(h.checksum1)}/${hex8(h.checksum2)}, computed ${hex8(c1)}/${hex8(c2)}`,
      { stored: [h.checksum1, h.checksum2], computed: [c1, c2] },
    );
  }
  return h;
}

export interface WalHeaderFields {
  bigEndianChecksums: boolean;
  pageSize: number;
  checkpointSeq: number;
  salt1: number;
  salt2: number;
  /** Defaults to WAL_VERSION. */
  version?: number;
}

/** Builds a 32-byte WAL header, computing its checksum. */
export function encodeWalHeader(fields: WalHeaderFields): Uint8Array {
  assertPageSize("encode wal header", fields.pageSize);
  const buf = new Uint8Array(WAL_HEADER_SIZE);
  const dv = view(buf);
  dv.setUint32(0, fields.bigEndianChecksums ? WAL_MAGIC_BE : WAL_MAGIC_LE);
  dv.setUint32(4, fields.version ?? WAL_VERSION);
  dv.setUint32(8, fields.pageSize);
  dv.setUint32(12, fields.checkpointSeq >>> 0);
  dv.setUint32(16, fields.salt1 >>> 0);
  dv.setUint32(20, fields.salt2 >>> 0);
  const [c1, c2] = walChecksum(fields.bigEndianChecksums, buf.subarray(0, 24), 0, 0);
  dv.setUint32(24, c1);
  dv.setUint32(28, c2);
  return buf;
}

/** Reads the 24-byte frame header at `offset` of `buf`. Does not verify anything. */
export function parseFrameHeader(buf: Uint8Array, offset = 0): FrameHeader {
  if (offset < 0 || offset + WAL_FRAME_HEADER_SIZE > buf.length) {
    throw corrupt(`parse frame header: offset ${offset} + 24 is past the buffer end ${buf.length}`, {
      offset,
      length: buf.length,
    });
  }
  const dv = view(buf);
  return {
    pgno: dv.getUint32(offset),
    commitSize: dv.getUint32(offset + 4),
    salt1: dv.getUint32(offset + 8),
    salt2: dv.getUint32(offset + 12),
    checksum1: dv.getUint32(offset + 16),
    checksum2: dv.getUint32(offset + 20),
  };
}

export interface FrameFields {
  pgno: number;
  commitSize: number;
  salt1: number;
  salt2: number;
}

/**
 * Builds one frame (header + page) whose checksum continues the chain from `seed` (the previous
 * frame's checksum, or the WAL header's for the first frame). Returns the bytes and the new checksum.
 */
export function encodeFrame(
  header: FrameFields,
  page: Uint8Array,
  bigEndian: boolean,
  seed: Checksum,
): { bytes: Uint8Array; checksum: Checksum } {
  assertPageSize("encode frame", page.length);
  const bytes = new Uint8Array(WAL_FRAME_HEADER_SIZE + page.length);
  const dv = view(bytes);
  dv.setUint32(0, header.pgno >>> 0);
  dv.setUint32(4, header.commitSize >>> 0);
  dv.setUint32(8, header.salt1 >>> 0);
  dv.setUint32(12, header.salt2 >>> 0);
  bytes.set(page, WAL_FRAME_HEADER_SIZE);
  let sum = walChecksum(bigEndian, bytes.subarray(0, 8), seed[0], seed[1]);
  sum = walChecksum(bigEndian, bytes.subarray(WAL_FRAME_HEADER_SIZE), sum[0], sum[1]);
  dv.setUint32(16, sum[0]);
  dv.setUint32(20, sum[1]);
  return { bytes, checksum: sum };
}

/** F: the size of one frame on disk. */
export function frameSize(pageSize: number): number {
  return WAL_FRAME_HEADER_SIZE + pageSize;
}

/** Rounds a WAL size down to the end of its last whole frame (0 if it has no complete header). */
export function alignWalSize(size: number, pageSize: number): number {
  if (size < WAL_HEADER_SIZE) return 0;
  const f = frameSize(pageSize);
  return WAL_HEADER_SIZE + Math.floor((size - WAL_HEADER_SIZE) / f) * f;
}

/** True when `offset` is 32 + k*F for some k >= 0. */
function isFrameBoundary(offset: number, pageSize: number): boolean {
  return offset >= WAL_HEADER_SIZE && (offset - WAL_HEADER_SIZE) % frameSize(pageSize) === 0;
}

export interface ScanOptions {
  pageSize: number;
  bigEndian: boolean;
  /** Salts every frame must carry (from the WAL header). */
  salt1: number;
  salt2: number;
  /** Running checksum before the first frame in `buf`. */
  seed: Checksum;
  /** WAL offset of buf[0]; must be a frame boundary (32 + k*F). */
  startOffset: number;
}

export interface ScanResult {
  /** WAL offset after the last valid frame. */
  validEnd: number;
  /** WAL offset after the last valid commit frame, or startOffset if there is none. */
  lastCommitEnd: number;
  /** Running checksum at lastCommitEnd (the seed if there is no commit). */
  lastCommitChecksum: Checksum;
  /** Running checksum at validEnd (the seed if there are no valid frames). */
  validEndChecksum: Checksum;
  /** Number of valid frames. */
  frames: number;
  /** Each valid commit frame: the WAL offset after it, and the database size in pages it records. */
  commits: Array<{ end: number; commitSize: number }>;
  /** Why the scan stopped: end of data, a partial frame, or the first invalid frame. */
  stop: "end" | "partial" | "salt" | "checksum" | "pgno";
}

/**
 * Walks whole frames in `buf` while they are valid: salts equal to the header's, the cumulative
 * checksum matching, and a non-zero page number (SQLite's own recovery rejects page 0 too). Stops at
 * the end of the data, a partial frame, or the first invalid frame, and reports where the valid run
 * and its last commit end. Copying `[startOffset, lastCommitEnd)` copies exactly the committed frames.
 */
export function scanFrames(buf: Uint8Array, opts: ScanOptions): ScanResult {
  const { pageSize, bigEndian, startOffset } = opts;
  assertPageSize("scan frames", pageSize);
  if (!isFrameBoundary(startOffset, pageSize)) {
    throw walError(
      `scan frames: start offset ${startOffset} is not a frame boundary for page size ${pageSize}`,
      {
        startOffset,
        pageSize,
      },
    );
  }
  const f = frameSize(pageSize);
  const salt1 = opts.salt1 >>> 0;
  const salt2 = opts.salt2 >>> 0;
  const dv = view(buf);
  // One reader and two running pairs for the whole scan: a view and a pair per frame (walChecksum's
  // shape) were most of what the replicator allocated under a heavy writer.
  const reader = checksumReader(bigEndian, buf);
  const sum = Int32Array.of(opts.seed[0] | 0, opts.seed[1] | 0);
  const next = new Int32Array(2);
  let lastCommitChecksum: Checksum = [sum[0]! >>> 0, sum[1]! >>> 0];
  let lastCommitEnd = startOffset;
  let frames = 0;
  const commits: Array<{ end: number; commitSize: number }> = [];
  let pos = 0;
  let stop: ScanResult["stop"] = "end";
  for (;;) {
    if (pos + f > buf.length) {
      stop = pos === buf.length ? "end" : "partial";
      break;
    }
    if (dv.getUint32(pos + 8) !== salt1 || dv.getUint32(pos + 12) !== salt2) {
      stop = "salt";
      break;
    }
    const pgno = dv.getUint32(pos);
    if (pgno === 0) {
      stop = "pgno";
      break;
    }
    // Frame header bytes 0..7, then the page.
    next.set(sum);
    sumInto(reader, pos, pos + 8, next);
    sumInto(reader, pos + WAL_FRAME_HEADER_SIZE, pos + f, next);
    if (dv.getUint32(pos + 16) !== next[0]! >>> 0 || dv.getUint32(pos + 20) !== next[1]! >>> 0) {
      stop = "checksum";
      break;
    }
    sum.set(next);
    frames++;
    pos += f;
    const commitSize = dv.getUint32(pos - f + 4);
    if (commitSize !== 0) {
      lastCommitEnd = startOffset + pos;
      lastCommitChecksum = [sum[0]! >>> 0, sum[1]! >>> 0];
      commits.push({ end: lastCommitEnd, commitSize });
    }
  }
  const validEndChecksum: Checksum = [sum[0]! >>> 0, sum[1]! >>> 0];
  return {
    validEnd: startOffset + pos,
    lastCommitEnd,
    lastCommitChecksum,
    validEndChecksum,
    frames,
    commits,
    stop,
  };
}

/**
 * The running checksum at WAL offset `end`: the checksum stored in the frame that ends there (bytes
 * 16..23 of its header), or the WAL header's checksum when `end` is 32. `bufOffset` is the WAL offset
 * of buf[0] (0 when `buf` holds the WAL from its start). Used to seed `scanFrames` when resuming.
 */
export function checksumAt(buf: Uint8Array, end: number, pageSize: number, bufOffset = 0): Checksum {
  assertPageSize("read checksum", pageSize);
  if (end !== WAL_HEADER_SIZE && !isFrameBoundary(end, pageSize)) {
    throw walError(`read checksum: offset ${end} is not a frame boundary for page size ${pageSize}`, {
      end,
      pageSize,
    });
  }
  const at = end === WAL_HEADER_SIZE ? 24 : end - frameSize(pageSize) + 16;
  const rel = at - bufOffset;
  if (rel < 0 || rel + 8 > buf.length) {
    throw walError(
      `read checksum: bytes ${at}..${at + 8} are outside the buffer (WAL offsets ${bufOffset}..${bufOffset + buf.length})`,
      { end, bufOffset, length: buf.length },
    );
  }
  const dv = view(buf);
  return [dv.getUint32(rel), dv.getUint32(rel + 4)];
}

/**
 * Whether the WAL with header `next` can directly follow the one with header `prev`: one restart, no
 * WAL in between. SQLite restarts a WAL (walRestartHdr) by adding one to salt-1 and drawing a new
 * salt-2, and writes those salts into the next header. Two restarts add two, so a WAL in between,
 * written back into the database and then overwritten, shows in salt-1. (A connection that never
 * restarted a WAL draws fresh random salts when it writes the first frame of an empty one, as after a
 * TRUNCATE checkpoint; such a WAL cannot be proven to follow and is not taken as the successor. The
 * truncation lost the old frames anyway.) Salt-1 equal by chance after several restarts: 1 in 2^32.
 */
export function followsWal(prev: WalHeader, next: WalHeader): boolean {
  return next.pageSize === prev.pageSize && next.salt1 === (prev.salt1 + 1) >>> 0;
}

/**
 * Reads and verifies the header of the WAL file at `path`. Returns null if the file does not exist or
 * is shorter than 32 bytes (SQLite treats such a WAL as empty); throws CORRUPT on a bad header.
 */
export async function readWalFileHeader(path: string): Promise<WalHeader | null> {
  const info = await walFileInfo(path);
  return info?.header ?? null;
}

export interface WalFileInfo {
  /** Raw file size in bytes. */
  size: number;
  /** The verified header, or null if the file is shorter than 32 bytes. */
  header: WalHeader | null;
  /** Size rounded down to whole frames (0 without a header). */
  alignedSize: number;
}

/** Size and verified header of the WAL file at `path`; null if it does not exist. */
export async function walFileInfo(path: string): Promise<WalFileInfo | null> {
  let fh: Awaited<ReturnType<typeof open>>;
  try {
    fh = await open(path, "r");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw walError(`open wal file: ${path}: ${(err as Error).message}`, { path });
  }
  try {
    const { size } = await fh.stat();
    if (size < WAL_HEADER_SIZE) return { size, header: null, alignedSize: 0 };
    const buf = new Uint8Array(WAL_HEADER_SIZE);
    const { bytesRead } = await fh.read(buf, 0, WAL_HEADER_SIZE, 0);
    if (bytesRead < WAL_HEADER_SIZE) return { size, header: null, alignedSize: 0 };
    let header: WalHeader;
    try {
      header = parseWalHeader(buf);
    } catch (err) {
      throw new WalshipError(ErrorCodes.CORRUPT, `read wal header: ${path}: ${(err as Error).message}`, {
        cause: err,
        details: { path },
      });
    }
    return { size, header, alignedSize: alignWalSize(size, header.pageSize) };
  } finally {
    await fh.close();
  }
}
