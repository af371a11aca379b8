/**
 * Guardrails end to end with the real `walship replicate` (bin/walship) and a real small file system:
 * the database lives on a 16 MiB tmpfs this test mounts (as root; unmounted in teardown, leftovers of
 * a killed run swept first), with one file destination on the same tmpfs ("local") and one elsewhere
 * ("remote"). Each guardrail is driven by a real cause, read from /status and /metrics, and turned
 * into the SqliteReplica's conditions by the operator's own derivation (pods.ts podFacts,
 * guardrails.ts):
 *
 * - WALGrowing: a reader the app keeps open lets the WAL grow past a quarter of the volume; once it
 *   ends, a TRUNCATE checkpoint shrinks the file and the condition clears.
 * - CheckpointFailing: the app holds SQLite's write lock across several of walship's RESTART
 *   checkpoints; a checkpoint that succeeds afterwards resets the count.
 * - DiskPressure and the snapshot guard: a filler file takes the space; the local destination's
 *   snapshot (which would write a copy of the database on this volume) is refused with the numbers
 *   while the remote one's goes on; with less than 10% free the volume itself is under pressure. The
 *   app is unharmed, and when the filler goes everything clears and a restore equals the source.
 */
import assert from "node:assert/strict";
import { readdirSync, rmSync, statfsSync, statSync, writeFileSync } from "node:fs";
import path from "node:path";
import { after, before, it } from "node:test";
import Database from "better-sqlite3";
import { guardrailConditions } from "../../src/operator/replica/guardrails.ts";
import { podFacts } from "../../src/operator/replica/pods.ts";
import { freePort } from "../helpers/ports.ts";
import { waitFor } from "../helpers/proc.ts";
import { integrityCheck, logicalHash, logicalHashOf } from "../helpers/sqlite.ts";
import { mountTmpfs, type SmallVolume, smallApp } from "../helpers/tmpfs.ts";
import {
  caughtUp,
  databaseStatus,
  replicatorStatus,
  sleep,
  startReplicator,
  walship,
} from "../helpers/walship.ts";

const MiB = 1024 * 1024;

let vol: SmallVolume;
let dir = "";
let mnt = "";

before(() => {
  vol = mountTmpfs("guardrails", 16);
  ({ dir, mnt } = vol);
});

after(() => vol?.close());

/** The SqliteReplica's guardrail conditions for a pod whose sidecar answers `base` (as the operator derives them). */
async function conditions(base: string, db: string): Promise<Record<string, string>> {
  const doc = await replicatorStatus(base);
  const pod = podFacts("app-0", doc, [{ path: db, volumeName: "data" }]);
  return Object.fromEntries(
    guardrailConditions([pod]).map((c) => [c.type, `${c.status} ${c.reason}: ${c.message}`]),
  );
}

/** One sample of a metric with `db` (and `name`) labels, from the Prometheus text. */
async function metric(base: string, name: string, labels: string): Promise<number | undefined> {
  const text = await (await fetch(`${base}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(`${name}{${labels}}`));
  return line === undefined ? undefined : Number(line.split(" ").at(-1));
}

/** Polls `fn` every 200 ms until it gives a value (helpers/proc.ts waitFor). */
function until<T>(what: string, fn: () => Promise<T | undefined>, ms: number): Promise<T> {
  return waitFor(fn, { what, timeoutMs: ms, intervalMs: 200 });
}

it("guardrails: WAL growth, failing checkpoints and a full volume are reported, a snapshot that would not fit is refused, all clear when the cause goes", async () => {
  const db = path.join(mnt, "app.db");
  const local = path.join(mnt, "backup");
  const remote = path.join(dir, "replica");
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const cfg = path.join(dir, "walship.yml");
  // Snapshots every 5 s: each starts with a RESTART checkpoint (the CheckpointFailing step needs
  // them to fail, and the WALGrowing step one that restarts the WAL once nothing pins it).
  writeFileSync(
    cfg,
    `addr: 127.0.0.1:${port}
dbs:
  - path: ${db}
    monitor-interval: 200ms
    replicas:
      - name: local
        url: file://${local}
        sync-interval: 200ms
        snapshot-interval: 5s
      - name: remote
        url: file://${remote}
        sync-interval: 200ms
        snapshot-interval: 5s
`,
  );
  const small = smallApp(db);
  const app = small.db;
  const write = (n: number) => small.write(n);
  // One row rewritten over and over: the WAL grows by a frame per commit, the database not at all.
  app.exec("CREATE TABLE hot (id INTEGER PRIMARY KEY, v BLOB); INSERT INTO hot VALUES (1, x'00')");
  const rewrite = app.prepare("UPDATE hot SET v = ? WHERE id = 1");
  write(300);
  const rep = startReplicator(["-config", cfg]);
  const filler = path.join(mnt, "filler");
  const dbLabel = `db="${db}"`;
  try {
    await until(
      "both destinations synced",
      async () => ((await databaseStatus(base)).replicas.every((r) => r.ready) ? true : undefined),
      30_000,
    );

    // --- The facts, all clear ---------------------------------------------------------------------
    const s0 = await databaseStatus(base);
    assert.equal(s0.volume?.totalBytes, 16 * MiB, "the tmpfs's size");
    const fs0 = statfsSync(mnt);
    assert.ok(
      Math.abs(s0.volume!.freeBytes - fs0.bavail * fs0.bsize) < 2 * MiB,
      "free bytes as statfs tells them",
    );
    assert.equal(s0.checkpoint?.consecutiveFailures, 0);
    assert.equal(await metric(base, "walship_volume_total_bytes", dbLabel), 16 * MiB);
    assert.ok((await metric(base, "walship_volume_free_bytes", dbLabel))! > 8 * MiB);
    assert.equal(await metric(base, "walship_checkpoint_consecutive_failures", dbLabel), 0);
    let c = await conditions(base, db);
    assert.match(c.DiskPressure!, /^False EnoughFreeSpace/);
    assert.match(c.WALGrowing!, /^False/);
    assert.match(c.CheckpointFailing!, /^False/);

    // --- WALGrowing: a reader the app keeps open pins the WAL -------------------------------------
    const reader = new Database(db, { readonly: true });
    reader.exec("BEGIN");
    reader.prepare("SELECT count(*) FROM t").get();
    // Past a quarter of the 16 MiB volume (the shadow WAL holds a copy: about 9 MiB of it in all).
    for (let i = 0; statSync(`${db}-wal`).size < 4.5 * MiB; i++) rewrite.run(Buffer.alloc(100, i & 0xff));
    const grown = await until(
      "WALGrowing",
      async () => {
        const x = await conditions(base, db);
        return x.WALGrowing!.startsWith("True") ? x.WALGrowing : undefined;
      },
      30_000,
    );
    assert.match(
      grown,
      /^True WALTakesVolume: pod app-0 .*app\.db: [\d.]+ MiB written to the WAL since it last restarted, more than 25% of its 16\.0 MiB volume \(the -wal file: [\d.]+ MiB\)$/,
    );
    const live = (await databaseStatus(base)).walLiveBytes!;
    assert.ok(live > 4 * MiB, `${live} bytes written since the WAL's last restart`);
    assert.ok(statSync(`${db}-wal`).size >= live, "the -wal file holds them");
    assert.ok((await metric(base, "walship_wal_live_bytes", dbLabel))! > 4 * MiB);
    assert.match(
      (await conditions(base, db)).CheckpointFailing!,
      /^False/,
      "a pinned WAL is not a failed checkpoint",
    );
    reader.exec("COMMIT");
    reader.close();
    await until(
      "the WAL restarted and WALGrowing False",
      async () => ((await conditions(base, db)).WALGrowing!.startsWith("False") ? true : undefined),
      30_000,
    );
    assert.ok((await databaseStatus(base)).walLiveBytes! < 1 * MiB);

    // --- CheckpointFailing: the app holds the write lock across several checkpoints ---------------
    const locker = new Database(db);
    locker.exec("BEGIN IMMEDIATE");
    let failing: string | undefined;
    try {
      failing = await until(
        "3 failed checkpoints in a row",
        async () => {
          const x = await conditions(base, db);
          return x.CheckpointFailing!.startsWith("True") ? x.CheckpointFailing : undefined;
        },
        30_000,
      );
      const s = await databaseStatus(base);
      assert.ok(s.checkpoint!.consecutiveFailures >= 3);
      assert.match(s.checkpoint!.lastError!.message, /checkpoint .*app\.db \(RESTART\): .*(locked|busy)/i);
      assert.ok((await metric(base, "walship_checkpoint_consecutive_failures", dbLabel))! >= 3);
    } finally {
      locker.exec("ROLLBACK");
      locker.close();
    }
    assert.ok(failing, "the checkpoints failed while the app held the write lock");
    assert.match(
      failing,
      /^True CheckpointErrors: pod app-0 .*app\.db: \d+ checkpoints failed in a row, the last: checkpoint /,
    );
    write(1);
    await until(
      "a checkpoint that succeeds",
      async () => ((await databaseStatus(base)).checkpoint?.consecutiveFailures === 0 ? true : undefined),
      30_000,
    );
    c = await conditions(base, db);
    assert.match(c.CheckpointFailing!, /^False/);
    assert.ok((await databaseStatus(base)).checkpoint?.lastSuccessAt);

    // --- The snapshot guard: the local destination's snapshot would not fit ------------------------
    // It writes a copy of the database (LZ4 bound) here; the remote one only the checkpoint's growth.
    // Once the shadow WAL of the grown WAL is gone (removed when both destinations have it), nothing
    // frees space by itself: the filler leaves what the remote snapshot needs, not the local one.
    await until(
      "replication caught up, the old shadow WAL removed",
      async () =>
        (await databaseStatus(base)).replicas.every((r) => r.ready && r.pendingTransactions === 0) &&
        (await metric(base, "litestream_shadow_wal_size", dbLabel))! < 1 * MiB
          ? true
          : undefined,
      30_000,
    );
    vol.fill(filler, statSync(db).size + 512 * 1024);
    const refused = await until(
      "the local snapshot refused",
      async () => (await databaseStatus(base)).replicas.find((r) => r.name === "local")!.snapshotRefused,
      30_000,
    );
    assert.match(
      refused.message,
      new RegExp(
        `snapshot ${db.replace(/[.]/g, "\\.")} to local refused: ${mnt.replace(/[.]/g, "\\.")} has \\d+ bytes free; the snapshot needs up to \\d+ and 1048576 must stay free`,
      ),
    );
    assert.ok(refused.at, "when it was refused");
    assert.ok(
      (await metric(base, "walship_replica_snapshots_refused_total", `${dbLabel},name="local"`))! >= 1,
    );
    assert.match(rep.output(), /snapshot refused: not enough space/, "the log says so");
    // Tried again after its interval (5 s here), not at once: no loop of refusals.
    const refusedCount = () =>
      metric(base, "walship_replica_snapshots_refused_total", `${dbLabel},name="local"`);
    const n0 = (await refusedCount())!;
    await sleep(3000);
    const n1 = (await refusedCount())!;
    assert.ok(n1 - n0 <= 1, `refused snapshots in 3 s: ${n1 - n0}`);
    assert.equal(readdirSync(path.join(local, "generations")).length > 0, true);
    const noTmp = (d: string): boolean =>
      readdirSync(d, { withFileTypes: true }).every((e) =>
        e.isDirectory() ? noTmp(path.join(d, e.name)) : !e.name.endsWith(".tmp"),
      );
    assert.ok(noTmp(local), "a refused snapshot leaves no partial object");
    // The remote destination's snapshots go on (they write nothing here but the checkpoint's growth).
    const remoteBefore = (await databaseStatus(base)).replicas.find((r) => r.name === "remote")!.lastSnapshot!
      .at;
    await until(
      "a remote snapshot while the local one is refused",
      async () => {
        const r = (await databaseStatus(base)).replicas.find((x) => x.name === "remote")!;
        return r.lastSnapshot!.at > remoteBefore && !r.snapshotRefused ? true : undefined;
      },
      30_000,
    );
    c = await conditions(base, db);
    assert.match(
      c.DiskPressure!,
      /^True SnapshotRefused: pod app-0 .*app\.db: destination local: snapshot .* refused: /,
    );

    // --- DiskPressure: under 10% free ---------------------------------------------------------------
    vol.fill(filler, 1 * MiB);
    const pressure = await until(
      "DiskPressure LowFreeSpace",
      async () => {
        write(2);
        const x = await conditions(base, db);
        return x.DiskPressure!.startsWith("True LowFreeSpace") ? x.DiskPressure : undefined;
      },
      30_000,
    );
    assert.match(
      pressure,
      /^True LowFreeSpace: pod app-0 .*app\.db: [\d.]+ MiB free of 16\.0 MiB \(below 10%\)/,
    );
    assert.ok((await metric(base, "walship_volume_free_bytes", dbLabel))! < 1.6 * MiB);
    await sleep(1000);
    assert.equal(rep.child.exitCode, null, "the replicator keeps running");
    assert.equal(app.prepare("PRAGMA integrity_check").pluck().get() as string, "ok");
    assert.equal(
      app.prepare("SELECT count(*) FROM t").pluck().get(),
      small.committed,
      "every committed transaction is there",
    );

    // --- Space returns: everything clears by itself --------------------------------------------------
    rmSync(filler);
    write(10);
    // Caught up (helpers/walship.ts): a single all-clear reading can come before the replicator has
    // even read the 10 commits just made.
    await caughtUp(base, "all clear", {
      timeoutMs: 90_000,
      clear: async (s) => {
        const x = await conditions(base, db);
        return (
          x.DiskPressure!.startsWith("False") &&
          s.replicas.every((r) => !r.snapshotRefused && !r.lastError) &&
          !s.lastError
        );
      },
      replicator: rep,
    });
    const want = logicalHashOf(app);
    const out = path.join(dir, "restored.db");
    const res = await walship(["restore", "-o", out, `file://${remote}`]);
    assert.equal(res.code, 0, res.stderr);
    assert.equal(integrityCheck(out), "ok");
    assert.equal(logicalHash(out), want, "the restore equals the source");
    console.log(
      `guardrails: ${small.committed} transactions committed, ${small.refused} refused by SQLite while full`,
    );
  } catch (err) {
    // What the replicator said and reported last, for the failure's reader.
    console.log(rep.output().slice(-6000));
    console.log(JSON.stringify(await databaseStatus(base).catch(String), null, 1));
    throw err;
  } finally {
    assert.equal(await rep.stop(), 0, rep.output().slice(-3000));
    app.close();
  }
});
