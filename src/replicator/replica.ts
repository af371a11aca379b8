/**
 * One destination of one database: ships the shadow WAL to a ReplicaClient as Litestream v0.3.13
 * segments, takes snapshots, enforces retention, and records beside the layout (under `walship/`)
 * the commit times of each segment and the exact position of each snapshot, which make
 * point-in-time restore precise to the transaction.
 */
import { stat } from "node:fs/promises";
import path from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { setTimeout as sleep } from "node:timers/promises";
import { describeError, ErrorCodes, hasCode, WalshipError } from "../shared/errors.ts";
import { hex8 } from "../shared/format.ts";
import { type Logger, nullLogger } from "../shared/log.ts";
import { readChunks, readRange } from "./db/files.ts";
import type { CommitRecord, Db } from "./db.ts";
import { type CommitTimesDoc, encodeJson, type SnapshotMetaDoc, snapshotMetaKey } from "./extras.ts";
import type { Fence } from "./fence.ts";
import { SNAPSHOT_RETRY_MS, snapshotRefusal, spaceNeeds } from "./guardrails.ts";
import { keys } from "./layout.ts";
import { createLz4Decoder, LZ4_BLOCK_SIZE, lz4EncodeChunks, lz4EncodeFrame } from "./lz4.ts";
import {
  DEFAULT_RETENTION_CHECK_INTERVAL_MS,
  DEFAULT_RETENTION_MS,
  DEFAULT_SYNC_INTERVAL_MS,
  type ReplicaMetrics,
  type ReplicaOptions,
  type ReplicaStatus,
} from "./replica/options.ts";
import type { ReplicaClient } from "./storage/client.ts";
import { formatPos, type Pos, type SnapshotInfo } from "./types.ts";
import { type ValidationResult, validateReplica } from "./validate.ts";

// A Replica's options, defaults, status and metrics are part of its API.
export * from "./replica/options.ts";

/**
 * The longest wait between retries after a failed sync. Short: each request of a sync has already
 * been retried by the client with its own backoff, and every second a store that is back goes
 * unused, the app's WAL piles up (10 s here made the replica start 10 s late after a one-minute
 * fault, with 45 MB of WAL a second behind it; Litestream retries every sync interval).
 */
const MAX_BACKOFF_MS = 2_000;
/** Commit times kept in memory per destination while they wait for their segment's upload. */
const MAX_PENDING_COMMITS = 200_000;

/** Segments up to this many bytes of WAL are compressed in memory and stored with one request. */
const IN_MEMORY_SEGMENT_BYTES = 2 * LZ4_BLOCK_SIZE;

export class Replica {
  readonly name: string;
  readonly client: ReplicaClient;
  readonly db: Db;
  readonly syncIntervalMs: number;
  readonly snapshotIntervalMs: number | undefined;
  readonly retentionMs: number;
  readonly retentionCheckIntervalMs: number;
  readonly validationIntervalMs: number | undefined;
  readonly fence: Fence | undefined;
  readonly metrics: ReplicaMetrics = {
    walBytes: 0,
    syncCount: 0,
    syncErrorCount: 0,
    snapshotCount: 0,
    validationOk: 0,
    validationError: 0,
    snapshotRefusedCount: 0,
  };

  #log: Logger;
  #pos: Pos | undefined;
  #pending: CommitRecord[] = [];
  #lastSyncAt: Date | undefined;
  #lastSnapshotAt: Date | undefined;
  #lastSnapshotIndex: number | undefined;
  #lastError: string | undefined;
  #lastDurableCommitAt: Date | undefined;
  #lastValidation: ValidationResult | undefined;
  #lastErrorAt: Date | undefined;
  #snapshotRefused: { message: string; at: Date } | undefined;
  #unsubscribe: () => void;
  #busy: Promise<unknown> = Promise.resolve();

  constructor(db: Db, client: ReplicaClient, opts: ReplicaOptions) {
    this.db = db;
    this.client = client;
    this.name = opts.name;
    this.syncIntervalMs = opts.syncIntervalMs ?? DEFAULT_SYNC_INTERVAL_MS;
    this.snapshotIntervalMs = opts.snapshotIntervalMs;
    this.retentionMs = opts.retentionMs ?? DEFAULT_RETENTION_MS;
    this.retentionCheckIntervalMs = opts.retentionCheckIntervalMs ?? DEFAULT_RETENTION_CHECK_INTERVAL_MS;
    this.validationIntervalMs = opts.validationIntervalMs;
    this.fence = opts.fence;
    this.#log = (opts.log ?? nullLogger()).child({ replica: this.name });
    this.#unsubscribe = db.onCommits((c) => {
      // One by one: a copy after a long downtime can see more commits than a call takes arguments.
      for (const commit of c) this.#pending.push(commit);
      // Bounded: while a destination is down for long, the oldest times are dropped and those
      // segments fall back to their object time at restore.
      if (this.#pending.length > MAX_PENDING_COMMITS)
        this.#pending.splice(0, this.#pending.length - MAX_PENDING_COMMITS);
    });
  }

  get pos(): Pos | undefined {
    return this.#pos;
  }

  status(): ReplicaStatus {
    const oldest = this.#pending[0];
    return {
      name: this.name,
      type: this.client.type,
      location: this.client.location,
      ...(this.#pos ? { pos: { ...this.#pos } } : {}),
      ...(this.#lastSyncAt ? { lastSyncAt: this.#lastSyncAt } : {}),
      ...(this.#lastSnapshotAt ? { lastSnapshotAt: this.#lastSnapshotAt } : {}),
      ...(this.#lastSnapshotIndex !== undefined ? { lastSnapshotIndex: this.#lastSnapshotIndex } : {}),
      ...(this.#lastDurableCommitAt ? { lastDurableCommitAt: this.#lastDurableCommitAt } : {}),
      ...(this.#lastValidation ? { lastValidation: this.#lastValidation } : {}),
      ...(this.#lastError ? { lastError: this.#lastError } : {}),
      ...(this.#lastErrorAt ? { lastErrorAt: this.#lastErrorAt } : {}),
      pendingCommits: this.#pending.length,
      ...(oldest ? { oldestPendingAt: new Date(oldest.time) } : {}),
      ...(this.#snapshotRefused ? { snapshotRefused: { ...this.#snapshotRefused } } : {}),
      ...(this.fence?.fencedBy ? { fencedBy: this.fence.fencedBy } : {}),
      ...(this.fence?.lease ? { lease: { ...this.fence.lease } } : {}),
    };
  }

  /** False while another writer holds this destination's claim (fence.ts): write nothing. */
  get mayWrite(): boolean {
    return this.fence === undefined || this.fence.held;
  }

  close(): void {
    this.#unsubscribe();
    this.client.close?.();
  }

  /** Runs the sync loop, the snapshotter and the retainer until the signal aborts. */
  async run(signal: AbortSignal): Promise<void> {
    await Promise.all([
      this.#syncLoop(signal),
      this.#snapshotLoop(signal),
      this.#retentionLoop(signal),
      this.#validationLoop(signal),
    ]);
  }

  /** Serialises sync, snapshot and retention on this destination. */
  #exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.#busy.then(fn);
    this.#busy = next.catch(() => undefined);
    return next;
  }

  async #syncLoop(signal: AbortSignal): Promise<void> {
    let backoff = this.syncIntervalMs;
    // One listener for the loop's whole life: a promise per iteration would leave one listener
    // behind on the signal at every sync (it settles only on abort).
    const aborted = abortPromise(signal);
    while (!signal.aborted) {
      if (this.fence && !this.fence.held && this.fence.lastError === undefined) {
        // Fenced, or not claimed yet: wait for the claim; another writer may have changed the
        // destination meanwhile, so the position is rebuilt from it. A claim that cannot be looked
        // at lets the sync try, to report the store's own error (its writes are refused).
        await this.fence.waitTurn(signal);
        this.#pos = undefined;
        continue;
      }
      const changed = this.db.activity();
      const started = Date.now();
      try {
        // Up to a whole interval for the copy: under a heavy writer a tick's copy is tens of MiB
        // and takes longer than 100 ms, and an upload that went without it left those commits for
        // the next tick (heavy writer at 31 MiB/s: lag p99 1.85 s against Litestream's 1.28 s).
        await this.db.catchUp(Math.max(100, this.syncIntervalMs));
        await this.sync({ signal });
        backoff = this.syncIntervalMs;
      } catch (err) {
        if (signal.aborted) break;
        this.#log.error({ err: describeError(err) }, "replica sync failed");
        await sleep(backoff, undefined, { signal }).catch(() => undefined);
        backoff = Math.min(backoff * 2, Math.max(MAX_BACKOFF_MS, this.syncIntervalMs));
        continue;
      }
      // Wait for a change (copied, or still only in the WAL: catchUp copies it); syncs start at most
      // once per sync-interval, counted from the previous start (a ticker, as in Litestream), not
      // from its end.
      await Promise.race([changed, aborted]);
      const wait = started + this.syncIntervalMs - Date.now();
      if (wait > 0) await sleep(wait, undefined, { signal }).catch(() => undefined);
    }
  }

  async #snapshotLoop(signal: AbortSignal): Promise<void> {
    const interval = this.snapshotIntervalMs;
    if (!interval) return;
    // After a snapshot refused for space: when to try again (space may come back before the interval).
    let retryAt: number | undefined;
    /** While fenced, look again at most once a second. */
    let notBefore = 0;
    while (!signal.aborted) {
      const last = this.#lastSnapshotAt?.getTime() ?? Date.now();
      // A refusal's retry replaces the schedule (the interval has passed already when one is set).
      const due = retryAt ?? last + interval;
      await sleep(Math.max(due - Date.now(), notBefore - Date.now(), 10), undefined, { signal }).catch(
        () => undefined,
      );
      if (signal.aborted) break;
      if (!this.mayWrite) {
        notBefore = Date.now() + 1000;
        continue;
      }
      try {
        const isDue =
          retryAt !== undefined
            ? Date.now() >= retryAt
            : !this.#lastSnapshotAt || Date.now() - this.#lastSnapshotAt.getTime() >= interval;
        if (isDue) {
          retryAt = undefined;
          await this.snapshot({ signal });
        }
      } catch (err) {
        if (!signal.aborted) this.#log.error({ err: describeError(err) }, "snapshot failed");
        if (hasCode(err, ErrorCodes.NO_SPACE)) {
          // Refused: the last snapshot stays the one reported (its age keeps growing, and alerts see
          // it); tried again soon.
          retryAt = Date.now() + Math.min(interval, SNAPSHOT_RETRY_MS);
        } else {
          this.#lastSnapshotAt = new Date();
        }
      }
    }
  }

  async #retentionLoop(signal: AbortSignal): Promise<void> {
    if (this.retentionMs <= 0) return;
    const every = Math.min(this.retentionCheckIntervalMs, this.retentionMs);
    while (!signal.aborted) {
      await sleep(every, undefined, { signal }).catch(() => undefined);
      if (signal.aborted || !this.mayWrite) continue;
      try {
        await this.enforceRetention({ signal });
      } catch (err) {
        if (!signal.aborted) this.#log.error({ err: describeError(err) }, "retention failed");
      }
    }
  }

  async #validationLoop(signal: AbortSignal): Promise<void> {
    const every = this.validationIntervalMs;
    if (!every) return;
    while (!signal.aborted) {
      await sleep(every, undefined, { signal }).catch(() => undefined);
      if (signal.aborted || !this.mayWrite) continue;
      await this.validate({ signal });
    }
  }

  /** Restores this destination at a pinned position and compares it with the database (see validate.ts). */
  async validate(opts: { signal?: AbortSignal } = {}): Promise<ValidationResult> {
    const result = await validateReplica(this.db, {
      name: this.name,
      client: this.client,
      position: () => this.#pos,
      waitMs: Math.max(30_000, this.syncIntervalMs * 10),
      log: this.#log,
      ...(opts.signal ? { signal: opts.signal } : {}),
    });
    if (result.outcome !== "ok" && opts.signal?.aborted) {
      // Stopped by shutdown mid-validation: nothing was found wrong, so no error is counted or logged,
      // and the last finished validation stays the one reported.
      this.#log.info({ position: result.pos && formatPos(result.pos) }, "validator: stopped by shutdown");
      return result;
    }
    this.#lastValidation = result;
    if (result.outcome === "ok") {
      this.metrics.validationOk++;
      this.#log.info(
        { position: result.pos && formatPos(result.pos), checksum: result.source },
        "validator: ok",
      );
    } else {
      this.metrics.validationError++;
      this.#log.error(
        {
          outcome: result.outcome,
          position: result.pos && formatPos(result.pos),
          source: result.source,
          restored: result.restored,
          err: result.message,
        },
        result.outcome === "mismatch"
          ? "validator: invalid replica, checksum mismatch"
          : "validator: could not validate",
      );
    }
    return result;
  }

  /** Uploads everything the shadow WAL holds past this destination's position. */
  sync(opts: { signal?: AbortSignal } = {}): Promise<void> {
    return this.#exclusive(async () => {
      try {
        await this.#sync(opts.signal);
        this.metrics.syncCount++;
        this.#lastSyncAt = new Date();
        this.#lastError = undefined;
      } catch (err) {
        this.metrics.syncErrorCount++;
        this.#lastError = describeError(err);
        this.#lastErrorAt = new Date();
        // Rebuild the position from the destination next time, as after a restart.
        this.#pos = undefined;
        throw err;
      }
    });
  }

  async #sync(signal: AbortSignal | undefined): Promise<void> {
    const end = this.db.pos();
    if (!end) return;
    if (!this.#pos || this.#pos.generation !== end.generation) {
      const started = performance.now();
      this.#pos = await this.#calcPos(end.generation, signal);
      this.#log.info(
        { position: formatPos(this.#pos), elapsedMs: Math.round(performance.now() - started) },
        "replica position",
      );
    }
    let pos: Pos = this.#pos;
    for (;;) {
      // Read before the file's size: the shadow's committed end only grows, and a later index means
      // this one was closed whole.
      const latest = this.db.pos();
      const file = this.db.shadowWalPath(pos.generation, pos.index);
      const size = await stat(file).then(
        (s) => s.size,
        () => -1,
      );
      if (size < 0) {
        if (pos.index < end.index) {
          throw new WalshipError(ErrorCodes.WAL, `sync ${this.name}: shadow wal ${file} is missing`);
        }
        break;
      }
      // The current index may be seen mid-append, its size inside a frame (the kernel extends the file
      // page by page as it copies): upload only up to the last commit the Db has finished copying.
      const current = latest && latest.generation === pos.generation && latest.index === pos.index;
      const upTo = current ? Math.min(size, latest.offset) : size;
      if (upTo > pos.offset) {
        await this.#uploadSegment(pos, upTo, signal);
        pos = { ...pos, offset: upTo };
        this.#pos = pos;
        // The destination takes writes again: a failure before it is no longer the status, though
        // this sync may have more indexes to upload (the commits it uploaded are no longer pending).
        this.#lastError = undefined;
        continue;
      }
      if (latest && latest.generation === pos.generation && pos.index < latest.index) {
        pos = { generation: pos.generation, index: pos.index + 1, offset: 0 };
        this.#pos = pos;
        continue;
      }
      break;
    }
    this.db.setReplicaPosition(this.name, { generation: pos.generation, index: pos.index });
  }

  /** Where this destination stands in a generation; takes the first snapshot if there is none. */
  async #calcPos(generation: string, signal: AbortSignal | undefined): Promise<Pos> {
    let snaps = await this.client.snapshots(generation, { signal });
    if (snaps.length === 0) {
      await this.#snapshot(signal);
      snaps = await this.client.snapshots(generation, { signal });
    }
    const snap = snaps.at(-1);
    if (!snap)
      throw new WalshipError(
        ErrorCodes.STORAGE,
        `sync ${this.name}: no snapshot in generation ${generation}`,
      );
    this.#lastSnapshotAt ??= snap.createdAt;
    this.#lastSnapshotIndex ??= snap.index;
    const segs = await this.client.walSegments(generation, { signal });
    const last = segs.at(-1);
    if (!last || last.index < snap.index) return { generation, index: snap.index, offset: 0 };
    const body = await this.client.walSegmentReader(generation, last.index, last.offset, { signal });
    let length = 0;
    // pipeline, not pipe: a body that breaks off (a dropped connection) fails this sync; piped alone
    // its error had no listener and ended the process (storage-faults, truncated bodies).
    await pipeline(body, createLz4Decoder(), async (decoded: AsyncIterable<Buffer>) => {
      for await (const chunk of decoded) length += chunk.length;
    });
    return { generation, index: last.index, offset: last.offset + length };
  }

  async #uploadSegment(pos: Pos, end: number, signal: AbortSignal | undefined): Promise<void> {
    const file = this.db.shadowWalPath(pos.generation, pos.index);
    const started = performance.now();
    const length = end - pos.offset;
    // A segment of up to two blocks (most syncs' under sync-interval 1s) is read and compressed in
    // memory and stored as one buffer: one PutObject, with nothing gathered or copied on the way.
    // Larger ones stream, read in whole LZ4 blocks into one buffer filled again at each step: the
    // encoder compresses each chunk where it lies instead of gathering 64 KiB reads into a block
    // first (about a fifth less CPU per byte, measured on a 171 MB shadow WAL: 360 ms against 438 ms),
    // and no fresh buffer is made per block.
    const short = (at: number): WalshipError =>
      new WalshipError(
        ErrorCodes.WAL,
        `upload WAL segment ${formatPos(pos)}: shadow WAL ${file} ends at ${at}, before ${end}`,
        { details: { file, offset: pos.offset, end } },
      );
    let body: Readable | Uint8Array;
    if (length <= IN_MEMORY_SEGMENT_BYTES) {
      const wal = await readRange(file, pos.offset, length);
      if (wal.length !== length) throw short(pos.offset + wal.length);
      body = lz4EncodeFrame(wal);
    } else {
      body = Readable.from(lz4EncodeChunks(readChunks(file, pos.offset, end, LZ4_BLOCK_SIZE, short)), {
        highWaterMark: 1,
      });
    }
    // Commit times ride beside the segment; a segment without them falls back to its object time.
    // Both are written at once (one round trip per sync, not two): restore reads a commit-times
    // document only for a segment it lists, so one whose segment never landed is simply unused.
    const mine = this.#pending.filter(
      (c) => c.generation === pos.generation && c.index === pos.index && c.end > pos.offset && c.end <= end,
    );
    const doc: CommitTimesDoc | undefined =
      mine.length > 0 ? { v: 1, commits: mine.map((c) => [c.end, c.time]) } : undefined;
    const [info] = await Promise.all([
      this.client.writeWalSegment(pos.generation, pos.index, pos.offset, body, { signal }),
      doc &&
        this.client.putExtra(keys.commitTimes(pos.generation, pos.index, pos.offset), encodeJson(doc), {
          signal,
        }),
    ]);
    this.metrics.walBytes += end - pos.offset;
    const newest = mine.at(-1);
    if (newest) this.#lastDurableCommitAt = new Date(newest.time);
    this.#pending = stillPending(this.#pending, pos, end, this.db.generation);
    this.#log.debug(
      {
        position: formatPos(pos),
        walBytes: end - pos.offset,
        size: info.size,
        elapsedMs: Math.round(performance.now() - started),
      },
      "wal segment written",
    );
  }

  /** Takes a snapshot of the database now, on a fresh WAL index. */
  snapshot(opts: { signal?: AbortSignal } = {}): Promise<SnapshotInfo> {
    return this.#exclusive(() => this.#snapshot(opts.signal, { fresh: true }));
  }

  /**
   * Snapshots are named by WAL index, so a second snapshot in the same index would replace the first
   * and with it every restore point between them. A scheduled snapshot therefore checkpoints first,
   * which moves the WAL to a new index, and an index that already has a snapshot keeps it.
   */
  async #snapshot(signal: AbortSignal | undefined, opts: { fresh?: boolean } = {}): Promise<SnapshotInfo> {
    const started = performance.now();
    await this.#checkSpace(opts.fresh === true);
    if (opts.fresh) {
      // A RESTART checkpoint moves the WAL to a new index (PASSIVE ones no longer do).
      await this.db.checkpoint("RESTART");
      // Upload what the checkpoint closed off below the new index first: once the snapshot exists,
      // retention may delete everything below it, and a late upload would land below it as a stray.
      if (this.#pos) await this.#sync(signal);
    }
    let skipped = false;
    const info = await this.db.withCheckpointsPaused(async (pos) => {
      const existing = (await this.client.snapshots(pos.generation, { signal })).find(
        (s) => s.index === pos.index,
      );
      if (existing) {
        skipped = true;
        return existing;
      }
      // The record goes first, stamped now: the snapshot is the database exactly at `pos`, every
      // commit stamped so far is at or before it, and a reader that finds the snapshot always finds
      // its record (never falling back to the later object time for a moment).
      const meta: SnapshotMetaDoc = {
        v: 1,
        index: pos.index,
        offset: pos.offset,
        time: Date.now(),
        exact: true,
      };
      await this.client.putExtra(snapshotMetaKey(pos.generation, pos.index), encodeJson(meta), { signal });
      // Not the file as it is: checkpoints may write frames back into it while it is read (see
      // snapshot-image.ts); the pages of the index's frames up to `pos` are taken from the shadow.
      // Compressed as it is read, chunk by chunk (the image refills one buffer); one block ahead.
      const body = Readable.from(lz4EncodeChunks(this.db.imageAt(pos)), { highWaterMark: 1 });
      return await this.client.writeSnapshot(pos.generation, pos.index, body, { signal });
    });
    this.#lastSnapshotAt = new Date();
    this.#lastSnapshotIndex = info.index;
    this.#snapshotRefused = undefined;
    if (skipped) {
      this.#log.debug(
        { index: info.index },
        "snapshot skipped: this WAL index has one (the WAL could not be restarted)",
      );
      return info;
    }
    this.metrics.snapshotCount++;
    this.#log.info(
      {
        position: `${info.generation}/${hex8(info.index)}`,
        size: info.size,
        elapsedMs: Math.round(performance.now() - started),
      },
      "snapshot written",
    );
    return info;
  }

  /**
   * Refuses (NO_SPACE) a snapshot whose local writes would not fit: the checkpoint before a fresh one
   * (`checkpoint`) and, for a file destination, the snapshot object (guardrails.ts). The reason stays
   * in the status until a snapshot is taken.
   */
  async #checkSpace(checkpoint: boolean): Promise<void> {
    const local = this.client.type === "file" ? this.client.location : undefined;
    const needs = await spaceNeeds({
      dbDir: path.dirname(this.db.path),
      dbSizeBytes: await stat(this.db.path).then(
        (s) => s.size,
        () => 0,
      ),
      checkpointBytes: checkpoint ? (this.db.pos()?.offset ?? 0) : 0,
      localDestination: local,
    });
    const why = snapshotRefusal(needs);
    if (!why) return;
    const message = `snapshot ${this.db.path} to ${this.name} refused: ${why}`;
    this.#snapshotRefused = { message, at: new Date() };
    this.metrics.snapshotRefusedCount++;
    this.#log.warn({ needs }, "snapshot refused: not enough space");
    throw new WalshipError(ErrorCodes.NO_SPACE, message, { details: { needs } });
  }

  /**
   * Deletes what the retention period no longer needs: snapshots older than it (keeping at least one,
   * taken now if needed), and WAL below the oldest kept snapshot of each generation. The current
   * generation is never deleted whole.
   */
  enforceRetention(opts: { signal?: AbortSignal } = {}): Promise<void> {
    return this.#exclusive(async () => {
      const signal = opts.signal;
      // Up to date first, so nothing is uploaded below a kept snapshot after the deletions.
      if (this.#pos) await this.#sync(signal);
      const cutoff = Date.now() - this.retentionMs;
      const current = this.db.generation;
      const gens = await this.client.generations({ signal });
      const all = (await Promise.all(gens.map((g) => this.client.snapshots(g, { signal })))).flat();
      let kept = all.filter((s) => s.createdAt.getTime() >= cutoff);
      if (kept.length === 0) {
        kept = [await this.#snapshot(signal, { fresh: true })];
      }
      for (const gen of gens) {
        const keep = kept.filter((s) => s.generation === gen).sort((a, b) => a.index - b.index)[0];
        if (!keep) {
          if (gen === current) continue;
          await this.client.deleteGeneration(gen, { signal });
          this.#log.info({ generation: gen }, "generation deleted by retention");
          continue;
        }
        for (const s of all) {
          if (s.generation === gen && s.index < keep.index) {
            await this.client.deleteSnapshot(gen, s.index, { signal });
            await this.client.deleteExtras([snapshotMetaKey(gen, s.index)], { signal });
          }
        }
        const segs = (await this.client.walSegments(gen, { signal })).filter((s) => s.index < keep.index);
        if (segs.length > 0) {
          await this.client.deleteWalSegments(segs, { signal });
          await this.client.deleteExtras(
            segs.map((s) => keys.commitTimes(gen, s.index, s.offset)),
            { signal },
          );
        }
      }
    });
  }
}

/**
 * The commits still pending at a destination once the segment of `uploaded` up to `end` is durable
 * there: those after it in its generation, and every one of the database's current generation when
 * that is another (a new generation began while this upload was in flight; its commits wait for the
 * new generation's snapshot and segments). Commits of a generation that is neither are given up:
 * nothing will upload them here, and the current generation's snapshot holds what they changed.
 * Dropping the current generation's commits here let `pendingTransactions` read 0 with commits
 * nowhere yet, which /status readers take as "on the destination" (docs/metrics.md, `walReadAt`).
 */
export function stillPending(
  pending: readonly CommitRecord[],
  uploaded: Pos,
  end: number,
  current: string | undefined,
): CommitRecord[] {
  return pending.filter((c) =>
    c.generation === uploaded.generation
      ? c.index > uploaded.index || (c.index === uploaded.index && c.end > end)
      : c.generation === current,
  );
}

function abortPromise(signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) resolve();
    else signal.addEventListener("abort", () => resolve(), { once: true });
  });
}
