/**
 * The database exactly at a position of the shadow WAL, page by page, for a snapshot.
 *
 * Why not the database file as it is: while a snapshot reads it, checkpoints (the application's, up
 * to our read mark) may be writing frames of the current WAL index back into it, so some pages can
 * be read from before a frame and others from after it. Such a file is a consistent database only
 * with that index's WAL applied over it; a snapshot whose WAL never landed (its replicator died
 * between the two, as the crash torture found) restored as a mix of transactions, or failed
 * integrity_check.
 *
 * What is read instead: a checkpoint writes back only pages that have frames in the current WAL
 * (whose frames, from its first one on, are the shadow index), and the file held every other page as
 * it was when that WAL began. So every page with a frame in the index up to the position is taken
 * from its latest such frame, every other page from the file, and the image has exactly the size the
 * last commit there records: the database as it was at that commit, whatever the checkpoints do
 * meanwhile. (A page past the file's end that no frame holds can only be SQLite's lock-byte page,
 * which is never written: it reads as zeros.)
 */
import { type FileHandle, open } from "node:fs/promises";
import { ErrorCodes, WalshipError } from "../shared/errors.ts";
import { LZ4_BLOCK_SIZE } from "./lz4/encoder.ts";
import { frameSize, parseWalHeader, WAL_FRAME_HEADER_SIZE, WAL_HEADER_SIZE } from "./sqlite/wal.ts";

/**
 * Bytes per chunk yielded: one LZ4 block, so the encoder compresses each chunk where it lies instead
 * of copying it into a block of its own.
 */
const CHUNK_BYTES = LZ4_BLOCK_SIZE;
/** Shadow bytes read per step while indexing its frames. */
const INDEX_CHUNK_BYTES = 4 << 20;

/** Where each page's latest frame is in a shadow WAL file up to `end`, and the size at that commit. */
export interface FrameIndex {
  pageSize: number;
  /** Database size in pages after the last commit before `end`; 0 when the index holds none. */
  pages: number;
  /** Page number -> offset of its page data in the shadow file. */
  latest: Map<number, number>;
}

/** Indexes the frames of a shadow WAL file up to `end` (a commit boundary, as shadow positions are). */
export async function indexFrames(shadow: FileHandle, end: number): Promise<FrameIndex> {
  const head = Buffer.alloc(WAL_HEADER_SIZE);
  await shadow.read(head, 0, WAL_HEADER_SIZE, 0);
  const pageSize = parseWalHeader(head).pageSize;
  const F = frameSize(pageSize);
  const latest = new Map<number, number>();
  let pages = 0;
  const buf = Buffer.alloc(Math.max(F, INDEX_CHUNK_BYTES - (INDEX_CHUNK_BYTES % F)));
  for (let at = WAL_HEADER_SIZE; at < end; ) {
    const n = Math.min(buf.length, end - at);
    const { bytesRead } = await shadow.read(buf, 0, n, at);
    if (bytesRead !== n || n % F !== 0) {
      throw new WalshipError(
        ErrorCodes.WAL,
        `snapshot: the shadow WAL ends at ${at + bytesRead}, before ${end}`,
      );
    }
    for (let p = 0; p < n; p += F) {
      latest.set(buf.readUInt32BE(p), at + p + WAL_FRAME_HEADER_SIZE);
      const commit = buf.readUInt32BE(p + 4);
      if (commit !== 0) pages = commit;
    }
    at += n;
  }
  return { pageSize, pages, latest };
}

/**
 * Yields the database at shadow position `end` of `shadowFile` (see above). With no commit in the
 * index up to `end`, nothing was written back from it and the database file is yielded as it is.
 * `db` is the caller's descriptor of the database file, left open: closing a descriptor of it would
 * drop the locks SQLite holds on it in this process.
 *
 * Every chunk is a view of one buffer, filled again at the next step: a consumer that keeps a chunk
 * past its step must copy it. (A fresh buffer per chunk was a gigabyte of allocations per gigabyte of
 * database, and with it a full garbage collection every few chunks: docs/benchmarks.md, "Snapshots
 * and uploads: the garbage was the cost".)
 */
export async function* snapshotImage(
  db: FileHandle,
  shadowFile: string,
  end: number,
): AsyncGenerator<Buffer> {
  const shadow = await open(shadowFile, "r");
  try {
    const idx = await indexFrames(shadow, end);
    const buf = Buffer.allocUnsafe(CHUNK_BYTES);
    if (idx.pages === 0) {
      for (let at = 0; ; ) {
        const { bytesRead } = await db.read(buf, 0, buf.length, at);
        if (bytesRead === 0) return;
        yield buf.subarray(0, bytesRead);
        at += bytesRead;
      }
    }
    const ps = idx.pageSize;
    const chunkPages = Math.max(1, Math.floor(CHUNK_BYTES / ps));
    for (let first = 1; first <= idx.pages; first += chunkPages) {
      const count = Math.min(chunkPages, idx.pages - first + 1);
      const out = buf.subarray(0, count * ps);
      // The file's pages first (zeros past its end), then the frames' over them.
      let got = 0;
      while (got < out.length) {
        const { bytesRead } = await db.read(out, got, out.length - got, (first - 1) * ps + got);
        if (bytesRead === 0) break;
        got += bytesRead;
      }
      out.fill(0, got);
      for (let i = 0; i < count; i++) {
        const at = idx.latest.get(first + i);
        if (at === undefined) continue;
        const { bytesRead } = await shadow.read(out, i * ps, ps, at);
        if (bytesRead !== ps) {
          throw new WalshipError(
            ErrorCodes.WAL,
            `snapshot: short read of page ${first + i} from the shadow WAL`,
          );
        }
      }
      yield out;
    }
  } finally {
    await shadow.close();
  }
}
