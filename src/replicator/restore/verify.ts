/** The checks a restored file passes before it takes the database's name. */

import Database from "better-sqlite3";
import { describeError, ErrorCodes, WalshipError } from "../../shared/errors.ts";

/** PRAGMA integrity_check on the restored file; `from` names what it was built from. */
export function integrityCheck(dbFile: string, from: string): void {
  let db: Database.Database | undefined;
  try {
    db = new Database(dbFile, { fileMustExist: true });
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
