/**
 * A small real file system for the disk-space tests: a tmpfs of a given size mounted under a temp dir
 * (root only), filled on purpose with a file, and unmounted at close. Each mount's source is
 * `walship-<name>`; one left mounted by a killed run of the same test is unmounted before the next.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdirSync, readFileSync, rmSync, statfsSync, writeFileSync } from "node:fs";
import path from "node:path";
import Database from "better-sqlite3";
import { makeTempDir } from "./proc.ts";

export interface SmallVolume {
  /** The temp dir the tmpfs is mounted in (for what must live elsewhere). */
  dir: string;
  /** The tmpfs's mount point. */
  mnt: string;
  /** Bytes still free on it (statfs bavail × bsize). */
  free(): number;
  /** (Re)writes `file` so that about `leave` bytes stay free. */
  fill(file: string, leave: number): void;
  /** Unmounts it (lazily if a process of a failed run still holds it). Safe to call twice. */
  close(): void;
}

/** Unmounts every tmpfs whose source is `source` (a run killed before its teardown). */
function sweep(source: string): void {
  const stale = readFileSync("/proc/self/mounts", "utf8")
    .split("\n")
    .map((l) => l.split(" "))
    .filter((f) => f[0] === source && f[1] !== undefined)
    .map((f) => f[1]!.replace(/\\040/g, " "));
  for (const m of stale) execFileSync("umount", ["-l", m]);
}

export function mountTmpfs(name: string, sizeMiB: number): SmallVolume {
  assert.equal(
    process.getuid?.(),
    0,
    "this test mounts a tmpfs and must run as root (CI and the dev machines do)",
  );
  const source = `walship-${name}`;
  sweep(source);
  const dir = makeTempDir(name);
  const mnt = path.join(dir, "small");
  mkdirSync(mnt);
  execFileSync("mount", ["-t", "tmpfs", "-o", `size=${sizeMiB}m,mode=0755`, source, mnt]);
  let mounted = true;
  const free = () => {
    const s = statfsSync(mnt);
    return s.bavail * s.bsize;
  };
  return {
    dir,
    mnt,
    free,
    fill(file, leave) {
      rmSync(file, { force: true });
      writeFileSync(file, Buffer.alloc(Math.max(0, free() - leave)));
    },
    close() {
      if (!mounted) return;
      mounted = false;
      try {
        execFileSync("umount", [mnt]);
      } catch {
        // Still busy: detach it now, it goes when the last user does.
        execFileSync("umount", ["-l", mnt]);
      }
    },
  };
}

/** The app of the disk-space tests: rows of 3000 bytes into table `t`, each its own transaction. */
export interface SmallApp {
  db: Database.Database;
  /** Inserts `n` rows; SQLITE_FULL (the app's own answer to a full disk) is counted, not thrown. */
  write(n: number): void;
  /** Rows committed. */
  readonly committed: number;
  /** Inserts SQLite refused because the disk was full. */
  readonly refused: number;
}

/** Opens `file` in WAL mode with table `t (id, v)`, as the app of the disk-space tests. */
export function smallApp(file: string): SmallApp {
  const db = new Database(file);
  db.pragma("journal_mode = wal");
  db.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)");
  const insert = db.prepare("INSERT INTO t (v) VALUES (?)");
  let committed = 0;
  let refused = 0;
  return {
    db,
    write(n) {
      for (let i = 0; i < n; i++) {
        try {
          insert.run(Buffer.alloc(3000, committed & 0xff));
          committed++;
        } catch (err) {
          // It must not corrupt anything (the tests check integrity and every committed row).
          assert.match(String((err as Error).message), /full|disk/i);
          refused++;
        }
      }
    },
    get committed() {
      return committed;
    },
    get refused() {
      return refused;
    },
  };
}
