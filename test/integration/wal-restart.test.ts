/**
 * A WAL restarted by another process while the replicator was down (killed: its read lock gone). The
 * frames committed after our last copy are written back into the database and the WAL restarts; the
 * new WAL is written from its start over the old frames. As long as our last copied frame survives,
 * the old frames after it do too and must be copied before the new index starts. Between that check
 * and the copy, the application must not be able to write (it would overwrite old frames we have not
 * read yet, unnoticed): the replicator holds SQLite's write lock there. The seam `testHooks.afterVerify`
 * makes the application write exactly in that gap.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, statSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, describe, it } from "node:test";
import Database from "better-sqlite3";
import { Db } from "../../src/replicator/db.ts";

describe("WAL restarted while the replicator was down", () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), "walship-walrestart-"));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it("copies every old frame after our last one, with the app held off between check and copy", async () => {
    const file = path.join(dir, "app.db");
    const app = new Database(file);
    app.pragma("journal_mode = WAL");
    app.pragma("wal_autocheckpoint = 0");
    app.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)");
    const insert = (n: number) =>
      app.transaction(() => {
        for (let i = 0; i < n; i++) app.prepare("INSERT INTO t (v) VALUES (randomblob(3000))").run();
      })();
    for (let i = 0; i < 40; i++) insert(1);

    const first = new Db(file, { watch: false });
    await first.init();
    await first.sync();
    const gen = first.generation!;
    const copied = statSync(first.shadowWalPath(gen, 0)).size;
    await first.close(); // as after SIGKILL: no read lock of ours any more

    for (let i = 0; i < 20; i++) insert(1); // committed after our last copy
    const oldEnd = statSync(`${file}-wal`).size;
    assert.ok(oldEnd > copied);
    const [ck] = app.pragma("wal_checkpoint(RESTART)") as Array<{
      busy: number;
      log: number;
      checkpointed: number;
    }>;
    assert.deepEqual([ck?.busy, ck?.log === ck?.checkpointed], [0, true], "everything written back");
    insert(1); // restarts the WAL: a new header and one frame at its start; our last frame survives

    let heldOff = false;
    const second = new Db(file, {
      watch: false,
      testHooks: {
        afterVerify: () => {
          app.pragma("busy_timeout = 0");
          try {
            insert(200); // the new WAL would overwrite the old frames past ours, and ours
          } catch (err) {
            if ((err as { code?: string }).code !== "SQLITE_BUSY") throw err;
            heldOff = true;
          }
        },
      },
    });
    await second.init();
    await second.sync();
    assert.equal(second.generation, gen, "the same generation goes on");
    assert.equal(heldOff, true, "the application could write between the check and the copy");
    assert.equal(statSync(second.shadowWalPath(gen, 0)).size, oldEnd, "every old frame was copied");
    assert.ok(statSync(second.shadowWalPath(gen, 1)).size > 32, "the new WAL is the next index");
    await second.close();
    app.close();
  });
});
