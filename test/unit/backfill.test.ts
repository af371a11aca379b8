import assert from "node:assert/strict";
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, describe, it } from "node:test";
import Database from "better-sqlite3";
import { Backfiller } from "../../src/replicator/backfill.ts";

/** A database in WAL mode that only we checkpoint, and a statement adding one 4000-byte row. */
function walApp(file: string) {
  const app = new Database(file);
  app.pragma("journal_mode = WAL");
  app.pragma("wal_autocheckpoint = 0");
  app.exec("CREATE TABLE t (x BLOB)");
  return { app, ins: app.prepare("INSERT INTO t VALUES (randomblob(4000))") };
}

describe("Backfiller (wal_checkpoint(PASSIVE) on a worker thread)", () => {
  const dir = mkdtempSync(path.join(tmpdir(), "walship-backfill-"));
  const bf = new Backfiller();
  after(async () => {
    await bf.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("copies every committed frame back into the database file", async () => {
    const file = path.join(dir, "a.db");
    const { app, ins } = walApp(file);
    for (let i = 0; i < 200; i++) ins.run();
    const before = statSync(file).size;
    assert.equal(await bf.run(file, { busyTimeoutMs: 1000, tries: 1 }), true);
    assert.ok(statSync(file).size > before + 200 * 4000, "the pages are in the database file now");
    // The WAL was not restarted: the same frames are still there, all of them back-filled.
    const [row] = app.pragma("wal_checkpoint(PASSIVE)") as Array<{ log: number; checkpointed: number }>;
    assert.ok(row && row.log > 200 && row.log === row.checkpointed);
    app.close();
  });

  it("reports an open reader that holds frames back as incomplete, then complete once it ends", async () => {
    const file = path.join(dir, "b.db");
    const app = new Database(file);
    app.pragma("journal_mode = WAL");
    app.pragma("wal_autocheckpoint = 0");
    app.exec("CREATE TABLE t (x)");
    const reader = new Database(file, { readonly: true });
    reader.exec("BEGIN");
    reader.prepare("SELECT count(*) FROM t").get();
    app.prepare("INSERT INTO t VALUES (1)").run();
    assert.equal(await bf.run(file, { busyTimeoutMs: 1000, tries: 2, retryMs: 10 }), false);
    reader.exec("COMMIT");
    reader.close();
    assert.equal(await bf.run(file, { busyTimeoutMs: 1000, tries: 1 }), true);
    app.close();
  });

  it("rejects with SQLite's code when the database is missing, and keeps working", async () => {
    await assert.rejects(bf.run(path.join(dir, "missing.db"), { busyTimeoutMs: 100, tries: 1 }), {
      code: "SQLITE_CANTOPEN",
    });
    const file = path.join(dir, "c.db");
    const app = new Database(file);
    app.pragma("journal_mode = WAL");
    app.exec("CREATE TABLE t (x)");
    assert.equal(await bf.run(file, { busyTimeoutMs: 1000, tries: 1 }), true);
    app.close();
  });

  it("stops an idle worker, and the next back-fill starts another that works", async (t) => {
    const idle = new Backfiller({ idleMs: 100 });
    t.after(() => idle.close());
    const file = path.join(dir, "d.db");
    const { app, ins } = walApp(file);
    for (let i = 0; i < 50; i++) ins.run();
    assert.equal(await idle.run(file, { busyTimeoutMs: 1000, tries: 1 }), true);
    // Busy back to back: the same worker.
    assert.equal(await idle.run(file, { busyTimeoutMs: 1000, tries: 1 }), true);
    assert.deepEqual([idle.running, idle.starts], [true, 1]);
    await new Promise((r) => setTimeout(r, 400));
    assert.equal(idle.running, false, "stopped after 100 ms idle");
    for (let i = 0; i < 50; i++) ins.run();
    const before = statSync(file).size;
    const two = [
      idle.run(file, { busyTimeoutMs: 1000, tries: 1 }),
      idle.run(file, { busyTimeoutMs: 1000, tries: 1 }),
    ];
    assert.deepEqual(await Promise.all(two), [true, true]);
    assert.ok(statSync(file).size > before + 40 * 4000, "the new worker back-filled the new frames");
    assert.deepEqual([idle.running, idle.starts], [true, 2]);
    app.close();
  });
});
