/**
 * Walship's side objects, stored beside Litestream's layout under `<root>/walship/` (Litestream never
 * reads them): the commit times of each segment and the exact position of each snapshot.
 */
import { isNotFound } from "../shared/errors.ts";
import { hex8 } from "../shared/format.ts";
import type { ReplicaClient } from "./storage/client.ts";

/** Commit times of the transactions in one segment: `[endOffset, unixMillis]` pairs. */
export interface CommitTimesDoc {
  v: 1;
  commits: Array<[number, number]>;
}

/** Where and when a Walship snapshot was taken: it holds no page newer than (index, offset). */
export interface SnapshotMetaDoc {
  v: 1;
  index: number;
  offset: number;
  time: number;
  /**
   * True when the snapshot is the database exactly at (index, offset) and needs none of the WAL
   * (snapshot-image.ts). Absent on snapshots of earlier builds: those are the database file as it
   * was read, consistent only with their index's WAL applied at least up to `offset`.
   */
  exact?: boolean;
}

export function snapshotMetaKey(generation: string, index: number): string {
  return `walship/generations/${generation}/snapshots/${hex8(index)}.json`;
}

export function encodeJson(doc: unknown): Uint8Array {
  return Buffer.from(`${JSON.stringify(doc)}\n`);
}

/** Reads a JSON side object, or undefined when it is absent or unreadable (never fatal). */
export async function readJsonExtra<T>(
  client: ReplicaClient,
  key: string,
  signal?: AbortSignal,
): Promise<T | undefined> {
  try {
    const bytes = await client.getExtra(key, { signal });
    return JSON.parse(Buffer.from(bytes).toString("utf8")) as T;
  } catch (err) {
    if (isNotFound(err) || err instanceof SyntaxError) return undefined;
    throw err;
  }
}

const isCount = (n: unknown): n is number => Number.isSafeInteger(n) && (n as number) >= 0;

/** A commit-times document as Walship writes it: v 1, `[end, time]` pairs with ascending ends. */
export function isCommitTimesDoc(doc: unknown): doc is CommitTimesDoc {
  if (typeof doc !== "object" || doc === null) return false;
  const d = doc as { v?: unknown; commits?: unknown };
  if (d.v !== 1 || !Array.isArray(d.commits)) return false;
  let prev = -1;
  for (const c of d.commits as unknown[]) {
    if (!Array.isArray(c) || c.length !== 2 || !isCount(c[0]) || !Number.isFinite(c[1])) return false;
    if (c[0] <= prev) return false;
    prev = c[0];
  }
  return true;
}

/** A snapshot record as Walship writes it: v 1, index, offset and time. */
export function isSnapshotMetaDoc(doc: unknown): doc is SnapshotMetaDoc {
  if (typeof doc !== "object" || doc === null) return false;
  const d = doc as Partial<Record<keyof SnapshotMetaDoc, unknown>>;
  return d.v === 1 && isCount(d.index) && isCount(d.offset) && Number.isFinite(d.time);
}

/**
 * The commit times of a segment, or undefined when absent, unreadable or not in Walship's shape (an
 * object some other tool put there): the segment then falls back to its object time.
 */
export async function readCommitTimes(
  client: ReplicaClient,
  key: string,
  signal?: AbortSignal,
): Promise<CommitTimesDoc | undefined> {
  const doc = await readJsonExtra<unknown>(client, key, signal);
  return isCommitTimesDoc(doc) ? doc : undefined;
}

/** A snapshot's record, or undefined when absent, unreadable or not in Walship's shape. */
export async function readSnapshotMeta(
  client: ReplicaClient,
  generation: string,
  index: number,
  signal?: AbortSignal,
): Promise<SnapshotMetaDoc | undefined> {
  const doc = await readJsonExtra<unknown>(client, snapshotMetaKey(generation, index), signal);
  return isSnapshotMetaDoc(doc) ? doc : undefined;
}
