/**
 * Point-in-time restores cut at commit stamps (CommitRecord.time). Since a steady stream of commits
 * is copied on the destinations' ticks rather than at once, the copy can come a tick after the
 * commit; a stamp taken at the copy then left out of a restore to T every transaction made in the
 * tick before T (the bench's point-in-time restore missed 15). Each stamp must be no earlier than
 * its commit and at most a few milliseconds later, however late the copy. Real SQLite, real inotify.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, statSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import Database from "better-sqlite3";
import { type CommitRecord, Db } from "../../src/replicator/db.ts";

const dir = mkdtempSync(path.join(os.tmpdir(), "walship-stamps-"));
after(() => rmSync(dir, { recursive: true, force: true }));

describe("commit stamps when copies come late", () => {
  it("stamps each commit when it was published, not when a sync copied it", async () => {
    const file = path.join(dir, "app.db");
    const app = new Database(file);
    app.pragma("journal_mode = WAL");
    app.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, x)");
    // A coalescing period far longer than the test: after the first, only our sync copies.
    const db = new Db(file, { monitorIntervalMs: 30_000 });
    await db.init();
    await db.sync();
    const records: CommitRecord[] = [];
    db.onCommits((c) => records.push(...c));
    const ctl = new AbortController();
    const loop = db.monitor(ctl.signal);
    try {
      const insert = app.prepare("INSERT INTO t (x) VALUES (?)");
      const made: Array<{ before: number; after: number }> = [];
      for (let i = 0; i < 20; i++) {
        const before = Date.now();
        insert.run(i);
        made.push({ before, after: Date.now() });
        await sleep(50);
      }
      await sleep(200);
      assert.ok(records.length < 20, `the monitor loop held commits back (${records.length} copied)`);
      await db.sync(); // the copy, a second after the first of them
      assert.equal(records.length, 20, "one record per commit");
      const late = records.map((r, i) => r.time - made[i]!.after);
      for (const [i, r] of records.entries()) {
        assert.ok(r.time >= made[i]!.before, `commit ${i} is not stamped before it was made`);
      }
      assert.ok(Math.max(...late) < 100, `each stamp within 100 ms of its commit (${late.join(", ")} ms)`);
    } finally {
      ctl.abort();
      await loop;
      await db.close();
      app.close();
    }
  });

  it("walReadAt is when the last completed read of the WAL began: no later than a commit it may miss", async () => {
    const file = path.join(dir, "read-at.db");
    const app = new Database(file);
    app.pragma("journal_mode = WAL");
    app.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, x)");
    const insert = app.prepare("INSERT INTO t (x) VALUES (?)");
    // A commit made in the middle of a sync's read (after the WAL's header was read and checked,
    // before the frames are copied), 5 ms after the read began: walReadAt must not pass it, or a
    // reader of /status would take it for covered when this read could have missed it.
    let midRead: number | undefined;
    const db = new Db(file, {
      monitorIntervalMs: 30_000,
      testHooks: {
        afterVerify: () => {
          if (midRead !== undefined) return;
          const until = Date.now() + 5;
          while (Date.now() < until) {
            /* the read is under way: hold it 5 ms */
          }
          midRead = Date.now();
          insert.run("made during the read");
        },
      },
    });
    try {
      await db.init();
      // Read through a function: TypeScript would keep the property narrowed to undefined after the
      // first assertion.
      const readAt = (): Date | undefined => db.walReadAt;
      assert.equal(readAt(), undefined, "no read yet");
      const beforeSync = Date.now();
      await db.sync();
      const first = readAt();
      assert.ok(first, "a completed sync sets walReadAt");
      assert.ok(midRead !== undefined, "the hook ran inside the sync");
      assert.ok(
        first.getTime() >= beforeSync && first.getTime() < midRead,
        `walReadAt ${first.getTime()} within [${beforeSync}, ${midRead}): taken before the read, not after it`,
      );
      // A later sync reads again, and everything made before it is in the shadow WAL.
      insert.run("after");
      const madeAt = Date.now();
      await sleep(5);
      await db.sync();
      assert.ok(readAt()!.getTime() > madeAt, "the next read began after the last commit");
      const rows = app.prepare("SELECT count(*) FROM t").pluck().get() as number;
      assert.equal(rows, 2);
      const shadow = db.pos()!;
      const walEnd = statSync(`${file}-wal`).size;
      assert.equal(shadow.offset, walEnd, "the shadow WAL holds the WAL's every committed frame");
    } finally {
      await db.close();
      app.close();
    }
  });
});
