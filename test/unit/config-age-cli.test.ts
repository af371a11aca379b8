/**
 * `age:` in a litestream.yml is refused by every command that reads the config (issue 13): Walship
 * does not encrypt yet, and accepting the key used to replicate in plaintext while the user believed
 * the backups were encrypted. The built CLI on a real SQLite file and a file replica.
 */
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import Database from "better-sqlite3";
import { walship } from "../helpers/walship.ts";

const IDENTITY = "AGE-SECRET-KEY-1QQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQ";
const RECIPIENT = "age1qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqq";

let dir: string;
let db: string;

function errorCode(stderr: string): string | undefined {
  return /\[(WALSHIP_ERR_[A-Z_]+)\]/.exec(stderr)?.[1];
}

function config(name: string, replica: string, withAge: boolean): string {
  const file = path.join(dir, name);
  const age = withAge
    ? `        age:\n          identities: [${IDENTITY}]\n          recipients: [${RECIPIENT}]\n`
    : "";
  writeFileSync(file, `dbs:\n  - path: ${db}\n    replicas:\n      - url: file://${replica}\n${age}`);
  return file;
}

before(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), "walship-age-"));
  db = path.join(dir, "app.db");
  const app = new Database(db);
  app.pragma("journal_mode = wal");
  app.exec("CREATE TABLE t (x); INSERT INTO t VALUES (1)");
  app.close();
});
after(() => rmSync(dir, { recursive: true, force: true }));

describe("age: refused by the CLI", () => {
  it("replicate refuses the config, names the key, quotes no key, writes nothing to the replica", async () => {
    const replica = path.join(dir, "never");
    const cfg = config("age.yml", replica, true);
    const res = await walship(["replicate", "-config", cfg, "-exec", "true"]);
    assert.equal(res.code, 1, res.stderr);
    assert.equal(errorCode(res.stderr), "WALSHIP_ERR_CONFIG", res.stderr);
    assert.match(res.stderr, /dbs\[0\]\.replicas\[0\]\.age: client-side encryption is not supported yet/);
    assert.ok(!res.stderr.includes(IDENTITY) && !res.stdout.includes(IDENTITY), "the identity is not echoed");
    assert.ok(!existsSync(replica), "nothing was written to the replica");
    // The database's own directory got no shadow WAL (replication never started).
    assert.deepEqual(
      readdirSync(dir).filter((f) => f.includes("litestream")),
      [],
    );
  });

  it("restore refuses the config and writes no output, even when the replica exists", async () => {
    const replica = path.join(dir, "plain");
    const ok = await walship(["replicate", "-config", config("plain.yml", replica, false), "-exec", "true"]);
    assert.equal(ok.code, 0, ok.stderr);
    assert.ok(existsSync(replica));

    const out = path.join(dir, "restored.db");
    const res = await walship(["restore", "-config", config("age2.yml", replica, true), "-o", out, db]);
    assert.equal(res.code, 1, res.stderr);
    assert.equal(errorCode(res.stderr), "WALSHIP_ERR_CONFIG", res.stderr);
    assert.match(res.stderr, /dbs\[0\]\.replicas\[0\]\.age: client-side encryption is not supported yet/);
    assert.ok(!res.stderr.includes(IDENTITY));
    assert.ok(!existsSync(out), "no database was restored");

    // The same restore without age works: the refusal was the age key and nothing else.
    const plain = await walship(["restore", "-config", config("plain2.yml", replica, false), "-o", out, db]);
    assert.equal(plain.code, 0, plain.stderr);
  });
});
