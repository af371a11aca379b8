/** The CLI as users call it: help, version, -exec, flag parsing, shell words, timestamps. */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, describe, it } from "node:test";
import Database from "better-sqlite3";
import { splitShellWords } from "../../src/cli/replicate.ts";
import { parseTimestamp } from "../../src/cli/restore.ts";
import { parseFlags, table } from "../../src/shared/flags.ts";
import { sleep, startReplicator, WALSHIP, walship } from "../helpers/walship.ts";

const dir = mkdtempSync(path.join(os.tmpdir(), "walship-cli-"));
after(() => rmSync(dir, { recursive: true, force: true }));

describe("walship CLI", () => {
  it("prints usage, per-command help and the version", async () => {
    const none = await walship([]);
    assert.equal(none.code, 1);
    assert.match(
      none.stdout,
      /Commands:[\s\S]*replicate[\s\S]*restore[\s\S]*snapshots[\s\S]*generations[\s\S]*wal[\s\S]*databases[\s\S]*version/,
    );
    for (const cmd of ["replicate", "restore", "snapshots", "generations", "wal", "databases"]) {
      const h = await walship([cmd, "-h"]);
      assert.equal(h.code, 0, cmd);
      assert.match(h.stdout, new RegExp(`Usage: walship ${cmd}`));
      assert.match(h.stdout, /Flags:/);
    }
    const v = await walship(["version"]);
    assert.match(v.stdout, /^v\d+\.\d+\.\d+\n$/);
    const bad = await walship(["frobnicate"]);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /unknown command/);
  });

  it("-exec runs the app as a child, then syncs once more and passes on its exit code", async () => {
    const db = path.join(dir, "exec.db");
    const app = new Database(db);
    app.pragma("journal_mode = wal");
    app.exec("CREATE TABLE t (x)");
    app.close();
    // The child writes a row, then exits 3; that row must reach the replica via the final sync.
    const script = `const D=require(${JSON.stringify(require_("better-sqlite3"))});const d=new D(${JSON.stringify(db)});d.prepare("insert into t values (42)").run();d.close();process.exit(3)`;
    const node = process.execPath;
    const res = await walship([
      "replicate",
      "-exec",
      `${node} -e '${script}'`,
      db,
      `file://${dir}/exec-replica`,
    ]);
    assert.equal(res.code, 3, res.stderr + res.stdout);
    const out = path.join(dir, "exec-restored.db");
    const r = await walship(["restore", "-o", out, `file://${dir}/exec-replica`]);
    assert.equal(r.code, 0, r.stderr);
    const check = new Database(out, { readonly: true });
    assert.deepEqual(check.prepare("SELECT x FROM t").pluck().all(), [42]);
    check.close();
    assert.ok(readdirSync(dir).includes("exec-restored.db"));
  });

  it("shows restore progress on a terminal, and log lines otherwise", async () => {
    const db = path.join(dir, "progress.db");
    const app = new Database(db);
    app.pragma("journal_mode = wal");
    app.exec("CREATE TABLE t (x)");
    app.prepare("INSERT INTO t VALUES (?)").run(Buffer.alloc(3 << 20, 7));
    app.close();
    const rep = await walship(["replicate", "-exec", "true", db, `file://${dir}/progress-replica`]);
    assert.equal(rep.code, 0, rep.stderr);
    // A real pseudo-terminal: util-linux `script` runs the command with its stdio on a pty.
    const out = path.join(dir, "progress-out.db");
    const cmd = `${WALSHIP} restore -o ${out} file://${dir}/progress-replica`;
    const tty = spawnSync("script", ["-qec", cmd, "/dev/null"], { encoding: "utf8" });
    assert.equal(tty.status, 0, tty.stdout);
    assert.match(tty.stdout, /\r(snapshot|wal|apply|verify): \d+\.\d MiB downloaded, \d+\/\d+ WAL segments/);
    const plain = await walship([
      "restore",
      "-o",
      path.join(dir, "progress-out2.db"),
      `file://${dir}/progress-replica`,
    ]);
    assert.match(plain.stderr, /"msg":"restore progress"/);
    assert.doesNotMatch(plain.stderr, /\r/);
  });

  it("replicate serves /healthz, /readyz, /status and /metrics on the config's addr", async () => {
    const db = path.join(dir, "http.db");
    const app = new Database(db);
    app.pragma("journal_mode = wal");
    app.exec("CREATE TABLE t (x); INSERT INTO t VALUES (1)");
    app.close();
    const port = 20000 + Math.floor(Math.random() * 20000);
    const cfg = path.join(dir, "http.yml");
    writeFileSync(
      cfg,
      `addr: 127.0.0.1:${port}\ndbs:\n  - path: ${db}\n    replicas:\n      - url: file://${dir}/http-replica\n`,
    );
    const rep = startReplicator(["-config", cfg]);
    try {
      let ready = 0;
      for (let i = 0; i < 100 && ready !== 200; i++) {
        await sleep(100);
        ready = await fetch(`http://127.0.0.1:${port}/readyz`).then(
          (r) => r.status,
          () => 0,
        );
      }
      assert.equal(ready, 200, rep.output());
      assert.equal(await (await fetch(`http://127.0.0.1:${port}/healthz`)).text(), "ok\n");
      const status = (await (await fetch(`http://127.0.0.1:${port}/status`)).json()) as {
        kind: string;
        databases: Array<{ path: string }>;
      };
      assert.equal(status.kind, "ReplicatorStatus");
      assert.equal(status.databases[0]?.path, db);
      assert.match(
        await (await fetch(`http://127.0.0.1:${port}/metrics`)).text(),
        /^litestream_sync_count\{db="[^"]+"\} \d+/m,
      );
    } finally {
      assert.equal(await rep.stop(), 0);
    }
  });

  it("-refuse-if-replica-exists: exit 1 when the database is gone but a backup exists, else 0", async () => {
    const db = path.join(dir, "guard.db");
    const url = `file://${dir}/guard-replica`;
    assert.equal(
      (await walship(["restore", "-refuse-if-replica-exists", "-o", db, url])).code,
      0,
      "no backup: fresh start",
    );
    const app = new Database(db);
    app.pragma("journal_mode = wal");
    app.exec("CREATE TABLE t (x)");
    app.close();
    assert.equal((await walship(["replicate", "-exec", "true", db, url])).code, 0);
    assert.equal(
      (await walship(["restore", "-refuse-if-replica-exists", "-o", db, url])).code,
      0,
      "database present",
    );
    rmSync(db);
    const res = await walship(["restore", "-refuse-if-replica-exists", "-o", db, url]);
    assert.equal(res.code, 1);
    assert.match(res.stderr, /refusing to start empty/);
    assert.match(res.stderr, /WALSHIP_ERR_EXISTS/);
    assert.ok(!readdirSync(dir).includes("guard.db"), "nothing restored");
  });

  it("parses Go-style flags", () => {
    const specs = [
      { name: "config", type: "string" as const, help: "" },
      { name: "if-db-not-exists", type: "boolean" as const, help: "" },
    ];
    assert.deepEqual(parseFlags("x", specs, ["-config", "a.yml", "--if-db-not-exists", "db"]), {
      values: { config: "a.yml", "if-db-not-exists": true },
      args: ["db"],
    });
    assert.deepEqual(
      parseFlags("x", specs, ["-config=b.yml", "-if-db-not-exists=false", "--", "-db"]).values,
      {
        config: "b.yml",
        "if-db-not-exists": false,
      },
    );
    assert.throws(() => parseFlags("x", specs, ["-nope"]), { code: "WALSHIP_ERR_USAGE" });
    assert.throws(() => parseFlags("x", specs, ["-config"]), { code: "WALSHIP_ERR_USAGE" });
  });

  it("splits -exec commands into shell words", () => {
    assert.deepEqual(splitShellWords(`node  server.js --name "my app" 'a b' c\\ d`), [
      "node",
      "server.js",
      "--name",
      "my app",
      "a b",
      "c d",
    ]);
    assert.deepEqual(splitShellWords(`sh -c "echo \\"hi\\""`), ["sh", "-c", 'echo "hi"']);
    assert.throws(() => splitShellWords(`node "unterminated`), { code: "WALSHIP_ERR_CONFIG" });
    assert.throws(() => splitShellWords("   "), { code: "WALSHIP_ERR_CONFIG" });
  });

  it("takes RFC 3339 timestamps with or without fractional seconds", () => {
    assert.equal(parseTimestamp("2026-01-02T03:04:05Z").toISOString(), "2026-01-02T03:04:05.000Z");
    assert.equal(parseTimestamp("2026-01-02T03:04:05.123456789Z").toISOString(), "2026-01-02T03:04:05.123Z");
    assert.equal(parseTimestamp("2026-01-02T05:04:05+02:00").toISOString(), "2026-01-02T03:04:05.000Z");
    for (const bad of ["2026-01-02", "yesterday", "2026-01-02 03:04:05Z", "2026-13-02T03:04:05Z"]) {
      assert.throws(() => parseTimestamp(bad), { code: "WALSHIP_ERR_USAGE" }, bad);
    }
  });

  it("lays out tables with two spaces between columns", () => {
    assert.equal(table(["a", "bb"], [["xxx", "y"]]), "a    bb\nxxx  y");
  });
});

function require_(name: string): string {
  return path.join(path.resolve(import.meta.dirname, "../.."), "node_modules", name);
}
