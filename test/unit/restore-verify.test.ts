/**
 * The restore's gate (src/replicator/restore/verify.ts): the restored file is read through a memory
 * map for its check, and the check stays SQLite's full `integrity_check`, which compares every index
 * with its table (`quick_check` does not, and would let the damage below through).
 */
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, describe, it } from "node:test";
import Database from "better-sqlite3";
import { integrityCheck, openForCheck } from "../../src/replicator/restore/verify.ts";
import { ErrorCodes, WalshipError } from "../../src/shared/errors.ts";

const dir = mkdtempSync(path.join(os.tmpdir(), "walship-verify-"));
after(() => rmSync(dir, { recursive: true, force: true }));

/** A rollback-journal database: `t(a)` with `a` = 10, 20, ..., 1000 and an index on `a`. */
function indexedDb(file: string): { indexRoot: number; pageSize: number } {
  const db = new Database(file);
  db.exec("CREATE TABLE t(id INTEGER PRIMARY KEY, a INTEGER NOT NULL); CREATE INDEX t_a ON t(a)");
  const ins = db.prepare("INSERT INTO t(id, a) VALUES (?, ?)");
  db.transaction(() => {
    for (let i = 1; i <= 100; i++) ins.run(i, i * 10);
  })();
  const { rootpage } = db.prepare("SELECT rootpage FROM sqlite_schema WHERE name = 't_a'").get() as {
    rootpage: number;
  };
  const pageSize = db.pragma("page_size", { simple: true }) as number;
  db.close();
  return { indexRoot: rootpage, pageSize };
}

describe("restore integrity check", () => {
  it("maps the whole file (up to SQLite's limit) and passes a sound database", () => {
    const file = path.join(dir, "sound.db");
    indexedDb(file);
    const db = openForCheck(file);
    try {
      const mapped = db.pragma("mmap_size", { simple: true }) as number;
      assert.ok(mapped >= statSync(file).size, `mmap_size ${mapped} < file size ${statSync(file).size}`);
    } finally {
      db.close();
    }
    integrityCheck(file, "test");
  });

  it("fails an index whose entry no longer matches its row, which quick_check passes", () => {
    const file = path.join(dir, "index-drift.db");
    const { indexRoot, pageSize } = indexedDb(file);
    // The index's leaf cell for (a = 20, rowid 2): payload size 5, record header [3, int8, int8],
    // then 20 and 2. Its key becomes 21: still between 10 and 30, so the b-tree stays in order and
    // only a comparison with the table finds it.
    const b = readFileSync(file);
    const page = b.subarray((indexRoot - 1) * pageSize, indexRoot * pageSize);
    const cell = Buffer.from([0x05, 0x03, 0x01, 0x01, 20, 0x02]);
    const at = page.indexOf(cell);
    assert.ok(at > 0, "the index cell for a = 20 is on the index's root page");
    assert.equal(page.indexOf(cell, at + 1), -1, "and only once");
    page[at + 4] = 21;
    writeFileSync(file, b);

    const q = new Database(file, { readonly: true });
    try {
      assert.equal(q.pragma("quick_check", { simple: true }), "ok", "the damage is one quick_check misses");
    } finally {
      q.close();
    }
    assert.throws(
      () => integrityCheck(file, "generations/0123456789abcdef (snapshot 00000000)"),
      (err: unknown) => {
        assert.ok(err instanceof WalshipError);
        assert.equal(err.code, ErrorCodes.INTEGRITY);
        assert.match(err.message, /integrity_check failed on the restore of generations\/0123456789abcdef/);
        assert.match(err.message, /t_a/);
        return true;
      },
    );
  });
});
