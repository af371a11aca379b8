/**
 * Litestream v0.3.13's names, as pure functions. Bucket side:
 *   <root>/generations/<GEN>/snapshots/<IIIIIIII>.snapshot.lz4
 *   <root>/generations/<GEN>/wal/<IIIIIIII>_<OOOOOOOO>.wal.lz4
 * Local side (the shadow directory beside the database):
 *   <dir>/.<db name>-litestream/generation
 *   <dir>/.<db name>-litestream/generations/<GEN>/wal/<IIIIIIII>.wal
 * Walship's own extra knowledge lives beside the layout, under <root>/walship/, where Litestream
 * never looks.
 */
import path from "node:path";
import { hex8 } from "../shared/format.ts";

const GEN_RE = /^[0-9a-f]{16}$/;
const SNAPSHOT_RE = /^([0-9a-f]{8})\.snapshot\.lz4$/;
const SEGMENT_RE = /^([0-9a-f]{8})_([0-9a-f]{8})\.wal\.lz4$/;
const SHADOW_RE = /^([0-9a-f]{8})\.wal$/;

export function isGenerationName(s: string): boolean {
  return GEN_RE.test(s);
}

export function snapshotName(index: number): string {
  return `${hex8(index)}.snapshot.lz4`;
}

export function segmentName(index: number, offset: number): string {
  return `${hex8(index)}_${hex8(offset)}.wal.lz4`;
}

export function parseSnapshotName(name: string): { index: number } | undefined {
  const m = SNAPSHOT_RE.exec(name);
  return m ? { index: Number.parseInt(m[1]!, 16) } : undefined;
}

export function parseSegmentName(name: string): { index: number; offset: number } | undefined {
  const m = SEGMENT_RE.exec(name);
  return m ? { index: Number.parseInt(m[1]!, 16), offset: Number.parseInt(m[2]!, 16) } : undefined;
}

export function parseShadowName(name: string): { index: number } | undefined {
  const m = SHADOW_RE.exec(name);
  return m ? { index: Number.parseInt(m[1]!, 16) } : undefined;
}

/** Object keys relative to a replica root; joined with "/" on every backend. */
export const keys = {
  generations: "generations",
  generation: (gen: string) => `generations/${gen}`,
  snapshots: (gen: string) => `generations/${gen}/snapshots`,
  snapshot: (gen: string, index: number) => `generations/${gen}/snapshots/${snapshotName(index)}`,
  wal: (gen: string) => `generations/${gen}/wal`,
  segment: (gen: string, index: number, offset: number) =>
    `generations/${gen}/wal/${segmentName(index, offset)}`,
  /** Walship-only: commit times of the transactions in one segment (JSON), beside the layout. */
  commitTimes: (gen: string, index: number, offset: number) =>
    `walship/generations/${gen}/commits/${hex8(index)}_${hex8(offset)}.json`,
  commitTimesDir: (gen: string) => `walship/generations/${gen}/commits`,
  walshipGeneration: (gen: string) => `walship/generations/${gen}`,
} as const;

/** The shadow (meta) directory for a database: `<dir>/.<name>-litestream`. */
export function metaDir(dbPath: string): string {
  return path.join(path.dirname(dbPath), `.${path.basename(dbPath)}-litestream`);
}

export const shadow = {
  generationFile: (meta: string) => path.join(meta, "generation"),
  generationsDir: (meta: string) => path.join(meta, "generations"),
  generationDir: (meta: string, gen: string) => path.join(meta, "generations", gen),
  walDir: (meta: string, gen: string) => path.join(meta, "generations", gen, "wal"),
  walFile: (meta: string, gen: string, index: number) =>
    path.join(meta, "generations", gen, "wal", `${hex8(index)}.wal`),
} as const;
