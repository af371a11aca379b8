/**
 * followsWal: whether one WAL header can directly follow another (one restart, none in between). The
 * rule on literal headers, then SQLite's own behaviour that it rests on: each restart adds one to
 * salt-1; a connection that never restarted a WAL draws random salts for an empty one.
 */
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, describe, it } from "node:test";
import Database from "better-sqlite3";
import { followsWal, parseWalHeader, type WalHeader } from "../../src/replicator/sqlite/wal.ts";

const dir = mkdtempSync(path.join(os.tmpdir(), "walship-follows-"));
after(() => rmSync(dir, { recursive: true, force: true }));

function h(salt1: number, pageSize = 4096, salt2 = 7): WalHeader {
  return {
    bigEndianChecksums: false,
    version: 3007000,
    pageSize,
    checkpointSeq: 0,
    salt1,
    salt2,
    checksum1: 0,
    checksum2: 0,
  };
}

describe("followsWal", () => {
  it("takes salt-1 plus one as the next WAL, and nothing else", () => {
    assert.equal(followsWal(h(10), h(11, 4096, 99)), true);
    assert.equal(followsWal(h(0xffffffff), h(0)), true, "salt-1 wraps at 2^32");
    assert.equal(followsWal(h(10), h(12)), false, "two restarts");
    assert.equal(followsWal(h(10), h(10, 4096, 8)), false, "the same salt-1");
    assert.equal(followsWal(h(10), h(9)), false);
    assert.equal(followsWal(h(10), h(11, 8192)), false, "another page size");
  });

  it("matches what SQLite writes: +1 per restart by any connection; random after TRUNCATE by a fresh one", () => {
    const file = path.join(dir, "app.db");
    const a = new Database(file);
    a.pragma("journal_mode = WAL");
    a.pragma("wal_autocheckpoint = 0");
    a.exec("CREATE TABLE t (x)");
    const header = () => parseWalHeader(readFileSync(`${file}-wal`).subarray(0, 32));
    const restart = (writer: Database.Database) => {
      a.pragma("wal_checkpoint(PASSIVE)"); // written back in full, no reader: the next commit restarts it
      writer.exec("INSERT INTO t VALUES (1)");
    };
    const w0 = header();
    restart(a);
    const w1 = header();
    assert.equal(followsWal(w0, w1), true);
    const b = new Database(file); // never restarted a WAL itself
    restart(b);
    const w2 = header();
    assert.equal(followsWal(w1, w2), true, "a restart by another connection adds one too");
    restart(a);
    restart(a);
    assert.equal(followsWal(w2, header()), false, "two restarts are seen");
    const before = header();
    a.pragma("wal_checkpoint(TRUNCATE)");
    const c = new Database(file);
    c.exec("INSERT INTO t VALUES (2)");
    // 1 in 2^32 that the random salt-1 happens to be the next one.
    assert.equal(followsWal(before, header()), false, "a fresh connection's WAL after TRUNCATE");
    for (const d of [a, b, c]) d.close();
  });
});
