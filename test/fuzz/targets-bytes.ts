/**
 * Byte-level fuzz targets: the WAL parser (header, frame scan, checksum resume, WalApplier) and the
 * LZ4 decoder (frames, pushed in any chunking; single blocks). Each checks, besides "no crash but a
 * typed error", invariants that tie its answers together: a chunked run equals a one-shot run, a scan
 * resumed from `checksumAt` equals a scan in one go, an encoded frame decodes to its content.
 */
import fc from "fast-check";
import {
  compressBlock,
  compressBound,
  decompressBlock,
  Lz4FrameDecoder,
  lz4DecodeFrame,
  lz4EncodeFrame,
  newHashTable,
} from "../../src/replicator/lz4.ts";
import {
  alignWalSize,
  checksumAt,
  frameSize,
  parseFrameHeader,
  parseWalHeader,
  scanFrames,
  WAL_HEADER_SIZE,
} from "../../src/replicator/sqlite/wal.ts";
import { type PageSink, WalApplier } from "../../src/replicator/sqlite/wal-apply.ts";
import { WalshipError } from "../../src/shared/errors.ts";
import { chunkingArb, chunks, Invariant, mutatedBytes, type Target } from "./harness.ts";

/** A byte input and how to cut it into chunks where the code under test takes a stream. */
export interface BytesInput {
  bytes: Uint8Array;
  cuts: number[];
}

/** Corpus files hold raw bytes; a saved finding with its chunking is JSON: {"fuzz":1,"b64":..,"cuts":[..]}. */
function decodeBytes(file: Uint8Array): BytesInput {
  const head = Buffer.from(file.subarray(0, 9)).toString("latin1");
  if (head === '{"fuzz":1') {
    const j = JSON.parse(Buffer.from(file).toString("utf8")) as { b64: string; cuts: number[] };
    return { bytes: new Uint8Array(Buffer.from(j.b64, "base64")), cuts: j.cuts };
  }
  return { bytes: file, cuts: [0.5] };
}

function encodeBytes(input: BytesInput): Uint8Array {
  return Buffer.from(
    JSON.stringify({ fuzz: 1, b64: Buffer.from(input.bytes).toString("base64"), cuts: input.cuts }),
  );
}

function bytesTarget(
  name: string,
  what: string,
  run: (input: BytesInput) => void,
  maxRandom?: number,
): Target<BytesInput> {
  return {
    name,
    what,
    arbitrary: (corpus) =>
      fc.record({ bytes: mutatedBytes(corpus, maxRandom), cuts: chunkingArb }) as fc.Arbitrary<BytesInput>,
    decode: decodeBytes,
    encode: encodeBytes,
    run,
  };
}

/** The outcome of a call: its value, or the code of the WalshipError it threw (anything else escapes). */
function outcome<T>(fn: () => T): { ok: T } | { code: string } {
  try {
    return { ok: fn() };
  } catch (err) {
    if (err instanceof WalshipError) return { code: err.code };
    throw err;
  }
}

function check(cond: boolean, message: string): void {
  if (!cond) throw new Invariant(message);
}

// ---------------------------------------------------------------------------------------------------
// WAL

/** A whole WAL file: header, then the frame scan, its invariants, and a scan resumed half-way. */
export const walScan = bytesTarget(
  "wal-scan",
  "WAL header parse + frame scan + checksum resume",
  ({ bytes }) => {
    const h = parseWalHeader(bytes);
    const F = frameSize(h.pageSize);
    const body = bytes.subarray(WAL_HEADER_SIZE);
    const opts = {
      pageSize: h.pageSize,
      bigEndian: h.bigEndianChecksums,
      salt1: h.salt1,
      salt2: h.salt2,
      seed: [h.checksum1, h.checksum2] as [number, number],
      startOffset: WAL_HEADER_SIZE,
    };
    const r = scanFrames(body, opts);
    check(r.validEnd <= bytes.length, `validEnd ${r.validEnd} past the data ${bytes.length}`);
    check((r.validEnd - WAL_HEADER_SIZE) % F === 0, "validEnd is not a frame boundary");
    check(r.frames === (r.validEnd - WAL_HEADER_SIZE) / F, "frames does not match validEnd");
    check(r.lastCommitEnd <= r.validEnd, "lastCommitEnd past validEnd");
    check(alignWalSize(bytes.length, h.pageSize) >= r.validEnd, "alignWalSize below validEnd");
    const lastCommit = r.commits.at(-1);
    check((lastCommit?.end ?? WAL_HEADER_SIZE) === r.lastCommitEnd, "last commit is not lastCommitEnd");
    for (let i = 1; i < r.commits.length; i++)
      check(r.commits[i]!.end > r.commits[i - 1]!.end, "commits out of order");
    // The checksum stored where the last commit ends is the one the scan computed there.
    const at = checksumAt(bytes, r.lastCommitEnd, h.pageSize);
    check(
      at[0] === r.lastCommitChecksum[0] && at[1] === r.lastCommitChecksum[1],
      "checksumAt(lastCommitEnd) differs from the scan's",
    );
    for (let off = WAL_HEADER_SIZE; off < r.validEnd; off += F) {
      const fh = parseFrameHeader(bytes, off);
      check(fh.pgno !== 0 && fh.salt1 === h.salt1 && fh.salt2 === h.salt2, `frame at ${off} is not valid`);
    }
    // Resuming at a frame boundary inside the valid run gives the same answer as one scan.
    if (r.frames >= 2) {
      const mid = WAL_HEADER_SIZE + Math.floor(r.frames / 2) * F;
      const seed = checksumAt(bytes, mid, h.pageSize);
      const r2 = scanFrames(bytes.subarray(mid), { ...opts, seed, startOffset: mid });
      check(r2.validEnd === r.validEnd && r2.stop === r.stop, "a resumed scan ends elsewhere");
      if (r2.commits.length > 0)
        check(r2.lastCommitEnd === r.lastCommitEnd, "a resumed scan's last commit differs");
    }
  },
);

/** Pages a WalApplier writes, kept in memory (a sink for the fuzzer, not a file). */
class MemorySink implements PageSink {
  pages = new Map<number, string>();
  size = -1;
  add(pgno: number, pageSize: number, src: Uint8Array, offset: number): void {
    this.pages.set(pgno, Buffer.from(src.subarray(offset, offset + pageSize)).toString("base64"));
  }
  truncate(size: number): void {
    this.size = size;
  }
  flush(): void {}
  discard(): void {
    this.pages.clear();
  }
}

function applyWal(bytes: Uint8Array, parts: Uint8Array[], limit?: number) {
  const pageSize = bytes.length >= 12 ? new DataView(bytes.buffer, bytes.byteOffset).getUint32(8) : 4096;
  const sink = new MemorySink();
  const a = new WalApplier({
    pages: sink,
    dbSize: 8 * 4096,
    dbPageSize: pageSize,
    ...(limit ? { limit } : {}),
  });
  const res = outcome(() => {
    for (const p of parts) a.push(p);
    return a.finish();
  });
  return { res, sink };
}

/** Restore's WAL applier: pushed whole and in chunks, with and without a limit; both must agree. */
export const walApply = bytesTarget(
  "wal-apply",
  "WalApplier (restore's WAL verify + apply), chunked",
  (input) => {
    const { bytes, cuts } = input;
    const one = applyWal(bytes, [bytes]);
    const many = applyWal(bytes, chunks(bytes, cuts));
    check(JSON.stringify(one.res) === JSON.stringify(many.res), "chunked apply differs from one-shot apply");
    if ("ok" in one.res && "ok" in many.res) {
      check(one.res.ok.end === bytes.length, "end is not the WAL's length");
      check(
        JSON.stringify([...one.sink.pages]) === JSON.stringify([...many.sink.pages]) &&
          one.sink.size === many.sink.size,
        "chunked apply wrote other pages",
      );
    }
    if (cuts.length > 0) {
      // Up to a limit: never reads past it, and ends there (restore itself refuses a WAL shorter than
      // its cut, so the applier may stop at the end of the data).
      const limit = Math.max(1, Math.floor(cuts[0]! * bytes.length));
      const lim = applyWal(bytes, chunks(bytes, cuts.slice(1)), limit);
      if ("ok" in lim.res)
        check(lim.res.ok.end === Math.min(limit, bytes.length), "a limited apply does not end at the limit");
    }
  },
);

// ---------------------------------------------------------------------------------------------------
// LZ4

function decodeChunked(parts: Uint8Array[], borrow: boolean): string {
  const dec = new Lz4FrameDecoder({ borrowOutput: borrow });
  const out: Buffer[] = [];
  for (const p of parts) dec.push(p, (b) => out.push(Buffer.from(b)));
  dec.end();
  return Buffer.concat(out).toString("base64");
}

/** LZ4 frames: one-shot, chunked and borrowed-output decoding agree; what we encode decodes back. */
export const lz4Frame = bytesTarget(
  "lz4-frame",
  "LZ4 frame decoder (any chunking, borrowed output)",
  (input) => {
    const { bytes, cuts } = input;
    const one = outcome(() => Buffer.from(lz4DecodeFrame(bytes)).toString("base64"));
    const many = outcome(() => decodeChunked(chunks(bytes, cuts), false));
    const lent = outcome(() => decodeChunked(chunks(bytes, cuts), true));
    check(JSON.stringify(one) === JSON.stringify(many), "chunked decode differs from one-shot decode");
    check(JSON.stringify(one) === JSON.stringify(lent), "borrowed-output decode differs");
    // Our encoder on the same bytes: the frame decodes back to them.
    const back = lz4DecodeFrame(lz4EncodeFrame(bytes));
    check(Buffer.compare(back, bytes) === 0, "encode then decode is not the identity");
  },
);

/** One LZ4 block into a bounded output: never past the limit; compressBlock output decodes back. */
export const lz4Block = bytesTarget(
  "lz4-block",
  "LZ4 block decoder (bounded output) + block round trip",
  ({ bytes, cuts }) => {
    const limit = Math.floor((cuts[0] ?? 1) * 65536);
    const dst = new Uint8Array(limit);
    const r = outcome(() => decompressBlock(bytes, dst, 0, limit, 0));
    if ("ok" in r) check(r.ok >= 0 && r.ok <= limit, `output end ${r.ok} outside 0..${limit}`);
    const packed = new Uint8Array(compressBound(bytes.length));
    const n = compressBlock(bytes, packed, newHashTable());
    const back = new Uint8Array(bytes.length + 8);
    const end = decompressBlock(packed.subarray(0, n), back, 0, back.length, 0);
    check(
      end === bytes.length && Buffer.compare(back.subarray(0, end), bytes) === 0,
      "compress then decompress block is not the identity",
    );
  },
  4096,
);

export const BYTE_TARGETS = [walScan, walApply, lz4Frame, lz4Block] as const;
