/**
 * The Db's checkpoints: when one is due (maybe) and how each mode runs so that no frame is written
 * back and restarted over before the shadow WAL holds it (run).
 */

import { stat } from "node:fs/promises";
import { describeError, ErrorCodes, WalshipError } from "../../shared/errors.ts";
import type { Logger } from "../../shared/log.ts";
import { Backfiller } from "../backfill.ts";
import type { Db } from "../db.ts";
import { alignWalSize, followsWal, frameSize, parseWalHeader, WAL_HEADER_SIZE } from "../sqlite/wal.ts";
import type { Connections } from "./connection.ts";
import { readRange } from "./files.ts";
import type { CheckpointHealth, CheckpointMode, DbOptions } from "./options.ts";
import type { ShadowWal } from "./shadow.ts";

type Owner = Pick<
  Db,
  | "path"
  | "walPath"
  | "busyTimeoutMs"
  | "checkpointIntervalMs"
  | "minCheckpointPageCount"
  | "maxCheckpointPageCount"
  | "truncatePageCount"
  | "metrics"
>;

export class Checkpointer {
  readonly #owner: Owner;
  readonly #conn: Connections;
  readonly #shadow: ShadowWal;
  readonly #log: Logger;
  readonly #testHooks: DbOptions["testHooks"];
  readonly #backfiller = new Backfiller();
  /** Where the last PASSIVE checkpoint left the shadow. */
  #passiveAt: { generation: string; index: number; size: number } | undefined;
  /** Failures since the last checkpoint that succeeded, and the newest of them (CheckpointHealth). */
  #health: CheckpointHealth = { consecutiveFailures: 0 };

  constructor(
    owner: Owner,
    conn: Connections,
    shadow: ShadowWal,
    log: Logger,
    testHooks: DbOptions["testHooks"],
  ) {
    this.#owner = owner;
    this.#conn = conn;
    this.#shadow = shadow;
    this.#log = log;
    this.#testHooks = testHooks;
  }

  /** Whether checkpoints are failing now: a guardrail (docs/operator.md, CheckpointFailing). */
  get health(): CheckpointHealth {
    return { ...this.#health };
  }

  /** Checkpoints when a threshold is reached; never while snapshots hold checkpoints off (`paused`). */
  async maybe(paused: number): Promise<void> {
    const s = this.#shadow.state;
    if (!s || this.#conn.pageSize === 0 || paused > 0) return;
    const F = frameSize(this.#conn.pageSize);
    const W = (n: number) => WAL_HEADER_SIZE + n * F;
    const realSize = alignWalSize((await stat(this.#owner.walPath)).size, this.#conn.pageSize);
    // PASSIVE checkpoints leave the shadow as it is, so they count the pages added since the last one.
    const last = this.#passiveAt;
    const since =
      last && last.generation === s.generation && last.index === s.index
        ? s.size - last.size + WAL_HEADER_SIZE
        : s.size;
    let mode: CheckpointMode | undefined;
    if (realSize >= W(this.#owner.truncatePageCount)) mode = "TRUNCATE";
    else if (this.#owner.maxCheckpointPageCount > 0 && s.size >= W(this.#owner.maxCheckpointPageCount))
      mode = "RESTART";
    else if (since >= W(this.#owner.minCheckpointPageCount)) mode = "PASSIVE";
    else if (this.#owner.checkpointIntervalMs > 0 && since > W(1)) {
      const dbStat = await stat(this.#owner.path);
      if (Date.now() - dbStat.mtimeMs > this.#owner.checkpointIntervalMs) mode = "PASSIVE";
    }
    if (mode) await this.run(mode);
    if (mode === "PASSIVE" && this.#shadow.state) {
      this.#passiveAt = {
        generation: this.#shadow.state.generation,
        index: this.#shadow.state.index,
        size: this.#shadow.state.size,
      };
    }
  }

  /** Whether the real WAL still has the header of the shadow's current index (it was not restarted). */
  async #walIsShadows(): Promise<boolean> {
    const real = await readRange(this.#owner.walPath, 0, WAL_HEADER_SIZE);
    return Buffer.compare(real, Buffer.from(this.#shadow.state!.header)) === 0;
  }

  /**
   * PASSIVE: copy the WAL back into the database without restarting it. RESTART and TRUNCATE: under
   * the write lock, top up, copy back, then restart the WAL with our own write so the restart happens
   * at a point we have fully copied.
   */
  async run(mode: CheckpointMode): Promise<void> {
    const db = this.#conn.db;
    if (!db || !this.#shadow.state) return;
    const m = this.#owner.metrics.checkpoints[mode];
    const started = performance.now();
    let locked = false;
    try {
      // Copy pages back without restarting the WAL. Our read transaction moves its mark up to every
      // committed frame first; it stays above 0 after the back-fill, so no other connection can
      // restart the WAL, and frames past the mark are not touched. No lock is needed, and the WAL
      // index moves on only at the RESTART threshold (as Litestream's does), which keeps restores
      // short. RESTART and TRUNCATE start the same way, so that what they then do under the write
      // lock is only the remainder: a whole back-fill there held the application's writes for
      // seconds under a fast writer (at 128 MiB/s the bench's writer, busy_timeout 5 s, got
      // "database is locked").
      this.#conn.endRead();
      this.#testHooks?.markReleased?.();
      this.#conn.beginRead();
      // Between the two, nothing of ours held the WAL: with it written back in full, one commit of
      // the application could restart it. The copy below follows the old WAL's salts and would see
      // nothing of the new one, and our own restart further down would then look like a second one
      // and end the generation (a loaded CI run: "wal restarted more than once during our
      // checkpoint"). Such a restart is the next sync's to judge, as one between syncs is
      // (verifyShadow: the next index, or a new generation if frames were lost); this checkpoint
      // stops and runs again after it.
      if (!(await this.#walIsShadows())) {
        this.#log.debug({ mode }, "checkpoint deferred: the wal restarted before it began");
        return;
      }
      // Copy up to (at least) the new mark before anything is written back: the back-fill can
      // reach frames up to our mark, and a frame written back but never copied would be lost if
      // the WAL were restarted while we are down.
      await this.#shadow.copy();
      await this.#testHooks?.beforeBackfill?.();
      const passive = await this.#backfill(1);
      if (mode === "PASSIVE") {
        m.count++;
        this.#succeeded();
        this.#log.debug({ mode, complete: passive }, "checkpoint");
        return;
      }
      db.exec("BEGIN IMMEDIATE");
      locked = true;
      // The same once more under the lock: a read of ours at mark 0 (the WAL written back in full)
      // does not stop the application's restart, so one may have come since the check above. From
      // here to our write no one else can restart it.
      if (!(await this.#walIsShadows())) {
        db.exec("COMMIT");
        locked = false;
        this.#log.debug({ mode }, "checkpoint deferred: the wal restarted before its lock");
        return;
      }
      // No one can commit now: copy everything committed so far, then copy it back into the database.
      await this.#shadow.copy();
      const headerBefore = Buffer.from(this.#shadow.state.header);
      this.#conn.endRead();
      const complete = await this.#backfill(10);
      // Our read starts again before the lock goes. With the WAL written back in full it reads only
      // the database file (SQLite's read mark 0), which does not stop a restart but stops every
      // back-fill until we move the mark: the application may restart the WAL in the gap below, but
      // cannot write that new WAL back and restart it a second time before we have copied it.
      this.#conn.beginRead();
      // SQLite restarts the WAL only for a writer whose snapshot began after the backfill, so the lock
      // is taken anew. Should the application commit in between, its write restarts the WAL instead:
      // either way every old frame was copied above.
      db.exec("COMMIT");
      locked = false;
      this.#testHooks?.afterBackfill?.();
      if (mode === "TRUNCATE") db.pragma("journal_size_limit = 0");
      db.exec("BEGIN IMMEDIATE");
      locked = true;
      this.#conn.bumpSeq();
      db.exec("COMMIT");
      locked = false;
      if (mode === "TRUNCATE") db.pragma("journal_size_limit = -1");
      m.count++;
      const realHeader = await readRange(this.#owner.walPath, 0, WAL_HEADER_SIZE);
      if (Buffer.compare(realHeader, headerBefore) !== 0) {
        // Restarted by our write or by the application's in the gap. A second restart needs that new
        // WAL written back, which our read at mark 0 prevents; should one happen all the same, the WAL
        // in between is lost to the shadow and the generation cannot go on.
        if (followsWal(parseWalHeader(headerBefore), parseWalHeader(realHeader))) {
          await this.#shadow.startIndex(realHeader);
        } else {
          await this.#shadow.newGeneration("wal restarted more than once during our checkpoint", realHeader);
        }
      }
      await this.#shadow.copy();
      // Copied: the mark moves up to the new WAL's end, and back-fills may run again.
      this.#conn.endRead();
      this.#conn.beginRead();
      this.#succeeded();
      this.#log.debug({ mode, complete }, "checkpoint");
    } catch (err) {
      m.errors++;
      this.#health = {
        ...this.#health,
        consecutiveFailures: this.#health.consecutiveFailures + 1,
        lastError: `checkpoint ${this.#owner.path} (${mode}): ${describeError(err)}`,
        lastErrorAt: new Date(),
      };
      if (locked) {
        try {
          db.exec("ROLLBACK");
        } catch {
          // the transaction is gone already
        }
      }
      try {
        this.#conn.beginRead();
      } catch {
        // reconnect on the next sync
        this.#conn.disconnect();
      }
      throw new WalshipError(
        ErrorCodes.SQLITE,
        `checkpoint ${this.#owner.path} (${mode}): ${describeError(err)}`,
        {
          cause: err,
        },
      );
    } finally {
      m.seconds += (performance.now() - started) / 1000;
    }
  }

  /** A checkpoint ran to its end: the failure streak is over (the last success is kept). */
  #succeeded(): void {
    this.#health = { consecutiveFailures: 0, lastSuccessAt: new Date() };
  }

  /**
   * PASSIVE checkpoints from a separate connection until the WAL is fully copied back (or tries run
   * out), on the back-fill worker thread so uploads and wake-ups go on meanwhile.
   */
  #backfill(tries: number): Promise<boolean> {
    return this.#backfiller.run(this.#owner.path, { busyTimeoutMs: this.#owner.busyTimeoutMs, tries });
  }

  /** Stops the back-fill worker (the Db closes its connections first). */
  close(): Promise<void> {
    return this.#backfiller.close();
  }
}
