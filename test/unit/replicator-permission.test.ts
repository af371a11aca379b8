/**
 * A replicator that may not use the app's files says which file, which permission and who it runs as
 * (issue 12): `/status` carries `access` and `runAs` while it keeps running, and a start that cannot
 * create the meta directory exits with Node's `EACCES ..., mkdir '<path>'` line, which the operator
 * reads from the termination message (failures.ts).
 *
 * These tests run as root, for whom permission checks pass. The replicator is started under
 * `setpriv` without CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH and CAP_FOWNER, so files owned by another
 * uid with mode 0600 are closed to it, as they are to an unprivileged container user.
 */
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { once } from "node:events";
import { chmodSync, chownSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import Database from "better-sqlite3";
import { permissionFailure } from "../../src/operator/replica/failures.ts";
import { type ReplicatorStatus, ReplicatorStatusSchema } from "../../src/shared/protocol.ts";
import { freePort } from "../helpers/ports.ts";
import { sleep, WALSHIP } from "../helpers/walship.ts";

const OTHER_UID = 4242;
const DROP = "-dac_override,-dac_read_search,-fowner";
const unprivileged = (args: string[]) => ["--bounding-set", DROP, "--inh-caps", DROP, "--", WALSHIP, ...args];

let dir: string;
before(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), "walship-perm-"));
  chmodSync(dir, 0o755);
});
after(() => rmSync(dir, { recursive: true, force: true }));

/** `<dir>/<name>/app.db`, a real WAL-mode database, owned by OTHER_UID; the directory too if `ownDir`. */
function foreignDb(name: string, ownDir: boolean): { data: string; db: string } {
  const data = path.join(dir, name);
  mkdirSync(data, { mode: 0o755 });
  const db = path.join(data, "app.db");
  const conn = new Database(db);
  conn.pragma("journal_mode = wal");
  conn.exec("CREATE TABLE t (x); INSERT INTO t VALUES (1)");
  conn.close();
  chownSync(db, OTHER_UID, OTHER_UID);
  chmodSync(db, 0o600);
  if (ownDir) chownSync(data, OTHER_UID, OTHER_UID);
  return { data, db };
}

describe("a replicator without access to the database", { skip: process.getuid?.() !== 0 }, () => {
  it("setpriv can drop the capabilities (the test's premise)", () => {
    const r = spawnSync("setpriv", ["--bounding-set", DROP, "--inh-caps", DROP, "--", "true"]);
    assert.equal(r.status, 0, String(r.stderr));
  });

  it("/status names the file, the permission and the uid/gid while it keeps running", async () => {
    const { db } = foreignDb("a", false);
    const port = await freePort();
    const cfg = path.join(dir, "a.yml");
    writeFileSync(
      cfg,
      `addr: 127.0.0.1:${port}\ndbs:\n  - path: ${db}\n    replicas:\n      - url: file://${dir}/a-replica\n`,
    );
    const child = spawn("setpriv", unprivileged(["replicate", "-config", cfg]), { stdio: "ignore" });
    try {
      let doc: ReplicatorStatus | undefined;
      for (let i = 0; i < 100 && !doc?.databases[0]?.access; i++) {
        await sleep(100);
        try {
          const res = await fetch(`http://127.0.0.1:${port}/status`);
          doc = ReplicatorStatusSchema.parse(await res.json());
        } catch {
          // not listening yet
        }
      }
      assert.ok(doc, "the replicator serves /status");
      assert.deepEqual(doc.databases[0]?.access, { path: db, need: "read and write", code: "EACCES" });
      assert.equal(doc.runAs?.uid, 0);
      assert.equal(doc.runAs?.gid, 0);
      assert.equal(doc.databases[0]?.ready, false);
    } finally {
      child.kill("SIGTERM");
      await once(child, "exit");
    }
  });

  it("a start that cannot create the meta directory exits with the path the operator reports", async () => {
    const { data, db } = foreignDb("b", true);
    const r = spawnSync("setpriv", unprivileged(["replicate", db, `file://${dir}/b-replica`]), {
      encoding: "utf8",
      timeout: 30_000,
    });
    assert.equal(r.status, 1, r.stderr);
    assert.deepEqual(permissionFailure(r.stderr), {
      code: "EACCES",
      op: "mkdir",
      path: path.join(data, ".app.db-litestream"),
    });
  });

  it("opens nothing it may not write: no -wal/-shm of its own beside an app's readable database", async () => {
    // The app's database, readable by all but writable by its owner only, in a directory anyone may
    // create files in (a local-path volume is 0777): SQLite would create -wal/-shm as this user, and
    // the app could then no longer write its own database ("attempt to write a readonly database").
    const data = path.join(dir, "c");
    mkdirSync(data);
    chmodSync(data, 0o777);
    const db = path.join(data, "app.db");
    const conn = new Database(db);
    conn.pragma("journal_mode = wal");
    conn.exec("CREATE TABLE t (x); INSERT INTO t VALUES (1)");
    conn.close();
    chownSync(db, OTHER_UID, OTHER_UID);
    chmodSync(db, 0o644);
    const port = await freePort();
    const cfg = path.join(dir, "c.yml");
    writeFileSync(
      cfg,
      `addr: 127.0.0.1:${port}\ndbs:\n  - path: ${db}\n    replicas:\n      - url: file://${dir}/c-replica\n`,
    );
    const child = spawn("setpriv", unprivileged(["replicate", "-config", cfg]), { stdio: "ignore" });
    try {
      let doc: ReplicatorStatus | undefined;
      for (let i = 0; i < 100 && !doc?.databases[0]?.access; i++) {
        await sleep(100);
        try {
          doc = ReplicatorStatusSchema.parse(await (await fetch(`http://127.0.0.1:${port}/status`)).json());
        } catch {
          // not listening yet
        }
      }
      assert.deepEqual(doc?.databases[0]?.access, { path: db, need: "read and write", code: "EACCES" });
      await sleep(1500); // a few more attempts to open it
      assert.deepEqual(
        readdirSync(data).filter((f) => f.startsWith("app.db")),
        ["app.db"],
        "no -wal or -shm was created",
      );
    } finally {
      child.kill("SIGTERM");
      const killer = setTimeout(() => child.kill("SIGKILL"), 10_000);
      await once(child, "exit");
      clearTimeout(killer);
    }
  });
});
