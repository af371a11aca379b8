/**
 * Guardrails: the facts that warn before a database's volume fills (free and total bytes of the file
 * system under the database's directory), and the space check that keeps a snapshot from starting
 * when what it would write locally does not fit.
 *
 * What a snapshot writes on local disk (nothing is staged: the image streams from the database file
 * and the shadow WAL to the destination):
 * - a scheduled snapshot first runs a RESTART checkpoint, which writes the current shadow index's
 *   frames back into the database file (the file grows by at most those bytes) and starts a new
 *   shadow index with one small frame;
 * - a `file` destination writes the snapshot object, LZ4 of the database image, to `<name>.tmp` in its
 *   directory before the rename; other destinations write nothing locally.
 * The check adds these up per file system (the database's volume and the destination's, once when they
 * are the same), keeps SNAPSHOT_RESERVE_BYTES free for the application, and refuses with the numbers.
 */
import { stat, statfs } from "node:fs/promises";
import path from "node:path";
import { exists } from "./fs.ts";
import { LZ4_BLOCK_SIZE } from "./lz4.ts";

/**
 * Free space a snapshot leaves untouched, for the application's own writes: a snapshot that would
 * take the volume below it is not started.
 */
export const SNAPSHOT_RESERVE_BYTES = 1024 * 1024;
/** How soon a refused snapshot is tried again (or its interval, when shorter). */
export const SNAPSHOT_RETRY_MS = 60_000;

/** Space on one file system, as an unprivileged process may use it. */
export interface VolumeSpace {
  /** Bytes an unprivileged process may still write (statfs bavail × bsize). */
  freeBytes: number;
  /** Size of the file system (statfs blocks × bsize). */
  totalBytes: number;
}

/** The file system under `dir` (or under its nearest existing parent); undefined when statfs fails. */
export async function volumeSpace(dir: string): Promise<VolumeSpace | undefined> {
  const at = await existingDir(dir);
  try {
    const s = await statfs(at);
    return { freeBytes: s.bavail * s.bsize, totalBytes: s.blocks * s.bsize };
  } catch {
    return undefined;
  }
}

/** `dir`, or its nearest parent that exists (a destination directory is created on its first write). */
async function existingDir(dir: string): Promise<string> {
  let cur = path.resolve(dir);
  for (;;) {
    if (await exists(cur)) return cur;
    const up = path.dirname(cur);
    if (up === cur) return cur;
    cur = up;
  }
}

/** The device id of the file system under `dir` (its nearest existing parent), to tell volumes apart. */
async function deviceOf(dir: string): Promise<number | undefined> {
  return stat(await existingDir(dir)).then(
    (s) => s.dev,
    () => undefined,
  );
}

/** The largest LZ4 frame our encoder writes for `n` bytes of input (stored blocks: incompressible data). */
export function lz4Bound(n: number): number {
  const blocks = Math.max(1, Math.ceil(n / LZ4_BLOCK_SIZE));
  // Frame header and end mark (at most 19 + 4 + 4 bytes), a 4-byte size per block, and LZ4's own
  // worst case when a block is kept compressed: n/255 + 16.
  return n + Math.ceil(n / 255) + blocks * 20 + 32;
}

/** One file system a snapshot writes to: where, what it needs and what is free there. */
export interface SpaceNeed {
  /** A directory on that file system (the database's, or the destination's). */
  where: string;
  needBytes: number;
  freeBytes: number;
}

/** What a snapshot is about to write, for spaceNeeds. */
export interface SnapshotPlan {
  /** The database's directory. */
  dbDir: string;
  /** Size of the database file now. */
  dbSizeBytes: number;
  /** Bytes of frames in the current shadow index: what the checkpoint before the snapshot writes back. */
  checkpointBytes: number;
  /** The destination's directory when it is on a local file system (`file`), else undefined. */
  localDestination: string | undefined;
}

/**
 * Per file system, the bytes the snapshot needs: the checkpoint's growth of the database file on the
 * database's volume; on the destination's, the snapshot object of the database grown by it.
 */
export async function spaceNeeds(plan: SnapshotPlan): Promise<SpaceNeed[]> {
  const db = await volumeSpace(plan.dbDir);
  const out: SpaceNeed[] = [];
  if (db) out.push({ where: plan.dbDir, needBytes: plan.checkpointBytes, freeBytes: db.freeBytes });
  if (plan.localDestination) {
    const object = lz4Bound(plan.dbSizeBytes + plan.checkpointBytes);
    const [a, b] = await Promise.all([deviceOf(plan.dbDir), deviceOf(plan.localDestination)]);
    const same = db && a !== undefined && a === b;
    if (same) out[0]!.needBytes += object;
    else {
      const dest = await volumeSpace(plan.localDestination);
      if (dest) out.push({ where: plan.localDestination, needBytes: object, freeBytes: dest.freeBytes });
    }
  }
  // A file system the snapshot writes nothing to is no reason to refuse it (the first snapshot of a
  // generation to a remote destination runs no checkpoint and stages nothing).
  return out.filter((n) => n.needBytes > 0);
}

/**
 * Why the snapshot must not start, or undefined when every file system it writes to keeps
 * `reserveBytes` free after it. Pure.
 */
export function snapshotRefusal(
  needs: readonly SpaceNeed[],
  reserveBytes = SNAPSHOT_RESERVE_BYTES,
): string | undefined {
  const short = needs.filter((n) => n.freeBytes - n.needBytes < reserveBytes);
  if (short.length === 0) return undefined;
  return short
    .map(
      (n) =>
        `${n.where} has ${n.freeBytes} bytes free; the snapshot needs up to ${n.needBytes} and ` +
        `${reserveBytes} must stay free`,
    )
    .join("; ");
}
