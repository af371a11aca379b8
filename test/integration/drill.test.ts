/**
 * `walship drill` against real replicas: a database replicated to a file destination and to MinIO at
 * once. The drill restores each into scratch space (the database is never touched), checks it, and
 * prints one JSON line (also written to -result-file); a corrupt replica object fails that
 * destination's drill with a message naming the object while the other passes; a verify query that
 * returns no row fails the drill. The same drill passes on every other destination kind at once: sftp
 * (OpenSSH), gcs (fake-gcs-server), abs (Azurite) and an age-encrypted file replica.
 */
import assert from "node:assert/strict";
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { generateX25519Identity, identityToRecipient } from "age-encryption";
import Database from "better-sqlite3";
import { createReplicaClient, loadConfig } from "../../src/replicator/config.ts";
import { oldestRestorableTime } from "../../src/replicator/window.ts";
import { type DrillReport, parseDrillReport } from "../../src/shared/drill.ts";
import { type Azurite, startAzurite } from "../helpers/azurite.ts";
import { type FakeGcs, startGcs } from "../helpers/gcs.ts";
import { type Minio, startMinio } from "../helpers/minio.ts";
import { makeTempDir, removeTempDir } from "../helpers/proc.ts";
import { type SftpServer, startSftp } from "../helpers/sftp.ts";
import { logicalHash, openWorkload, writeFor } from "../helpers/sqlite.ts";
import { sleep, startReplicator, walship } from "../helpers/walship.ts";

let dir = "";
let minio: Minio;
let db = "";
let replica = "";
let cfg = "";
let env: NodeJS.ProcessEnv = {};
let dbHash = "";
/** When the first and the last row were written. */
let firstWrite = 0;
let lastWrite = 0;

function config(replicaDir: string): string {
  return `access-key-id: $DRILL_KEY
secret-access-key: $DRILL_SECRET
dbs:
  - path: ${db}
    monitor-interval: 50ms
    replicas:
      - name: disk
        url: file://${replicaDir}
        sync-interval: 50ms
      - name: minio
        type: s3
        bucket: drills
        path: app
        endpoint: \${DRILL_ENDPOINT}
        region: us-east-1
        force-path-style: true
        sync-interval: 50ms
`;
}

async function drill(args: string[], configFile = cfg) {
  const r = await walship(["drill", "-config", configFile, "-log-format", "json", ...args], { env });
  const report = parseDrillReport(r.stdout);
  assert.ok(report, `a drill report on stdout:\n${r.stdout}\n${r.stderr}`);
  return { ...r, report: report as DrillReport };
}

before(async () => {
  dir = makeTempDir("drill");
  minio = await startMinio();
  await minio.createBucket("drills");
  env = { DRILL_KEY: minio.accessKeyId, DRILL_SECRET: minio.secretAccessKey, DRILL_ENDPOINT: minio.endpoint };
  db = path.join(dir, "app.db");
  replica = path.join(dir, "replica");
  cfg = path.join(dir, "walship.yml");
  writeFileSync(cfg, config(replica));
  const app = new Database(db);
  app.pragma("journal_mode = WAL");
  app.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, at TEXT)");
  const rep = startReplicator(["-config", cfg], { env });
  firstWrite = Date.now();
  for (let i = 0; i < 30; i++) {
    app.prepare("INSERT INTO t (at) VALUES (?)").run(new Date().toISOString());
    await sleep(40);
  }
  lastWrite = Date.now();
  await sleep(800);
  assert.equal(await rep.stop(), 0, rep.output());
  app.close();
  dbHash = logicalHash(db);
});
after(async () => {
  await minio?.close();
  removeTempDir(dir);
});

describe("walship drill", () => {
  it("restores latest and a random time of each destination into scratch space, checked and measured", async () => {
    const scratch = path.join(dir, "scratch");
    mkdirSync(scratch);
    const resultFile = path.join(dir, "termination-log");
    const started = Date.now();
    const r = await drill([
      "-point-in-time",
      "-verify-sql",
      "SELECT count(*) FROM t HAVING count(*) > 0",
      "-scratch",
      scratch,
      "-result-file",
      resultFile,
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(
      r.report.results.map((x) => [x.destination, x.outcome]),
      [
        ["disk", "Passed"],
        ["minio", "Passed"],
      ],
    );
    for (const x of r.report.results) {
      assert.equal(x.database, db);
      assert.match(x.position ?? "", /^[0-9a-f]{16}\/[0-9a-f]{8}:\d+$/);
      assert.ok((x.sizeBytes ?? 0) >= 8192, `size ${x.sizeBytes}`);
      assert.ok(x.seconds !== undefined && x.seconds >= 0 && x.seconds < 60, `seconds ${x.seconds}`);
      assert.ok(Date.parse(x.at) >= started);
      const pit = x.pointInTime;
      assert.ok(pit, "a point-in-time restore");
      const t = Date.parse(pit.timestamp);
      // The window: from the first snapshot (taken at the replicator's start) to the drill.
      assert.ok(
        t >= firstWrite - 2000 && t <= Date.parse(x.at),
        `random time ${pit.timestamp} in the window`,
      );
      assert.match(pit.position ?? "", /^[0-9a-f]{16}\/[0-9a-f]{8}:\d+$/);
      const commit = Date.parse(pit.lastCommit ?? "");
      assert.ok(commit <= t, `restored commit ${pit.lastCommit} at or before ${pit.timestamp}`);
      assert.ok(commit <= lastWrite + 1000, `restored commit ${pit.lastCommit} is one of the writes`);
    }
    // The same line in the result file; nothing left in scratch; the database untouched.
    assert.deepEqual(parseDrillReport(readFileSync(resultFile, "utf8")), r.report);
    assert.deepEqual(readdirSync(scratch), []);
    assert.equal(logicalHash(db), dbHash);
  });

  it("a corrupt object fails that destination's drill, naming the object; the other passes", async () => {
    // A damaged copy of the file replica: every snapshot's bytes flipped.
    const damaged = path.join(dir, "damaged");
    await import("node:fs/promises").then((fs) => fs.cp(replica, damaged, { recursive: true }));
    const gen = readdirSync(path.join(damaged, "generations"))[0]!;
    const snaps = path.join(damaged, "generations", gen, "snapshots");
    const snapName = readdirSync(snaps)[0]!;
    const b = readFileSync(path.join(snaps, snapName));
    for (let i = 16; i < b.length - 8; i += 97) b[i]! ^= 0x5a;
    writeFileSync(path.join(snaps, snapName), b);
    const damagedCfg = path.join(dir, "damaged.yml");
    writeFileSync(damagedCfg, config(damaged));
    const r = await drill([], damagedCfg);
    assert.equal(r.code, 1, r.stderr);
    const [disk, s3] = r.report.results;
    assert.equal(disk?.outcome, "Failed");
    assert.match(disk?.message ?? "", new RegExp(snapName.replace(/[.]/g, "\\.")), disk?.message);
    assert.match(disk?.message ?? "", /WALSHIP_ERR_CORRUPT/);
    assert.equal(disk?.position, undefined);
    assert.equal(s3?.outcome, "Passed", s3?.message);
    assert.equal(logicalHash(db), dbHash);
  });

  it("a verify query that returns no row fails the drill", async () => {
    const r = await drill(["-replicas", "minio", "-verify-sql", "SELECT 1 FROM t WHERE id < 0"]);
    assert.equal(r.code, 1, r.stderr);
    assert.equal(r.report.results.length, 1);
    const [x] = r.report.results;
    assert.equal(x?.destination, "minio");
    assert.equal(x?.outcome, "Failed");
    assert.match(x?.message ?? "", /verify-sql returned no row/);
    assert.match(x?.message ?? "", /WALSHIP_ERR_INTEGRITY/);
  });

  it("a restore to the window's oldest time works (a drill's random time may fall there)", async () => {
    // The window's oldest end is the first snapshot's recorded time, a little before its upload.
    const config = await loadConfig(cfg, { expandEnv: true, env: { ...process.env, ...env } });
    for (const replicaConfig of config.dbs[0]!.replicas) {
      const client = await createReplicaClient(replicaConfig, replicaConfig.name);
      const oldest = await oldestRestorableTime(client);
      client.close?.();
      assert.ok(oldest, replicaConfig.name);
      const out = path.join(dir, `oldest-${replicaConfig.name}.db`);
      const r = await walship(
        [
          "restore",
          "-config",
          cfg,
          "-replica",
          replicaConfig.name,
          "-timestamp",
          oldest.toISOString(),
          "-o",
          out,
          db,
        ],
        { env },
      );
      assert.equal(r.code, 0, `${replicaConfig.name} at ${oldest.toISOString()}: ${r.stderr}`);
    }
  });

  it("an unknown destination is a usage error", async () => {
    const r = await walship(["drill", "-config", cfg, "-replicas", "nope"], { env });
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /-replicas: no destination named "nope"/);
  });
});

describe("walship drill on every other destination kind, an encrypted one included", {
  timeout: 180_000,
}, () => {
  let sftp: SftpServer | undefined;
  let gcs: FakeGcs | undefined;
  let azurite: Azurite | undefined;
  let kindsEnv: NodeJS.ProcessEnv = {};
  let kindsCfg = "";

  before(async () => {
    [sftp, gcs, azurite] = await Promise.all([startSftp(), startGcs(), startAzurite()]);
    await gcs.createBucket("replicas");
    await azurite.createContainer("replicas");
    const home = path.join(dir, "home");
    mkdirSync(path.join(home, ".ssh"), { recursive: true, mode: 0o700 });
    writeFileSync(path.join(home, ".ssh", "known_hosts"), `${sftp.knownHostsLine("ed25519")}\n`);
    const identity = await generateX25519Identity();
    kindsEnv = {
      HOME: home,
      STORAGE_EMULATOR_HOST: gcs.emulatorHost,
      METADATA_SERVER_DETECTION: "none",
      LITESTREAM_AZURE_ACCOUNT_KEY: azurite.key,
      AGE_IDENTITY: identity,
    };
    const kindsDb = path.join(dir, "kinds.db");
    kindsCfg = path.join(dir, "kinds.yml");
    writeFileSync(
      kindsCfg,
      `dbs:
  - path: ${kindsDb}
    monitor-interval: 50ms
    replicas:
      - name: sftp
        type: sftp
        host: ${sftp.address}
        user: ${sftp.user}
        key-path: ${sftp.keyPath}
        path: /data/kinds
        sync-interval: 100ms
      - name: gcs
        url: gcs://replicas/kinds
        sync-interval: 100ms
      - name: abs
        type: abs
        account-name: ${azurite.account}
        bucket: replicas
        path: kinds
        endpoint: ${azurite.endpoint}
        sync-interval: 100ms
      - name: sealed
        url: file://${path.join(dir, "sealed")}
        sync-interval: 100ms
        age:
          identities:
            - $AGE_IDENTITY
          recipients:
            - ${await identityToRecipient(identity)}
`,
    );
    const app = openWorkload(kindsDb, 5, { vacuum: false });
    const rep = startReplicator(["-config", kindsCfg], { env: kindsEnv });
    await writeFor(app, 1500);
    await sleep(1000);
    assert.equal(await rep.stop(), 0, rep.output());
    app.close();
  });
  after(async () => {
    await Promise.all([sftp?.close(), gcs?.close(), azurite?.close()]);
  });

  it("each passes, latest and a random time", async () => {
    const r = await walship(["drill", "-config", kindsCfg, "-point-in-time", "-verify-sql", "SELECT 1"], {
      env: kindsEnv,
    });
    const report = parseDrillReport(r.stdout);
    assert.ok(report, r.stderr);
    assert.equal(r.code, 0, r.stdout);
    assert.deepEqual(
      report.results.map((x) => [x.destination, x.outcome, x.message]),
      ["sftp", "gcs", "abs", "sealed"].map((d) => [d, "Passed", undefined]),
    );
    for (const x of report.results) {
      assert.match(x.position ?? "", /^[0-9a-f]{16}\/[0-9a-f]{8}:\d+$/, x.destination);
      assert.ok((x.sizeBytes ?? 0) > 4096 && x.pointInTime?.position, JSON.stringify(x));
    }
    // The sealed replica really is encrypted: its snapshot is not an LZ4 frame.
    const gen = readdirSync(path.join(dir, "sealed", "generations"))[0]!;
    const snap = readdirSync(path.join(dir, "sealed", "generations", gen, "snapshots"))[0]!;
    const head = readFileSync(path.join(dir, "sealed", "generations", gen, "snapshots", snap)).subarray(0, 4);
    assert.notDeepEqual([...head], [0x04, 0x22, 0x4d, 0x18]);
  });
});
