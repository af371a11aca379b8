/** The checks a restored file passes before it takes the database's name. */

import { statSync } from "node:fs";
import Database from "better-sqlite3";
import { describeError, ErrorCodes, WalshipError } from "../../shared/errors.ts";

/**
 * Opens the restored file for its check, read through a memory map. The check reads every page, and
 * with indexes it reads index pages again for every row it checks against them: read the default
 * way (a `pread` per page into SQLite's own page cache) a 427 MiB database with three indexes took
 * 22.5 s, 10 s of it system time copying pages the kernel already holds; mapped, 11.0 s; the
 * bench's 513 MiB without an index 0.92 → 0.56 s (`make bench-integrity-check`, docs/benchmarks.md
 * "The restore's integrity check"). The map costs no memory of its own: its pages are the page cache's
 * copy of the file the restore has just written, which the container's memory already counts, and
 * the kernel can take them back as it can any clean page of a file. They do count in the process's
 * resident set (its RSS, VmHWM) while mapped. SQLite maps at most the first `SQLITE_MAX_MMAP_SIZE`
 * bytes (2 GiB in better-sqlite3's build) and reads the rest as before. An I/O error under a mapped
 * page ends the process (SIGBUS) instead of failing the query; the output path is untouched and the
 * next attempt removes the temporary file.
 */
export function openForCheck(dbFile: string): Database.Database {
  const db = new Database(dbFile, { fileMustExist: true });
  try {
    db.pragma(`mmap_size = ${Math.max(statSync(dbFile).size, 1)}`);
  } catch (err) {
    db.close();
    throw err;
  }
  return db;
}

/** PRAGMA integrity_check on the restored file; `from` names what it was built from. */
export function integrityCheck(dbFile: string, from: string): void {
  let db: Database.Database | undefined;
  try {
    db = openForCheck(dbFile);
    const rows = db.prepare("PRAGMA integrity_check").all() as Array<{ integrity_check: string }>;
    const problems = rows.map((r) => r.integrity_check).filter((r) => r !== "ok");
    if (problems.length > 0) {
      throw new WalshipError(
        ErrorCodes.INTEGRITY,
        `restore: integrity_check failed on the restore of ${from}: ${problems.slice(0, 5).join("; ")}`,
        { details: { from } },
      );
    }
  } catch (err) {
    if (err instanceof WalshipError) throw err;
    throw new WalshipError(
      ErrorCodes.INTEGRITY,
      `restore: integrity_check failed on the restore of ${from}: ${describeError(err)}`,
      { cause: err, details: { from } },
    );
  } finally {
    db?.close();
  }
}

/** The user's own check: the query must run and return at least one row. */
export function verifyQuery(dbFile: string, sql: string): void {
  let db: Database.Database | undefined;
  let rows: unknown[];
  try {
    db = new Database(dbFile, { readonly: true, fileMustExist: true });
    rows = db.prepare(sql).all();
  } catch (err) {
    throw new WalshipError(ErrorCodes.INTEGRITY, `restore: -verify-sql failed: ${describeError(err)}`, {
      cause: err,
    });
  } finally {
    db?.close();
  }
  if (rows.length === 0) {
    throw new WalshipError(ErrorCodes.INTEGRITY, `restore: -verify-sql returned no row: ${sql}`);
  }
}
