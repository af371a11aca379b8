/**
 * Local disk full under the database's directory: the database and its shadow WAL live on a small
 * tmpfs this test mounts (as root; always unmounted in teardown), the destination elsewhere. A filler
 * file takes the free space while the app writes. Expected: a clear error (ENOSPC, naming the file) in
 * /status and the logs; the replicator keeps running; the app's database stays intact with every
 * transaction it committed; once the filler is deleted, replication catches up by itself and a
 * restore equals the source.
 */
import assert from "node:assert/strict";
import { rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { after, before, it } from "node:test";
import { freePort } from "../helpers/ports.ts";
import { integrityCheck, logicalHash, logicalHashOf } from "../helpers/sqlite.ts";
import { mountTmpfs, type SmallVolume, smallApp } from "../helpers/tmpfs.ts";
import { caughtUp, databaseStatus, sleep, startReplicator, walship } from "../helpers/walship.ts";

let vol: SmallVolume;
let dir = "";
let mnt = "";

before(() => {
  vol = mountTmpfs("diskfull", 6);
  ({ dir, mnt } = vol);
});

after(() => vol?.close());

async function waitFor<T>(what: string, fn: () => Promise<T | undefined>, ms: number): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined) return v;
    } catch {
      // not yet
    }
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(200);
  }
}

it("disk full under the database: a clear error, the app unharmed, replication resumes when space returns", async () => {
  const db = path.join(mnt, "app.db");
  const replica = path.join(dir, "replica");
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const cfg = path.join(dir, "walship.yml");
  writeFileSync(
    cfg,
    `addr: 127.0.0.1:${port}
dbs:
  - path: ${db}
    monitor-interval: 100ms
    replicas:
      - url: file://${replica}
        sync-interval: 100ms
`,
  );
  const small = smallApp(db);
  const app = small.db;
  const write = (n: number) => small.write(n);
  write(20);
  const rep = startReplicator(["-config", cfg]);
  const filler = path.join(mnt, "filler");
  try {
    await waitFor(
      "the first sync",
      async () => ((await databaseStatus(base)).replicas[0]!.ready ? true : undefined),
      30_000,
    );

    // Leave room for the app's next writes, not for their copy in the shadow WAL as well.
    vol.fill(filler, 160 * 1024);
    const errSeen = await waitFor(
      "the disk-full error in /status",
      async () => {
        write(3);
        const s = await databaseStatus(base);
        const msg = s.lastError?.message ?? s.replicas[0]!.lastError?.message;
        return msg && /ENOSPC|no space/i.test(msg) ? msg : undefined;
      },
      30_000,
    );
    assert.match(errSeen, /ENOSPC|no space left/i);
    assert.match(errSeen, new RegExp(path.basename(db).replace(".", "\\.")), "the error names the file");
    await sleep(2000);
    assert.equal(rep.child.exitCode, null, "the replicator keeps running");
    assert.match(rep.output(), /ENOSPC|no space left/i, "the error is in the logs too");
    // The app: its database is intact and holds every transaction it committed.
    assert.equal(app.prepare("PRAGMA integrity_check").pluck().get() as string, "ok");
    assert.equal(app.prepare("SELECT count(*) FROM t").pluck().get(), small.committed);

    // Space returns: replication resumes by itself.
    rmSync(filler);
    write(10);
    // Caught up (helpers/walship.ts): a single reading can come before the replicator has even read
    // the 10 commits just made.
    await caughtUp(base, "replication to resume", {
      timeoutMs: 60_000,
      clear: (s) => !s.lastError && !s.replicas[0]!.lastError && s.replicas[0]!.lagSeconds < 2,
      replicator: rep,
    });
    const want = logicalHashOf(app);
    const out = path.join(dir, "restored.db");
    const res = await walship(["restore", "-o", out, `file://${replica}`]);
    assert.equal(res.code, 0, res.stderr);
    assert.equal(integrityCheck(out), "ok");
    assert.equal(logicalHash(out), want, "the restore equals the source");
    console.log(
      `disk full: ${small.committed} transactions committed, ${small.refused} refused by SQLite while full`,
    );
  } finally {
    assert.equal(await rep.stop(), 0, rep.output().slice(-3000));
    app.close();
  }
});
