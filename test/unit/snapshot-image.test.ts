/**
 * snapshotImage: the database at a WAL position, from the database file and the WAL's frames, must be
 * byte for byte what SQLite's own complete checkpoint of that WAL gives, however much of the WAL the
 * file already holds: none, part (a reader holding a checkpoint back), or all of it; with the database
 * growing, and shrinking under VACUUM.
 */
import assert from "node:assert/strict";
import { copyFileSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { type FileHandle, open } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, describe, it } from "node:test";
import Database from "better-sqlite3";
import { snapshotImage } from "../../src/replicator/snapshot-image.ts";

const dir = mkdtempSync(path.join(os.tmpdir(), "walship-image-"));
after(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;

/** Our descriptors of the database files, closed only at the end (closing one drops SQLite's locks). */
const handles: FileHandle[] = [];
after(async () => {
  for (const h of handles) await h.close();
});

async function image(db: string, wal: string, end: number): Promise<Buffer> {
  const fh = await open(db, "r");
  handles.push(fh);
  const parts: Buffer[] = [];
  // Each chunk is a view of one buffer the next step fills again: kept, it must be copied.
  for await (const b of snapshotImage(fh, wal, end)) parts.push(Buffer.from(b));
  return Buffer.concat(parts);
}

/** What SQLite makes of the database file plus that WAL: a copy of both, checkpointed in full. */
function sqliteCheckpoint(db: string, wal: string): Buffer {
  const d = path.join(dir, `ref-${++n}.db`);
  copyFileSync(db, d);
  copyFileSync(wal, `${d}-wal`);
  const c = new Database(d);
  c.pragma("wal_checkpoint(TRUNCATE)");
  c.close();
  return readFileSync(d);
}

describe("snapshotImage", () => {
  for (const backfill of ["none", "part", "all"] as const) {
    it(`equals SQLite's checkpoint when the file holds ${backfill} of the WAL (growth, VACUUM)`, async () => {
      const file = path.join(dir, `app-${backfill}.db`);
      const app = new Database(file);
      app.pragma("journal_mode = WAL");
      app.pragma("wal_autocheckpoint = 0");
      app.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)");
      for (let i = 0; i < 50; i++) app.prepare("INSERT INTO t (v) VALUES (randomblob(2000))").run();
      app.pragma("wal_checkpoint(TRUNCATE)"); // a fresh WAL over a database of some size
      const ins = (k: number) =>
        app.transaction(() => {
          for (let i = 0; i < k; i++) app.prepare("INSERT INTO t (v) VALUES (randomblob(3000))").run();
        })();
      ins(30);
      app.exec("DELETE FROM t WHERE id % 2 = 0");
      const reader = new Database(file);
      reader.exec("BEGIN");
      reader.prepare("SELECT count(*) FROM t").get(); // holds a checkpoint back at this point
      app.exec("VACUUM"); // the database shrinks
      ins(40); // and grows again
      const wal = `${file}-wal`;
      const shadow = path.join(dir, `shadow-${backfill}`);
      copyFileSync(wal, shadow); // the shadow holds the WAL from its start
      const end = statSync(shadow).size;
      const want = sqliteCheckpoint(file, shadow);
      if (backfill === "part") app.pragma("wal_checkpoint(PASSIVE)"); // up to the reader's mark only
      reader.exec("ROLLBACK");
      if (backfill === "all") app.pragma("wal_checkpoint(PASSIVE)");
      const got = await image(file, shadow, end);
      assert.equal(got.length, want.length, "the size at the last commit");
      assert.ok(got.equals(want), "the same bytes as SQLite's checkpoint");
      reader.close();
      app.close();
    });
  }

  it("fills one buffer chunk after chunk over a database of several chunks", async () => {
    const file = path.join(dir, "large.db");
    const app = new Database(file);
    app.pragma("journal_mode = WAL");
    app.pragma("wal_autocheckpoint = 0");
    app.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)");
    for (let i = 0; i < 3500; i++) app.prepare("INSERT INTO t (v) VALUES (randomblob(3000))").run();
    app.pragma("wal_checkpoint(TRUNCATE)"); // about 11 MiB in the file, three chunks
    // Frames for pages in every chunk: the first, the middle and the last.
    app.exec("UPDATE t SET v = randomblob(3000) WHERE id IN (1, 1700, 3500)");
    const wal = `${file}-wal`;
    const shadow = path.join(dir, "shadow-large");
    copyFileSync(wal, shadow);
    const end = statSync(shadow).size;
    const want = sqliteCheckpoint(file, shadow);
    const fh = await open(file, "r");
    handles.push(fh);
    const sizes: number[] = [];
    const buffers = new Set<ArrayBuffer>();
    const parts: Buffer[] = [];
    for await (const b of snapshotImage(fh, shadow, end)) {
      sizes.push(b.length);
      buffers.add(b.buffer as ArrayBuffer);
      parts.push(Buffer.from(b));
    }
    assert.ok(sizes.length >= 3, `several chunks (${sizes.join(", ")})`);
    assert.deepEqual(
      sizes.slice(0, -1),
      sizes.slice(0, -1).map(() => 4 << 20),
      "every chunk but the last is one 4 MiB LZ4 block",
    );
    assert.equal(buffers.size, 1, "one buffer, filled again at each step");
    assert.ok(Buffer.concat(parts).equals(want), "the same bytes as SQLite's checkpoint");
    app.close();
  });

  it("yields the file as it is when the WAL holds no commit (position 32)", async () => {
    const file = path.join(dir, "empty.db");
    const app = new Database(file);
    app.pragma("journal_mode = WAL");
    app.exec("CREATE TABLE t (x)");
    app.pragma("wal_checkpoint(TRUNCATE)");
    app.exec("INSERT INTO t VALUES (1)");
    const got = await image(file, `${file}-wal`, 32);
    assert.ok(got.equals(readFileSync(file)));
    app.close();
  });
});
