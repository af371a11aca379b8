/**
 * Replica validation: proves a destination restores to exactly what the database held at a known
 * position. The source's content is hashed at a position pinned under SQLite's write lock; once the
 * destination has uploaded that far, that exact position is restored into a temporary directory and
 * hashed the same way. Hashes are logical (schema and rows, see sqlite/hash.ts), so page layout,
 * free lists and file size never raise a false alarm (Litestream v0.3.13 compares CRC-64s of whole
 * files, and its validator is known for false alarms: #253, #431).
 */
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import Database from "better-sqlite3";
import { describeError } from "../shared/errors.ts";
import type { Logger } from "../shared/log.ts";
import type { Db } from "./db.ts";
import { logicalChecksum } from "./sqlite/hash.ts";
import type { ReplicaClient } from "./storage/client.ts";
import { formatPos, type Pos } from "./types.ts";

export type ValidationOutcome = "ok" | "mismatch" | "error";

export interface ValidationResult {
  outcome: ValidationOutcome;
  at: Date;
  pos?: Pos;
  /** Source and restored checksums (sha256 of the logical content). */
  source?: string;
  restored?: string;
  message?: string;
}

export interface ValidateOptions {
  name: string;
  client: ReplicaClient;
  /** The destination's current position, polled until it reaches the pinned one. */
  position(): Pos | undefined;
  /** How long to wait for the destination to reach the pinned position. */
  waitMs: number;
  log: Logger;
  signal?: AbortSignal;
}

export async function validateReplica(db: Db, opts: ValidateOptions): Promise<ValidationResult> {
  const at = new Date();
  let pos: Pos | undefined;
  let source: string;
  try {
    const snap = await db.snapshotAtPos();
    pos = snap.pos;
    try {
      source = logicalChecksum(snap.conn);
    } finally {
      snap.release();
    }
  } catch (err) {
    return { outcome: "error", at, message: `hash source: ${describeError(err)}` };
  }
  const target = pos;
  const reached = () => {
    const p = opts.position();
    return (
      p !== undefined &&
      p.generation === target.generation &&
      (p.index > target.index || (p.index === target.index && p.offset >= target.offset))
    );
  };
  const deadline = Date.now() + opts.waitMs;
  while (!reached()) {
    if (Date.now() > deadline || opts.signal?.aborted) {
      return {
        outcome: "error",
        at,
        pos,
        source,
        message: `destination did not reach ${formatPos(target)} within ${opts.waitMs} ms`,
      };
    }
    await sleep(100, undefined, opts.signal ? { signal: opts.signal } : undefined).catch(() => undefined);
  }
  const dir = await mkdtemp(path.join(os.tmpdir(), "walship-validate-"));
  try {
    const out = path.join(dir, "validate.db");
    // Loaded here: a replicator that never validates does not carry the restore's modules.
    const { restore } = await import("./restore.ts");
    await restore([{ name: opts.name, client: opts.client }], {
      outputPath: out,
      generation: target.generation,
      index: target.index,
      offset: target.offset,
      parallelism: 2,
      log: opts.log,
      ...(opts.signal ? { signal: opts.signal } : {}),
    });
    const conn = new Database(out, { readonly: true, fileMustExist: true });
    let restored: string;
    try {
      restored = logicalChecksum(conn);
    } finally {
      conn.close();
    }
    if (restored === source) return { outcome: "ok", at, pos, source, restored };
    return {
      outcome: "mismatch",
      at,
      pos,
      source,
      restored,
      message: `restored content differs from the database at ${formatPos(target)}`,
    };
  } catch (err) {
    return { outcome: "error", at, pos, source, message: `restore for validation: ${describeError(err)}` };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
