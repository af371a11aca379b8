/**
 * A transaction in the WAL file that SQLite never committed. A writer killed after writing its commit
 * frame, and before publishing it in the wal-index, leaves a complete, checksum-valid transaction
 * after the last committed frame. While any connection keeps the wal-index alive, SQLite does not
 * count it, and the next writer writes over it. Found by the crash torture: the replicator copied
 * such a transaction (it read only the WAL file), and a finished generation then held a VACUUM's
 * first 1772 pages with no commit ("the WAL ends with an uncommitted transaction").
 *
 * Here the killed writer's leftover is made exactly: a frame after the last committed one, its
 * checksum chaining from it, with a commit flag, and no wal-index update. The second case restarts
 * the WAL while the replicator is down, leaving the leftover past the new WAL's end, where the
 * wal-index (now the new WAL's) cannot rule it out.
 */
import assert from "node:assert/strict";
import { closeSync, mkdtempSync, openSync, readFileSync, readSync, rmSync, writeSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, describe, it } from "node:test";
import { Db } from "../../src/replicator/db.ts";
import { Replica } from "../../src/replicator/replica.ts";
import { restore } from "../../src/replicator/restore.ts";
import { encodeFrame, parseWalHeader } from "../../src/replicator/sqlite/wal.ts";
import { parseWalIndexHeader } from "../../src/replicator/sqlite/wal-index.ts";
import { FileReplicaClient } from "../../src/replicator/storage/file.ts";
import { blobApp, integrityCheck, logicalHash, logicalHashOf } from "../helpers/sqlite.ts";

const dir = mkdtempSync(path.join(os.tmpdir(), "walship-phantom-"));
after(() => rmSync(dir, { recursive: true, force: true }));

/**
 * The wal-index header, read with a descriptor kept open for the whole test file: closing one would
 * drop the locks this process's connections hold on -shm (see sqlite/wal-index.ts).
 */
const shmFds = new Map<string, number>();
function shmHeader(file: string) {
  let fd = shmFds.get(file);
  if (fd === undefined) {
    fd = openSync(`${file}-shm`, "r");
    shmFds.set(file, fd);
  }
  const buf = Buffer.alloc(96);
  readSync(fd, buf, 0, 96, 0);
  return parseWalIndexHeader(buf);
}

/** Appends what a writer killed before publishing its commit leaves; returns where the WAL ended. */
async function leaveUncommitted(file: string): Promise<number> {
  const walFile = `${file}-wal`;
  const wal = readFileSync(walFile);
  const hdr = parseWalHeader(wal);
  const F = hdr.pageSize + 24;
  const idx = shmHeader(file);
  const end = 32 + idx!.mxFrame * F;
  const last = wal.subarray(end - F, end);
  const page = Buffer.from(last.subarray(24));
  page.fill(0x5a, 100, 4000); // what the dead transaction wrote
  const frame = encodeFrame(
    {
      pgno: last.readUInt32BE(0),
      commitSize: last.readUInt32BE(4) || 10_000,
      salt1: hdr.salt1,
      salt2: hdr.salt2,
    },
    page,
    hdr.bigEndianChecksums,
    [last.readUInt32BE(16), last.readUInt32BE(20)],
  );
  const fd = openSync(walFile, "r+");
  writeSync(fd, frame.bytes, 0, frame.bytes.length, end);
  closeSync(fd);
  assert.equal(shmHeader(file)!.mxFrame, idx!.mxFrame, "not published");
  return end;
}

describe("a transaction written to the WAL but never committed", () => {
  it("is not copied, and the generation goes on when the next writer writes over it", async () => {
    const file = path.join(dir, "app.db");
    const { app, insert } = blobApp(file);
    insert(10);
    const client = new FileReplicaClient(path.join(dir, "replica"));
    const db = new Db(file, { watch: false });
    await db.init();
    await db.sync();
    const replica = new Replica(db, client, { name: "file" });
    await replica.sync();
    const gen = db.generation!;

    const end = await leaveUncommitted(file);
    await db.sync();
    assert.equal(db.pos()!.offset, end, "only committed frames are copied");
    insert(3); // the next writer writes over the leftover
    await db.sync();
    await replica.sync();
    assert.equal(db.generation, gen, "the generation goes on");
    const out = path.join(dir, "restored.db");
    await restore([{ name: "file", client }], { outputPath: out });
    assert.equal(integrityCheck(out), "ok");
    assert.equal(logicalHash(out), logicalHashOf(app));
    replica.close();
    await db.close();
    app.close();
  });

  it("is not taken for the old WAL's tail when the WAL restarted while the replicator was down", async () => {
    const file = path.join(dir, "restart.db");
    const { app, insert } = blobApp(file);
    insert(40);
    const client = new FileReplicaClient(path.join(dir, "replica-restart"));
    const first = new Db(file, { watch: false });
    await first.init();
    await first.sync();
    const r1 = new Replica(first, client, { name: "file" });
    await r1.sync();
    r1.close();
    await first.close(); // down
    insert(3); // committed after our last copy: a tail that the restart keeps
    await leaveUncommitted(file);
    app.pragma("wal_checkpoint(PASSIVE)"); // the committed frames only, in full
    insert(1); // restarts the WAL: one frame at its start, the leftover far past it

    const db = new Db(file, { watch: false });
    await db.init();
    await db.sync();
    const replica = new Replica(db, client, { name: "file" });
    await replica.sync();
    const out = path.join(dir, "restored-restart.db");
    await restore([{ name: "file", client }], { outputPath: out });
    assert.equal(integrityCheck(out), "ok");
    assert.equal(logicalHash(out), logicalHashOf(app), "the restore holds what was committed, nothing else");
    replica.close();
    await db.close();
    app.close();
  });
});
