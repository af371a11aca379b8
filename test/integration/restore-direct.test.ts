/**
 * A restore large enough for the writer thread writes the snapshot's whole 4 MiB blocks with direct
 * I/O (sqlite/direct-write.ts) and the WAL's pages over them through the page cache: the result is
 * the source database, page for page in content, and the log says how much went directly. Real
 * SQLite files, a real replicator and a file replica on the tests' own disk (ext4 here).
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, statSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, it } from "node:test";
import { blobApp, integrityCheck, logicalHash, logicalHashOf } from "../helpers/sqlite.ts";
import { fileReplicaConfig, replicate, sleep, walship } from "../helpers/walship.ts";

const dir = mkdtempSync(path.join(os.tmpdir(), "walship-direct-"));
after(() => rmSync(dir, { recursive: true, force: true }));

const MiB = 1024 * 1024;

it("a 20 MiB snapshot goes to the disk directly, WAL pages over it, and the restore is the source", async () => {
  const db = path.join(dir, "app.db");
  const replica = path.join(dir, "replica");
  const { app, insert } = blobApp(db);
  // Random blobs do not compress: the stored snapshot is as large as the database, past the size a
  // restore writes on its own thread.
  for (let i = 0; i < 7; i++) insert(1000, 3000);
  app.pragma("wal_checkpoint(TRUNCATE)");
  const { rep } = replicate(
    dir,
    fileReplicaConfig(db, replica, {
      dbKeys: { "monitor-interval": "50ms" },
      replicaKeys: { "sync-interval": "50ms" },
    }),
  );
  try {
    for (let i = 0; i < 200 && !rep.output().includes("snapshot written"); i++) await sleep(100);
    assert.match(rep.output(), /snapshot written/, rep.output());
    // Rows rewritten in place (pages inside the snapshot's blocks) and new ones past its end.
    app.exec("UPDATE t SET v = randomblob(3000) WHERE id % 5 = 0");
    insert(500, 3000);
    app.exec("DELETE FROM t WHERE id % 11 = 0");
    await sleep(1500);
  } finally {
    assert.equal(await rep.stop(), 0, rep.output());
  }
  const want = logicalHashOf(app);
  app.close();
  assert.ok(statSync(db).size >= 20 * MiB, `the database is ${statSync(db).size} bytes`);

  const out = path.join(dir, "restored.db");
  const res = await walship(["restore", "-o", out, `file://${replica}`]);
  assert.equal(res.code, 0, res.stderr);
  const applied = res.stderr
    .split("\n")
    .filter((l) => l.startsWith("{"))
    .map((l) => JSON.parse(l) as { msg?: string; directBytes?: number; indexes?: number })
    .find((l) => l.msg === "wal applied");
  assert.ok(applied, `no "wal applied" line in:\n${res.stderr}`);
  // Every whole 4 MiB block of a snapshot of at least 20 MiB: at least 16 MiB, in whole pages.
  assert.ok((applied.directBytes ?? 0) >= 16 * MiB, `directBytes ${applied.directBytes}`);
  assert.equal((applied.directBytes ?? 0) % 4096, 0);
  assert.ok((applied.indexes ?? 0) >= 1, "WAL was applied over the snapshot");
  assert.equal(integrityCheck(out), "ok");
  assert.equal(logicalHash(out), want, "the restored database differs from the source");
});
