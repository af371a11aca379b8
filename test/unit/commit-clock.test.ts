/**
 * Commit stamps while copies wait for a destination's tick (src/replicator/db/commit-clock.ts): a
 * commit is stamped with the earliest observation of the wal-index that had it published, never
 * later than its copy, and never from another WAL's observations. Real files stand in for -shm: the
 * header is the 48 bytes SQLite writes twice.
 */
import assert from "node:assert/strict";
import { closeSync, ftruncateSync, mkdtempSync, openSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { CommitClock } from "../../src/replicator/db/commit-clock.ts";
import { publishWalIndex } from "../helpers/wal-index.ts";

const dir = mkdtempSync(path.join(os.tmpdir(), "walship-clock-"));
after(() => rmSync(dir, { recursive: true, force: true }));

describe("CommitClock", () => {
  const A = Buffer.from("aaaaaaaa");
  const B = Buffer.from("bbbbbbbb");

  it("stamps each commit with the first observation that had it published", async () => {
    const fd = openSync(path.join(dir, "a-shm"), "w+");
    try {
      const clock = new CommitClock();
      clock.observe(undefined); // -shm not open yet: nothing recorded, no error
      publishWalIndex(fd, 5, A);
      const t1 = Date.now();
      clock.observe(fd);
      await sleep(30);
      publishWalIndex(fd, 5, A);
      clock.observe(fd); // unchanged: not a new observation
      publishWalIndex(fd, 9, A);
      const t2 = Date.now();
      clock.observe(fd);
      await sleep(30);
      publishWalIndex(fd, 12, A, true);
      clock.observe(fd); // torn: ignored
      const late = Date.now() + 1000;
      const stamp = clock.stamper(A);
      const s3 = stamp(3, late);
      const s5 = stamp(5, late);
      const s7 = stamp(7, late);
      const s12 = stamp(12, late);
      assert.ok(s3 >= t1 && s3 < t1 + 20, `frame 3 at the first observation (${s3 - t1} ms)`);
      assert.equal(s5, s3, "frame 5 was published at the same observation");
      assert.ok(s7 >= t2 && s7 < t2 + 20, `frame 7 at the second (${s7 - t2} ms)`);
      assert.equal(s12, late, "never seen published: the copy's time");
      // Never later than the copy.
      assert.equal(clock.stamper(A)(3, t1 - 5), t1 - 5);
      // Another WAL's observations prove nothing about this one.
      assert.equal(clock.stamper(B)(3, late), late);
    } finally {
      closeSync(fd);
    }
  });

  it("ignores a header SQLite has not initialised or that is short, and reads mxFrame unsigned", () => {
    const fd = openSync(path.join(dir, "c-shm"), "w+");
    try {
      const clock = new CommitClock();
      const late = Date.now() + 1000;
      publishWalIndex(fd, 7, A, false, false);
      clock.observe(fd);
      assert.equal(clock.stamper(A)(7, late), late, "not initialised: no observation");
      ftruncateSync(fd, 90);
      clock.observe(fd);
      assert.equal(clock.stamper(A)(7, late), late, "short: no observation");
      const big = 2 ** 31 + 5;
      publishWalIndex(fd, big, A);
      clock.observe(fd);
      assert.notEqual(clock.stamper(A)(big, late), late, "frame 2^31 + 5 was seen published");
      assert.equal(clock.stamper(A)(big + 1, late), late, "the next frame was not");
    } finally {
      closeSync(fd);
    }
  });

  it("forgets the observations a copy has used, and keeps other WALs'", () => {
    const fd = openSync(path.join(dir, "b-shm"), "w+");
    try {
      const clock = new CommitClock();
      publishWalIndex(fd, 4, B);
      clock.observe(fd);
      publishWalIndex(fd, 4, A);
      clock.observe(fd);
      publishWalIndex(fd, 8, A);
      clock.observe(fd);
      const late = Date.now() + 1000;
      clock.copied(A, 4);
      assert.notEqual(clock.stamper(A)(6, late), late, "frame 8's observation is kept");
      assert.notEqual(clock.stamper(B)(2, late), late, "the other WAL's is kept");
      clock.copied(A, 8);
      assert.equal(clock.stamper(A)(6, late), late, "all of A's are gone once frame 8 is copied");
    } finally {
      closeSync(fd);
    }
  });

  it("does not take the header a copy has used up for a new commit", () => {
    const fd = openSync(path.join(dir, "d-shm"), "w+");
    try {
      const clock = new CommitClock();
      publishWalIndex(fd, 8, A);
      assert.equal(clock.observe(fd), true, "frame 8 published");
      clock.copied(A, 8);
      // The poller reads the same header again: nothing was committed since (it woke a sync before).
      assert.equal(clock.observe(fd), false, "the same header after the copy");
      const late = Date.now() + 1000;
      assert.equal(clock.stamper(A)(8, late), late, "and it was not recorded again");
      publishWalIndex(fd, 9, A);
      assert.equal(clock.observe(fd), true, "the next commit");
      publishWalIndex(fd, 9, B);
      assert.equal(clock.observe(fd), true, "the same frame of a new WAL (other salts)");
    } finally {
      closeSync(fd);
    }
  });
});
