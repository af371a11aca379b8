import assert from "node:assert/strict";
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, describe, it } from "node:test";
import Database from "better-sqlite3";
import { Backfiller } from "../../src/replicator/backfill.ts";

describe("Backfiller (wal_checkpoint(PASSIVE) on a worker thread)", () => {
  const dir = mkdtempSync(path.join(tmpdir(), "walship-backfill-"));
  const bf = new Backfiller();
  after(async () => {
    await bf.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("copies every committed frame back into the database file", async () => {
    const file = path.join(dir, "a.db");
    const app = new Database(file);
    app.pragma("journal_mode = WAL");
    app.pragma("wal_autocheckpoint = 0");
    app.exec("CREATE TABLE t (x BLOB)");
    const ins = app.prepare("INSERT INTO t VALUES (randomblob(4000))");
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
});
