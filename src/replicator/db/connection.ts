/**
 * The Db's two SQLite connections: `db` writes (our sequence table, checkpoints, the write lock) and
 * `rtx` holds the long read transaction that pins the WAL.
 */

import fs from "node:fs";
import Database from "better-sqlite3";
import { describeError, ErrorCodes, WalshipError } from "../../shared/errors.ts";
import type { Logger } from "../../shared/log.ts";
import { accessProblem } from "../access.ts";

export class Connections {
  db: Database.Database | undefined;
  rtx: Database.Database | undefined;
  /** Our first write and read transaction since connecting are in place (see Db #attach). */
  attached = false;
  pageSize = 0;

  readonly path: string;
  readonly metaPath: string;
  readonly busyTimeoutMs: number;
  readonly log: Logger;

  constructor(dbPath: string, metaPath: string, busyTimeoutMs: number, log: Logger) {
    this.path = dbPath;
    this.metaPath = metaPath;
    this.busyTimeoutMs = busyTimeoutMs;
    this.log = log;
  }

  connect(): boolean {
    if (this.db) return true;
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
      this.pageSize = Number(db.pragma("page_size", { simple: true }));
      rtx = new Database(this.path, { timeout: this.busyTimeoutMs, fileMustExist: true });
      this.db = db;
      this.rtx = rtx;
      this.attached = false;
      this.log.debug({ pageSize: this.pageSize }, "db connected");
      return true;
    } catch (err) {
      rtx?.close();
      db?.close();
      this.db = undefined;
      this.rtx = undefined;
      if (err instanceof WalshipError) throw err;
      throw new WalshipError(ErrorCodes.SQLITE, `open db ${this.path}: ${describeError(err)}`, {
        cause: err,
      });
    }
  }

  disconnect(): void {
    try {
      if (this.rtx?.inTransaction) this.rtx.exec("ROLLBACK");
    } catch {
      // closing anyway
    }
    this.rtx?.close();
    this.db?.close();
    this.rtx = undefined;
    this.db = undefined;
    this.attached = false;
  }

  beginRead(): void {
    const rtx = this.rtx!;
    if (rtx.inTransaction) return;
    rtx.exec("BEGIN");
    rtx.prepare("SELECT COUNT(1) FROM sqlite_master").get();
  }

  endRead(): void {
    const rtx = this.rtx!;
    if (rtx.inTransaction) rtx.exec("ROLLBACK");
  }

  bumpSeq(): void {
    this.db!.prepare(
      "INSERT INTO _litestream_seq (id, seq) VALUES (1, 1) ON CONFLICT (id) DO UPDATE SET seq = seq + 1",
    ).run();
  }

  /** Runs `fn` holding SQLite's write lock on our connection (BEGIN IMMEDIATE ... COMMIT). */
  async withWriteLock<T>(fn: () => Promise<T>): Promise<T> {
    const db = this.db;
    if (!db) throw new WalshipError(ErrorCodes.SQLITE, `lock ${this.path}: database is not open`);
    db.exec("BEGIN IMMEDIATE");
    try {
      return await fn();
    } finally {
      db.exec("COMMIT");
    }
  }
}
