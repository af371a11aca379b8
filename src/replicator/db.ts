/**
 * One replicated database: the SQLite connections, the long read transaction, the shadow WAL under
 * `.<db>-litestream`, generations and checkpoints. Destinations (replica.ts) read only the shadow
 * files this module writes.
 *
 * Lossless by construction:
 * - A read transaction is held at all times except during our own checkpoint, so no other
 *   connection can restart or truncate the WAL; the shadow WAL can always catch up.
 * - Our own checkpoint runs while we hold SQLite's write lock: the shadow is topped up, the
 *   checkpoint copies the WAL back, and our own write restarts the WAL; no application commit can
 *   fall between the top-up and the restart.
 * - Anything we cannot prove continuous (a WAL reset by someone else, a missing shadow file) starts a
 *   new generation with a fresh snapshot, and the reason is logged.
 */

import { randomBytes } from "node:crypto";
import fs from "node:fs";
import { type FileHandle, mkdir, open, readdir, readFile, rename, rm, stat } from "node:fs/promises";
import path from "node:path";
import Database from "better-sqlite3";
import { describeError, ErrorCodes, WalshipError } from "../shared/errors.ts";
import { type Logger, nullLogger } from "../shared/log.ts";
import { accessProblem } from "./access.ts";
import { Backfiller } from "./backfill.ts";
import { isGenerationName, metaDir, parseShadowName, shadow } from "./layout.ts";
import { alignWalSize, frameSize, parseWalHeader, scanFrames, WAL_HEADER_SIZE } from "./sqlite/wal.ts";
import { MAX_INDEX, type Pos } from "./types.ts";

export const DEFAULT_MONITOR_INTERVAL_MS = 1000;
export const DEFAULT_CHECKPOINT_INTERVAL_MS = 60_000;
export const DEFAULT_MIN_CHECKPOINT_PAGE_COUNT = 1000;
export const DEFAULT_MAX_CHECKPOINT_PAGE_COUNT = 10_000;
export const DEFAULT_TRUNCATE_PAGE_COUNT = 500_000;
/** How long SQLite waits on a lock before answering busy. */
export const BUSY_TIMEOUT_MS = 1000;
/** Bytes read from the real WAL per step, so memory stays bounded whatever the WAL's size. */
const COPY_CHUNK_BYTES = 4 * 1024 * 1024;

export type CheckpointMode = "PASSIVE" | "RESTART" | "TRUNCATE";

export interface DbOptions {
  metaPath?: string;
  /** How often the WAL is checked when no change notification arrives. */
  monitorIntervalMs?: number;
  /** Checkpoint when the database file has not changed for this long; 0 disables. */
  checkpointIntervalMs?: number;
  /** PASSIVE checkpoint once the shadow WAL holds this many pages. Must be > 0. */
  minCheckpointPageCount?: number;
  /** RESTART checkpoint once the shadow WAL holds this many pages; 0 disables. */
  maxCheckpointPageCount?: number;
  /** TRUNCATE checkpoint once the real WAL holds this many pages. */
  truncatePageCount?: number;
  /** How long SQLite waits on a lock before answering busy (Walship key `busy-timeout`). */
  busyTimeoutMs?: number;
  /** Watch the WAL file for changes (inotify) so commits are seen within milliseconds. Default true. */
  watch?: boolean;
  log?: Logger;
  /** Test seams (named so nothing else uses them): runs between the WAL check and the copy. */
  testHooks?: { afterVerify?: () => void };
}

/** A commit observed in the WAL: where its last frame ends, and when we saw it. */
export interface CommitRecord {
  generation: string;
  index: number;
  /** Shadow offset just after the commit frame. */
  end: number;
  /** Milliseconds since the epoch at which the commit was observed. */
  time: number;
}

export interface DbMetrics {
  dbSize: number;
  walSize: number;
  shadowIndex: number;
  shadowSize: number;
  totalWalBytes: number;
  syncCount: number;
  syncErrorCount: number;
  syncSeconds: number;
  checkpoints: Record<CheckpointMode, { count: number; errors: number; seconds: number }>;
}

interface ShadowState {
  generation: string;
  index: number;
  /** Size of the current shadow file (always a committed frame boundary). */
  size: number;
  /** Running checksum at `size`. */
  checksum: [number, number];
  /** The 32-byte header of the current shadow file. */
  header: Uint8Array;
}

export class Db {
  readonly path: string;
  readonly metaPath: string;
  readonly walPath: string;
  readonly monitorIntervalMs: number;
  readonly checkpointIntervalMs: number;
  readonly minCheckpointPageCount: number;
  readonly maxCheckpointPageCount: number;
  readonly truncatePageCount: number;
  readonly busyTimeoutMs: number;
  readonly metrics: DbMetrics;

  #log: Logger;
  #watchEnabled: boolean;
  #db: Database.Database | undefined;
  #rtx: Database.Database | undefined;
  #pageSize = 0;
  #state: ShadowState | undefined;
  #changed: PromiseWithResolvers<void> = Promise.withResolvers<void>();
  #commitListeners = new Set<(c: CommitRecord[]) => void>();
  /** Per destination, the lowest shadow index it still needs in the current generation. */
  #replicaIndexes = new Map<string, { generation: string; index: number } | undefined>();
  #watcher: fs.FSWatcher | undefined;
  #syncing: Promise<void> | undefined;
  #lastError: string | undefined;
  #paused = 0;
  readonly #backfiller = new Backfiller();
  readonly #testHooks: DbOptions["testHooks"];
  /** Where the last PASSIVE checkpoint left the shadow. */
  #passiveAt: { generation: string; index: number; size: number } | undefined;

  constructor(dbPath: string, opts: DbOptions = {}) {
    this.path = path.resolve(dbPath);
    this.walPath = `${this.path}-wal`;
    this.metaPath = opts.metaPath ? path.resolve(opts.metaPath) : metaDir(this.path);
    this.monitorIntervalMs = opts.monitorIntervalMs ?? DEFAULT_MONITOR_INTERVAL_MS;
    this.checkpointIntervalMs = opts.checkpointIntervalMs ?? DEFAULT_CHECKPOINT_INTERVAL_MS;
    this.minCheckpointPageCount = opts.minCheckpointPageCount ?? DEFAULT_MIN_CHECKPOINT_PAGE_COUNT;
    this.maxCheckpointPageCount = opts.maxCheckpointPageCount ?? DEFAULT_MAX_CHECKPOINT_PAGE_COUNT;
    this.truncatePageCount = opts.truncatePageCount ?? DEFAULT_TRUNCATE_PAGE_COUNT;
    this.busyTimeoutMs = opts.busyTimeoutMs ?? BUSY_TIMEOUT_MS;
    if (this.minCheckpointPageCount <= 0) {
      throw new WalshipError(ErrorCodes.CONFIG, "open db: min-checkpoint-page-count must be greater than 0");
    }
    this.#watchEnabled = opts.watch ?? true;
    this.#testHooks = opts.testHooks;
    this.#log = (opts.log ?? nullLogger()).child({ db: this.path });
    const zero = () => ({ count: 0, errors: 0, seconds: 0 });
    this.metrics = {
      dbSize: 0,
      walSize: 0,
      shadowIndex: 0,
      shadowSize: 0,
      totalWalBytes: 0,
      syncCount: 0,
      syncErrorCount: 0,
      syncSeconds: 0,
      checkpoints: { PASSIVE: zero(), RESTART: zero(), TRUNCATE: zero() },
    };
  }

  get pageSize(): number {
    return this.#pageSize;
  }

  /** The current generation, once one exists. */
  get generation(): string | undefined {
    return this.#state?.generation;
  }

  /** The end of the replicable stream: current generation, index and committed shadow size. */
  pos(): Pos | undefined {
    const s = this.#state;
    return s ? { generation: s.generation, index: s.index, offset: s.size } : undefined;
  }

  get lastError(): string | undefined {
    return this.#lastError;
  }

  /** A promise that settles at the next change of the shadow WAL (new frames, index, generation). */
  changed(): Promise<void> {
    return this.#changed.promise;
  }

  /** Listen for commits as they are copied into the shadow WAL (for the commit-time index). */
  onCommits(fn: (c: CommitRecord[]) => void): () => void {
    this.#commitListeners.add(fn);
    return () => this.#commitListeners.delete(fn);
  }

  /** Destinations report the lowest shadow index they still need, so cleanup never removes it. */
  setReplicaPosition(name: string, pos: { generation: string; index: number } | undefined): void {
    this.#replicaIndexes.set(name, pos);
  }

  /** Path of the shadow WAL file for an index of a generation. */
  shadowWalPath(generation: string, index: number): string {
    return shadow.walFile(this.metaPath, generation, index);
  }

  /** Shadow indexes present for a generation, sorted. */
  async shadowIndexes(generation: string): Promise<number[]> {
    const names = await readdir(shadow.walDir(this.metaPath, generation)).catch(() => [] as string[]);
    return names
      .map((n) => parseShadowName(n)?.index)
      .filter((i): i is number => i !== undefined)
      .sort((a, b) => a - b);
  }

  /** Startup: remove temporaries and any generation but the current one. Does not touch the database. */
  async init(): Promise<void> {
    await mkdir(this.metaPath, { recursive: true, mode: 0o700 });
    for (const name of await readdir(this.metaPath)) {
      if (name.endsWith(".tmp")) await rm(path.join(this.metaPath, name), { force: true });
    }
    const gen = await this.#readGenerationFile();
    await this.#removeOtherGenerations(gen);
    if (this.#watchEnabled) this.#startWatch();
  }

  /** Runs `sync` until the signal aborts: on every WAL change notification, and at least every monitor interval. */
  async monitor(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      try {
        await this.sync();
      } catch (err) {
        this.#log.error({ err: describeError(err) }, "sync failed");
      }
      await this.#waitForWalChange(signal);
    }
  }

  /** One step: connect if needed, verify the shadow against the real WAL, copy new commits, maybe checkpoint. */
  sync(): Promise<void> {
    return this.#serial(() => this.#syncOnce());
  }

  /**
   * Everything that reads or writes the shadow WAL or checkpoints runs one at a time: the monitor
   * loop, a final sync at shutdown, and checkpoints asked for by snapshots may all come at once.
   */
  #serial<T>(fn: () => Promise<T>): Promise<T> {
    const prev = this.#syncing ?? Promise.resolve();
    const next = prev.then(fn);
    this.#syncing = next.then(
      () => undefined,
      () => undefined,
    );
    return next;
  }

  async #syncOnce(): Promise<void> {
    const started = performance.now();
    try {
      if (!this.#connect()) return;
      await this.#ensureWal();
      const changed = await this.#verifyAndCopy();
      await this.#maybeCheckpoint();
      await this.#cleanShadow();
      await this.#updateSizeMetrics();
      this.metrics.syncCount++;
      this.#lastError = undefined;
      if (changed) this.#notify();
    } catch (err) {
      this.metrics.syncErrorCount++;
      this.#lastError = describeError(err);
      throw err;
    } finally {
      this.metrics.syncSeconds += (performance.now() - started) / 1000;
    }
  }

  /** Closes the connections. The WAL is left for the application and the next start. */
  async close(): Promise<void> {
    this.#watcher?.close();
    this.#watcher = undefined;
    await this.#syncing;
    this.#disconnect();
    await this.#backfiller.close();
  }

  /**
   * Runs `fn` with the shadow caught up and our checkpoints held off, so the database file holds no
   * page newer than the returned position while `fn` reads it (used by snapshots). Our read
   * transaction pins every frame past its mark: other connections cannot write those back either.
   */
  async withCheckpointsPaused<T>(fn: (pos: Pos) => Promise<T>): Promise<T> {
    this.#paused++;
    try {
      await this.sync();
      const state = this.#state;
      if (!this.#db || !state) {
        throw new WalshipError(ErrorCodes.SQLITE, `snapshot ${this.path}: database is not open yet`);
      }
      return await fn({ generation: state.generation, index: state.index, offset: state.size });
    } finally {
      this.#paused--;
    }
  }

  /**
   * Opens a read-only connection whose snapshot is exactly the end of the shadow WAL: the write lock
   * is held while the shadow catches up and the snapshot begins, so the two agree to the byte. The
   * caller reads through `conn` (a read transaction is open on it) and must call `release()`.
   */
  snapshotAtPos(): Promise<{ pos: Pos; conn: Database.Database; release(): void }> {
    return this.#serial(async () => {
      await this.#syncOnce();
      const db = this.#db;
      if (!db || !this.#state)
        throw new WalshipError(ErrorCodes.SQLITE, `validate ${this.path}: database is not open yet`);
      const conn = new Database(this.path, {
        readonly: true,
        timeout: this.busyTimeoutMs,
        fileMustExist: true,
      });
      try {
        db.exec("BEGIN IMMEDIATE");
        try {
          await this.#copy();
          conn.exec("BEGIN");
          conn.prepare("SELECT COUNT(1) FROM sqlite_master").get();
        } finally {
          db.exec("COMMIT");
        }
      } catch (err) {
        conn.close();
        throw new WalshipError(ErrorCodes.SQLITE, `validate ${this.path}: ${describeError(err)}`, {
          cause: err,
        });
      }
      const s = this.#state;
      return {
        pos: { generation: s.generation, index: s.index, offset: s.size },
        conn,
        release: () => {
          if (conn.inTransaction) conn.exec("ROLLBACK");
          conn.close();
        },
      };
    });
  }

  /** Forces a checkpoint of the given mode now (the snapshotter and tests use it). */
  checkpoint(mode: CheckpointMode): Promise<void> {
    return this.#serial(async () => {
      await this.#syncOnce();
      await this.#checkpoint(mode);
      this.#notify();
    });
  }

  // --- connection -------------------------------------------------------------------------------

  #connect(): boolean {
    if (this.#db) return true;
    if (!fs.existsSync(this.path)) return false;
    // Nothing is opened that this user may not write: SQLite would create -wal/-shm as this user, and
    // an app running as another one could then no longer write its own database.
    const denied = accessProblem(this.path, this.metaPath);
    if (denied) {
      throw new WalshipError(
        ErrorCodes.SQLITE,
        `open db ${this.path}: ${denied.code}: cannot ${denied.need} ${denied.path}; nothing was opened`,
      );
    }
    let db: Database.Database | undefined;
    let rtx: Database.Database | undefined;
    try {
      db = new Database(this.path, { timeout: this.busyTimeoutMs, fileMustExist: true });
      const mode = db.pragma("journal_mode = wal", { simple: true });
      if (String(mode).toLowerCase() !== "wal") {
        throw new WalshipError(
          ErrorCodes.SQLITE,
          `open db ${this.path}: cannot enable WAL mode (journal_mode=${mode})`,
        );
      }
      db.pragma("wal_autocheckpoint = 0");
      db.exec(
        "CREATE TABLE IF NOT EXISTS _litestream_seq (id INTEGER PRIMARY KEY, seq INTEGER);" +
          "CREATE TABLE IF NOT EXISTS _litestream_lock (id INTEGER);",
      );
      this.#pageSize = Number(db.pragma("page_size", { simple: true }));
      rtx = new Database(this.path, { timeout: this.busyTimeoutMs, fileMustExist: true });
      this.#db = db;
      this.#rtx = rtx;
      // Write first so the WAL holds an unbackfilled frame: the read transaction then pins it.
      this.#bumpSeq();
      this.#beginRead();
      this.#log.debug({ pageSize: this.#pageSize }, "db connected");
      return true;
    } catch (err) {
      rtx?.close();
      db?.close();
      this.#db = undefined;
      this.#rtx = undefined;
      if (err instanceof WalshipError) throw err;
      throw new WalshipError(ErrorCodes.SQLITE, `open db ${this.path}: ${describeError(err)}`, {
        cause: err,
      });
    }
  }

  #disconnect(): void {
    try {
      if (this.#rtx?.inTransaction) this.#rtx.exec("ROLLBACK");
    } catch {
      // closing anyway
    }
    this.#rtx?.close();
    this.#db?.close();
    this.#rtx = undefined;
    this.#db = undefined;
  }

  #beginRead(): void {
    const rtx = this.#rtx!;
    if (rtx.inTransaction) return;
    rtx.exec("BEGIN");
    rtx.prepare("SELECT COUNT(1) FROM _litestream_seq").get();
  }

  #endRead(): void {
    const rtx = this.#rtx!;
    if (rtx.inTransaction) rtx.exec("ROLLBACK");
  }

  #bumpSeq(): void {
    this.#db!.prepare(
      "INSERT INTO _litestream_seq (id, seq) VALUES (1, 1) ON CONFLICT (id) DO UPDATE SET seq = seq + 1",
    ).run();
  }

  async #ensureWal(): Promise<void> {
    const st = await stat(this.walPath).catch(() => undefined);
    if (!st || st.size < WAL_HEADER_SIZE) {
      this.#endRead();
      this.#bumpSeq();
      this.#beginRead();
    }
  }

  // --- generations and the shadow WAL ------------------------------------------------------------

  async #readGenerationFile(): Promise<string | undefined> {
    const text = await readFile(shadow.generationFile(this.metaPath), "utf8").catch(() => "");
    const gen = text.trim();
    return isGenerationName(gen) ? gen : undefined;
  }

  async #removeOtherGenerations(keep: string | undefined): Promise<void> {
    const dir = shadow.generationsDir(this.metaPath);
    const names = await readdir(dir).catch(() => [] as string[]);
    for (const name of names) {
      if (name !== keep) await rm(path.join(dir, name), { recursive: true, force: true });
    }
  }

  async #loadState(): Promise<ShadowState | undefined> {
    const gen = await this.#readGenerationFile();
    if (!gen) return undefined;
    const indexes = await this.shadowIndexes(gen);
    const index = indexes.at(-1);
    if (index === undefined) return undefined;
    const file = this.shadowWalPath(gen, index);
    const buf = await readFile(file);
    if (buf.length < WAL_HEADER_SIZE) return undefined;
    const header = buf.subarray(0, WAL_HEADER_SIZE);
    const hdr = parseWalHeader(header);
    // Re-scan the shadow to find its last committed frame and the running checksum there.
    const scan = scanFrames(buf.subarray(WAL_HEADER_SIZE), {
      pageSize: hdr.pageSize,
      bigEndian: hdr.bigEndianChecksums,
      salt1: hdr.salt1,
      salt2: hdr.salt2,
      seed: [hdr.checksum1, hdr.checksum2],
      startOffset: WAL_HEADER_SIZE,
    });
    if (scan.lastCommitEnd !== buf.length) {
      // A crash between append and fsync can leave a torn tail: cut it back to the last commit.
      await fs.promises.truncate(file, scan.lastCommitEnd);
      this.#log.warn({ index, size: buf.length, kept: scan.lastCommitEnd }, "shadow wal tail trimmed");
    }
    return {
      generation: gen,
      index,
      size: scan.lastCommitEnd,
      checksum: scan.lastCommitChecksum,
      header: Uint8Array.from(header),
    };
  }

  /** Decides whether the shadow WAL still continues the real one; returns a reason when it does not. */
  async #verify(realHeader: Uint8Array, realSize: number): Promise<{ reason?: string; restart?: boolean }> {
    const s = this.#state;
    if (!s) return { reason: "no generation exists" };
    if (s.index >= MAX_INDEX) return { reason: "max index exceeded" };
    if (!fs.existsSync(this.shadowWalPath(s.generation, s.index))) return { reason: "no shadow wal" };
    if (s.size < WAL_HEADER_SIZE) return { reason: "short shadow wal" };
    const F = frameSize(this.#pageSize);
    const sameHeader = Buffer.compare(Buffer.from(realHeader), Buffer.from(s.header)) === 0;
    if (sameHeader && alignWalSize(realSize, this.#pageSize) < s.size) {
      return { reason: "wal truncated by another process" };
    }
    if (s.size === WAL_HEADER_SIZE) {
      return sameHeader ? {} : { reason: "wal header only, mismatched" };
    }
    // The last frame we copied must still be in the real WAL, byte for byte.
    const real = await readRange(this.walPath, s.size - F, F);
    const mine = await readRange(this.shadowWalPath(s.generation, s.index), s.size - F, F);
    if (real.length !== F || Buffer.compare(real, mine) !== 0) {
      return { reason: "wal overwritten by another process" };
    }
    return sameHeader ? {} : { restart: true };
  }

  async #verifyAndCopy(): Promise<boolean> {
    if (!this.#state) this.#state = await this.#loadState();
    const realHeader = await readRange(this.walPath, 0, WAL_HEADER_SIZE);
    if (realHeader.length < WAL_HEADER_SIZE) {
      throw new WalshipError(ErrorCodes.WAL, `read wal ${this.walPath}: header is missing`);
    }
    const s = this.#state;
    if (s && Buffer.compare(realHeader, Buffer.from(s.header)) !== 0) {
      // The WAL was restarted by another process (while we were down, or between our read
      // transactions). Decide under SQLite's write lock: the new WAL is written from its start
      // towards our last frame, and a writer moving on between the check that our last frame
      // survived and the copy of the old frames after it would cut that copy short unnoticed.
      return await this.#withWriteLock(async () => {
        const header = await readRange(this.walPath, 0, WAL_HEADER_SIZE);
        return this.#verifyAndCopyUnlocked(header, (await stat(this.walPath)).size);
      });
    }
    return this.#verifyAndCopyUnlocked(realHeader, (await stat(this.walPath)).size);
  }

  async #verifyAndCopyUnlocked(realHeader: Buffer, realSize: number): Promise<boolean> {
    const { reason, restart } = await this.#verify(realHeader, realSize);
    this.#testHooks?.afterVerify?.();
    if (reason) {
      await this.#newGeneration(reason, realHeader);
      await this.#copy();
      return true;
    }
    let changed = await this.#copy();
    if (restart) {
      // The WAL restarted under its header while our last frame survived: nothing was overwritten.
      await this.#startIndex(realHeader);
      await this.#copy();
      changed = true;
    }
    return changed;
  }

  /** Runs `fn` holding SQLite's write lock on our connection (BEGIN IMMEDIATE ... COMMIT). */
  async #withWriteLock<T>(fn: () => Promise<T>): Promise<T> {
    const db = this.#db;
    if (!db) throw new WalshipError(ErrorCodes.SQLITE, `lock ${this.path}: database is not open`);
    db.exec("BEGIN IMMEDIATE");
    try {
      return await fn();
    } finally {
      db.exec("COMMIT");
    }
  }

  async #newGeneration(reason: string, realHeader: Uint8Array): Promise<void> {
    const gen = randomBytes(8).toString("hex");
    const hdr = parseWalHeader(realHeader);
    const dir = shadow.walDir(this.metaPath, gen);
    await mkdir(dir, { recursive: true, mode: 0o700 });
    await writeDurable(this.shadowWalPath(gen, 0), realHeader);
    const genFile = shadow.generationFile(this.metaPath);
    await writeDurable(`${genFile}.tmp`, Buffer.from(`${gen}\n`));
    await rename(`${genFile}.tmp`, genFile);
    await this.#removeOtherGenerations(gen);
    this.#state = {
      generation: gen,
      index: 0,
      size: WAL_HEADER_SIZE,
      checksum: [hdr.checksum1, hdr.checksum2],
      header: Uint8Array.from(realHeader),
    };
    this.#log.info({ generation: gen, reason }, "new generation");
  }

  /** Opens the next shadow index from the real WAL's new header. */
  async #startIndex(realHeader: Uint8Array): Promise<void> {
    const s = this.#state!;
    const hdr = parseWalHeader(realHeader);
    const index = s.index + 1;
    await writeDurable(this.shadowWalPath(s.generation, index), realHeader);
    this.#state = {
      generation: s.generation,
      index,
      size: WAL_HEADER_SIZE,
      checksum: [hdr.checksum1, hdr.checksum2],
      header: Uint8Array.from(realHeader),
    };
    this.#log.debug({ index }, "new shadow index");
  }

  #buf: Buffer | undefined;

  /** One read buffer, reused by every copy (copies run one at a time): no 4 MiB garbage per commit. */
  #copyBuffer(size: number): Buffer {
    if (!this.#buf || this.#buf.length < size) this.#buf = Buffer.allocUnsafe(size);
    return this.#buf.subarray(0, size);
  }

  /**
   * Appends the real WAL's new committed frames (same salts, checksums chaining) to the current
   * shadow file. Two passes in bounded memory: scan for the last commit, then copy bytes up to it.
   */
  async #copy(): Promise<boolean> {
    const s = this.#state!;
    const hdr = parseWalHeader(s.header);
    const F = frameSize(hdr.pageSize);
    const commits: CommitRecord[] = [];
    let end = s.size;
    let checksum = s.checksum;
    const real = await open(this.walPath, "r");
    try {
      const chunkFrames = Math.max(1, Math.floor(COPY_CHUNK_BYTES / F));
      const buf = this.#copyBuffer(chunkFrames * F);
      let offset = s.size;
      let seed = s.checksum;
      for (;;) {
        const { bytesRead } = await real.read(buf, 0, buf.length, offset);
        // Stamped after the read returned: every commit it saw happened no later than this.
        const seenAt = Date.now();
        const whole = bytesRead - (bytesRead % F);
        if (whole === 0) break;
        const scan = scanFrames(buf.subarray(0, whole), {
          pageSize: hdr.pageSize,
          bigEndian: hdr.bigEndianChecksums,
          salt1: hdr.salt1,
          salt2: hdr.salt2,
          seed,
          startOffset: offset,
        });
        for (const c of scan.commits)
          commits.push({ generation: s.generation, index: s.index, end: c.end, time: seenAt });
        if (scan.lastCommitEnd > end) {
          end = scan.lastCommitEnd;
          checksum = scan.lastCommitChecksum;
        }
        if (scan.validEnd < offset + whole) break;
        offset += whole;
        // Seed the next chunk from the running checksum of the last valid frame.
        seed = [buf.readUInt32BE(whole - F + 16), buf.readUInt32BE(whole - F + 20)];
      }
      if (end === s.size) return false;
      await appendRange(real, this.shadowWalPath(s.generation, s.index), s.size, end, buf);
    } finally {
      await real.close();
    }
    this.metrics.totalWalBytes += end - s.size;
    s.size = end;
    s.checksum = checksum;
    if (commits.length > 0) for (const fn of this.#commitListeners) fn(commits);
    return true;
  }

  // --- checkpoints -------------------------------------------------------------------------------

  async #maybeCheckpoint(): Promise<void> {
    const s = this.#state;
    if (!s || this.#pageSize === 0 || this.#paused > 0) return;
    const F = frameSize(this.#pageSize);
    const W = (n: number) => WAL_HEADER_SIZE + n * F;
    const realSize = alignWalSize((await stat(this.walPath)).size, this.#pageSize);
    // PASSIVE checkpoints leave the shadow as it is, so they count the pages added since the last one.
    const last = this.#passiveAt;
    const since =
      last && last.generation === s.generation && last.index === s.index
        ? s.size - last.size + WAL_HEADER_SIZE
        : s.size;
    let mode: CheckpointMode | undefined;
    if (realSize >= W(this.truncatePageCount)) mode = "TRUNCATE";
    else if (this.maxCheckpointPageCount > 0 && s.size >= W(this.maxCheckpointPageCount)) mode = "RESTART";
    else if (since >= W(this.minCheckpointPageCount)) mode = "PASSIVE";
    else if (this.checkpointIntervalMs > 0 && since > W(1)) {
      const dbStat = await stat(this.path);
      if (Date.now() - dbStat.mtimeMs > this.checkpointIntervalMs) mode = "PASSIVE";
    }
    if (mode) await this.#checkpoint(mode);
    if (mode === "PASSIVE" && this.#state) {
      this.#passiveAt = {
        generation: this.#state.generation,
        index: this.#state.index,
        size: this.#state.size,
      };
    }
  }

  /**
   * PASSIVE: copy the WAL back into the database without restarting it. RESTART and TRUNCATE: under
   * the write lock, top up, copy back, then restart the WAL with our own write so the restart happens
   * at a point we have fully copied.
   */
  async #checkpoint(mode: CheckpointMode): Promise<void> {
    const db = this.#db;
    if (!db || !this.#state) return;
    const m = this.metrics.checkpoints[mode];
    const started = performance.now();
    let locked = false;
    try {
      if (mode === "PASSIVE") {
        // Copy pages back without restarting the WAL. Our read transaction moves its mark up to every
        // committed frame first; it stays above 0 after the back-fill, so no other connection can
        // restart the WAL, and frames past the mark are not touched. No lock is needed, and the WAL
        // index moves on only at the RESTART threshold (as Litestream's does), which keeps restores
        // short.
        this.#endRead();
        this.#beginRead();
        // Copy up to (at least) the new mark before anything is written back: the back-fill can
        // reach frames up to our mark, and a frame written back but never copied would be lost if
        // the WAL were restarted while we are down.
        await this.#copy();
        const complete = await this.#backfill(1);
        m.count++;
        this.#log.debug({ mode, complete }, "checkpoint");
        return;
      }
      db.exec("BEGIN IMMEDIATE");
      locked = true;
      // No one can commit now: copy everything committed so far, then copy it back into the database.
      await this.#copy();
      const headerBefore = Buffer.from(this.#state.header);
      this.#endRead();
      const complete = await this.#backfill(10);
      // SQLite restarts the WAL only for a writer whose snapshot began after the backfill, so the lock
      // is taken anew. Should the application commit in between, its write restarts the WAL instead:
      // either way every old frame was copied above.
      db.exec("COMMIT");
      locked = false;
      if (mode === "TRUNCATE") db.pragma("journal_size_limit = 0");
      db.exec("BEGIN IMMEDIATE");
      locked = true;
      this.#bumpSeq();
      db.exec("COMMIT");
      locked = false;
      if (mode === "TRUNCATE") db.pragma("journal_size_limit = -1");
      this.#beginRead();
      m.count++;
      const realHeader = await readRange(this.walPath, 0, WAL_HEADER_SIZE);
      if (Buffer.compare(realHeader, headerBefore) !== 0) await this.#startIndex(realHeader);
      await this.#copy();
      this.#log.debug({ mode, complete }, "checkpoint");
    } catch (err) {
      m.errors++;
      if (locked) {
        try {
          db.exec("ROLLBACK");
        } catch {
          // the transaction is gone already
        }
      }
      try {
        this.#beginRead();
      } catch {
        // reconnect on the next sync
        this.#disconnect();
      }
      throw new WalshipError(ErrorCodes.SQLITE, `checkpoint ${this.path} (${mode}): ${describeError(err)}`, {
        cause: err,
      });
    } finally {
      m.seconds += (performance.now() - started) / 1000;
    }
  }

  /**
   * PASSIVE checkpoints from a separate connection until the WAL is fully copied back (or tries run
   * out), on the back-fill worker thread so uploads and wake-ups go on meanwhile.
   */
  #backfill(tries: number): Promise<boolean> {
    return this.#backfiller.run(this.path, { busyTimeoutMs: this.busyTimeoutMs, tries });
  }

  async #cleanShadow(): Promise<void> {
    const s = this.#state;
    if (!s) return;
    let min = Number.POSITIVE_INFINITY;
    for (const p of this.#replicaIndexes.values()) {
      if (!p || p.generation !== s.generation) return;
      min = Math.min(min, p.index);
    }
    if (!Number.isFinite(min)) return;
    for (const index of await this.shadowIndexes(s.generation)) {
      if (index < min - 1) await rm(this.shadowWalPath(s.generation, index), { force: true });
    }
  }

  async #updateSizeMetrics(): Promise<void> {
    const [dbSt, walSt] = await Promise.all([
      stat(this.path).catch(() => undefined),
      stat(this.walPath).catch(() => undefined),
    ]);
    this.metrics.dbSize = dbSt?.size ?? 0;
    this.metrics.walSize = walSt?.size ?? 0;
    const s = this.#state;
    if (s) {
      this.metrics.shadowIndex = s.index;
      let total = 0;
      for (const i of await this.shadowIndexes(s.generation)) {
        total += (await stat(this.shadowWalPath(s.generation, i)).catch(() => ({ size: 0 }))).size;
      }
      this.metrics.shadowSize = total;
    }
  }

  // --- change notification -----------------------------------------------------------------------

  #notify(): void {
    const prev = this.#changed;
    this.#changed = Promise.withResolvers<void>();
    prev.resolve();
  }

  #walEvent: PromiseWithResolvers<void> = Promise.withResolvers<void>();

  #startWatch(): void {
    try {
      // Watch the directory: the WAL file may not exist yet, or be replaced.
      this.#watcher = fs.watch(path.dirname(this.path), { persistent: false }, (_ev, name) => {
        if (name === path.basename(this.walPath) || name === path.basename(this.path)) {
          const prev = this.#walEvent;
          this.#walEvent = Promise.withResolvers<void>();
          prev.resolve();
        }
      });
      this.#watcher.on("error", () => {
        this.#watcher?.close();
        this.#watcher = undefined;
      });
    } catch {
      this.#watcher = undefined;
    }
  }

  async #waitForWalChange(signal: AbortSignal): Promise<void> {
    const { promise, resolve } = Promise.withResolvers<void>();
    const timer = setTimeout(resolve, this.monitorIntervalMs);
    const onAbort = () => resolve();
    signal.addEventListener("abort", onAbort, { once: true });
    void this.#walEvent.promise.then(resolve);
    await promise;
    clearTimeout(timer);
    signal.removeEventListener("abort", onAbort);
  }
}

// --- small file helpers ----------------------------------------------------------------------------

async function readRange(file: string, position: number, length: number): Promise<Buffer> {
  const fh = await open(file, "r");
  try {
    const buf = Buffer.alloc(length);
    const { bytesRead } = await fh.read(buf, 0, length, position);
    return buf.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
}

/** Copies bytes [from, to) of `src` onto the end of `dst` (whose size is `from`), then fsyncs. */
async function appendRange(
  src: FileHandle,
  dst: string,
  from: number,
  to: number,
  buf: Buffer,
): Promise<void> {
  try {
    const out = await open(dst, "r+");
    try {
      const st = await out.stat();
      if (st.size !== from) await out.truncate(from);
      let pos = from;
      while (pos < to) {
        const n = Math.min(buf.length, to - pos);
        const { bytesRead } = await src.read(buf, 0, n, pos);
        if (bytesRead !== n) throw new WalshipError(ErrorCodes.WAL, `copy wal: short read at offset ${pos}`);
        await out.write(buf, 0, n, pos);
        pos += n;
      }
      await out.sync();
    } finally {
      await out.close();
    }
  } catch (err) {
    // A full disk or a failing one: say which file (the next copy truncates the partial tail).
    throw fileError(`copy wal to shadow wal ${dst}`, dst, err);
  }
}

async function writeDurable(file: string, data: Uint8Array): Promise<void> {
  try {
    const fh = await open(file, "w", 0o600);
    try {
      await fh.writeFile(data);
      await fh.sync();
    } finally {
      await fh.close();
    }
  } catch (err) {
    throw fileError(`write ${file}`, file, err);
  }
}

/** A local file error (ENOSPC, EIO, EACCES, ...) as a WAL error naming the file; ours pass through. */
function fileError(what: string, file: string, err: unknown): WalshipError {
  if (err instanceof WalshipError) return err;
  const errno = (err as NodeJS.ErrnoException).code;
  return new WalshipError(ErrorCodes.WAL, `${what}: ${describeError(err)}`, {
    cause: err,
    details: { path: file, ...(errno ? { errno } : {}) },
  });
}
