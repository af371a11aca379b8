/**
 * The Db's monitor loop wakes on a change of the WAL (src/replicator/db/watch.ts). A change that came
 * while no wait was pending (while a sync ran: a back-fill can take seconds) was lost, and the next
 * wait slept the whole monitor interval: the bench's 4 MB bursts, committed during the sync that
 * copied the first of them, waited about a second for their upload at sync-interval 100ms.
 */
import assert from "node:assert/strict";
import { appendFileSync, closeSync, mkdtempSync, openSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { CommitClock } from "../../src/replicator/db/commit-clock.ts";
import { WalWatcher } from "../../src/replicator/db/watch.ts";
import { publishWalIndex } from "../helpers/wal-index.ts";

const dir = mkdtempSync(path.join(os.tmpdir(), "walship-watch-"));
after(() => rmSync(dir, { recursive: true, force: true }));

async function timed(fn: () => Promise<void>): Promise<number> {
  const t0 = performance.now();
  await fn();
  return performance.now() - t0;
}

/** A database and its WAL in `dir`, watched (a monitor interval of 1.5 s unless given). */
function watching(name: string, monitorMs = 1500, coalesceMs?: number): { db: string; w: WalWatcher } {
  const db = path.join(dir, name);
  writeFileSync(db, "");
  writeFileSync(`${db}-wal`, "");
  const w = new WalWatcher(db, `${db}-wal`, monitorMs, { coalesceMs });
  w.start();
  return { db, w };
}

describe("WalWatcher", () => {
  it("wakes the next wait at once for a change made while no wait was pending, and only once", async () => {
    const { db, w } = watching("a.db");
    const ctl = new AbortController();
    try {
      // As during a sync: the application commits, nobody waits yet.
      appendFileSync(`${db}-wal`, "commit");
      await sleep(200);
      const first = await timed(() => w.wait(ctl.signal));
      assert.ok(first < 500, `the change made before the wait woke it at once (${first.toFixed(0)} ms)`);
      // Nothing changed since: the next wait sleeps the monitor interval.
      const second = await timed(() => w.wait(ctl.signal));
      assert.ok(second >= 1400, `no change, so the interval (${second.toFixed(0)} ms)`);
    } finally {
      w.close();
    }
  });

  it("wakes a pending wait on a change of the WAL, and not on other files in the directory", async () => {
    const { db, w } = watching("b.db");
    const ctl = new AbortController();
    try {
      setTimeout(() => appendFileSync(path.join(dir, "other.txt"), "x"), 100);
      const other = await timed(() => w.wait(ctl.signal));
      assert.ok(other >= 1400, `another file does not wake it (${other.toFixed(0)} ms)`);
      setTimeout(() => appendFileSync(`${db}-wal`, "commit"), 100);
      const wal = await timed(() => w.wait(ctl.signal));
      assert.ok(wal < 1000, `a WAL change wakes it (${wal.toFixed(0)} ms)`);
    } finally {
      w.close();
    }
  });

  it("under a steady stream of changes, starts syncs at most once per coalescing period, a quiet one's at once", async () => {
    const { db, w } = watching("c.db", 1500, 300);
    const ctl = new AbortController();
    try {
      // Quiet: the first change wakes the wait at once.
      setTimeout(() => appendFileSync(`${db}-wal`, "commit"), 50);
      const quiet = await timed(() => w.wait(ctl.signal));
      assert.ok(quiet < 250, `a quiet database's first change wakes at once (${quiet.toFixed(0)} ms)`);
      // A change during or just after the (short) sync: the next one waits out the rest of the 300 ms.
      appendFileSync(`${db}-wal`, "commit");
      await sleep(50);
      const busy = await timed(() => w.wait(ctl.signal));
      assert.ok(
        busy >= 200 && busy < 600,
        `a change during the sync waits out the period (${busy.toFixed(0)} ms)`,
      );
      // A sync longer than the period: no wait at all.
      appendFileSync(`${db}-wal`, "commit");
      await sleep(400);
      const late = await timed(() => w.wait(ctl.signal));
      assert.ok(late < 100, `after a sync longer than the period, at once (${late.toFixed(0)} ms)`);
    } finally {
      w.close();
    }
  });

  it("hurry() ends a coalescing wait at once, and does nothing when none is under way", async () => {
    const { db, w } = watching("d.db", 10_000, 5_000);
    const ctl = new AbortController();
    try {
      appendFileSync(`${db}-wal`, "commit");
      await sleep(50);
      await w.wait(ctl.signal); // the first change: at once
      assert.equal(w.hurry(), false, "no coalescing wait under way");
      appendFileSync(`${db}-wal`, "commit");
      let hurried: boolean | undefined;
      setTimeout(() => {
        hurried = w.hurry();
      }, 200);
      const held = await timed(() => w.wait(ctl.signal));
      assert.equal(hurried, true, "a coalescing wait was ended");
      assert.ok(held >= 150 && held < 1_000, `held until hurried (${held.toFixed(0)} ms), not 5 s`);
    } finally {
      w.close();
    }
  });

  it("returns at once for a signal aborted before the call", async () => {
    const { w } = watching("e.db");
    try {
      const ctl = new AbortController();
      ctl.abort();
      const took = await timed(() => w.wait(ctl.signal));
      assert.ok(took < 200, `an aborted signal does not wait the monitor interval (${took.toFixed(0)} ms)`);
    } finally {
      w.close();
    }
  });

  it("hurry() during a sync makes the next wait end at once for the changes that came meanwhile", async () => {
    const { db, w } = watching("f.db", 10_000, 5_000);
    const ctl = new AbortController();
    try {
      appendFileSync(`${db}-wal`, "commit");
      await sleep(50);
      await w.wait(ctl.signal); // the first change: at once; a sync runs now
      assert.equal(w.hurry(), false, "nothing changed since: nothing to hurry");
      appendFileSync(`${db}-wal`, "commit during the sync");
      await sleep(50);
      assert.equal(w.hurry(), true, "a change came during the sync");
      const took = await timed(() => w.wait(ctl.signal));
      assert.ok(took < 100, `the next wait ends at once (${took.toFixed(0)} ms), not after 5 s`);
      // Used up: the wait after that coalesces again.
      appendFileSync(`${db}-wal`, "another");
      await sleep(50);
      const w2 = timed(() => w.wait(ctl.signal));
      await sleep(300);
      ctl.abort();
      assert.ok((await w2) >= 250, "without a hurry the change is held back");
    } finally {
      w.close();
    }
  });

  it("polls the wal-index instead of watching under a steady stream, and watches again once it is quiet", async () => {
    const db = path.join(dir, "g.db");
    writeFileSync(db, "");
    writeFileSync(`${db}-wal`, "");
    const shm = openSync(`${db}-shm`, "w+");
    const salts = Buffer.from("saltsalt");
    publishWalIndex(shm, 1, salts);
    const clock = new CommitClock();
    const w = new WalWatcher(db, `${db}-wal`, 1500, { coalesceMs: 0, observe: () => clock.observe(shm) });
    w.start();
    const ctl = new AbortController();
    try {
      // A stream of writes, each seen by the loop: the watch gives way to polling.
      const until = performance.now() + 200;
      while (!w.polling && performance.now() < until) {
        appendFileSync(`${db}-wal`, "frame");
        await new Promise((r) => setImmediate(r));
      }
      assert.equal(w.polling, true, "a steady stream of writes puts the watch down");
      await w.wait(ctl.signal); // the writes so far
      // A commit published in the wal-index alone (no inotify while polling) still ends a wait soon.
      setTimeout(() => publishWalIndex(shm, 2, salts), 30);
      const polled = await timed(() => w.wait(ctl.signal));
      assert.ok(polled >= 25 && polled < 200, `a published commit is polled (${polled.toFixed(0)} ms)`);
      assert.equal(w.polling, true);
      // Quiet for longer than the quiet period: the watch comes back, and a WAL write wakes at once.
      await sleep(300);
      assert.equal(w.polling, false, "quiet: watching again");
      setTimeout(() => appendFileSync(`${db}-wal`, "frame"), 50);
      const watched = await timed(() => w.wait(ctl.signal));
      assert.ok(watched < 500, `a write wakes the wait through the watch again (${watched.toFixed(0)} ms)`);
      // Without a way to read the wal-index, a stream never puts the watch down.
      let reads = 0;
      const blind = new WalWatcher(db, `${db}-wal`, 1500, {
        observe: () => {
          reads++;
          return clock.observe(undefined);
        },
      });
      blind.start();
      for (let i = 0; i < 200; i++) {
        appendFileSync(`${db}-wal`, "frame");
        await new Promise((r) => setImmediate(r));
      }
      const afterWrites = reads;
      await sleep(30);
      assert.ok(afterWrites >= 16, `each write was seen (${afterWrites})`);
      assert.equal(reads, afterWrites, "no polls once the writes stop");
      assert.equal(blind.polling, false);
      blind.close();
    } finally {
      w.close();
      closeSync(shm);
    }
    assert.equal(w.polling, false, "close() stops the polling");
  });
});
