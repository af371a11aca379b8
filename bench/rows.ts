/**
 * The benchmark's rows: each starts with `WSBENCHSEQ<12 digits>`, the sequence number of the
 * transaction that wrote it (the poller finds these numbers in the WAL segments, bench/decoder.ts),
 * then is "random-ish": half random bytes (sliced from a 16 MiB pool at random offsets, so LZ4 finds
 * nothing to match), half a repeated text pattern, so LZ4 compresses them about 2:1.
 */
import { randomFillSync } from "node:crypto";
import Database from "better-sqlite3";
import { SEQ_DIGITS, SEQ_MARKER } from "./decoder.ts";

const POOL = Buffer.alloc(16 << 20);
randomFillSync(POOL);
const PATTERN = Buffer.from(
  "walship-bench the quick brown fox jumps over the lazy dog 0123456789 ",
  "latin1",
);

export function makeRow(seq: number, bytes: number): Buffer {
  const row = Buffer.allocUnsafe(Math.max(bytes, SEQ_MARKER.length + SEQ_DIGITS));
  row.write(SEQ_MARKER + String(seq).padStart(SEQ_DIGITS, "0"), 0, "latin1");
  const head = SEQ_MARKER.length + SEQ_DIGITS;
  const rand = Math.floor((row.length - head) / 2);
  const off = Math.floor(Math.random() * (POOL.length - rand));
  POOL.copy(row, head, off, off + rand);
  for (let p = head + rand; p < row.length; p += PATTERN.length) {
    PATTERN.copy(row, p, 0, Math.min(PATTERN.length, row.length - p));
  }
  return row;
}

/** The highest sequence number in a database of these rows (table `t`, column `v`): its last transaction. */
export function lastSeqIn(file: string): number {
  const d = new Database(file, { readonly: true });
  try {
    const r = d.prepare("SELECT max(CAST(substr(v, 11, 12) AS TEXT)) AS s FROM t").get() as {
      s: string | null;
    };
    return r.s ? Number(r.s) : 0;
  } finally {
    d.close();
  }
}
