/**
 * What a restore's page writes cost the kernel, by the size of the batch they are sorted in: a file
 * the size of the benchmark's restore (1 GiB of 4 KiB pages) is written front to back, as a snapshot
 * is, then a WAL's worth of random page numbers (as many frames as the file has pages, the bench's
 * "random rows" updates) is written through restore's own PageBatch and writePages, batch by batch.
 * The last row holds every page until the end, so each page is written once and in one ascending
 * pass: what a restore could do with unbounded memory. Only the writes are timed (the copies into a
 * batch are the main thread's, beside them).
 *
 *   make bench-page-writes [DIR=dir]    (default: the system's temporary directory; 2 GiB free)
 *
 * BENCH_PAGE_WRITES_REPEATS (default 3) passes; each row prints the median and the range.
 * See docs/benchmarks.md ("Restores: the kernel's page writes are the cost").
 */
import { randomFillSync } from "node:crypto";
import { closeSync, mkdtempSync, openSync, rmSync, writeSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { PageBatch, writePages } from "../src/replicator/sqlite/wal-apply.ts";
import { round } from "./measure.ts";
import { median } from "./table.ts";

const PAGE = 4096;
const PAGES = 262_144;
const MiB = 1 << 20;
const REPEATS = Number(process.env.BENCH_PAGE_WRITES_REPEATS ?? 3);
const BATCHES_MIB = [16, 32, 64, 128, 256];

const dir = mkdtempSync(path.join(process.argv[2] ?? os.tmpdir(), "walship-page-writes-"));
const file = path.join(dir, "restore.db");

/** The same page numbers for every batch size: xorshift32 from a fixed seed. */
function pageNumbers(): Uint32Array {
  const out = new Uint32Array(PAGES);
  let x = 2463534242;
  for (let i = 0; i < out.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = 1 + ((x >>> 0) % PAGES);
  }
  return out;
}

/** A fresh file of PAGES pages, written in 4 MiB blocks like a snapshot. */
function freshFile(): number {
  rmSync(file, { force: true });
  const fd = openSync(file, "w+");
  const block = randomFillSync(Buffer.alloc(4 * MiB));
  for (let at = 0; at < PAGES * PAGE; at += block.length) writeSync(fd, block, 0, block.length, at);
  return fd;
}

interface Pass {
  seconds: number;
  pages: number;
  writes: number;
}

function pass(frames: Uint32Array, batchBytes: number): Pass {
  const fd = freshFile();
  const batch = new PageBatch(batchBytes);
  const page = randomFillSync(new Uint8Array(PAGE));
  const out: Pass = { seconds: 0, pages: 0, writes: 0 };
  let arena: Uint8Array | undefined;
  const send = () => {
    const run = batch.take();
    if (!run) return;
    out.pages += run.pgnos.length;
    const t0 = performance.now();
    out.writes += writePages(fd, run);
    out.seconds += (performance.now() - t0) / 1000;
    arena = run.arena;
  };
  try {
    for (const pgno of frames) {
      if (!batch.hasArena) batch.setArena(arena ?? new Uint8Array(batch.slotsFor(PAGE) * PAGE), PAGE);
      if (!batch.tryAdd(pgno, PAGE, page, 0)) {
        send();
        batch.setArena(arena!, PAGE);
        batch.tryAdd(pgno, PAGE, page, 0);
      }
    }
    send();
  } finally {
    closeSync(fd);
  }
  return out;
}

const frames = pageNumbers();
console.log(
  `page writes: ${PAGES} random page writes into a ${(PAGES * PAGE) / MiB} MiB file in ${dir}, median of ${REPEATS} (range)`,
);
console.log("| batch | pages written | write calls | seconds | µs per call |");
console.log("|---|--:|--:|--:|--:|");
try {
  for (const mib of [...BATCHES_MIB, (PAGES * PAGE) / MiB]) {
    const passes: Pass[] = [];
    for (let r = 0; r < REPEATS; r++) passes.push(pass(frames, mib * MiB));
    const secs = passes.map((p) => p.seconds);
    const mid = median(secs) ?? Number.NaN;
    const first = passes[0]!;
    const label = mib * MiB >= PAGES * PAGE ? `all (${mib} MiB, each page once)` : `${mib} MiB`;
    console.log(
      `| ${label} | ${first.pages} | ${first.writes} | ${round(mid, 2)} (${round(Math.min(...secs), 2)}-${round(Math.max(...secs), 2)}) | ${round((mid / first.writes) * 1e6, 1)} |`,
    );
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
