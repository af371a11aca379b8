/**
 * The storage contract every destination implements (file, s3, later gcs, abs, sftp). Narrow on
 * purpose: verbs over snapshots and WAL segments, streams in and out, and one error rule: a missing
 * object is a `NotFoundError` on every backend.
 *
 * Listings are always returned sorted (generation, then index, then offset), whatever order the
 * backend gives; Litestream v0.3.13 trusts backend order and breaks on stores that do not sort.
 */
import type { Readable } from "node:stream";
import type { SnapshotInfo, WalSegmentInfo } from "../types.ts";

export interface CallOptions {
  signal?: AbortSignal;
}

/** Litestream's backend operation labels. */
export type Operation = "GET" | "PUT" | "DELETE" | "LIST";
export type OperationCounts = Record<Operation, { count: number; bytes: number }>;

export interface ReplicaClient {
  /** "file", "s3", ... (Litestream's replica type names). */
  readonly type: string;
  /** A human description of where the objects go (a path or s3://bucket/prefix), for logs. */
  readonly location: string;
  /**
   * Requests sent and stored (compressed) bytes moved, for litestream_replica_operation_total and
   * _bytes. Absent on backends Litestream does not count either (file).
   */
  readonly operations?: OperationCounts;

  /** The 16-hex generation names present, sorted. Other names are ignored. */
  generations(opts?: CallOptions): Promise<string[]>;
  /** Remove a generation and everything under it (Walship's extras included). */
  deleteGeneration(generation: string, opts?: CallOptions): Promise<void>;

  snapshots(generation: string, opts?: CallOptions): Promise<SnapshotInfo[]>;
  /** Store a snapshot (already LZ4-framed bytes), replacing any of the same index. */
  writeSnapshot(generation: string, index: number, body: Readable, opts?: CallOptions): Promise<SnapshotInfo>;
  /** The stored (compressed) bytes. NotFoundError if missing. */
  snapshotReader(generation: string, index: number, opts?: CallOptions): Promise<Readable>;
  deleteSnapshot(generation: string, index: number, opts?: CallOptions): Promise<void>;

  walSegments(generation: string, opts?: CallOptions): Promise<WalSegmentInfo[]>;
  writeWalSegment(
    generation: string,
    index: number,
    offset: number,
    body: Readable | Uint8Array,
    opts?: CallOptions,
  ): Promise<WalSegmentInfo>;
  /** The stored (compressed) bytes. NotFoundError if missing. */
  walSegmentReader(generation: string, index: number, offset: number, opts?: CallOptions): Promise<Readable>;
  deleteWalSegments(
    segments: ReadonlyArray<{ generation: string; index: number; offset: number }>,
    opts?: CallOptions,
  ): Promise<void>;

  /**
   * Walship's side objects (keys relative to the root, under `walship/`): small blobs such as the
   * per-segment commit-time index. Litestream never reads them.
   */
  putExtra(key: string, body: Uint8Array, opts?: CallOptions): Promise<void>;
  /** NotFoundError if missing. */
  getExtra(key: string, opts?: CallOptions): Promise<Uint8Array>;
  /** Keys (relative to the root) under a prefix, sorted. */
  listExtras(prefix: string, opts?: CallOptions): Promise<string[]>;
  deleteExtras(keys: readonly string[], opts?: CallOptions): Promise<void>;

  /**
   * Proves at start that the credentials can write and delete (retention deletes), with an error
   * naming what is missing. Optional: backends whose failures already say so at the first write
   * leave it out.
   */
  checkAccess?(opts?: CallOptions): Promise<void>;
  /** Releases connections (an SSH connection keeps the process alive); a later call reconnects. */
  close?(): void;
}

/** Sorts snapshot and segment listings the one way every caller expects. */
export function sortSnapshots(list: SnapshotInfo[]): SnapshotInfo[] {
  return list.sort((a, b) =>
    a.generation === b.generation ? a.index - b.index : a.generation < b.generation ? -1 : 1,
  );
}

export function sortSegments(list: WalSegmentInfo[]): WalSegmentInfo[] {
  return list.sort((a, b) =>
    a.generation !== b.generation
      ? a.generation < b.generation
        ? -1
        : 1
      : a.index !== b.index
        ? a.index - b.index
        : a.offset - b.offset,
  );
}
