/**
 * Whether the shadow WAL still continues the real one: the checks the Db makes before it copies
 * (verifyShadow), after a restart of the WAL (tailInDatabase), and after a copy nothing pinned
 * (appendedIntact).
 */

import fs from "node:fs";
import { open } from "node:fs/promises";
import { shadow } from "../layout.ts";
import {
  alignWalSize,
  followsWal,
  frameSize,
  parseWalHeader,
  scanFrames,
  WAL_HEADER_SIZE,
  type WalHeader,
} from "../sqlite/wal.ts";
import { MAX_INDEX } from "../types.ts";
import { type HeldFiles, readRange } from "./files.ts";
import { COPY_CHUNK_BYTES, type ShadowState } from "./state.ts";

/** Decides whether the shadow WAL still continues the real one; returns a reason when it does not. */
export async function verifyShadow(
  s: ShadowState | undefined,
  pageSize: number,
  metaPath: string,
  walPath: string,
  realHeader: Uint8Array,
  realSize: number,
): Promise<{ reason?: string; restart?: boolean }> {
  if (!s) return { reason: "no generation exists" };
  if (s.index >= MAX_INDEX) return { reason: "max index exceeded" };
  if (!fs.existsSync(shadow.walFile(metaPath, s.generation, s.index))) return { reason: "no shadow wal" };
  if (s.size < WAL_HEADER_SIZE) return { reason: "short shadow wal" };
  const F = frameSize(pageSize);
  const sameHeader = Buffer.compare(Buffer.from(realHeader), Buffer.from(s.header)) === 0;
  if (sameHeader && alignWalSize(realSize, pageSize) < s.size) {
    return { reason: "wal truncated by another process" };
  }
  if (s.size === WAL_HEADER_SIZE) {
    return sameHeader ? {} : { reason: "wal header only, mismatched" };
  }
  // The last frame we copied must still be in the real WAL, byte for byte.
  const real = await readRange(walPath, s.size - F, F);
  const mine = await readRange(shadow.walFile(metaPath, s.generation, s.index), s.size - F, F);
  if (real.length !== F || Buffer.compare(real, mine) !== 0) {
    return { reason: "wal overwritten by another process" };
  }
  if (sameHeader) return {};
  // Our last frame survived, but only the WAL that directly follows ours starts where we left off:
  // with a WAL in between (written back, then overwritten) its frames are lost to the shadow.
  if (!followsWal(parseWalHeader(s.header), parseWalHeader(realHeader))) {
    return { reason: "wal restarted more than once by another process" };
  }
  return { restart: true };
}

/**
 * After the WAL restarted: whether the old WAL's frames past ours were committed. The wal-index now
 * describes the new WAL and cannot say, but SQLite restarts a WAL only once it is written back in
 * full, so its committed frames are in the database file, while a transaction a writer wrote and
 * never published (sqlite/wal-index.ts) is not. So the latest version of every page in those frames
 * must be the database file's page. A page the new WAL also holds may have been written back from
 * it since, and proves nothing either way: it is skipped. (So a never-published transaction is
 * recognized by any page it changed that the new WAL did not; one whose pages the new WAL all
 * rewrote and wrote back would pass. That takes a writer killed between its commit frame and the
 * wal-index, our copy reaching exactly its start, and the WAL restarted before anyone wrote after it.)
 */
export async function tailInDatabase(
  s: ShadowState,
  walPath: string,
  files: HeldFiles,
  copyBuffer: (size: number) => Buffer,
  realHeader: Uint8Array,
): Promise<boolean> {
  const hdr = parseWalHeader(s.header);
  const ps = hdr.pageSize;
  const F = frameSize(ps);
  const real = await open(walPath, "r");
  const dbf = await files.db();
  try {
    const buf = copyBuffer(Math.max(1, Math.floor(COPY_CHUNK_BYTES / F)) * F);
    // Pages of the new WAL (any valid frame of it, committed or not).
    const cur = parseWalHeader(realHeader);
    const inNew = new Set<number>();
    let seed: [number, number] = [cur.checksum1, cur.checksum2];
    for (let offset = WAL_HEADER_SIZE; ; ) {
      const { bytesRead } = await real.read(buf, 0, buf.length, offset);
      const whole = bytesRead - (bytesRead % F);
      if (whole === 0) break;
      const scan = scanFrames(buf.subarray(0, whole), chainFrom(cur, seed, offset));
      for (let p = 0; offset + p < scan.validEnd; p += F) inNew.add(buf.readUInt32BE(p));
      if (scan.validEnd < offset + whole) break;
      offset += whole;
      seed = [buf.readUInt32BE(whole - F + 16), buf.readUInt32BE(whole - F + 20)];
    }
    // Where each page's latest frame is, per chunk, up to the last commit found so far.
    const latest = new Map<number, number>();
    const pending = new Map<number, number>();
    let pages = 0;
    let offset = s.size;
    seed = s.checksum;
    for (;;) {
      const { bytesRead } = await real.read(buf, 0, buf.length, offset);
      const whole = bytesRead - (bytesRead % F);
      if (whole === 0) break;
      const scan = scanFrames(buf.subarray(0, whole), chainFrom(hdr, seed, offset));
      for (let p = 0; offset + p < scan.validEnd; p += F) {
        pending.set(buf.readUInt32BE(p), offset + p + 24);
        if (offset + p + F <= scan.lastCommitEnd && buf.readUInt32BE(p + 4) !== 0) {
          for (const [pg, at] of pending) latest.set(pg, at);
          pending.clear();
          pages = buf.readUInt32BE(p + 4);
        }
      }
      if (scan.validEnd < offset + whole) break;
      offset += whole;
      seed = [buf.readUInt32BE(whole - F + 16), buf.readUInt32BE(whole - F + 20)];
    }
    const a = Buffer.alloc(ps);
    const b = Buffer.alloc(ps);
    for (const [pgno, at] of latest) {
      if (pgno > pages || inNew.has(pgno)) continue; // cut off by the last commit; or inconclusive
      await real.read(a, 0, ps, at);
      const { bytesRead } = await dbf.read(b, 0, ps, (pgno - 1) * ps);
      if (bytesRead !== ps || !a.equals(b)) return false;
    }
    return true;
  } finally {
    await real.close();
  }
}

/** Whether the shadow's bytes from the committed size to `end` are frames that chain to `checksum` there. */
export async function appendedIntact(
  s: ShadowState,
  file: string,
  end: number,
  checksum: [number, number],
  buf: Buffer,
): Promise<boolean> {
  const hdr = parseWalHeader(s.header);
  const F = frameSize(hdr.pageSize);
  const fh = await open(file, "r");
  try {
    let offset = s.size;
    let seed = s.checksum;
    let last = { end: s.size, checksum: s.checksum };
    while (offset < end) {
      const n = Math.min(buf.length - (buf.length % F), end - offset);
      const { bytesRead } = await fh.read(buf, 0, n, offset);
      if (bytesRead !== n) return false;
      const scan = scanFrames(buf.subarray(0, n), chainFrom(hdr, seed, offset));
      if (scan.validEnd < offset + n) return false;
      if (scan.lastCommitEnd > last.end)
        last = { end: scan.lastCommitEnd, checksum: scan.lastCommitChecksum };
      offset += n;
      seed = [buf.readUInt32BE(n - F + 16), buf.readUInt32BE(n - F + 20)];
    }
    return last.end === end && last.checksum[0] === checksum[0] && last.checksum[1] === checksum[1];
  } finally {
    await fh.close();
  }
}

/** scanFrames options for frames of the WAL with header `hdr`, chaining from `seed` at `offset`. */
export function chainFrom(hdr: WalHeader, seed: [number, number], offset: number) {
  return {
    pageSize: hdr.pageSize,
    bigEndian: hdr.bigEndianChecksums,
    salt1: hdr.salt1,
    salt2: hdr.salt2,
    seed,
    startOffset: offset,
  };
}
