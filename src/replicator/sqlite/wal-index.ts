/**
 * SQLite's wal-index header (the first 96 bytes of the `-shm` file): how many frames of the WAL are
 * committed. The WAL file alone cannot say: a writer killed after writing its commit frame, and
 * before publishing it here, leaves a complete, checksum-valid transaction in the file that SQLite
 * does not count as committed while any connection keeps the wal-index alive. The next writer then
 * writes over it from the first frame past `mxFrame`. (Only when no connection survives does the next
 * one rebuild the wal-index from the file, and the transaction counts then.) The crash torture found
 * such a transaction copied, and a restore with it that the database never held.
 *
 * Layout (wal.c, WalIndexHdr, 48 bytes, host byte order, written twice: the second copy first):
 *   0 iVersion, 4 unused, 8 iChange, 12 isInit (u8), 13 bigEndCksum (u8), 14 szPage (u16),
 *   16 mxFrame, 20 nPage, 24 aFrameCksum[2], 32 aSalt[2] (the WAL header's salt bytes as they are),
 *   40 aCksum[2]. Both copies equal means a header no writer was changing while it was read.
 */
import type { FileHandle } from "node:fs/promises";

const HDR = 48;
const LE = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

export interface WalIndexHeader {
  /** Committed frames in the WAL. */
  mxFrame: number;
  /** The WAL's salts, as the 8 bytes of its header at offset 16. */
  salts: Buffer;
}

/**
 * Whether `buf` starts with a whole wal-index header: both copies equal and initialised. Reads the
 * bytes where they lie (it runs on every change of a busy WAL, so it allocates nothing).
 */
export function walIndexHeaderReady(buf: Uint8Array): boolean {
  if (buf.length < 2 * HDR) return false;
  for (let i = 0; i < HDR; i++) if (buf[i] !== buf[HDR + i]) return false;
  return buf[12] === 1;
}

/** mxFrame of a header `walIndexHeaderReady` accepted. */
export function walIndexMxFrame(buf: Uint8Array): number {
  const b0 = buf[16] as number;
  const b1 = buf[17] as number;
  const b2 = buf[18] as number;
  const b3 = buf[19] as number;
  return (LE ? b0 | (b1 << 8) | (b2 << 16) | (b3 << 24) : (b0 << 24) | (b1 << 16) | (b2 << 8) | b3) >>> 0;
}

/** Parses the wal-index header from the first 96 bytes of a -shm file; undefined unless both copies agree. */
export function parseWalIndexHeader(buf: Uint8Array): WalIndexHeader | undefined {
  if (!walIndexHeaderReady(buf)) return undefined;
  return { mxFrame: walIndexMxFrame(buf), salts: Buffer.from(buf.subarray(32, 40)) };
}

/**
 * Reads the wal-index header through `shm` (a few tries while a writer changes it); undefined if
 * unreadable. The caller keeps the descriptor open: closing one drops the process's locks on -shm.
 */
export async function readWalIndexHeader(shm: FileHandle): Promise<WalIndexHeader | undefined> {
  const buf = Buffer.alloc(2 * HDR);
  for (let i = 0; i < 20; i++) {
    const { bytesRead } = await shm.read(buf, 0, buf.length, 0);
    const h = parseWalIndexHeader(buf.subarray(0, bytesRead));
    if (h) return h;
  }
  return undefined;
}
