/**
 * A RESTART checkpoint back-fills what it can before it takes the application's write lock: under it
 * only the remainder is copied back. Before, the whole back-fill ran under the lock and a fast
 * writer (the bench's, at 128 MiB/s, busy_timeout 5 s) got "database is locked".
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, describe, it } from "node:test";
import Database from "better-sqlite3";
import { Db } from "../../src/replicator/db.ts";

const dir = mkdtempSync(path.join(os.tmpdir(), "walship-ckpt-lock-"));
after(() => rmSync(dir, { recursive: true, force: true }));

describe("RESTART checkpoint and the write lock", () => {
  it("back-fills without the lock first: the application commits during that back-fill", async () => {
    const file = path.join(dir, "app.db");
    const app = new Database(file);
    app.pragma("journal_mode = WAL");
    app.pragma("wal_autocheckpoint = 0");
    app.pragma("busy_timeout = 0"); // a lock held by the replicator fails at once
    app.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)");
    const commitsDuringBackfill: Array<"ok" | string> = [];
    let armed = false;
    const db = new Db(file, {
      watch: false,
      minCheckpointPageCount: 1_000_000, // no PASSIVE of its own: only the RESTART below
      maxCheckpointPageCount: 50,
      testHooks: {
        beforeBackfill: async () => {
          if (!armed) return;
          try {
            app.prepare("INSERT INTO t (v) VALUES (randomblob(100))").run();
            commitsDuringBackfill.push("ok");
          } catch (err) {
            commitsDuringBackfill.push((err as Error).message);
          }
        },
      },
    });
    await db.init();
    await db.sync();
    try {
      const ins = app.prepare("INSERT INTO t (v) VALUES (randomblob(3000))");
      app.transaction(() => {
        for (let i = 0; i < 80; i++) ins.run();
      })();
      const before = db.pos()!;
      armed = true;
      await db.sync(); // over 50 pages in the shadow: RESTART
      armed = false;
      assert.deepEqual(commitsDuringBackfill, ["ok"], "the application committed while the back-fill ran");
      assert.ok(db.pos()!.index > before.index, "the RESTART moved the shadow to the next index");
      assert.equal(db.metrics.checkpoints.RESTART.count, 1);
      assert.equal((app.prepare("SELECT count(*) AS n FROM t").get() as { n: number }).n, 81);
    } finally {
      await db.close();
      app.close();
    }
  });
});
