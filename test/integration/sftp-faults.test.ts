/**
 * `walship replicate` to a real OpenSSH sftp server whose connections die or hang mid-upload
 * (destinations-v03.md §1.2: one killed session wedged Litestream v0.3.13's sync and its shutdown):
 *
 * - the session is killed while a large WAL segment is being uploaded: no object under a final name
 *   is short (every one is a complete LZ4 frame, checked with the lz4 CLI), replication reconnects
 *   and resumes, and both litestream and walship restore the end state;
 * - the server hangs (sessions stopped, TCP up): SIGTERM still exits within shutdown-sync-timeout.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { runLitestream } from "../helpers/litestream.ts";
import { waitFor } from "../helpers/proc.ts";
import { type SftpServer, startSftp } from "../helpers/sftp.ts";
import { integrityCheck, logicalHash, logicalHashOf, openWorkload, writeFor } from "../helpers/sqlite.ts";
import { startReplicator, walship } from "../helpers/walship.ts";

let sftp: SftpServer;
const dirs: string[] = [];
before(async () => {
  sftp = await startSftp();
});
after(async () => {
  await sftp?.close();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

let seq = 0;
function setup(): { dir: string; cfg: string; db: string; remote: string } {
  const dir = mkdtempSync(path.join(os.tmpdir(), "walship-sftp-faults-"));
  dirs.push(dir);
  const db = path.join(dir, "app.db");
  const cfg = path.join(dir, "walship.yml");
  const remote = `/data/faults-${++seq}`;
  writeFileSync(
    cfg,
    `shutdown-sync-timeout: 3s
dbs:
  - path: ${db}
    replicas:
      - type: sftp
        host: ${sftp.address}
        user: ${sftp.user}
        key-path: ${sftp.keyPath}
        host-key: ${sftp.hostKeyLine("ed25519")}
        path: ${remote}
        sync-interval: 200ms
`,
  );
  return { dir, cfg, db, remote };
}

/** Every file under a directory on disk, recursively. */
function filesUnder(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return (readdirSync(dir, { recursive: true }) as string[])
    .map((f) => path.join(dir, f))
    .filter((f) => statSync(f).isFile());
}

/** Waits until the server's files stop changing for 2.5 s with no upload in progress. */
async function settled(dir: string): Promise<void> {
  let last = "";
  let since = Date.now();
  await waitFor(
    () => {
      const files = filesUnder(dir);
      const now = files.map((f) => `${f}:${statSync(f).size}`).join(",");
      if (now !== last || files.some((f) => f.endsWith(".tmp"))) {
        last = now;
        since = Date.now();
        return false;
      }
      return Date.now() - since > 2500;
    },
    { what: `uploads under ${dir} to settle`, timeoutMs: 120_000, intervalMs: 250 },
  );
}

describe("sftp destination: broken connections under walship replicate", () => {
  it("a session killed mid-upload leaves no short object, and replication resumes", async () => {
    const { dir, cfg, db, remote } = setup();
    const onDisk = path.join(sftp.root, remote);
    const app = openWorkload(db, 41, { autocheckpoint: 0 });
    const rep = startReplicator(["-config", cfg]);
    try {
      await writeFor(app, 800);
      await waitFor(() => filesUnder(onDisk).some((f) => f.endsWith(".wal.lz4")), {
        what: "the first WAL segment on the server",
        timeoutMs: 30_000,
      });
      // One large transaction of incompressible data: a WAL segment of tens of MB to upload.
      const ins = app.db.prepare("INSERT INTO items (name, qty, data) VALUES ('big', 0, ?)");
      app.db.transaction(() => {
        for (let i = 0; i < 40; i++) ins.run(randomBytes(1024 * 1024));
      })();
      const tmp = await waitFor(
        () => filesUnder(onDisk).find((f) => f.endsWith(".tmp") && statSync(f).size > 2 * 1024 * 1024),
        {
          what: "the large upload in progress (a .tmp file past 2 MiB on the server)",
          timeoutMs: 30_000,
          intervalMs: 20,
        },
      );
      assert.ok(sftp.killSessions("SIGKILL") > 0, "no session to kill");
      // Every object under a final name is whole: a complete, valid LZ4 frame.
      const finals = filesUnder(onDisk).filter((f) => f.endsWith(".lz4"));
      assert.ok(finals.length > 0);
      for (const f of finals) execFileSync("lz4", ["-t", "-q", f]);
      assert.ok(tmp.endsWith(".wal.lz4.tmp") || tmp.endsWith(".snapshot.lz4.tmp"), tmp);

      // Replication reconnects on its own, uploads the segment again and goes on.
      await writeFor(app, 1500);
      await settled(onDisk);
      const code = await rep.stop();
      assert.equal(code, 0, rep.output());
      assert.match(rep.output(), /sftp connection (lost|error)/);
      for (const f of filesUnder(onDisk).filter((x) => x.endsWith(".lz4")))
        execFileSync("lz4", ["-t", "-q", f]);
      const want = logicalHashOf(app.db);
      app.close();
      const out = path.join(dir, "walship.db");
      const r = await walship(["restore", "-config", cfg, "-o", out, db]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(integrityCheck(out), "ok");
      assert.equal(logicalHash(out), want);
      // Litestream, which does not check host keys, reads the same replica.
      const lsOut = path.join(dir, "litestream.db");
      const ls = await runLitestream(["restore", "-config", cfg, "-o", lsOut, db]);
      assert.equal(ls.code, 0, ls.stderr);
      assert.equal(logicalHash(lsOut), want);
    } finally {
      await rep.kill9().catch(() => {});
    }
  });

  it("SIGTERM exits within shutdown-sync-timeout while the server hangs", async () => {
    const { cfg, db } = setup();
    const app = openWorkload(db, 42);
    const rep = startReplicator(["-config", cfg]);
    try {
      await writeFor(app, 1000);
      await waitFor(() => /replica position/.test(rep.output()), { what: "a first sync", timeoutMs: 30_000 });
      assert.ok(sftp.killSessions("SIGSTOP") > 0, "no session to stop");
      await writeFor(app, 500);
      const t0 = Date.now();
      const code = await rep.stop();
      const took = Date.now() - t0;
      // 3 s for the final sync, plus closing: well under the 10 s a process manager would wait.
      assert.ok(took < 6_000, `SIGTERM took ${took} ms:\n${rep.output()}`);
      assert.equal(code, 0, rep.output());
      assert.match(rep.output(), /final sync did not finish in time|final replica sync failed/);
    } finally {
      sftp.killSessions("SIGKILL");
      app.close();
      await rep.kill9().catch(() => {});
    }
  });
});
