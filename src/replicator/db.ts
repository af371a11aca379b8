/**
 * One replicated database: the SQLite connections, the long read transaction, the shadow WAL under
 * `.<db>-litestream`, generations and checkpoints. Destinations (replica.ts) read only the shadow
 * files this module writes. This file is the Db's public face and the order of its steps; the parts
 * live in db/: the SQLite connections (connection.ts), the shadow WAL and its copy (shadow.ts), the
 * checks that it still continues the real WAL (continuity.ts), checkpoints (checkpoint.ts), our own
 * file descriptors and file helpers (files.ts), the watcher (watch.ts), options and metrics (options.ts),
 * where the shadow stands (state.ts).
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

import fs from "node:fs";
import { mkdir, readdir, rm, stat } from "node:fs/promises";
import path from "node:path";
import Database from "better-sqlite3";
import { describeError, ErrorCodes, WalshipError } from "../shared/errors.ts";
import { type Logger, nullLogger } from "../shared/log.ts";
import { Checkpointer } from "./db/checkpoint.ts";
import { CommitClock } from "./db/commit-clock.ts";
import { Connections } from "./db/connection.ts";
import { HeldFiles, readRange } from "./db/files.ts";
import {
  BUSY_TIMEOUT_MS,
  type CheckpointHealth,
  type CheckpointMode,
  type CommitRecord,
  type DbMetrics,
  type DbOptions,
  DEFAULT_CHECKPOINT_INTERVAL_MS,
  DEFAULT_MAX_CHECKPOINT_PAGE_COUNT,
  DEFAULT_MIN_CHECKPOINT_PAGE_COUNT,
  DEFAULT_MONITOR_INTERVAL_MS,
  DEFAULT_TRUNCATE_PAGE_COUNT,
} from "./db/options.ts";
import { ShadowWal } from "./db/shadow.ts";
import { WalWatcher } from "./db/watch.ts";
import { metaDir } from "./layout.ts";
import { snapshotImage } from "./snapshot-image.ts";
import { WAL_HEADER_SIZE } from "./sqlite/wal.ts";
import { comparePos, type Pos } from "./types.ts";

/** The size gauges are read at most this often (see #updateSizeMetrics). */
const SIZE_METRICS_INTERVAL_MS = 1000;

// The Db's options, defaults, metrics and commit records are part of its API.
export * from "./db/options.ts";

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
  readonly #conn: Connections;
  /** Our own descriptors of the database and -shm files (see HeldFiles): closed last. */
  readonly #files: HeldFiles;
  readonly #shadow: ShadowWal;
  readonly #watch: WalWatcher;
  #changed: PromiseWithResolvers<void> = Promise.withResolvers<void>();
  /** Settles when the next sync's copy step ends (see catchUp). */
  #copied: PromiseWithResolvers<void> = Promise.withResolvers<void>();
  /** When the size gauges were last read (performance.now()), and for which shadow generation. */
  #sizesAt = Number.NEGATIVE_INFINITY;
  #sizesGeneration: string | undefined;
  #commitListeners = new Set<(c: CommitRecord[]) => void>();
  /** Per destination, the lowest shadow index it still needs in the current generation. */
  #replicaIndexes = new Map<string, { generation: string; index: number } | undefined>();
  #syncing: Promise<void> | undefined;
  /** A sync is under way and has not finished its copy step (see catchUp). */
  #copying = false;
  #lastError: string | undefined;
  /** See walReadAt. */
  #walReadAt: Date | undefined;
  #paused = 0;
  readonly #testHooks: DbOptions["testHooks"];
  readonly #checkpoints: Checkpointer;
  /** When commits were published, for their stamps while copies wait for a tick (commit-clock.ts). */
  readonly #clock = new CommitClock();

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
    this.#conn = new Connections(this.path, this.metaPath, this.busyTimeoutMs, this.#log);
    this.#files = new HeldFiles(this.path);
    this.#shadow = new ShadowWal(this.metaPath, this.walPath, this.#files, {
      pageSize: () => this.#conn.pageSize,
      metrics: this.metrics,
      commitListeners: this.#commitListeners,
      log: this.#log,
      testHooks: this.#testHooks,
      clock: this.#clock,
    });
    this.#checkpoints = new Checkpointer(this, this.#conn, this.#shadow, this.#log, this.#testHooks);
    this.#watch = new WalWatcher(this.path, this.walPath, this.monitorIntervalMs, {
      coalesceMs: opts.coalesceMs,
      observe: () => this.#clock.observe(this.#files.shmFd),
    });
  }

  get pageSize(): number {
    return this.#conn.pageSize;
  }

  /** The current generation, once one exists. */
  get generation(): string | undefined {
    return this.#shadow.state?.generation;
  }

  /** The end of the replicable stream: current generation, index and committed shadow size. */
  pos(): Pos | undefined {
    const s = this.#shadow.state;
    return s ? { generation: s.generation, index: s.index, offset: s.size } : undefined;
  }

  get lastError(): string | undefined {
    return this.#lastError;
  }

  /**
   * When the last completed read of the WAL began: every commit made before it is in the shadow WAL,
   * and counted in each destination's pending commits until it is durable there. Undefined before
   * the first. So a commit made before `walReadAt`, with nothing pending at a destination, is on it.
   */
  get walReadAt(): Date | undefined {
    return this.#walReadAt;
  }

  /** Whether checkpoints are failing now (a guardrail). */
  get checkpointHealth(): CheckpointHealth {
    return this.#checkpoints.health;
  }

  /** A promise that settles at the next change of the shadow WAL (new frames, index, generation). */
  changed(): Promise<void> {
    return this.#changed.promise;
  }

  /**
   * Settles at the next change of the shadow WAL, or of the WAL or database file that a sync has not
   * copied yet (the monitor loop holds those back until a destination's tick; see catchUp).
   */
  activity(): Promise<void> {
    return this.#watchEnabled
      ? Promise.race([this.#changed.promise, this.#watch.event()])
      : this.#changed.promise;
  }

  /**
   * Before a destination reads the shadow WAL: if the monitor loop is holding changes back to batch
   * them (see watch.ts), or a sync is under way that has not copied yet, has them copied now and
   * waits, at most `maxWaitMs`, until that copy ends. At once otherwise. The monitor loop copies
   * changes at most once per monitor interval under a steady stream of commits, so the destinations'
   * ticks are what copy them in time for each upload.
   */
  async catchUp(maxWaitMs = 100): Promise<void> {
    const copied = this.#copied.promise;
    if (!this.#watch.hurry() && !this.#copying) return;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([copied, new Promise<void>((resolve) => (timer = setTimeout(resolve, maxWaitMs)))]);
    clearTimeout(timer);
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
    return this.#shadow.walFile(generation, index);
  }

  /** Shadow indexes present for a generation, sorted. */
  shadowIndexes(generation: string): Promise<number[]> {
    return this.#shadow.indexes(generation);
  }

  /** Startup: remove temporaries and any generation but the current one. Does not touch the database. */
  async init(): Promise<void> {
    await mkdir(this.metaPath, { recursive: true, mode: 0o700 });
    for (const name of await readdir(this.metaPath)) {
      if (name.endsWith(".tmp")) await rm(path.join(this.metaPath, name), { force: true });
    }
    const gen = await this.#shadow.readGenerationFile();
    await this.#shadow.removeOtherGenerations(gen);
    if (this.#watchEnabled) this.#watch.start();
  }

  /** Runs `sync` until the signal aborts: on every WAL change notification, and at least every monitor interval. */
  async monitor(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      try {
        await this.sync();
      } catch (err) {
        this.#log.error({ err: describeError(err) }, "sync failed");
      }
      await this.#watch.wait(signal);
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
    let copyDone = false;
    this.#copying = true;
    try {
      if (!this.#conn.connect()) return;
      if (!this.#conn.attached) await this.#attach();
      await this.#ensureWal();
      // Taken before the WAL's header is read: whatever was committed by then, this copy takes.
      const readFrom = new Date();
      const changed = await this.#verifyAndCopy();
      this.#walReadAt = readFrom;
      copyDone = true;
      this.#copyDone();
      // Wake the destinations before checkpointing, not after: they read only the shadow WAL up to
      // pos(), which a checkpoint never takes back (it only appends, or starts a new index), while a
      // back-fill ends with an fsync of the database that can take seconds on a busy disk. Waking
      // them afterwards held every copied commit back for it (the 4 MB bursts' lag p99, issue 18).
      if (changed) this.#notify();
      const before = this.pos();
      await this.#checkpoints.maybe(this.#paused);
      await this.#shadow.clean(this.#replicaIndexes);
      await this.#updateSizeMetrics();
      this.metrics.syncCount++;
      this.#lastError = undefined;
      // A checkpoint copies first what was committed meanwhile, and RESTART moves to a new index.
      const after = this.pos();
      if (after && (!before || comparePos(before, after) !== 0)) this.#notify();
    } catch (err) {
      this.metrics.syncErrorCount++;
      this.#lastError = describeError(err);
      throw err;
    } finally {
      // A sync that stopped before its copy step (no database yet, an error) releases catchUp too.
      if (!copyDone) this.#copyDone();
      this.metrics.syncSeconds += (performance.now() - started) / 1000;
    }
  }

  /** Closes the connections. The WAL is left for the application and the next start. */
  async close(): Promise<void> {
    this.#watch.close();
    await this.#syncing;
    this.#conn.disconnect();
    await this.#checkpoints.close();
    // Only now, with no SQLite connection of ours left (see HeldFiles).
    await this.#files.close();
  }

  /**
   * The database exactly at `pos` (snapshot-image.ts), read through our own descriptor of the file:
   * a snapshot that opened and closed one would drop SQLite's locks in this process (see HeldFiles, db/files.ts).
   */
  async *imageAt(pos: Pos): AsyncGenerator<Buffer> {
    yield* snapshotImage(await this.#files.db(), this.shadowWalPath(pos.generation, pos.index), pos.offset);
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
      const state = this.#shadow.state;
      if (!this.#conn.db || !state) {
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
      const db = this.#conn.db;
      if (!db || !this.#shadow.state)
        throw new WalshipError(ErrorCodes.SQLITE, `validate ${this.path}: database is not open yet`);
      const conn = new Database(this.path, {
        readonly: true,
        timeout: this.busyTimeoutMs,
        fileMustExist: true,
      });
      try {
        db.exec("BEGIN IMMEDIATE");
        try {
          await this.#shadow.copy();
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
      const s = this.#shadow.state;
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
      await this.#checkpoints.run(mode);
      this.#notify();
    });
  }

  // --- connection -------------------------------------------------------------------------------

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
    const db = this.#conn.db!;
    if (!this.#shadow.state) this.#shadow.state = await this.#shadow.load();
    // Most of the catch-up before the lock, so the application waits only for what it commits
    // meanwhile (a WAL grown large while we were down would hold it off for seconds): frames that
    // continue ours (our salts, the checksum chain, up to a commit) are the old WAL's own, whatever
    // happened to the WAL since, and the copy is checked again in the shadow because nothing pins
    // the WAL yet. The check under the lock below decides whether they continue the generation.
    if (
      this.#shadow.state &&
      fs.existsSync(this.shadowWalPath(this.#shadow.state.generation, this.#shadow.state.index))
    ) {
      if (await this.#shadow.copy({ recheck: true, onlyIndexed: true })) this.#notify();
    }
    db.exec("BEGIN IMMEDIATE");
    let header: Buffer | undefined;
    try {
      const size = (await stat(this.walPath).catch(() => undefined))?.size ?? 0;
      if (this.#shadow.state && size >= WAL_HEADER_SIZE) {
        const realHeader = await readRange(this.walPath, 0, WAL_HEADER_SIZE);
        // A new generation's WAL is copied after our commit, pinned by the read transaction (a WAL
        // written back in full is in the database file, which its snapshot reads).
        if (await this.#shadow.verifyAndCopyUnlocked(realHeader, size, { deferNewGeneration: true }))
          this.#notify();
        header = Buffer.from(this.#shadow.state.header);
      }
      db.exec(
        "CREATE TABLE IF NOT EXISTS _litestream_seq (id INTEGER PRIMARY KEY, seq INTEGER);" +
          "CREATE TABLE IF NOT EXISTS _litestream_lock (id INTEGER);",
      );
      this.#conn.bumpSeq();
      this.#conn.beginRead();
      db.exec("COMMIT");
    } catch (err) {
      if (db.inTransaction) db.exec("ROLLBACK");
      this.#conn.endRead();
      throw err;
    }
    this.#conn.attached = true;
    if (header) {
      const now = await readRange(this.walPath, 0, WAL_HEADER_SIZE);
      if (Buffer.compare(now, header) !== 0) {
        await this.#shadow.startIndex(now);
        await this.#shadow.copy();
        this.#notify();
      }
    }
  }

  async #ensureWal(): Promise<void> {
    const st = await stat(this.walPath).catch(() => undefined);
    if (!st || st.size < WAL_HEADER_SIZE) {
      this.#conn.endRead();
      this.#conn.bumpSeq();
      this.#conn.beginRead();
    }
  }

  async #verifyAndCopy(): Promise<boolean> {
    if (!this.#shadow.state) this.#shadow.state = await this.#shadow.load();
    const realHeader = await readRange(this.walPath, 0, WAL_HEADER_SIZE);
    if (realHeader.length < WAL_HEADER_SIZE) {
      throw new WalshipError(ErrorCodes.WAL, `read wal ${this.walPath}: header is missing`);
    }
    const s = this.#shadow.state;
    if (s && Buffer.compare(realHeader, Buffer.from(s.header)) !== 0) {
      // The WAL was restarted by another process (while we were down, or between our read
      // transactions). Decide under SQLite's write lock: the new WAL is written from its start
      // towards our last frame, and a writer moving on between the check that our last frame
      // survived and the copy of the old frames after it would cut that copy short unnoticed.
      return await this.#conn.withWriteLock(async () => {
        const header = await readRange(this.walPath, 0, WAL_HEADER_SIZE);
        return this.#shadow.verifyAndCopyUnlocked(header, (await stat(this.walPath)).size);
      });
    }
    return this.#shadow.verifyAndCopyUnlocked(realHeader, (await stat(this.walPath)).size);
  }

  /**
   * The size gauges (database, -wal, shadow WAL), at most once a second, or at once when the shadow
   * moved to another index or generation. A sync runs on every WAL change, many times a second under
   * a heavy writer, and statting every shadow file each time took 2.35 s of main-thread time in a
   * profile of the heavy writer (docs/benchmarks.md, "Where Walship stands"); the gauges are read by
   * a scrape or a status request, at most every few seconds.
   */
  async #updateSizeMetrics(): Promise<void> {
    const s0 = this.#shadow.state;
    const now = performance.now();
    const moved = s0?.index !== this.metrics.shadowIndex || s0?.generation !== this.#sizesGeneration;
    // A size of 0 was read while the application was creating the database: not kept for a second.
    const unset = this.metrics.dbSize === 0;
    if (!moved && !unset && now - this.#sizesAt < SIZE_METRICS_INTERVAL_MS) return;
    this.#sizesAt = now;
    this.#sizesGeneration = s0?.generation;
    const [dbSt, walSt] = await Promise.all([
      stat(this.path).catch(() => undefined),
      stat(this.walPath).catch(() => undefined),
    ]);
    this.metrics.dbSize = dbSt?.size ?? 0;
    this.metrics.walSize = walSt?.size ?? 0;
    const s = this.#shadow.state;
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

  /** A sync's copy step has ended (whether it copied anything): releases catchUp. */
  #copyDone(): void {
    this.#copying = false;
    const prev = this.#copied;
    this.#copied = Promise.withResolvers<void>();
    prev.resolve();
  }

  #notify(): void {
    const prev = this.#changed;
    this.#changed = Promise.withResolvers<void>();
    prev.resolve();
  }
}
