/**
 * Snapshots taken inside a WAL index. The database file a snapshot is read from holds the frames
 * written back so far (checkpoints write frames up to our read mark back while it is read), not the
 * database at the snapshot's position. Found by the crash torture: generations whose replicator died
 * before their snapshot's WAL landed restored as a mix of transactions or failed integrity_check.
 *
 *  - A snapshot is now the database exactly at its position (snapshot-image.ts): restored with none
 *    of its index's WAL it equals the source then.
 *  - A restore to a position before a snapshot, in its index, must start from an earlier snapshot:
 *    the frames up to the target cannot undo what the snapshot holds (it gave a wrong state,
 *    integrity ok, and the validator restores at such positions).
 *  - A snapshot of an earlier build (no `exact` in its record) needs its index's WAL up to its
 *    position: passed over when that WAL is missing, refused when it ends short.
 *
 * Built deterministically: a reader of the application holds a read transaction, so the RESTART
 * checkpoint before a scheduled snapshot writes frames back only up to the reader's mark and cannot
 * restart the WAL: the snapshot lands inside index 1, and the file lacks its last transaction.
 */
import assert from "node:assert/strict";
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import Database from "better-sqlite3";
import { Db } from "../../src/replicator/db.ts";
import { Replica } from "../../src/replicator/replica.ts";
import { restore } from "../../src/replicator/restore.ts";
import { FileReplicaClient } from "../../src/replicator/storage/file.ts";
import type { Pos } from "../../src/replicator/types.ts";
import { ErrorCodes, WalshipError } from "../../src/shared/errors.ts";
import { blobApp, integrityCheck, logicalHash, logicalHashOf } from "../helpers/sqlite.ts";

const dir = mkdtempSync(path.join(os.tmpdir(), "walship-snappos-"));
after(() => rmSync(dir, { recursive: true, force: true }));

describe("snapshots taken inside a WAL index", () => {
  const root = path.join(dir, "replica");
  const client = new FileReplicaClient(root);
  const clients = [{ name: "file", client }];
  /** The source's state at positions in index 1, and at the end of index 0. */
  const states: Array<{ pos: Pos; hash: string }> = [];
  let endOfIndex0 = "";
  let atSnapshot = "";
  let snap1: Pos;
  let gen = "";

  before(async () => {
    const file = path.join(dir, "app.db");
    const { app, insert } = blobApp(file);
    insert(5);
    const db = new Db(file, { watch: false });
    await db.init();
    const replica = new Replica(db, client, { name: "file" });
    await db.sync();
    await replica.sync(); // the generation's first snapshot, in index 0
    gen = db.generation!;
    insert(5);
    await db.checkpoint("RESTART"); // index 1 starts
    await replica.sync();
    endOfIndex0 = logicalHashOf(app);
    assert.equal(db.pos()!.index, 1);
    for (let i = 0; i < 3; i++) {
      app.prepare("UPDATE t SET v = randomblob(3000) WHERE id % 3 = ?").run(i);
      insert(3);
      await db.sync();
      await replica.sync();
      states.push({ pos: db.pos()!, hash: logicalHashOf(app) });
    }
    // A reader holds the WAL, then one more commit: the scheduled snapshot's RESTART checkpoint
    // writes back up to the reader's mark and cannot restart, so the snapshot lands in index 1.
    const reader = new Database(file);
    reader.exec("BEGIN");
    reader.prepare("SELECT count(*) FROM t").get();
    insert(3);
    await db.sync();
    atSnapshot = logicalHashOf(app);
    await replica.snapshot();
    reader.exec("ROLLBACK");
    reader.close();
    snap1 = (await client.snapshots(gen))
      .map((s) => ({ generation: gen, index: s.index, offset: 0 }))
      .at(-1)!;
    assert.equal(snap1.index, 1, "the snapshot is in index 1");
    replica.close();
    await db.close();
    app.close();
  });

  it("restores a position before the snapshot, in its index, from the earlier snapshot", async () => {
    for (const [i, s] of states.entries()) {
      const out = path.join(dir, `pos-${i}.db`);
      await restore(clients, { generation: gen, index: s.pos.index, offset: s.pos.offset, outputPath: out });
      assert.equal(integrityCheck(out), "ok");
      assert.equal(logicalHash(out), s.hash, `the source's state at ${s.pos.index}:${s.pos.offset}`);
    }
  });

  /** A copy of the destination without some of index 1's segments, and with or without `exact`. */
  function variant(name: string, keepSegments: number, exact: boolean): FileReplicaClient {
    const copy = path.join(dir, name);
    cpSync(root, copy, { recursive: true });
    const walDir = path.join(copy, "generations", gen, "wal");
    const index1 = readdirSync(walDir)
      .filter((n) => n.startsWith("00000001_"))
      .sort();
    assert.ok(index1.length >= 4, `index 1 was uploaded in pieces: ${index1.join(" ")}`);
    for (const n of index1.slice(keepSegments)) rmSync(path.join(walDir, n));
    if (!exact) {
      const meta = path.join(copy, "walship", "generations", gen, "snapshots", "00000001.json");
      const doc = JSON.parse(readFileSync(meta, "utf8")) as { exact?: boolean };
      assert.equal(doc.exact, true);
      delete doc.exact;
      writeFileSync(meta, JSON.stringify(doc));
    }
    return new FileReplicaClient(copy);
  }

  it("restores the snapshot alone to the source's state at its position", async () => {
    const out = path.join(dir, "alone.db");
    await restore([{ name: "file", client: variant("alone", 0, true) }], { outputPath: out });
    assert.equal(integrityCheck(out), "ok");
    assert.equal(logicalHash(out), atSnapshot);
  });

  it("passes over an earlier build's snapshot whose WAL is missing, and refuses one whose WAL ends short", async () => {
    await assert.rejects(
      restore([{ name: "file", client: variant("short", 2, false) }], {
        outputPath: path.join(dir, "short.db"),
      }),
      (err: unknown) =>
        err instanceof WalshipError &&
        err.code === ErrorCodes.RESTORE &&
        /00000001\.snapshot\.lz4 was taken at offset \d+ of its WAL index/.test(err.message),
    );
    const out = path.join(dir, "fallback.db");
    await restore([{ name: "file", client: variant("none", 0, false) }], { outputPath: out });
    assert.equal(integrityCheck(out), "ok");
    assert.equal(logicalHash(out), endOfIndex0);
  });
});
