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
import { snapshotImage } from "./snapshot-image.ts";
import {
  alignWalSize,
  followsWal,
  frameSize,
  parseWalHeader,
  scanFrames,
  WAL_HEADER_SIZE,
  type WalHeader,
} from "./sqlite/wal.ts";
import { readWalIndexHeader, type WalIndexHeader } from "./sqlite/wal-index.ts";
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
  /**
   * How often the WAL is checked when no change notification arrives; 0 = no background monitoring.
   * Default DEFAULT_MONITOR_INTERVAL_MS (1 s).
   */
  monitorIntervalMs?: number;
  /**
   * Checkpoint when the database file has not changed for this long; 0 disables. Default
   * DEFAULT_CHECKPOINT_INTERVAL_MS (1 min).
   */
  checkpointIntervalMs?: number;
  /** PASSIVE checkpoint once the shadow WAL holds this many pages. Must be > 0. Default 1000. */
  minCheckpointPageCount?: number;
  /** RESTART checkpoint once the shadow WAL holds this many pages; 0 disables. Default 10000. */
  maxCheckpointPageCount?: number;
  /** TRUNCATE checkpoint once the real WAL holds this many pages; 0 disables. Default 500000. */
  truncatePageCount?: number;
  /** How long SQLite waits on a lock before answering busy (`busy-timeout`). Default BUSY_TIMEOUT_MS. */
  busyTimeoutMs?: number;
  /** Watch the WAL file for changes (inotify) so commits are seen within milliseconds. Default true. */
  watch?: boolean;
  log?: Logger;
  /**
   * Test seams (named so nothing else uses them): `afterVerify` runs between the WAL check and the
   * copy; `afterBackfill` in our RESTART/TRUNCATE checkpoint, between the back-fill and our write
   * that restarts the WAL (when no lock of ours holds the application off).
   */
  testHooks?: { afterVerify?: () => void; afterBackfill?: () => void };
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
  /** Our first write and read transaction since connecting are in place (see #attach). */
  #attached = false;
  /**
   * Our own descriptors of the database and -shm files, open until close(). POSIX locks belong to
   * the process, and closing any descriptor of a file drops every lock the process holds on it:
   * opening and closing the -shm or the database file next to our SQLite connections would silently
   * release their read marks and write lock (SQLite keeps its own descriptors open for this reason).
   */
  #files: { db?: FileHandle; shm?: FileHandle; shmIno?: number } = {};
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
      if (!this.#attached) await this.#attach();
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
    // Only now, with no SQLite connection of ours left (see #files).
    const { db, shm } = this.#files;
    this.#files = {};
    await db?.close();
    await shm?.close();
  }

  /** The database file, read through our long-lived descriptor (see #files). */
  async #dbFile(): Promise<FileHandle> {
    this.#files.db ??= await open(this.path, "r");
    return this.#files.db;
  }

  /**
   * The wal-index header, read through our long-lived descriptor of -shm (see #files). A -shm
   * recreated since (every connection gone at some point) is another inode: the old descriptor's
   * locks are on the old one, so it can be closed, and the new file opened.
   */
  async #walIndex(): Promise<WalIndexHeader | undefined> {
    const shmPath = `${this.path}-shm`;
    const ino = (await stat(shmPath).catch(() => undefined))?.ino;
    if (ino === undefined) return undefined;
    if (this.#files.shm && this.#files.shmIno !== ino) {
      await this.#files.shm.close();
      this.#files.shm = undefined;
    }
    if (!this.#files.shm) {
      try {
        const fh = await open(shmPath, "r");
        this.#files.shmIno = (await fh.stat()).ino;
        this.#files.shm = fh;
      } catch {
        return undefined;
      }
    }
    return readWalIndexHeader(this.#files.shm);
  }

  /**
   * The database exactly at `pos` (snapshot-image.ts), read through our own descriptor of the file:
   * a snapshot that opened and closed one would drop SQLite's locks in this process (see #files).
   */
  async *imageAt(pos: Pos): AsyncGenerator<Buffer> {
    yield* snapshotImage(await this.#dbFile(), this.shadowWalPath(pos.generation, pos.index), pos.offset);
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
      this.#pageSize = Number(db.pragma("page_size", { simple: true }));
      rtx = new Database(this.path, { timeout: this.busyTimeoutMs, fileMustExist: true });
      this.#db = db;
      this.#rtx = rtx;
      this.#attached = false;
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
    this.#attached = false;
  }

  /**
   * After connecting, before our first write. While we were down nothing pinned the WAL: every
   * complete checkpoint of the application was followed, at its next commit, by a restart over the
   * old frames. A WAL the application restarted and then wrote back in full is still whole in the
   * file, but our own first write would restart it once more and overwrite it before we copied it.
   * So, holding the write lock (no one can commit, so no one can restart the WAL): catch up with the
   * WAL as it is, then write (our frame is what the read transaction pins), begin the read
   * transaction, and only then commit. Begun before our commit, the read transaction either pins the
   * frames past its mark or, if the WAL was written back in full, holds read lock 0, which stops
   * every back-fill until it ends: either way our commit is the only restart that can happen here,
   * and a changed header afterwards is the WAL that directly follows the one we copied.
   */
  async #attach(): Promise<void> {
    const db = this.#db!;
    if (!this.#state) this.#state = await this.#loadState();
    // Most of the catch-up before the lock, so the application waits only for what it commits
    // meanwhile (a WAL grown large while we were down would hold it off for seconds): frames that
    // continue ours (our salts, the checksum chain, up to a commit) are the old WAL's own, whatever
    // happened to the WAL since, and the copy is checked again in the shadow because nothing pins
    // the WAL yet. The check under the lock below decides whether they continue the generation.
    if (this.#state && fs.existsSync(this.shadowWalPath(this.#state.generation, this.#state.index))) {
      if (await this.#copy({ recheck: true, onlyIndexed: true })) this.#notify();
    }
    db.exec("BEGIN IMMEDIATE");
    let header: Buffer | undefined;
    try {
      const size = (await stat(this.walPath).catch(() => undefined))?.size ?? 0;
      if (this.#state && size >= WAL_HEADER_SIZE) {
        const realHeader = await readRange(this.walPath, 0, WAL_HEADER_SIZE);
        // A new generation's WAL is copied after our commit, pinned by the read transaction (a WAL
        // written back in full is in the database file, which its snapshot reads).
        if (await this.#verifyAndCopyUnlocked(realHeader, size, { deferNewGeneration: true })) this.#notify();
        header = Buffer.from(this.#state.header);
      }
      db.exec(
        "CREATE TABLE IF NOT EXISTS _litestream_seq (id INTEGER PRIMARY KEY, seq INTEGER);" +
          "CREATE TABLE IF NOT EXISTS _litestream_lock (id INTEGER);",
      );
      this.#bumpSeq();
      this.#beginRead();
      db.exec("COMMIT");
    } catch (err) {
      if (db.inTransaction) db.exec("ROLLBACK");
      this.#endRead();
      throw err;
    }
    this.#attached = true;
    if (header) {
      const now = await readRange(this.walPath, 0, WAL_HEADER_SIZE);
      if (Buffer.compare(now, header) !== 0) {
        await this.#startIndex(now);
        await this.#copy();
        this.#notify();
      }
    }
  }

  #beginRead(): void {
    const rtx = this.#rtx!;
    if (rtx.inTransaction) return;
    rtx.exec("BEGIN");
    rtx.prepare("SELECT COUNT(1) FROM sqlite_master").get();
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
    if (sameHeader) return {};
    // Our last frame survived, but only the WAL that directly follows ours starts where we left off:
    // with a WAL in between (written back, then overwritten) its frames are lost to the shadow.
    if (!followsWal(parseWalHeader(s.header), parseWalHeader(realHeader))) {
      return { reason: "wal restarted more than once by another process" };
    }
    return { restart: true };
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

  async #verifyAndCopyUnlocked(
    realHeader: Buffer,
    realSize: number,
    opts: { deferNewGeneration?: boolean } = {},
  ): Promise<boolean> {
    let { reason, restart } = await this.#verify(realHeader, realSize);
    this.#testHooks?.afterVerify?.();
    if (restart && !(await this.#tailInDatabase(realHeader))) {
      reason = "wal restarted with frames after ours that the database does not hold";
    }
    if (reason) {
      await this.#newGeneration(reason, realHeader);
      if (!opts.deferNewGeneration) await this.#copy();
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

  /**
   * After the WAL restarted: whether the old WAL's frames past ours were committed. The wal-index now
   * describes the new WAL and cannot say, but SQLite restarts a WAL only once it is written back in
   * full, so its committed frames are in the database file, while a transaction a writer wrote and
   * never published (sqlite/wal-index.ts) is not. So the latest version of every page in those frames
   * must be the database file's page. A page the new WAL also holds may have been written back from
   * it since, and proves nothing either way: it is skipped. (So a never-published transaction is
   * recognized by any page it changed that the new WAL did not; one whose pages the new WAL all
   * rewrote and wrote back would pass. That takes a writer killed between its commit frame and the
   * wal-index, our copy reaching exactly its start, and the WAL restarted before anyone wrote after it.)
   */
  async #tailInDatabase(realHeader: Uint8Array): Promise<boolean> {
    const s = this.#state!;
    const hdr = parseWalHeader(s.header);
    const ps = hdr.pageSize;
    const F = frameSize(ps);
    const real = await open(this.walPath, "r");
    const dbf = await this.#dbFile();
    try {
      const buf = this.#copyBuffer(Math.max(1, Math.floor(COPY_CHUNK_BYTES / F)) * F);
      // Pages of the new WAL (any valid frame of it, committed or not).
      const cur = parseWalHeader(realHeader);
      const inNew = new Set<number>();
      let seed: [number, number] = [cur.checksum1, cur.checksum2];
      for (let offset = WAL_HEADER_SIZE; ; ) {
        const { bytesRead } = await real.read(buf, 0, buf.length, offset);
        const whole = bytesRead - (bytesRead % F);
        if (whole === 0) break;
        const scan = scanFrames(buf.subarray(0, whole), chainFrom(cur, seed, offset));
        for (let p = 0; offset + p < scan.validEnd; p += F) inNew.add(buf.readUInt32BE(p));
        if (scan.validEnd < offset + whole) break;
        offset += whole;
        seed = [buf.readUInt32BE(whole - F + 16), buf.readUInt32BE(whole - F + 20)];
      }
      // Where each page's latest frame is, per chunk, up to the last commit found so far.
      const latest = new Map<number, number>();
      const pending = new Map<number, number>();
      let pages = 0;
      let offset = s.size;
      seed = s.checksum;
      for (;;) {
        const { bytesRead } = await real.read(buf, 0, buf.length, offset);
        const whole = bytesRead - (bytesRead % F);
        if (whole === 0) break;
        const scan = scanFrames(buf.subarray(0, whole), chainFrom(hdr, seed, offset));
        for (let p = 0; offset + p < scan.validEnd; p += F) {
          pending.set(buf.readUInt32BE(p), offset + p + 24);
          if (offset + p + F <= scan.lastCommitEnd && buf.readUInt32BE(p + 4) !== 0) {
            for (const [pg, at] of pending) latest.set(pg, at);
            pending.clear();
            pages = buf.readUInt32BE(p + 4);
          }
        }
        if (scan.validEnd < offset + whole) break;
        offset += whole;
        seed = [buf.readUInt32BE(whole - F + 16), buf.readUInt32BE(whole - F + 20)];
      }
      const a = Buffer.alloc(ps);
      const b = Buffer.alloc(ps);
      for (const [pgno, at] of latest) {
        if (pgno > pages || inNew.has(pgno)) continue; // cut off by the last commit; or inconclusive
        await real.read(a, 0, ps, at);
        const { bytesRead } = await dbf.read(b, 0, ps, (pgno - 1) * ps);
        if (bytesRead !== ps || !a.equals(b)) return false;
      }
      return true;
    } finally {
      await real.close();
    }
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
   * The second pass re-reads the WAL, which is safe while our read transaction or the write lock
   * pins it; with `recheck` (nothing pins it), the appended bytes are verified in the shadow and cut
   * off again if the WAL changed between the passes. With `onlyIndexed`, nothing is copied unless the
   * wal-index describes this WAL (and so bounds the copy to what SQLite committed).
   */
  async #copy(opts: { recheck?: boolean; onlyIndexed?: boolean } = {}): Promise<boolean> {
    const s = this.#state!;
    const hdr = parseWalHeader(s.header);
    const F = frameSize(hdr.pageSize);
    const commits: CommitRecord[] = [];
    let end = s.size;
    let checksum = s.checksum;
    // Only what SQLite counts as committed: a transaction whose writer died before publishing it in
    // the wal-index is complete in the file but not committed, and is written over next (see
    // sqlite/wal-index.ts). The wal-index bounds the copy when it describes this WAL.
    const idx = await this.#walIndex();
    const indexed = idx?.salts.equals(Buffer.from(s.header.subarray(16, 24))) === true;
    // Without that bound (the WAL has moved on), frames past ours need other proof (#tailInDatabase).
    if (!indexed && opts.onlyIndexed) return false;
    const committed = indexed ? WAL_HEADER_SIZE + idx!.mxFrame * F : Number.POSITIVE_INFINITY;
    const real = await open(this.walPath, "r");
    try {
      const chunkFrames = Math.max(1, Math.floor(COPY_CHUNK_BYTES / F));
      const buf = this.#copyBuffer(chunkFrames * F);
      let offset = s.size;
      let seed = s.checksum;
      for (;;) {
        const want = Math.min(buf.length, committed - offset);
        if (want <= 0) break;
        const { bytesRead } = await real.read(buf, 0, want, offset);
        // Stamped after the read returned: every commit it saw happened no later than this.
        const seenAt = Date.now();
        const whole = bytesRead - (bytesRead % F);
        if (whole === 0) break;
        const scan = scanFrames(buf.subarray(0, whole), chainFrom(hdr, seed, offset));
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
      const shadowFile = this.shadowWalPath(s.generation, s.index);
      await appendRange(real, shadowFile, s.size, end, buf);
      if (opts.recheck && !(await this.#appendedIntact(shadowFile, end, checksum, buf))) {
        await fs.promises.truncate(shadowFile, s.size);
        return false;
      }
    } finally {
      await real.close();
    }
    this.metrics.totalWalBytes += end - s.size;
    s.size = end;
    s.checksum = checksum;
    if (commits.length > 0) for (const fn of this.#commitListeners) fn(commits);
    return true;
  }

  /** Whether the shadow's bytes from the committed size to `end` are frames that chain to `checksum` there. */
  async #appendedIntact(
    file: string,
    end: number,
    checksum: [number, number],
    buf: Buffer,
  ): Promise<boolean> {
    const s = this.#state!;
    const hdr = parseWalHeader(s.header);
    const F = frameSize(hdr.pageSize);
    const fh = await open(file, "r");
    try {
      let offset = s.size;
      let seed = s.checksum;
      let last = { end: s.size, checksum: s.checksum };
      while (offset < end) {
        const n = Math.min(buf.length - (buf.length % F), end - offset);
        const { bytesRead } = await fh.read(buf, 0, n, offset);
        if (bytesRead !== n) return false;
        const scan = scanFrames(buf.subarray(0, n), chainFrom(hdr, seed, offset));
        if (scan.validEnd < offset + n) return false;
        if (scan.lastCommitEnd > last.end)
          last = { end: scan.lastCommitEnd, checksum: scan.lastCommitChecksum };
        offset += n;
        seed = [buf.readUInt32BE(n - F + 16), buf.readUInt32BE(n - F + 20)];
      }
      return last.end === end && last.checksum[0] === checksum[0] && last.checksum[1] === checksum[1];
    } finally {
      await fh.close();
    }
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
      this.#testHooks?.afterBackfill?.();
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
      if (Buffer.compare(realHeader, headerBefore) !== 0) {
        // Restarted by our write or by the application's in the gap; had the application also
        // written that WAL back and restarted it again, the WAL in between is lost to the shadow.
        if (followsWal(parseWalHeader(headerBefore), parseWalHeader(realHeader))) {
          await this.#startIndex(realHeader);
        } else {
          await this.#newGeneration("wal restarted more than once during our checkpoint", realHeader);
        }
      }
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

/** scanFrames options for frames of the WAL with header `hdr`, chaining from `seed` at `offset`. */
function chainFrom(hdr: WalHeader, seed: [number, number], offset: number) {
  return {
    pageSize: hdr.pageSize,
    bigEndian: hdr.bigEndianChecksums,
    salt1: hdr.salt1,
    salt2: hdr.salt2,
    seed,
    startOffset: offset,
  };
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
