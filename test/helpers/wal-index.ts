/**
 * A stand-in for SQLite's -shm file in tests: the wal-index header (src/replicator/sqlite/wal-index.ts)
 * written into a real file, both copies, in host byte order, as SQLite publishes a commit.
 */
import { writeSync } from "node:fs";

const LE = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/**
 * Writes a header with `mxFrame` and `salts` (8 bytes) at the start of `fd`. `torn`: the two copies
 * differ, as while a writer changes them; `init` false: SQLite has not initialised it.
 */
export function publishWalIndex(fd: number, mxFrame: number, salts: Buffer, torn = false, init = true): void {
  const h = Buffer.alloc(48);
  h[12] = init ? 1 : 0; // isInit
  if (LE) h.writeUInt32LE(mxFrame, 16);
  else h.writeUInt32BE(mxFrame, 16);
  salts.copy(h, 32);
  const both = Buffer.concat([h, h]);
  if (torn) both[16] = (both[16]! + 1) & 0xff;
  writeSync(fd, both, 0, both.length, 0);
}
