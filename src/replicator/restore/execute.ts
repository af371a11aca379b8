/**
 * Runs a restore plan: the snapshot decoded into a temporary file, each WAL index applied as a
 * checkpoint of it would, the file verified, made durable and renamed into place (see restore.ts).
 */

import { closeSync, fdatasync, fsyncSync, openSync } from "node:fs";
import { mkdir, readdir, rename, rm } from "node:fs/promises";
import path from "node:path";
import { describeError, ErrorCodes, WalshipError } from "../../shared/errors.ts";
import { hex8 } from "../../shared/format.ts";
import { nullLogger } from "../../shared/log.ts";
import { exists } from "../fs.ts";
import { keys } from "../layout.ts";
import { Lz4FrameDecoder } from "../lz4.ts";
import { openDirect } from "../sqlite/direct-write.ts";
import { FileWriter, offThreadPages } from "../sqlite/file-writer.ts";
import { dbHeaderPageSize, PAGE_WRITER_BYTES, WalApplier } from "../sqlite/wal-apply.ts";
import type { WalSegmentInfo } from "../types.ts";
import { PREFETCH_BYTES, SegmentFetcher } from "./fetcher.ts";
import {
  DEFAULT_RESTORE_PARALLELISM,
  type RestoreOptions,
  type RestorePlan,
  type RestoreProgress,
  type RestoreResult,
} from "./types.ts";
import { integrityCheck, verifyQuery } from "./verify.ts";

export async function executeRestore(plan: RestorePlan, opts: RestoreOptions): Promise<RestoreResult> {
  const out = path.resolve(opts.outputPath);
  const log = (opts.log ?? nullLogger()).child({ output: out });
  const tmp = `${out}.tmp`;
  const parallelism = Math.max(1, opts.parallelism ?? DEFAULT_RESTORE_PARALLELISM);
  const progress: RestoreProgress = {
    bytes: 0,
    segmentsDone: 0,
    segmentsTotal: plan.segments.length,
    phase: "snapshot",
  };
  const report = () => opts.onProgress?.({ ...progress });
  await mkdir(path.dirname(out), { recursive: true });
  await removeTemporaries(out);
  // Ends the downloads still running when the restore stops early.
  const stop = new AbortController();
  const signal = opts.signal ? AbortSignal.any([opts.signal, stop.signal]) : stop.signal;
  let backupPath: string | undefined;
  let fd: number | undefined;
  let directFd: number | undefined;
  let writer: FileWriter | undefined;
  let writeback: Writeback | undefined;
  try {
    fd = openSync(tmp, "w+", 0o600);
    // The file is written on a worker thread, in order, while this thread downloads and verifies; a
    // small restore writes on this thread (the thread's start would cost more than it overlaps).
    const stored = plan.snapshot.size + plan.segments.reduce((n, s) => n + s.size, 0);
    const small = stored <= INLINE_WRITE_BYTES;
    // The snapshot's blocks go to the disk with direct I/O where the file system allows it: a fresh
    // page-cache page per page written is most of a buffered restore's cost (sqlite/direct-write.ts).
    if (!small) directFd = openDirect(tmp);
    writer = new FileWriter(fd, tmp, { inline: small, directFd });
    const w = writer;
    if (!small) writeback = new Writeback(fd);
    // WAL segments download ahead (in order, within a byte budget) while the snapshot streams in.
    const fetcher = new SegmentFetcher(plan, parallelism, PREFETCH_BYTES, signal);
    fetcher.fill(0);

    // 1. The snapshot, decoded straight into the file.
    let dbSize = 0;
    const head = new Uint8Array(100);
    const snapName = `${plan.client.location}/${keys.snapshot(plan.generation, plan.snapshot.index)}`;
    try {
      const body = await plan.client.snapshotReader(plan.generation, plan.snapshot.index, { signal });
      const dec = new Lz4FrameDecoder({ borrowOutput: true });
      const write = (b: Uint8Array) => {
        if (dbSize < head.length) head.set(b.subarray(0, head.length - dbSize), dbSize);
        const copy = w.buffer(b.length);
        copy.set(b);
        w.write(copy, dbSize).catch(() => undefined);
        dbSize += b.length;
      };
      for await (const chunk of body) {
        progress.bytes += (chunk as Buffer).length;
        report();
        dec.push(chunk as Buffer, write);
        if (w.pending > WRITES_IN_FLIGHT) await w.drain(WRITES_IN_FLIGHT);
      }
      dec.end();
    } catch (err) {
      throw wrapCorrupt(err, `restore: snapshot ${snapName}`, { object: snapName });
    }
    writeback?.start();
    log.info({ generation: plan.generation, index: plan.snapshot.index }, "snapshot restored");

    // 2. WAL indexes, in order: each segment is decoded, every frame verified and its page written
    //    into the file, as a checkpoint of that index would (see sqlite/wal-apply.ts).
    progress.phase = "apply";
    let dbPageSize = 0;
    if (dbSize > 0 && plan.segments.length > 0) {
      try {
        dbPageSize = dbHeaderPageSize(head.subarray(0, Math.min(dbSize, head.length)));
      } catch (err) {
        throw wrapCorrupt(err, `restore: snapshot ${snapName}`, { object: snapName });
      }
    }
    // A small restore batches pages in a small arena: a 32 MiB one costs more to allocate (and to
    // collect) than the whole restore.
    const pages = offThreadPages(w, small ? SMALL_PAGE_BATCH_BYTES : PAGE_WRITER_BYTES);
    // One decoder for every segment: its buffers (a block and its window) are allocated once.
    const dec = new Lz4FrameDecoder({ borrowOutput: true });
    let restoredIndex = plan.snapshot.index;
    let restoredEnd = 0;
    /** How far the snapshot's own index was applied. */
    let snapshotIndexEnd = 0;
    let indexes = 0;
    for (let i = 0; i < plan.segments.length; ) {
      const index = plan.segments[i]!.index;
      const what = `${plan.generation}/${hex8(index)}`;
      const cut = plan.cut && plan.cut.index === index ? plan.cut.offset : undefined;
      const applier = new WalApplier({
        pages,
        dbSize,
        dbPageSize,
        ...(cut !== undefined ? { limit: cut } : {}),
      });
      for (; i < plan.segments.length && plan.segments[i]!.index === index; i++) {
        const seg = plan.segments[i]!;
        const name = segName(plan, seg);
        if (seg.offset !== applier.received) {
          throw new WalshipError(
            ErrorCodes.CORRUPT,
            `restore: WAL segment ${name} starts at offset ${seg.offset} but the previous segments end at ${applier.received}`,
            { details: { object: name } },
          );
        }
        try {
          dec.reset();
          const push = (b: Uint8Array) => applier.push(b);
          for await (const chunk of await fetcher.take(i)) {
            progress.bytes += chunk.length;
            dec.push(chunk, push);
            if (w.pending > PAGE_BATCHES_IN_FLIGHT) await w.drain(PAGE_BATCHES_IN_FLIGHT);
          }
          dec.end();
        } catch (err) {
          throw wrapCorrupt(err, `restore: WAL index ${what}, segment ${name}`, { object: name });
        }
        fetcher.fill(i + 1);
        progress.segmentsDone++;
        report();
      }
      if (cut !== undefined && cut > applier.received) {
        throw new WalshipError(
          ErrorCodes.CORRUPT,
          `restore: WAL index ${what} is shorter than its commit-time index says`,
        );
      }
      let applied: ReturnType<WalApplier["finish"]>;
      try {
        applied = applier.finish();
      } catch (err) {
        throw wrapCorrupt(err, `restore: WAL index ${what}`, { index: what });
      }
      dbSize = applied.dbSize;
      restoredIndex = index;
      restoredEnd = applied.end;
      if (index === plan.snapshot.index) snapshotIndexEnd = applied.end;
      indexes++;
      writeback?.start();
    }
    // The last batch of pages (batches run on across WAL indexes).
    pages.flush();
    await w.drain();
    if (plan.snapshotOffset !== undefined && snapshotIndexEnd < plan.snapshotOffset) {
      throw new WalshipError(
        ErrorCodes.RESTORE,
        `restore: snapshot ${snapName} was taken at offset ${plan.snapshotOffset} of its WAL index, and the WAL of that index here ends at ${snapshotIndexEnd}: the snapshot is not a consistent state without it (its replicator stopped between the two, or the target is before the snapshot)`,
        { details: { object: snapName, offset: plan.snapshotOffset, walEnd: snapshotIndexEnd } },
      );
    }
    // directBytes: how much of the snapshot went to the disk with direct I/O (0 where not possible).
    log.info({ indexes, segments: plan.segments.length, directBytes: w.directBytes }, "wal applied");

    // 3. Verify before the file may take the database's name. The file was written with plain
    //    writes; it is made durable (on the writer thread, while SQLite checks it) before the rename.
    progress.phase = "verify";
    report();
    await writeback?.settle();
    const synced = w.sync();
    // The check runs on this thread and reports nothing until it ends; with indexes it is the
    // longest step (about 11 s of CPU for 427 MiB with three, docs/benchmarks.md), so it is logged.
    const checkStart = performance.now();
    log.info({ bytes: dbSize }, "integrity check started");
    integrityCheck(tmp, restoredFrom(plan, restoredIndex));
    log.info({ elapsedMs: Math.round(performance.now() - checkStart) }, "integrity check passed");
    if (opts.verifySql) verifyQuery(tmp, opts.verifySql);
    await synced;
    await w.close();
    if (directFd !== undefined) closeSync(directFd);
    directFd = undefined;
    closeSync(fd);
    fd = undefined;
    if (await exists(out)) {
      backupPath = `${out}.pre-restore-${new Date().toISOString().replace(/[:.]/g, "")}`;
      await rename(out, backupPath);
      for (const side of ["-wal", "-shm"]) {
        if (await exists(out + side)) await rename(out + side, backupPath + side);
      }
    }
    await rename(tmp, out);
    syncDir(path.dirname(out));
    return {
      outputPath: out,
      replica: plan.replica,
      generation: plan.generation,
      snapshotIndex: plan.snapshot.index,
      index: restoredIndex,
      offset: restoredEnd,
      timeRule: plan.timeRule,
      ...(plan.lastCommitTime ? { lastCommitTime: plan.lastCommitTime } : {}),
      bytes: progress.bytes,
      segments: plan.segments.length,
      ...(backupPath ? { backupPath } : {}),
    };
  } catch (err) {
    if (err instanceof WalshipError) throw err;
    throw new WalshipError(ErrorCodes.RESTORE, `restore ${out}: ${describeError(err)}`, { cause: err });
  } finally {
    stop.abort();
    // The writer thread finishes what it was asked before the descriptor is closed.
    await writer?.close();
    // Nor is the descriptor closed under a writeback still running on the thread pool.
    await writeback?.settle().catch(() => undefined);
    if (directFd !== undefined) closeSync(directFd);
    if (fd !== undefined) closeSync(fd);
    await removeTemporaries(out);
  }
}

/** Snapshot blocks (up to 4 MiB each) and page batches (32 MiB each) queued for the writer thread. */
const WRITES_IN_FLIGHT = 8;
/**
 * Up to this many stored (compressed) bytes, a restore writes the file on its own thread: tens of MiB
 * of writes at most, against the tens of milliseconds a writer thread takes to start.
 */
export const INLINE_WRITE_BYTES = 4 * 1024 * 1024;
/** The page batch of a small restore (it writes a few MiB at most per batch). */
const SMALL_PAGE_BATCH_BYTES = 1024 * 1024;
const PAGE_BATCHES_IN_FLIGHT = 2;

/** Adds `prefix` to an error's message; a WalshipError keeps its code, anything else becomes CORRUPT. */
function wrapCorrupt(err: unknown, prefix: string, details: Record<string, unknown>): WalshipError {
  if (err instanceof WalshipError && err.code !== ErrorCodes.CORRUPT) return err;
  const code = err instanceof WalshipError ? err.code : ErrorCodes.CORRUPT;
  return new WalshipError(code, `${prefix}: ${describeError(err)}`, {
    cause: err,
    details: { ...(err instanceof WalshipError ? err.details : {}), ...details },
  });
}

/**
 * Gets the file's written pages on their way to the disk while the restore goes on: an fdatasync on
 * the thread pool, one at a time, started after the snapshot and after each WAL index. Without it
 * the kernel writes nothing back until the final fsync (a restore dirties less than its background
 * threshold), which then writes the whole file while the restore waits.
 */
export class Writeback {
  readonly #fd: number;
  #running: Promise<void> | undefined;
  #error: unknown;

  constructor(fd: number) {
    this.#fd = fd;
  }

  /** Starts an fdatasync unless one is running. */
  start(): void {
    if (this.#running) return;
    this.#running = new Promise<void>((resolve) =>
      fdatasync(this.#fd, (err) => {
        if (err) this.#error ??= err;
        this.#running = undefined;
        resolve();
      }),
    );
  }

  /** Waits for the one running; throws the first error any of them met. */
  async settle(): Promise<void> {
    await this.#running;
    if (this.#error) throw this.#error;
  }
}

/** Makes a rename in `dir` durable. */
function syncDir(dir: string): void {
  const d = openSync(dir, "r");
  try {
    fsyncSync(d);
  } finally {
    closeSync(d);
  }
}

function segName(p: RestorePlan, seg: WalSegmentInfo): string {
  return `${p.client.location}/${keys.segment(p.generation, seg.index, seg.offset)}`;
}

/** The objects a restore was built from, for an error that cannot point at one of them. */
function restoredFrom(plan: RestorePlan, lastIndex: number): string {
  const first = plan.snapshot.index;
  const wal = plan.segments.length === 0 ? "no WAL" : `WAL indexes ${hex8(first)}..${hex8(lastIndex)}`;
  return `${plan.client.location}/generations/${plan.generation} (snapshot ${hex8(first)}, ${wal})`;
}

/** Removes `<out>.tmp`, `<out>.tmp-wal`, `<out>.tmp-shm` and `<out>.tmp-<index>-wal`. */
export async function removeTemporaries(out: string): Promise<void> {
  const dir = path.dirname(out);
  const base = `${path.basename(out)}.tmp`;
  const names = await readdir(dir).catch(() => [] as string[]);
  await Promise.all(
    names
      .filter((n) => n === base || n.startsWith(`${base}-`))
      .map((n) => rm(path.join(dir, n), { force: true })),
  );
}
