/**
 * Restore: plan which destination, generation, snapshot and WAL segments to use, then download,
 * verify and apply them to a temporary file that is renamed into place only after
 * `PRAGMA integrity_check` passes.
 *
 * Where Walship goes past Litestream v0.3.13: listings are sorted, WAL indexes below the snapshot are
 * ignored, segments must be contiguous (each offset = previous offset + its decompressed length), every
 * frame's checksum is verified before SQLite sees it, no temporary or -wal/-shm file is left behind,
 * and with Walship's commit-time index a timestamp restores exactly the transactions seen committed at
 * or before it.
 */
import { createWriteStream } from "node:fs";
import { mkdir, open, readdir, rename, rm, stat } from "node:fs/promises";
import path from "node:path";
import { Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import Database from "better-sqlite3";
import { describeError, ErrorCodes, WalshipError } from "../shared/errors.ts";
import { type Logger, nullLogger } from "../shared/log.ts";
import { type CommitTimesDoc, readJsonExtra, type SnapshotMetaDoc, snapshotMetaKey } from "./extras.ts";
import { hex8, keys } from "./layout.ts";
import { createLz4Decoder } from "./lz4.ts";
import { frameSize, parseWalHeader, scanFrames, WAL_HEADER_SIZE } from "./sqlite/wal.ts";
import type { ReplicaClient } from "./storage/client.ts";
import type { SnapshotInfo, WalSegmentInfo } from "./types.ts";

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
  const withoutSnapshot: string[] = [];
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
      const times = [...snapshots, ...segments].map((o) => o.createdAt.getTime());
      const c: Candidate = {
        named,
        generation,
        snapshots,
        segments,
        createdAt: Math.min(...times),
        updatedAt: Math.max(...times),
      };
      oldest = Math.min(oldest ?? c.createdAt, c.createdAt);
      if (T !== undefined) {
        // The generation that was live at T: the latest one started at or before it.
        if (c.createdAt > T) continue;
        live.push(c);
      } else if (!best || c.updatedAt > best.updatedAt) {
        best = c;
      }
    }
  }
  if (T !== undefined) {
    // The generation that was live at T is the latest one started at or before it; if its first
    // snapshot came after T, the one before it still holds T.
    live.sort((a, b) => b.createdAt - a.createdAt);
    for (const c of live) {
      const first = await snapshotTime(c.named.client, c.generation, c.snapshots[0]!, signal);
      if (first <= T) {
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
  if (target.index !== undefined) {
    snapshot = best.snapshots.filter((s) => s.index <= target.index!).at(-1);
    if (!snapshot) {
      throw new WalshipError(
        ErrorCodes.RESTORE,
        `restore: no snapshot at or below index ${hex8(target.index)} in generation ${generation}`,
      );
    }
  } else if (T !== undefined) {
    timeRule = walshipGen ? "commit-times" : "object-times";
    for (const s of best.snapshots) {
      if ((await snapshotTime(client, generation, s, signal)) <= T) snapshot = s;
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
    snapshot = best.snapshots.at(-1)!;
  }

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
    for (const seg of segments) {
      const key = keys.commitTimes(generation, seg.index, seg.offset);
      const doc =
        timeRule === "commit-times" && extras.has(key)
          ? await readJsonExtra<CommitTimesDoc>(client, key, signal)
          : undefined;
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
  };
}

/** When a snapshot's state was taken: Walship records it beside the layout; otherwise the object time. */
async function snapshotTime(
  client: ReplicaClient,
  generation: string,
  s: SnapshotInfo,
  signal?: AbortSignal,
): Promise<number> {
  const meta = await readJsonExtra<SnapshotMetaDoc>(client, snapshotMetaKey(generation, s.index), signal);
  return meta?.time ?? s.createdAt.getTime();
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
  const signal = opts.signal;
  const progress: RestoreProgress = {
    bytes: 0,
    segmentsDone: 0,
    segmentsTotal: plan.segments.length,
    phase: "snapshot",
  };
  const report = () => opts.onProgress?.({ ...progress });
  await mkdir(path.dirname(out), { recursive: true });
  await removeTemporaries(out);
  let backupPath: string | undefined;
  try {
    // 1. The snapshot.
    const body = await plan.client.snapshotReader(plan.generation, plan.snapshot.index, { signal });
    await pipeline(
      body,
      countBytes(progress, report),
      createLz4Decoder(),
      createWriteStream(tmp, { mode: 0o600 }),
      { signal },
    );
    log.info({ generation: plan.generation, index: plan.snapshot.index }, "snapshot restored");

    // 2. WAL indexes: download in parallel, apply strictly in order.
    const byIndex = new Map<number, WalSegmentInfo[]>();
    for (const seg of plan.segments) {
      const list = byIndex.get(seg.index) ?? [];
      list.push(seg);
      byIndex.set(seg.index, list);
    }
    const indexes = [...byIndex.keys()].sort((a, b) => a - b);
    progress.phase = "wal";
    // A window of `parallelism` downloads runs ahead of the index being applied.
    const downloads: Array<Promise<{ file: string; length: number }>> = [];
    const fetchIndex = (i: number) => {
      const idx = indexes[i]!;
      const p = downloadIndex(plan, idx, byIndex.get(idx)!, out, progress, report, signal);
      p.catch(() => undefined);
      downloads[i] = p;
    };
    for (let i = 0; i < Math.min(parallelism, indexes.length); i++) fetchIndex(i);
    let restoredEnd = 0;
    for (let i = 0; i < indexes.length; i++) {
      const { file, length } = await downloads[i]!;
      if (i + parallelism < indexes.length) fetchIndex(i + parallelism);
      progress.phase = "apply";
      await applyWal(tmp, file, indexes[i]!);
      restoredEnd = length;
    }
    log.info({ indexes: indexes.length, segments: plan.segments.length }, "wal applied");

    // 3. Verify before the file may take the database's name.
    progress.phase = "verify";
    report();
    integrityCheck(tmp);
    if (opts.verifySql) verifyQuery(tmp, opts.verifySql);
    if (await exists(out)) {
      backupPath = `${out}.pre-restore-${new Date().toISOString().replace(/[:.]/g, "")}`;
      await rename(out, backupPath);
      for (const side of ["-wal", "-shm"]) {
        if (await exists(out + side)) await rename(out + side, backupPath + side);
      }
    }
    await rename(tmp, out);
    return {
      outputPath: out,
      replica: plan.replica,
      generation: plan.generation,
      snapshotIndex: plan.snapshot.index,
      index: indexes.at(-1) ?? plan.snapshot.index,
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
    await removeTemporaries(out);
  }

  /** Downloads, decodes and checks one index's segments into `<out>.tmp-<index>-wal`; applies the cut. */
  async function downloadIndex(
    p: RestorePlan,
    index: number,
    segs: WalSegmentInfo[],
    outPath: string,
    prog: RestoreProgress,
    rep: () => void,
    sig: AbortSignal | undefined,
  ): Promise<{ file: string; length: number }> {
    const file = `${outPath}.tmp-${hex8(index)}-wal`;
    const fh = await open(file, "w", 0o600);
    let length = 0;
    try {
      for (const seg of segs) {
        if (seg.offset !== length) {
          throw new WalshipError(
            ErrorCodes.CORRUPT,
            `restore: WAL segment ${segName(p, seg)} starts at offset ${seg.offset} but the previous segments end at ${length}`,
            { details: { object: segName(p, seg) } },
          );
        }
        const body = await p.client.walSegmentReader(p.generation, seg.index, seg.offset, { signal: sig });
        try {
          for await (const chunk of body.pipe(countBytes(prog, rep)).pipe(createLz4Decoder())) {
            const buf = chunk as Buffer;
            await fh.write(buf, 0, buf.length, length);
            length += buf.length;
          }
        } catch (err) {
          throw new WalshipError(
            ErrorCodes.CORRUPT,
            `restore: WAL segment ${segName(p, seg)}: ${describeError(err)}`,
            {
              cause: err,
              details: { object: segName(p, seg) },
            },
          );
        }
        prog.segmentsDone++;
        rep();
      }
      if (p.cut && p.cut.index === index) {
        if (p.cut.offset > length) {
          throw new WalshipError(
            ErrorCodes.CORRUPT,
            `restore: WAL index ${hex8(index)} is shorter than its commit-time index says`,
          );
        }
        await fh.truncate(p.cut.offset);
        length = p.cut.offset;
      }
      await fh.sync();
    } finally {
      await fh.close();
    }
    await verifyWalFile(file, `${p.generation}/${hex8(index)}`);
    return { file, length };
  }
}

function segName(p: RestorePlan, seg: WalSegmentInfo): string {
  return `${p.client.location}/${keys.segment(p.generation, seg.index, seg.offset)}`;
}

/** Every frame must carry the header's salts and a checksum that chains, and the file must end on a commit. */
async function verifyWalFile(file: string, what: string): Promise<void> {
  const fh = await open(file, "r");
  try {
    const { size } = await fh.stat();
    if (size === 0) return;
    const head = Buffer.alloc(WAL_HEADER_SIZE);
    await fh.read(head, 0, WAL_HEADER_SIZE, 0);
    let hdr: ReturnType<typeof parseWalHeader>;
    try {
      hdr = parseWalHeader(head);
    } catch (err) {
      throw new WalshipError(ErrorCodes.CORRUPT, `restore: WAL index ${what}: ${describeError(err)}`, {
        cause: err,
      });
    }
    const F = frameSize(hdr.pageSize);
    const buf = Buffer.allocUnsafe(Math.max(1, Math.floor((4 << 20) / F)) * F);
    let offset = WAL_HEADER_SIZE;
    let seed: [number, number] = [hdr.checksum1, hdr.checksum2];
    let lastCommitEnd = WAL_HEADER_SIZE;
    while (offset < size) {
      const { bytesRead } = await fh.read(buf, 0, Math.min(buf.length, size - offset), offset);
      const scan = scanFrames(buf.subarray(0, bytesRead), {
        pageSize: hdr.pageSize,
        bigEndian: hdr.bigEndianChecksums,
        salt1: hdr.salt1,
        salt2: hdr.salt2,
        seed,
        startOffset: offset,
      });
      if (scan.lastCommitEnd > lastCommitEnd) lastCommitEnd = scan.lastCommitEnd;
      if (scan.validEnd !== offset + bytesRead) {
        throw new WalshipError(
          ErrorCodes.CORRUPT,
          `restore: WAL index ${what}: bad frame (checksum or salt) at offset ${scan.validEnd}`,
          { details: { offset: scan.validEnd } },
        );
      }
      offset += bytesRead;
      seed = [buf.readUInt32BE(bytesRead - F + 16), buf.readUInt32BE(bytesRead - F + 20)];
    }
    if (lastCommitEnd !== size) {
      throw new WalshipError(
        ErrorCodes.CORRUPT,
        `restore: WAL index ${what}: ends with an uncommitted transaction at offset ${lastCommitEnd}`,
      );
    }
  } finally {
    await fh.close();
  }
}

/** Lets SQLite replay one WAL file into the database and truncate it. */
async function applyWal(dbFile: string, walFile: string, index: number): Promise<void> {
  await rename(walFile, `${dbFile}-wal`);
  let db: Database.Database | undefined;
  try {
    db = new Database(dbFile, { fileMustExist: true });
    const [row] = db.pragma("wal_checkpoint(TRUNCATE)") as Array<{
      busy: number;
      log: number;
      checkpointed: number;
    }>;
    if (row?.busy !== 0 || row.log !== row.checkpointed) {
      throw new WalshipError(
        ErrorCodes.RESTORE,
        `restore: applying WAL index ${hex8(index)} did not complete (busy=${row?.busy})`,
      );
    }
  } catch (err) {
    if (err instanceof WalshipError) throw err;
    throw new WalshipError(
      ErrorCodes.CORRUPT,
      `restore: applying WAL index ${hex8(index)}: ${describeError(err)}`,
      { cause: err },
    );
  } finally {
    db?.close();
  }
}

function integrityCheck(dbFile: string): void {
  let db: Database.Database | undefined;
  try {
    db = new Database(dbFile, { fileMustExist: true });
    const rows = db.prepare("PRAGMA integrity_check").all() as Array<{ integrity_check: string }>;
    const problems = rows.map((r) => r.integrity_check).filter((r) => r !== "ok");
    if (problems.length > 0) {
      throw new WalshipError(
        ErrorCodes.INTEGRITY,
        `restore: integrity_check failed: ${problems.slice(0, 5).join("; ")}`,
      );
    }
  } catch (err) {
    if (err instanceof WalshipError) throw err;
    throw new WalshipError(ErrorCodes.INTEGRITY, `restore: integrity_check: ${describeError(err)}`, {
      cause: err,
    });
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

function countBytes(progress: RestoreProgress, report: () => void): Transform {
  return new Transform({
    transform(chunk: Buffer, _enc, cb) {
      progress.bytes += chunk.length;
      report();
      cb(null, chunk);
    },
  });
}

async function exists(p: string): Promise<boolean> {
  return stat(p).then(
    () => true,
    () => false,
  );
}
