/**
 * The sync loop runs for months: each of its iterations used to add an `abort` listener to the
 * run's signal and never remove it (MaxListenersExceededWarning after 11 iterations, then one more
 * closure per sync for the life of the process). Real database, real file destination, 60 syncs.
 */
import assert from "node:assert/strict";
import { getEventListeners } from "node:events";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import Database from "better-sqlite3";
import { Db } from "../../src/replicator/db.ts";
import { Replica } from "../../src/replicator/replica.ts";
import { FileReplicaClient } from "../../src/replicator/storage/file.ts";

const dir = mkdtempSync(path.join(os.tmpdir(), "walship-loop-"));
after(() => rmSync(dir, { recursive: true, force: true }));

describe("replica sync loop", () => {
  it("keeps the number of abort listeners constant over 60 syncs, with no MaxListenersExceededWarning", async () => {
    const file = path.join(dir, "app.db");
    const app = new Database(file);
    app.pragma("journal_mode = WAL");
    app.exec("CREATE TABLE t (x); INSERT INTO t VALUES (1)");
    const db = new Db(file, { watch: false });
    await db.init();
    const replica = new Replica(db, new FileReplicaClient(path.join(dir, "replica")), {
      name: "file",
      syncIntervalMs: 1,
    });
    const warnings: string[] = [];
    const onWarning = (w: Error) => warnings.push(`${w.name}: ${w.message}`);
    process.on("warning", onWarning);
    const ctl = new AbortController();
    await db.sync();
    const loop = replica.run(ctl.signal);
    const counts: number[] = [];
    try {
      for (let i = 0; i < 60; i++) {
        const before = replica.metrics.syncCount;
        // Each checkpoint tells the loop the shadow changed (the application is in this process and
        // must not write while the replicator holds SQLite's write lock across an await).
        await db.checkpoint("PASSIVE");
        while (replica.metrics.syncCount === before) await sleep(2);
        counts.push(getEventListeners(ctl.signal, "abort").length);
      }
    } finally {
      ctl.abort();
      await loop;
      process.off("warning", onWarning);
      replica.close();
      await db.close();
      app.close();
    }
    assert.ok(replica.metrics.syncCount >= 60, `syncs: ${replica.metrics.syncCount}`);
    // A few listeners come and go with sleeps in flight; none may accumulate.
    assert.ok(
      Math.max(...counts) <= Math.min(...counts) + 2,
      `abort listeners per sync: ${counts.join(",")}`,
    );
    assert.ok(Math.max(...counts) < 10, `abort listeners per sync: ${counts.join(",")}`);
    assert.deepEqual(
      warnings.filter((w) => w.includes("MaxListeners")),
      [],
    );
  });
});
