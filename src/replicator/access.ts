/**
 * Whether this process may use a database's files, checked before SQLite touches them. Opening a WAL
 * database creates `-wal` and `-shm` as the opening user: a replicator running as another user than
 * the app would leave files the app can then no longer write ("attempt to write a readonly
 * database"), so nothing is opened while a check fails.
 */
import { accessSync, constants } from "node:fs";
import path from "node:path";
import type { AccessProblem } from "../shared/protocol.ts";

/**
 * The first file a database needs that this process may not use: the directory (to create `-wal`,
 * `-shm` and the meta directory), the database and its `-wal`/`-shm` (read and write), the meta
 * directory. Files that do not exist are skipped (the app has not created them yet).
 */
export function accessProblem(dbPath: string, metaPath: string): AccessProblem | undefined {
  const rw = constants.R_OK | constants.W_OK;
  const dir = constants.W_OK | constants.X_OK;
  const checks: Array<[string, number, string]> = [
    [path.dirname(dbPath), dir, "create files in"],
    [dbPath, rw, "read and write"],
    [`${dbPath}-wal`, rw, "read and write"],
    [`${dbPath}-shm`, rw, "read and write"],
    [metaPath, dir, "create files in"],
  ];
  for (const [p, mode, need] of checks) {
    try {
      accessSync(p, mode);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === "EACCES" || code === "EPERM" || code === "EROFS") return { path: p, need, code };
    }
  }
  return undefined;
}
