/**
 * Restore: plan which destination, generation, snapshot and WAL segments to use, then download,
 * verify and apply them to a temporary file that is renamed into place only after
 * `PRAGMA integrity_check` passes and the file is fsynced.
 *
 * How: WAL segments download ahead (in order, within a byte budget) while the snapshot streams in;
 * each WAL index is applied as a complete SQLite checkpoint of it would, byte for byte, without
 * opening the database: every frame is verified, then its page written (sqlite/wal-apply.ts). All
 * writes to the file run in order on a worker thread (sqlite/file-writer.ts), beside the downloads.
 *
 * Where Walship goes past Litestream v0.3.13: listings are sorted, WAL indexes below the snapshot are
 * ignored, segments must be contiguous (each offset = previous offset + its decompressed length), every
 * frame's checksum is verified before SQLite sees it, no temporary or -wal/-shm file is left behind,
 * and with Walship's commit-time index a timestamp restores exactly the transactions seen committed at
 * or before it.
 */
import { closeSync, fsyncSync, openSync } from "node:fs";
import { mkdir, readdir, rename, rm, stat } from "node:fs/promises";
import path from "node:path";
import Database from "better-sqlite3";
import { describeError, ErrorCodes, WalshipError } from "../shared/errors.ts";
import { hex8 } from "../shared/format.ts";
import { type Logger, nullLogger } from "../shared/log.ts";
import { type CommitTimesDoc, readCommitTimes, readSnapshotMeta, type SnapshotMetaDoc } from "./extras.ts";
import { keys } from "./layout.ts";
import { Lz4FrameDecoder } from "./lz4.ts";
import { FileWriter, offThreadPages } from "./sqlite/file-writer.ts";
import { WAL_HEADER_SIZE } from "./sqlite/wal.ts";
import { dbHeaderPageSize, WalApplier } from "./sqlite/wal-apply.ts";
import type { ReplicaClient } from "./storage/client.ts";
import { type SnapshotInfo, timeSpan, type WalSegmentInfo } from "./types.ts";

export const DEFAULT_RESTORE_PARALLELISM = 8;

export interface NamedClient {
  name: string;
  client: ReplicaClient;
}

export interface RestoreTarget {
  /** Only this destination (by name). */
  replica?: string;
  /** Only this generation. */
  generation?: string;
  /** Restore up to and including this WAL index. */
  index?: number;
  /** With `index`: stop at this byte offset of that index (a commit boundary), for an exact position. */
  offset?: number;
  /** Restore the transactions committed at or before this time. */
  timestamp?: Date;
}

/** How the timestamp was applied: Walship's commit times, or v0.3.13's object times (Litestream replicas). */
export type TimeRule = "none" | "commit-times" | "object-times";

export interface RestorePlan {
  replica: string;
  client: ReplicaClient;
  generation: string;
  snapshot: SnapshotInfo;
  /** Segments to apply, in order, from the snapshot's index on. */
  segments: WalSegmentInfo[];
  /** The last applied index is cut at this WAL offset (a commit boundary), when a timestamp falls inside it. */
  cut?: { index: number; offset: number };
  timeRule: TimeRule;
  /** Commit time of the last transaction restored, when known. */
  lastCommitTime?: Date;
  /**
   * Where in its index the snapshot was taken, for a snapshot of an earlier Walship build: its file
   * is a consistent state only with that index's WAL applied at least that far.
   */
  snapshotOffset?: number;
}

export interface RestoreProgress {
  bytes: number;
  segmentsDone: number;
  segmentsTotal: number;
  phase: "snapshot" | "wal" | "apply" | "verify";
}

export interface RestoreOptions extends RestoreTarget {
  outputPath: string;
  parallelism?: number;
  /** Move an existing database aside (to `<out>.pre-restore-<time>`) instead of refusing. */
  overwrite?: boolean;
  /** A query that must succeed and return at least one row on the restored file before it is renamed. */
  verifySql?: string;
  log?: Logger;
  onProgress?: (p: RestoreProgress) => void;
  signal?: AbortSignal;
}

export interface RestoreResult {
  outputPath: string;
  replica: string;
  generation: string;
  snapshotIndex: number;
  /** Position restored to: the last index applied and the byte offset reached in it. */
  index: number;
  offset: number;
  timeRule: TimeRule;
  lastCommitTime?: Date;
  bytes: number;
  segments: number;
  backupPath?: string;
}

/** Chooses what to restore. Returns undefined when the destinations hold nothing that matches. */
export async function planRestore(
  clients: NamedClient[],
  target: RestoreTarget,
  signal?: AbortSignal,
): Promise<RestorePlan | undefined> {
  if (target.index !== undefined && target.timestamp !== undefined) {
    throw new WalshipError(ErrorCodes.USAGE, "restore: -index and -timestamp cannot be combined");
  }
  const T = target.timestamp?.getTime();
  interface Candidate {
    named: NamedClient;
    generation: string;
    snapshots: SnapshotInfo[];
    segments: WalSegmentInfo[];
    createdAt: number;
    updatedAt: number;
  }
  let best: Candidate | undefined;
  let oldest: number | undefined;
  const live: Candidate[] = [];
  const all: Candidate[] = [];
  const withoutSnapshot: string[] = [];
  /** Generations whose only snapshots are missing their WAL. */
  const unusable: string[] = [];
  for (const named of clients) {
    if (target.replica && named.name !== target.replica) continue;
    const gens = await named.client.generations({ signal });
    for (const generation of gens) {
      if (target.generation && generation !== target.generation) continue;
      const [snapshots, segments] = await Promise.all([
        named.client.snapshots(generation, { signal }),
        named.client.walSegments(generation, { signal }),
      ]);
      if (snapshots.length === 0) {
        if (segments.length > 0) withoutSnapshot.push(`${named.name}/${generation}`);
        continue;
      }
      const span = timeSpan(snapshots, segments)!;
      const c: Candidate = {
        named,
        generation,
        snapshots,
        segments,
        createdAt: span.start,
        updatedAt: span.end,
      };
      oldest = Math.min(oldest ?? c.createdAt, c.createdAt);
      if (T !== undefined) {
        // The generation that was live at T: the latest one started at or before it.
        if (c.createdAt > T) continue;
        live.push(c);
      } else {
        all.push(c);
      }
    }
  }
  const metas = new MetaCache(signal);
  if (T === undefined) {
    // The most recently updated generation with a snapshot it can be restored from.
    all.sort((a, b) => b.updatedAt - a.updatedAt);
    for (const c of all) {
      if (
        target.index !== undefined ||
        (await metas.usableOf(c.named.client, c.generation, c.snapshots, c.segments))
      ) {
        best = c;
        break;
      }
      unusable.push(`${c.named.name}/${c.generation}`);
    }
  }
  if (T !== undefined) {
    // The generation that was live at T is the latest one started at or before it; if its first
    // snapshot came after T, the one before it still holds T.
    live.sort((a, b) => b.createdAt - a.createdAt);
    for (const c of live) {
      const first = await snapshotTime(metas, c.named.client, c.generation, c.snapshots[0]!);
      if (first <= T && (await metas.usableOf(c.named.client, c.generation, c.snapshots, c.segments))) {
        best = c;
        break;
      }
    }
  }
  if (!best && T !== undefined && oldest !== undefined) {
    throw new WalshipError(
      ErrorCodes.RESTORE,
      `restore: no snapshot was taken at or before ${target.timestamp!.toISOString()} (backups start ${new Date(oldest).toISOString()}); nothing to restore that early`,
      { details: { oldest: new Date(oldest).toISOString() } },
    );
  }
  if (!best && withoutSnapshot.length > 0) {
    throw new WalshipError(
      ErrorCodes.RESTORE,
      `restore: no matching backups found: generation ${withoutSnapshot.join(", ")} has WAL segments but no snapshot to start from`,
      { details: { generations: withoutSnapshot } },
    );
  }
  if (!best && unusable.length > 0) {
    throw new WalshipError(
      ErrorCodes.RESTORE,
      `restore: no matching backups found: generation ${unusable.join(", ")} has only snapshots whose WAL never landed (taken inside a WAL index, they are not consistent without it)`,
      { details: { generations: unusable } },
    );
  }
  if (!best) return undefined;
  const { named, generation } = best;
  const client = named.client;

  // Snapshot.
  let snapshot: SnapshotInfo | undefined;
  let timeRule: TimeRule = "none";
  const extras =
    T !== undefined
      ? new Set(await client.listExtras(keys.walshipGeneration(generation), { signal }))
      : new Set<string>();
  const walshipGen = [...extras].some((k) => k.includes("/commits/"));
  const usable = (s: SnapshotInfo) => metas.usable(client, generation, s, best.segments);
  if (target.index !== undefined) {
    // A snapshot in the target's own index must have been taken at or before the target offset: it
    // holds the database at its position, which applying the frames up to the target cannot undo.
    for (const s of best.snapshots) {
      if (s.index > target.index) break;
      const at = (await metas.get(client, generation, s))?.offset ?? 0;
      if (s.index === target.index && target.offset !== undefined && at > target.offset) break;
      if (await usable(s)) snapshot = s;
    }
    if (!snapshot) {
      throw new WalshipError(
        ErrorCodes.RESTORE,
        `restore: no snapshot at or below index ${hex8(target.index)} in generation ${generation}`,
      );
    }
  } else if (T !== undefined) {
    timeRule = walshipGen ? "commit-times" : "object-times";
    for (const s of best.snapshots) {
      if ((await snapshotTime(metas, client, generation, s)) <= T && (await usable(s))) snapshot = s;
    }
    if (!snapshot) {
      const first = best.snapshots[0]!;
      throw new WalshipError(
        ErrorCodes.RESTORE,
        `restore: ${target.timestamp!.toISOString()} is before the oldest snapshot of generation ${generation} (${first.createdAt.toISOString()}); nothing to restore that early`,
        { details: { oldest: first.createdAt.toISOString() } },
      );
    }
  } else {
    for (const s of best.snapshots) if (await usable(s)) snapshot = s;
    snapshot ??= best.snapshots.at(-1)!;
  }
  const snapMeta = await metas.get(client, generation, snapshot);
  const snapshotOffset = needsWal(snapMeta) ? snapMeta!.offset : undefined;

  // Segments from the snapshot's index on; anything below it is not needed and is ignored.
  let segments = best.segments.filter((s) => s.index >= snapshot.index);
  if (target.index !== undefined) segments = segments.filter((s) => s.index <= target.index!);
  let cutAt: { index: number; offset: number } | undefined;
  if (target.index !== undefined && target.offset !== undefined) {
    segments = segments.filter((s) => s.index < target.index! || s.offset < target.offset!);
    cutAt = { index: target.index, offset: target.offset };
  }
  let cut: { index: number; offset: number } | undefined = cutAt;
  let lastCommitTime: number | undefined;
  if (T !== undefined) {
    const kept: WalSegmentInfo[] = [];
    // The commit-time documents are read in order, a window of them ahead (one request each).
    const docs: Array<Promise<CommitTimesDoc | undefined>> = [];
    const docOf = (j: number): Promise<CommitTimesDoc | undefined> => {
      const seg = segments[j]!;
      const key = keys.commitTimes(generation, seg.index, seg.offset);
      if (timeRule !== "commit-times" || !extras.has(key)) return Promise.resolve(undefined);
      const p = readCommitTimes(client, key, signal);
      p.catch(() => undefined);
      return p;
    };
    for (const [j, seg] of segments.entries()) {
      for (let k = docs.length; k < Math.min(segments.length, j + COMMIT_DOCS_AHEAD); k++)
        docs.push(docOf(k));
      const doc = await docs[j]!;
      if (doc && doc.commits.length > 0) {
        const within = doc.commits.filter(([, t]) => t <= T);
        if (within.length === 0) break;
        kept.push(seg);
        lastCommitTime = within.at(-1)![1];
        if (within.length < doc.commits.length) {
          cut = { index: seg.index, offset: within.at(-1)![0] };
          break;
        }
      } else {
        if (seg.createdAt.getTime() > T) break;
        kept.push(seg);
      }
    }
    segments = kept;
  }
  checkSegments(generation, snapshot, segments);
  return {
    replica: named.name,
    client,
    generation,
    snapshot,
    segments,
    ...(cut ? { cut } : {}),
    timeRule,
    ...(lastCommitTime !== undefined ? { lastCommitTime: new Date(lastCommitTime) } : {}),
    ...(snapshotOffset !== undefined ? { snapshotOffset } : {}),
  };
}

/**
 * Whether a snapshot needs its index's WAL up to its offset: one of an earlier Walship build taken
 * inside its index (the database file as it was read, see snapshot-image.ts). Exact snapshots and
 * Litestream's (no record) are used as they are.
 */
function needsWal(meta: SnapshotMetaDoc | undefined): boolean {
  return meta !== undefined && meta.exact !== true && meta.offset > WAL_HEADER_SIZE;
}

/**
 * Walship's record of each snapshot's position (read once per restore), and whether a snapshot can
 * be used: one that needs its index's WAL (needsWal) and whose WAL never landed (its replicator died
 * between the two) is passed over.
 */
class MetaCache {
  readonly #docs = new Map<string, Promise<SnapshotMetaDoc | undefined>>();
  readonly #signal: AbortSignal | undefined;

  constructor(signal: AbortSignal | undefined) {
    this.#signal = signal;
  }

  get(client: ReplicaClient, generation: string, s: SnapshotInfo): Promise<SnapshotMetaDoc | undefined> {
    const key = `${client.location}/${generation}/${s.index}`;
    let p = this.#docs.get(key);
    if (!p) {
      p = readSnapshotMeta(client, generation, s.index, this.#signal);
      this.#docs.set(key, p);
    }
    return p;
  }

  async usable(
    client: ReplicaClient,
    generation: string,
    s: SnapshotInfo,
    segments: WalSegmentInfo[],
  ): Promise<boolean> {
    const meta = await this.get(client, generation, s);
    return !needsWal(meta) || segments.some((seg) => seg.index === s.index);
  }

  /** Whether any of a generation's snapshots is usable (newest first: usually the first answers). */
  async usableOf(
    client: ReplicaClient,
    generation: string,
    snapshots: SnapshotInfo[],
    segments: WalSegmentInfo[],
  ): Promise<boolean> {
    for (let i = snapshots.length - 1; i >= 0; i--) {
      if (await this.usable(client, generation, snapshots[i]!, segments)) return true;
    }
    return false;
  }
}

/** Commit-time documents read ahead of the one being looked at, when restoring to a time. */
const COMMIT_DOCS_AHEAD = 16;

/** When a snapshot's state was taken: Walship records it beside the layout; otherwise the object time. */
async function snapshotTime(
  metas: MetaCache,
  client: ReplicaClient,
  generation: string,
  s: SnapshotInfo,
): Promise<number> {
  return (await metas.get(client, generation, s))?.time ?? s.createdAt.getTime();
}

/** Every index from the snapshot's to the last one must be there, each starting at offset 0. */
function checkSegments(generation: string, snapshot: SnapshotInfo, segments: WalSegmentInfo[]): void {
  let prevIndex = snapshot.index - 1;
  let prevOffset = -1;
  for (const seg of segments) {
    if (seg.index !== prevIndex) {
      if (
        seg.index !== prevIndex + 1 &&
        !(prevIndex === snapshot.index - 1 && seg.index === snapshot.index)
      ) {
        throw new WalshipError(
          ErrorCodes.RESTORE,
          `restore: missing WAL index ${hex8(prevIndex + 1)} in generation ${generation} (have ${hex8(seg.index)} next)`,
          { details: { generation, index: prevIndex + 1 } },
        );
      }
      if (seg.offset !== 0) {
        throw new WalshipError(
          ErrorCodes.RESTORE,
          `restore: missing initial WAL segment for index ${hex8(seg.index)} in generation ${generation}`,
          { details: { generation, index: seg.index } },
        );
      }
      prevIndex = seg.index;
      prevOffset = -1;
    }
    if (seg.offset <= prevOffset) {
      throw new WalshipError(
        ErrorCodes.RESTORE,
        `restore: WAL segments out of order at ${hex8(seg.index)}_${hex8(seg.offset)}`,
      );
    }
    prevOffset = seg.offset;
  }
  if (segments.length > 0 && segments[0]!.index !== snapshot.index) {
    throw new WalshipError(
      ErrorCodes.RESTORE,
      `restore: missing WAL index ${hex8(snapshot.index)} in generation ${generation} (the snapshot's own index)`,
      { details: { generation, index: snapshot.index } },
    );
  }
}

/** Plans and runs a restore. Returns undefined when there is nothing to restore and `ifReplicaExists` allowed that. */
export async function restore(
  clients: NamedClient[],
  opts: RestoreOptions & { ifDbNotExists?: boolean; ifReplicaExists?: boolean },
): Promise<RestoreResult | "db-exists" | "no-replica"> {
  const out = path.resolve(opts.outputPath);
  const exists = await stat(out).then(
    () => true,
    () => false,
  );
  if (exists && opts.ifDbNotExists) return "db-exists";
  if (exists && !opts.overwrite) {
    throw new WalshipError(
      ErrorCodes.EXISTS,
      `restore: output database ${out} already exists; it was left untouched`,
    );
  }
  const plan = await planRestore(clients, opts, opts.signal);
  if (!plan) {
    if (opts.ifReplicaExists) return "no-replica";
    throw new WalshipError(ErrorCodes.RESTORE, "restore: no matching backups found");
  }
  return executeRestore(plan, { ...opts, outputPath: out });
}

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
  let writer: FileWriter | undefined;
  try {
    fd = openSync(tmp, "w+", 0o600);
    // The file is written on a worker thread, in order, while this thread downloads and verifies.
    writer = new FileWriter(fd, tmp);
    const w = writer;
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
    const pages = offThreadPages(w);
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
    }
    await w.drain();
    if (plan.snapshotOffset !== undefined && snapshotIndexEnd < plan.snapshotOffset) {
      throw new WalshipError(
        ErrorCodes.RESTORE,
        `restore: snapshot ${snapName} was taken at offset ${plan.snapshotOffset} of its WAL index, and the WAL of that index here ends at ${snapshotIndexEnd}: the snapshot is not a consistent state without it (its replicator stopped between the two, or the target is before the snapshot)`,
        { details: { object: snapName, offset: plan.snapshotOffset, walEnd: snapshotIndexEnd } },
      );
    }
    log.info({ indexes, segments: plan.segments.length }, "wal applied");

    // 3. Verify before the file may take the database's name. The file was written with plain
    //    writes; it is made durable (on the writer thread, while SQLite checks it) before the rename.
    progress.phase = "verify";
    report();
    const synced = w.sync();
    integrityCheck(tmp, restoredFrom(plan, restoredIndex));
    if (opts.verifySql) verifyQuery(tmp, opts.verifySql);
    await synced;
    await w.close();
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
    if (fd !== undefined) closeSync(fd);
    await removeTemporaries(out);
  }
}

/** Snapshot blocks (up to 4 MiB each) and page batches (32 MiB each) queued for the writer thread. */
const WRITES_IN_FLIGHT = 8;
const PAGE_BATCHES_IN_FLIGHT = 2;

/** Stored bytes of WAL segments that may wait in memory, downloaded ahead of the one being applied. */
const PREFETCH_BYTES = 64 << 20;

/**
 * Downloads WAL segments ahead of the one being applied, in order: at most `parallelism` at a time
 * and `maxBytes` of stored (compressed) bytes waiting. A segment not fetched ahead (the budget was
 * full, or it alone exceeds it) is streamed when its turn comes, so memory stays bounded.
 */
class SegmentFetcher {
  readonly #plan: RestorePlan;
  readonly #parallelism: number;
  readonly #maxBytes: number;
  readonly #signal: AbortSignal;
  #next = 0;
  #running = 0;
  #waitingBytes = 0;
  readonly #ahead = new Map<number, Promise<Buffer[]>>();

  constructor(plan: RestorePlan, parallelism: number, maxBytes: number, signal: AbortSignal) {
    this.#plan = plan;
    this.#parallelism = parallelism;
    this.#maxBytes = maxBytes;
    this.#signal = signal;
  }

  /** Starts downloads from segment `from` on while the limits allow. */
  fill(from: number): void {
    const segs = this.#plan.segments;
    if (this.#next < from) this.#next = from;
    while (this.#next < segs.length && this.#running < this.#parallelism) {
      const size = segs[this.#next]!.size;
      if (this.#waitingBytes + size > this.#maxBytes) return;
      const i = this.#next++;
      this.#running++;
      this.#waitingBytes += size;
      const p = this.#download(i).finally(() => {
        this.#running--;
        this.fill(this.#next);
      });
      p.catch(() => undefined);
      this.#ahead.set(i, p);
    }
  }

  /** The stored bytes of segment `i`: downloaded ahead, or streamed now. */
  async take(i: number): Promise<AsyncIterable<Buffer> | Iterable<Buffer>> {
    const ahead = this.#ahead.get(i);
    if (ahead) {
      this.#ahead.delete(i);
      try {
        return await ahead;
      } finally {
        this.#waitingBytes -= this.#plan.segments[i]!.size;
      }
    }
    if (this.#next <= i) this.#next = i + 1;
    return this.#open(i);
  }

  async #open(i: number): Promise<AsyncIterable<Buffer>> {
    const seg = this.#plan.segments[i]!;
    return this.#plan.client.walSegmentReader(this.#plan.generation, seg.index, seg.offset, {
      signal: this.#signal,
    });
  }

  async #download(i: number): Promise<Buffer[]> {
    const chunks: Buffer[] = [];
    for await (const chunk of await this.#open(i)) chunks.push(chunk as Buffer);
    return chunks;
  }
}

/** Adds `prefix` to an error's message; a WalshipError keeps its code, anything else becomes CORRUPT. */
function wrapCorrupt(err: unknown, prefix: string, details: Record<string, unknown>): WalshipError {
  if (err instanceof WalshipError && err.code !== ErrorCodes.CORRUPT) return err;
  const code = err instanceof WalshipError ? err.code : ErrorCodes.CORRUPT;
  return new WalshipError(code, `${prefix}: ${describeError(err)}`, {
    cause: err,
    details: { ...(err instanceof WalshipError ? err.details : {}), ...details },
  });
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

/** PRAGMA integrity_check on the restored file; `from` names what it was built from. */
function integrityCheck(dbFile: string, from: string): void {
  let db: Database.Database | undefined;
  try {
    db = new Database(dbFile, { fileMustExist: true });
    const rows = db.prepare("PRAGMA integrity_check").all() as Array<{ integrity_check: string }>;
    const problems = rows.map((r) => r.integrity_check).filter((r) => r !== "ok");
    if (problems.length > 0) {
      throw new WalshipError(
        ErrorCodes.INTEGRITY,
        `restore: integrity_check failed on the restore of ${from}: ${problems.slice(0, 5).join("; ")}`,
        { details: { from } },
      );
    }
  } catch (err) {
    if (err instanceof WalshipError) throw err;
    throw new WalshipError(
      ErrorCodes.INTEGRITY,
      `restore: integrity_check failed on the restore of ${from}: ${describeError(err)}`,
      { cause: err, details: { from } },
    );
  } finally {
    db?.close();
  }
}

/** The user's own check: the query must run and return at least one row. */
function verifyQuery(dbFile: string, sql: string): void {
  let db: Database.Database | undefined;
  let rows: unknown[];
  try {
    db = new Database(dbFile, { readonly: true, fileMustExist: true });
    rows = db.prepare(sql).all();
  } catch (err) {
    throw new WalshipError(ErrorCodes.INTEGRITY, `restore: -verify-sql failed: ${describeError(err)}`, {
      cause: err,
    });
  } finally {
    db?.close();
  }
  if (rows.length === 0) {
    throw new WalshipError(ErrorCodes.INTEGRITY, `restore: -verify-sql returned no row: ${sql}`);
  }
}

/** Removes `<out>.tmp`, `<out>.tmp-wal`, `<out>.tmp-shm` and `<out>.tmp-<index>-wal`. */
async function removeTemporaries(out: string): Promise<void> {
  const dir = path.dirname(out);
  const base = `${path.basename(out)}.tmp`;
  const names = await readdir(dir).catch(() => [] as string[]);
  await Promise.all(
    names
      .filter((n) => n === base || n.startsWith(`${base}-`))
      .map((n) => rm(path.join(dir, n), { force: true })),
  );
}

async function exists(p: string): Promise<boolean> {
  return stat(p).then(
    () => true,
    () => false,
  );
}
