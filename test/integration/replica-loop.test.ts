/**
 * The sync loop runs for months: each of its iterations used to add an `abort` listener to the
 * run's signal and never remove it (MaxListenersExceededWarning after 11 iterations, then one more
 * closure per sync for the life of the process). Real database, real file destination, 60 syncs.
 *
 * And after a run of failed syncs it must try again soon once the store answers: the backoff
 * between failed syncs grew to 10 s, so a store back after a fault waited up to 10 s more (storage
 * faults torture: 10.2 s from "connection refused" cleared to the next sync, with the app writing
 * 45 MB of WAL a second into the backlog meanwhile).
 *
 * And the Db wakes its destinations as soon as a sync has copied commits, not after that sync's
 * checkpoint: the seam `testHooks.beforeBackfill` holds a PASSIVE back-fill open while the test
 * uploads and restores.
 */
import assert from "node:assert/strict";
import { getEventListeners } from "node:events";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { PassThrough, type Readable } from "node:stream";
import { after, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import Database from "better-sqlite3";
import { Db } from "../../src/replicator/db.ts";
import { Replica } from "../../src/replicator/replica.ts";
import { restore } from "../../src/replicator/restore.ts";
import type { ReplicaClient } from "../../src/replicator/storage/client.ts";
import { FileReplicaClient } from "../../src/replicator/storage/file.ts";
import { comparePos } from "../../src/replicator/types.ts";
import { logicalHash, logicalHashOf } from "../helpers/sqlite.ts";

const dir = mkdtempSync(path.join(os.tmpdir(), "walship-loop-"));
after(() => rmSync(dir, { recursive: true, force: true }));

/** An app's database in WAL mode with one row, and a Db on it. */
async function appAndDb(name: string): Promise<{ app: Database.Database; db: Db }> {
  const file = path.join(dir, name);
  const app = new Database(file);
  app.pragma("journal_mode = WAL");
  app.exec("CREATE TABLE t (x); INSERT INTO t VALUES (1)");
  const db = new Db(file, { watch: false });
  await db.init();
  return { app, db };
}

describe("replica sync loop", () => {
  it("keeps the number of abort listeners constant over 60 syncs, with no MaxListenersExceededWarning", async () => {
    const { app, db } = await appAndDb("app.db");
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

describe("replica sync loop after failures", () => {
  it("syncs within 3 s of the store answering again after 7 s of failed syncs", async () => {
    const { app, db } = await appAndDb("back.db");
    await db.sync();
    const inner = new FileReplicaClient(path.join(dir, "back-replica"));
    let failing = true;
    const attempts: number[] = [];
    // Every call fails like a refused connection while `failing`; the first call of a sync is a
    // listing of the generation's snapshots.
    const client = new Proxy(inner, {
      get(target, prop, receiver) {
        const v = Reflect.get(target, prop, receiver);
        if (typeof v !== "function") return v;
        return (...args: unknown[]) => {
          if (prop === "snapshots") attempts.push(performance.now());
          if (failing) return Promise.reject(new Error("connect ECONNREFUSED 127.0.0.1:9"));
          return v.apply(target, args);
        };
      },
    }) as ReplicaClient;
    const replica = new Replica(db, client, { name: "back", syncIntervalMs: 200 });
    const ctl = new AbortController();
    const start = performance.now();
    const loop = replica.run(ctl.signal);
    try {
      while (performance.now() - start < 7000) await sleep(20);
      failing = false;
      const healed = performance.now();
      while (replica.metrics.syncCount === 0 && performance.now() - healed < 15_000) await sleep(20);
      const after = (performance.now() - healed) / 1000;
      const gaps = attempts.map((t, i) => (i === 0 ? 0 : Math.round(t - attempts[i - 1]!)));
      assert.ok(replica.metrics.syncErrorCount >= 5, `failed syncs: ${replica.metrics.syncErrorCount}`);
      assert.ok(
        after < 3,
        `first sync ${after.toFixed(1)} s after the store answered; gaps ${gaps.join(",")} ms`,
      );
    } finally {
      ctl.abort();
      await loop;
      replica.close();
      await db.close();
      app.close();
    }
  });
});

describe("replica position rebuilt from a segment that breaks off", () => {
  it("fails the sync with the read's error and goes on; the process does not crash", async () => {
    // The storage-faults run (truncated bodies) crashed the replicator: the last segment's body, read
    // to rebuild the position after failed syncs, broke off ("socket hang up"), and its error was
    // emitted on a stream only piped into the LZ4 decoder, with no listener: an uncaught exception.
    const { app, db } = await appAndDb("broken.db");
    await db.sync();
    const inner = new FileReplicaClient(path.join(dir, "broken-replica"));
    const first = new Replica(db, inner, { name: "first", syncIntervalMs: 1 });
    await first.sync();
    assert.equal(first.metrics.syncCount, 1);
    first.close();
    app.exec("INSERT INTO t VALUES (2)");
    await db.sync();
    let breaking = true;
    let broken = 0;
    // The real file client, with a fault seam: while `breaking`, a segment's body gives its first
    // chunk and then fails as a dropped connection does.
    const client = new Proxy(inner, {
      get(target, prop, receiver) {
        const v = Reflect.get(target, prop, receiver);
        if (typeof v !== "function") return v;
        if (prop !== "walSegmentReader") return v.bind(target);
        return async (...args: unknown[]) => {
          const body = (await v.apply(target, args)) as Readable;
          if (!breaking) return body;
          broken++;
          const out = new PassThrough();
          body.once("data", (chunk: Buffer) => {
            out.write(chunk.subarray(0, 8));
            body.destroy();
            setImmediate(() => out.destroy(new Error("read s3://b/wal: socket hang up")));
          });
          return out;
        };
      },
    }) as ReplicaClient;
    const replica = new Replica(db, client, { name: "again", syncIntervalMs: 200 });
    const ctl = new AbortController();
    const loop = replica.run(ctl.signal);
    try {
      while (broken < 2) await sleep(20);
      assert.ok(replica.metrics.syncErrorCount >= 1, `failed syncs: ${replica.metrics.syncErrorCount}`);
      assert.equal(replica.metrics.syncCount, 0);
      breaking = false;
      const healed = performance.now();
      while (replica.metrics.syncCount === 0 && performance.now() - healed < 10_000) await sleep(20);
      assert.ok(replica.metrics.syncCount >= 1, "synced once the reads work again");
    } finally {
      ctl.abort();
      await loop;
      replica.close();
      await db.close();
      app.close();
    }
  });
});

describe("destinations woken before the checkpoint", () => {
  it("uploads what a sync copied while that sync's PASSIVE back-fill still runs (seam beforeBackfill)", async () => {
    // The Db woke its destinations only at the end of a sync, after the checkpoint: a back-fill (which
    // ends with an fsync of the database, seconds on a busy disk) held every commit it copied back
    // from the bucket, and a 4 MB burst crosses the PASSIVE threshold each time (bench lag p99).
    const file = path.join(dir, "early.db");
    const app = new Database(file);
    app.pragma("journal_mode = WAL");
    app.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, x); INSERT INTO t (x) VALUES (1)");
    const gate = Promise.withResolvers<void>();
    let held = false;
    let inBackfill = false;
    const db = new Db(file, {
      watch: false,
      minCheckpointPageCount: 1,
      testHooks: {
        beforeBackfill: async () => {
          if (!held) return;
          inBackfill = true;
          await gate.promise;
        },
      },
    });
    await db.init();
    await db.sync();
    const client = new FileReplicaClient(path.join(dir, "early-replica"));
    const replica = new Replica(db, client, { name: "file", syncIntervalMs: 1 });
    await replica.sync();
    let syncing: Promise<void> | undefined;
    let synced = false;
    try {
      app.exec("INSERT INTO t (x) SELECT randomblob(3000) FROM (SELECT 1 UNION SELECT 2 UNION SELECT 3)");
      held = true;
      const changed = db.changed();
      syncing = db.sync().then(() => {
        synced = true;
      });
      const woken = await Promise.race([changed.then(() => true), sleep(5_000).then(() => false)]);
      assert.ok(woken, "the destinations were woken before the back-fill ended");
      while (!inBackfill) await sleep(5);
      await replica.sync();
      assert.equal(synced, false, "the sync is still inside its back-fill");
      const out = path.join(dir, "early-restored.db");
      await restore([{ name: "file", client }], { outputPath: out });
      assert.equal(logicalHash(out), logicalHashOf(app), "the bucket has the commit already");
    } finally {
      gate.resolve();
      await syncing;
      replica.close();
      await db.close();
      app.close();
    }
  });
});

describe("a destination's tick catches up on coalesced changes", () => {
  it("copies what the monitor loop holds back to batch it before the destination reads the shadow", async () => {
    // Under a steady stream of commits the monitor loop batches changes (a change made during a sync
    // waits out the coalescing period from that sync's start). A destination about to upload ends
    // that wait (Db.catchUp): a commit made just before its tick is in that upload, not the next.
    const file = path.join(dir, "catchup.db");
    const app = new Database(file);
    app.pragma("journal_mode = WAL");
    app.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, x); INSERT INTO t (x) VALUES (1)");
    // A coalescing period far longer than the test: only catchUp can end it.
    const db = new Db(file, { monitorIntervalMs: 60_000, coalesceMs: 30_000 });
    await db.init();
    await db.sync();
    const ctl = new AbortController();
    const loop = db.monitor(ctl.signal);
    try {
      const startedAt = performance.now();
      await db.catchUp(); // nothing held back: at once
      assert.ok(performance.now() - startedAt < 50, "catchUp with nothing held back returns at once");
      const first = db.pos()!;
      // A quiet database's first change wakes a sync at once.
      app.exec("INSERT INTO t (x) VALUES (2)");
      const woke = performance.now();
      while (comparePos(db.pos()!, first) === 0) {
        assert.ok(performance.now() - woke < 5_000, "the first change was copied");
        await sleep(5);
      }
      const second = db.pos()!;
      // The next change comes during or right after that sync: it is held back.
      app.exec("INSERT INTO t (x) VALUES (3)");
      await sleep(300);
      assert.deepEqual(db.pos(), second, "the change is held back by the coalescing period");
      const t0 = performance.now();
      await db.catchUp();
      assert.ok(performance.now() - t0 < 1_000, "catchUp ended the wait");
      assert.ok(comparePos(db.pos()!, second) > 0, "and the held-back commit is in the shadow");
    } finally {
      ctl.abort();
      await loop;
      await db.close();
      app.close();
    }
  });
});

describe("the destinations' ticks copy a steady stream", () => {
  it("uploads commits on each tick while the monitor loop holds them back, in fewer syncs than commits", async () => {
    // With the default coalescing period (the monitor interval, 30 s here) the monitor loop copies a
    // steady stream at most once per period; a destination's tick has it copied (Db.catchUp) and
    // waits on the WAL's own changes (Db.activity), so the upload still comes within a tick.
    const file = path.join(dir, "ticks.db");
    const app = new Database(file);
    app.pragma("journal_mode = WAL");
    app.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, x)");
    const db = new Db(file, { monitorIntervalMs: 30_000 });
    await db.init();
    await db.sync();
    const client = new FileReplicaClient(path.join(dir, "ticks-replica"));
    const replica = new Replica(db, client, { name: "file", syncIntervalMs: 200 });
    const ctl = new AbortController();
    const loops = Promise.all([db.monitor(ctl.signal), replica.run(ctl.signal)]);
    try {
      const insert = app.prepare("INSERT INTO t (x) VALUES (?)");
      let restores = 0;
      /** Until the bucket holds every row committed so far; returns how long that took. */
      const uploaded = async (label: string): Promise<number> => {
        const committed = performance.now();
        const { n: want } = app.prepare("SELECT count(*) AS n FROM t").get() as { n: number };
        while (true) {
          const p = replica.pos;
          const d = db.pos();
          if (p && d && comparePos(p, d) >= 0) {
            const out = path.join(dir, `ticks-restored-${restores++}.db`);
            await restore([{ name: "file", client }], { outputPath: out });
            const restored = new Database(out, { readonly: true });
            const { n } = restored.prepare("SELECT count(*) AS n FROM t").get() as { n: number };
            restored.close();
            if (n === want) return performance.now() - committed;
          }
          assert.ok(performance.now() - committed < 5_000, `${label} uploaded within 5 s`);
          await sleep(20);
        }
      };
      // A steady stream (a commit every 50 ms): batched into about one sync per tick.
      const syncsBefore = db.metrics.syncCount;
      const lags: number[] = [];
      for (let i = 0; i < 40; i++) {
        insert.run(i);
        if (i % 8 === 7) lags.push(await uploaded(`commit ${i}`));
        await sleep(50);
      }
      const syncs = db.metrics.syncCount - syncsBefore;
      assert.ok(syncs < 40, `the stream of 40 commits was batched (${syncs} syncs)`);
      // Commits further apart than a tick: the destination's last sync copied nothing, so only the
      // WAL's own change wakes it (a shadow change would come from the monitor loop 30 s later).
      for (let i = 0; i < 4; i++) {
        await sleep(400);
        insert.run(i);
        lags.push(await uploaded(`spaced commit ${i}`));
      }
      assert.ok(
        Math.max(...lags) < 1_000,
        `each commit in the bucket within a tick or so (${lags.map(Math.round)})`,
      );
    } finally {
      ctl.abort();
      await loops;
      replica.close();
      await db.close();
      app.close();
    }
  });
});
