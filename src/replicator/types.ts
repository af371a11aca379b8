/** Core value types of the replicator, shared by the database, the destinations and restore. */
import { hex8 } from "../shared/format.ts";

/** A position in the replicated WAL stream: generation, shadow WAL index, byte offset in that file. */
export interface Pos {
  generation: string;
  index: number;
  offset: number;
}

export interface SnapshotInfo {
  generation: string;
  index: number;
  /** Stored (compressed) size in bytes. */
  size: number;
  /** The backend's object time (mtime, LastModified). */
  createdAt: Date;
}

export interface WalSegmentInfo {
  generation: string;
  index: number;
  offset: number;
  /** Stored (compressed) size in bytes. */
  size: number;
  createdAt: Date;
}

/**
 * The earliest and latest object time over listings, in one pass; undefined when they are empty.
 * Never `Math.min(...times)`: a spread passes every element as an argument, and V8 runs out of stack
 * at about 150,000 of them, a generation's WAL listing after a few months.
 */
export function timeSpan(
  ...lists: ReadonlyArray<ReadonlyArray<{ createdAt: Date }>>
): { start: number; end: number } | undefined {
  let start = Number.POSITIVE_INFINITY;
  let end = Number.NEGATIVE_INFINITY;
  for (const list of lists) {
    for (const o of list) {
      const t = o.createdAt.getTime();
      if (t < start) start = t;
      if (t > end) end = t;
    }
  }
  return start <= end ? { start, end } : undefined;
}

/** The highest index a generation may use; reaching it forces a new generation (as in v0.3.13). */
export const MAX_INDEX = 0x7fffffff;

/** `gen/IIIIIIII:offset`, the form Litestream prints positions in. */
export function formatPos(p: Pos): string {
  return `${p.generation}/${hex8(p.index)}:${p.offset}`;
}

/** Orders positions within one generation. */
export function comparePos(a: Pos, b: Pos): number {
  if (a.generation !== b.generation) return a.generation < b.generation ? -1 : 1;
  if (a.index !== b.index) return a.index - b.index;
  return a.offset - b.offset;
}
