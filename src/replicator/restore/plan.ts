/**
 * The restore plan: which destination, generation, snapshot and WAL segments to use, from the
 * destinations' listings (and Walship's snapshot records and commit-time index, when the target is a
 * time). Nothing is downloaded but those small documents.
 */

import { ErrorCodes, WalshipError } from "../../shared/errors.ts";
import { hex8 } from "../../shared/format.ts";
import { type CommitTimesDoc, readCommitTimes, readSnapshotMeta, type SnapshotMetaDoc } from "../extras.ts";
import { keys } from "../layout.ts";
import { WAL_HEADER_SIZE } from "../sqlite/wal.ts";
import type { ReplicaClient } from "../storage/client.ts";
import { type SnapshotInfo, timeSpan, type WalSegmentInfo } from "../types.ts";
import type { NamedClient, RestorePlan, RestoreTarget, TimeRule } from "./types.ts";

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
  const metas = new MetaCache(signal);
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
      // With a timestamp, the generation starts at its first snapshot's recorded time when that is
      // earlier than its first object (the snapshot is uploaded after the state it holds): the
      // recoverability window's oldest end is that time (window.ts), and a restore to it must work.
      const start =
        T === undefined
          ? span.start
          : Math.min(span.start, await snapshotTime(metas, named.client, generation, snapshots[0]!));
      const c: Candidate = {
        named,
        generation,
        snapshots,
        segments,
        createdAt: start,
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
