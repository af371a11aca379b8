/**
 * `walship restore -config` with several database paths, as the operator's restore init container
 * runs it for a SqliteReplica with spec.databases: each database is restored in turn (or skipped by
 * -if-db-not-exists / -if-replica-exists), the first failure stops the run, and the flags that take
 * one database are refused with several.
 */
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { integrityCheck, logicalHash, logicalHashOf, openWorkload } from "../helpers/sqlite.ts";
import { sleep, startReplicator, walship, writeConfig } from "../helpers/walship.ts";

const dir = mkdtempSync(path.join(os.tmpdir(), "walship-several-"));
after(() => rmSync(dir, { recursive: true, force: true }));

describe("restore of several databases from one config", () => {
  const a = path.join(dir, "a.db");
  const b = path.join(dir, "b.db");
  const c = path.join(dir, "c.db");
  const cfg = path.join(dir, "walship.yml");
  const hashes = new Map<string, string>();

  before(async () => {
    const entry = (db: string, replica: string) =>
      `  - path: ${db}\n    monitor-interval: 50ms\n    replicas:\n` +
      `      - url: file://${path.join(dir, replica)}\n        sync-interval: 50ms\n`;
    writeConfig(dir, `dbs:\n${entry(a, "ra")}${entry(b, "rb")}${entry(c, "rc")}`);
    const apps = [openWorkload(a, 7, { vacuum: false }), openWorkload(b, 8, { vacuum: false })];
    const rep = startReplicator(["-config", cfg]);
    for (let i = 0; i < 40; i++) {
      for (const app of apps) app.step();
      await sleep(20);
    }
    await sleep(500);
    assert.equal(await rep.stop(), 0, rep.output());
    for (const app of apps) {
      hashes.set(app.db.name, logicalHashOf(app.db));
      app.close();
    }
    rmSync(c, { force: true });
    for (const db of [a, b]) for (const x of ["", "-wal", "-shm"]) rmSync(`${db}${x}`, { force: true });
  });

  it("restores each missing database, skips the one without a replica, then skips them all", async () => {
    const flags = ["restore", "-config", cfg, "-if-db-not-exists", "-if-replica-exists"];
    const r = await walship([...flags, a, b, c]);
    assert.equal(r.code, 0, r.stderr);
    for (const db of [a, b]) {
      assert.equal(logicalHash(db), hashes.get(db), `${db} equals its source`);
      assert.equal(integrityCheck(db), "ok");
    }
    assert.equal(existsSync(c), false, "nothing to restore c from: not created");
    const again = await walship([...flags, "-log-format", "json", a, b, c]);
    assert.equal(again.code, 0, again.stderr);
    assert.equal((again.stderr.match(/database already exists, skipping restore/g) ?? []).length, 2);
    assert.equal((again.stderr.match(/no backups found, skipping restore/g) ?? []).length, 1);
  });

  it("stops at the first database that fails, and refuses what takes one database", async () => {
    rmSync(b, { force: true });
    const missing = path.join(dir, "not-in-config.db");
    const r = await walship(["restore", "-config", cfg, "-if-db-not-exists", missing, b]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, new RegExp(`database ${missing} is not in config`));
    assert.equal(existsSync(b), false, "nothing after the failing database was restored");

    const refuse = await walship(["restore", "-config", cfg, "-refuse-if-replica-exists", a, b]);
    assert.equal(refuse.code, 1, "b is missing while its replica exists");
    assert.match(refuse.stderr, /b\.db/);

    const withO = await walship(["restore", "-config", cfg, "-o", path.join(dir, "x.db"), a, b]);
    assert.equal(withO.code, 2);
    assert.match(withO.stderr, /-o takes one database/);
    const url = await walship(["restore", `file://${path.join(dir, "ra")}`, a]);
    assert.equal(url.code, 2);
    assert.match(url.stderr, /several databases can be restored only by path, with -config/);
  });
});
