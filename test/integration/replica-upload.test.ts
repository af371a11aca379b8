/**
 * A destination uploads only what the shadow WAL holds committed. The shadow grows by plain appends,
 * and while one is under way the kernel shows the file's size at each 4 KiB page it has copied: a
 * `stat` then sees a size in the middle of a frame, and of a transaction. Found by the crash torture:
 * a generation whose last upload ended 1256 bytes into a frame (at a page boundary of the file)
 * could not be restored ("partial frame"), and neither could the latest state of a destination whose
 * replicator died right after such an upload. Here the shadow is made to look exactly as it does
 * mid-append (the real WAL's next frames, cut at a page boundary), and the destination is synced.
 */
import assert from "node:assert/strict";
import { appendFileSync, mkdtempSync, readFileSync, rmSync, statSync, truncateSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, describe, it } from "node:test";
import { Db } from "../../src/replicator/db.ts";
import { createLz4Decoder } from "../../src/replicator/lz4.ts";
import { Replica } from "../../src/replicator/replica.ts";
import { restore } from "../../src/replicator/restore.ts";
import { FileReplicaClient } from "../../src/replicator/storage/file.ts";
import { blobApp, integrityCheck, logicalHash, logicalHashOf } from "../helpers/sqlite.ts";

const dir = mkdtempSync(path.join(os.tmpdir(), "walship-upload-"));
after(() => rmSync(dir, { recursive: true, force: true }));

describe("replica upload", () => {
  it("never uploads past the shadow's last commit, even when the file is seen mid-append", async () => {
    const file = path.join(dir, "app.db");
    const { app, insert } = blobApp(file);
    insert(10);
    const client = new FileReplicaClient(path.join(dir, "replica"));
    const db = new Db(file, { watch: false });
    await db.init();
    await db.sync();
    const replica = new Replica(db, client, { name: "file" });
    await replica.sync();
    const committed = logicalHashOf(app);
    const pos = db.pos()!;

    insert(10); // the next transaction, in the real WAL, not copied yet
    const shadow = db.shadowWalPath(pos.generation, pos.index);
    const wal = readFileSync(`${file}-wal`);
    // What a stat of the shadow shows while the copy of that transaction is under way: its first
    // frames, up to a page boundary of the file that falls inside a frame.
    const torn = (Math.floor(pos.offset / 4096) + 3) * 4096;
    assert.ok(torn > pos.offset && (torn - 32) % 4120 !== 0, "the cut falls inside a frame");
    appendFileSync(shadow, wal.subarray(pos.offset, torn));
    assert.equal(statSync(shadow).size, torn);

    await replica.sync();
    assert.deepEqual(replica.pos, db.pos(), "the destination stops at the shadow's last commit");
    // The replicator dies here; a restore of the destination gives the last committed state.
    const out = path.join(dir, "restored.db");
    await restore([{ name: "file", client }], { outputPath: out });
    assert.equal(integrityCheck(out), "ok");
    assert.equal(logicalHash(out), committed);

    truncateSync(shadow, pos.offset);
    replica.close();
    await db.close();
    app.close();
  });

  it("stores a segment of up to two LZ4 blocks whole and a larger one streamed, each the shadow's bytes", async () => {
    const file = path.join(dir, "sizes.db");
    const { app, insert } = blobApp(file);
    insert(1);
    const client = new FileReplicaClient(path.join(dir, "replica-sizes"));
    const db = new Db(file, { watch: false });
    await db.init();
    await db.sync();
    const replica = new Replica(db, client, { name: "file" });
    await replica.sync();
    // About 1 MiB (sent whole), then about 16 MiB (over 8 MiB: streamed), then about 6 MiB.
    const sizes: number[] = [];
    for (const n of [300, 4000, 1500]) {
      const from = db.pos()!;
      insert(n);
      await db.sync();
      await replica.sync();
      const to = db.pos()!;
      assert.equal(to.index, from.index, "no checkpoint moved the index");
      const shadow = readFileSync(db.shadowWalPath(from.generation, from.index)).subarray(
        from.offset,
        to.offset,
      );
      sizes.push(shadow.length);
      const stored = Buffer.concat(
        await (await client.walSegmentReader(from.generation, from.index, from.offset))
          .pipe(createLz4Decoder())
          .toArray(),
      );
      assert.ok(
        stored.equals(shadow),
        `the segment at ${from.offset} holds the shadow's ${shadow.length} bytes`,
      );
    }
    assert.ok(sizes[0]! < 8 << 20 && sizes[1]! > 8 << 20 && sizes[2]! < 8 << 20, `segment sizes ${sizes}`);
    const out = path.join(dir, "sizes-restored.db");
    await restore([{ name: "file", client }], { outputPath: out });
    assert.equal(logicalHash(out), logicalHashOf(app));
    replica.close();
    await db.close();
    app.close();
  });

  it("clears a failure from the status as soon as an upload succeeds again, not only when the sync ends", async () => {
    // A status that showed a destination caught up (nothing pending, no lag) beside the error of a
    // sync that had failed before it: the error was cleared only when the whole sync returned, after
    // the uploads of every index it had to catch up.
    const file = path.join(dir, "recover.db");
    const { app, insert } = blobApp(file);
    insert(5);
    const inner = new FileReplicaClient(path.join(dir, "replica-recover"));
    let failing = true;
    let uploads = 0;
    let gate: (() => void) | undefined;
    let secondStarted: (() => void) | undefined;
    const started = new Promise<void>((r) => (secondStarted = r));
    const client = new Proxy(inner, {
      get(target, prop, receiver) {
        if (prop === "writeWalSegment") {
          return async (...args: Parameters<FileReplicaClient["writeWalSegment"]>) => {
            if (failing) throw new Error("the store is down");
            if (++uploads === 2) {
              secondStarted?.();
              await new Promise<void>((r) => (gate = r));
            }
            return target.writeWalSegment(...args);
          };
        }
        const v = Reflect.get(target, prop, receiver);
        return typeof v === "function" ? v.bind(target) : v;
      },
    });
    const db = new Db(file, { watch: false });
    await db.init();
    await db.sync();
    const replica = new Replica(db, client, { name: "file" });
    await assert.rejects(replica.sync(), /the store is down/);
    assert.match(replica.status().lastError ?? "", /the store is down/);
    // Two indexes to catch up: the first upload succeeds, the second is held.
    insert(5);
    await db.sync();
    await db.checkpoint("RESTART");
    insert(5);
    await db.sync();
    failing = false;
    const sync = replica.sync();
    await started;
    assert.equal(uploads, 2);
    assert.equal(replica.status().lastError, undefined, "an upload went through: the destination works");
    gate?.();
    await sync;
    assert.equal(replica.status().lastError, undefined);
    assert.equal(replica.status().pendingCommits, 0);
    replica.close();
    await db.close();
    app.close();
  });
});
