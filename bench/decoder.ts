/**
 * Worker thread of the bucket poller: downloads each WAL segment it is told about, decodes the LZ4
 * frame, verifies the WAL frames (salts and running checksum, per WAL index, across segments) and
 * finds the highest benchmark sequence number in the committed frames. Every row the writer
 * (bench/writer.ts) stores starts with `WSBENCHSEQ` and a 12-digit sequence number of the
 * transaction that wrote it; a page written by transaction s holds s and possibly older numbers,
 * never newer ones, so the highest number in a segment is its last transaction.
 */
import { parentPort, workerData } from "node:worker_threads";
import { parseSegmentName } from "../src/replicator/layout.ts";
import { lz4DecodeFrame } from "../src/replicator/lz4.ts";
import {
  type Checksum,
  parseWalHeader,
  scanFrames,
  WAL_HEADER_SIZE,
  type WalHeader,
} from "../src/replicator/sqlite/wal.ts";
import { openStore, type StoreSpec } from "./stores.ts";

export interface DecodeRequest {
  key: string;
  seenAt: number;
  size: number;
}

export interface DecodeResult {
  key: string;
  seenAt: number;
  compressedBytes: number;
  walBytes: number;
  frames: number;
  commits: number;
  maxSeq: number;
  verified: boolean;
  error?: string;
}

export const SEQ_MARKER = "WSBENCHSEQ";
export const SEQ_DIGITS = 12;
const MARKER = Buffer.from(SEQ_MARKER, "latin1");

/** Highest sequence number after a marker in buf[0, end). */
export function maxSeqIn(buf: Buffer, end: number): number {
  let max = 0;
  let i = buf.indexOf(MARKER, 0);
  while (i >= 0 && i + MARKER.length + SEQ_DIGITS <= end) {
    let n = 0;
    let ok = true;
    for (let k = 0; k < SEQ_DIGITS; k++) {
      const c = buf[i + MARKER.length + k]! - 48;
      if (c < 0 || c > 9) {
        ok = false;
        break;
      }
      n = n * 10 + c;
    }
    if (ok && n > max) max = n;
    i = buf.indexOf(MARKER, i + MARKER.length);
  }
  return max;
}

interface IndexState {
  header: WalHeader;
  /** WAL offset where the last decoded segment ended, and the running checksum there. */
  end: number;
  sum: Checksum;
}

function main(): void {
  const port = parentPort;
  // Only when started as the poller's decoder (the writer thread imports the constants above).
  if (!port || (workerData as { role?: string } | null)?.role !== "decoder") return;
  const { store } = workerData as { store: StoreSpec };
  const reader = openStore(store);
  const state = new Map<string, IndexState>();
  // Requests are handled strictly in arrival (list) order, so the checksum chain follows the WAL.
  let chain: Promise<void> = Promise.resolve();
  port.on("message", (req: DecodeRequest) => {
    chain = chain.then(() => decode(req).then((r) => port.postMessage(r)));
  });

  async function decode(req: DecodeRequest): Promise<DecodeResult> {
    const base: DecodeResult = {
      key: req.key,
      seenAt: req.seenAt,
      compressedBytes: req.size,
      walBytes: 0,
      frames: 0,
      commits: 0,
      maxSeq: 0,
      verified: false,
    };
    try {
      const body = await (await reader).get(req.key);
      const wal = lz4DecodeFrame(body);
      base.compressedBytes = body.length;
      base.walBytes = wal.length;
      const slash = req.key.lastIndexOf("/");
      const name = parseSegmentName(req.key.slice(slash + 1));
      if (!name) throw new Error(`not a segment name`);
      const indexKey = `${req.key.slice(0, slash)}/${name.index}`;
      let header: WalHeader | undefined;
      let seed: Checksum | undefined;
      let framesAt = 0;
      if (name.offset === 0) {
        header = parseWalHeader(wal.subarray(0, WAL_HEADER_SIZE));
        seed = [header.checksum1, header.checksum2];
        framesAt = WAL_HEADER_SIZE;
      } else {
        const st = state.get(indexKey);
        if (st && st.end === name.offset) {
          header = st.header;
          seed = st.sum;
        }
      }
      let scanEnd = wal.length;
      if (header && seed) {
        const scan = scanFrames(wal.subarray(framesAt), {
          pageSize: header.pageSize,
          bigEndian: header.bigEndianChecksums,
          salt1: header.salt1,
          salt2: header.salt2,
          seed,
          startOffset: name.offset === 0 ? WAL_HEADER_SIZE : name.offset,
        });
        base.frames = scan.frames;
        base.commits = scan.commits.length;
        base.verified = scan.stop === "end" && scan.lastCommitEnd === scan.validEnd;
        scanEnd = framesAt + (scan.lastCommitEnd - (name.offset === 0 ? WAL_HEADER_SIZE : name.offset));
        state.set(indexKey, { header, end: scan.lastCommitEnd, sum: scan.lastCommitChecksum });
      }
      base.maxSeq = maxSeqIn(wal, scanEnd);
    } catch (err) {
      base.error = (err as Error).message;
    }
    return base;
  }
}

main();
