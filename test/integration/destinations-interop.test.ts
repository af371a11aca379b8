/**
 * The sftp, gcs and abs destinations with the real litestream v0.3.13 on the other side, each against
 * its real local server (OpenSSH with a chrooted sftp-only user, fake-gcs-server, Azurite):
 *
 * - stock litestream restores a Walship replica with several generations, checkpoints and snapshots;
 * - walship restores a replica litestream wrote, continues it, litestream continues after walship,
 *   and both restore the end state: one config file drives both binaries;
 * - every read command works (generations, snapshots, wal, databases) and restore takes the URL form.
 *
 * The sftp config is seed 000's block as written there (host with port, user, key-path, path), for
 * a chrooted sftp-only user; Walship checks the host key against ~/.ssh/known_hosts, which the seed's
 * own setup step (`sftp -P 2222 ...` once) fills.
 */
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { type Azurite, startAzurite } from "../helpers/azurite.ts";
import { type FakeGcs, startGcs } from "../helpers/gcs.ts";
import { runLitestream, spawnLitestream } from "../helpers/litestream.ts";
import { type SftpServer, startSftp } from "../helpers/sftp.ts";
import { integrityCheck, logicalHash, logicalHashOf, openWorkload, writeFor } from "../helpers/sqlite.ts";
import { sleep, startReplicator, walship } from "../helpers/walship.ts";

interface Backend {
  name: string;
  start(): Promise<void>;
  stop(): Promise<void>;
  /** The replica block (YAML, indented for `replicas:`) for a fresh location named `label`. */
  replica(label: string): Promise<string>;
  /** The URL form of that location, for `walship restore URL`. */
  url(label: string): string;
  /** Environment for both binaries (credentials, emulator hosts, HOME with known_hosts). */
  env: NodeJS.ProcessEnv;
}

const dirs: string[] = [];
function tempDir(label: string): string {
  const d = mkdtempSync(path.join(os.tmpdir(), `walship-${label}-`));
  dirs.push(d);
  return d;
}

let sftp: SftpServer | undefined;
const sftpBackend: Backend = {
  name: "sftp",
  env: {},
  async start() {
    // Seed 000: user litestream, chroot with /cacmin-bot writable, port 2222, key auth.
    sftp = await startSftp({ user: "litestream", port: 2222, writableDirs: ["cacmin-bot"] });
    const home = tempDir("home");
    mkdirSync(path.join(home, ".ssh"), { mode: 0o700 });
    writeFileSync(path.join(home, ".ssh", "known_hosts"), `${sftp.knownHostsLine("ed25519")}\n`);
    this.env = { HOME: home };
  },
  async stop() {
    await sftp?.close();
  },
  async replica(label) {
    const s = sftp as SftpServer;
    return `type: sftp
        host: ${s.address}
        user: ${s.user}
        key-path: ${s.keyPath}
        path: /cacmin-bot/${label}`;
  },
  url(label) {
    const s = sftp as SftpServer;
    return `sftp://${s.user}@${s.address}/cacmin-bot/${label}?key-path=${encodeURIComponent(s.keyPath)}`;
  },
};

let gcs: FakeGcs | undefined;
const gcsBackend: Backend = {
  name: "gcs",
  env: {},
  async start() {
    gcs = await startGcs();
    await gcs.createBucket("replicas");
    // The Go client reads the emulator from STORAGE_EMULATOR_HOST; Walship takes it the same way.
    this.env = { STORAGE_EMULATOR_HOST: gcs.emulatorHost, METADATA_SERVER_DETECTION: "none" };
  },
  async stop() {
    await gcs?.close();
  },
  async replica(label) {
    return `url: gcs://replicas/apps/${label}`;
  },
  url(label) {
    return `gs://replicas/apps/${label}`;
  },
};

let azurite: Azurite | undefined;
const absBackend: Backend = {
  name: "abs",
  env: {},
  async start() {
    azurite = await startAzurite();
    await azurite.createContainer("replicas");
    this.env = { LITESTREAM_AZURE_ACCOUNT_KEY: azurite.key };
  },
  async stop() {
    await azurite?.close();
  },
  async replica(label) {
    const az = azurite as Azurite;
    return `type: abs
        account-name: ${az.account}
        bucket: replicas
        path: apps/${label}
        endpoint: ${az.endpoint}`;
  },
  url(label) {
    const az = azurite as Azurite;
    return `abs://${az.account}@replicas/apps/${label}?endpoint=${encodeURIComponent(az.endpoint)}`;
  },
};

after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

let seq = 0;
async function setup(b: Backend): Promise<{ dir: string; cfg: string; db: string; label: string }> {
  const dir = tempDir(b.name);
  const label = `app-${++seq}`;
  const db = path.join(dir, "app.db");
  const cfg = path.join(dir, "litestream.yml");
  writeFileSync(
    cfg,
    `dbs:
  - path: ${db}
    min-checkpoint-page-count: 64
    replicas:
      - name: ${b.name}
        ${await b.replica(label)}
        sync-interval: 100ms
        snapshot-interval: 2s
`,
  );
  return { dir, cfg, db, label };
}

async function restoreBoth(b: Backend, cfg: string, db: string, dir: string, want: string, tag: string) {
  for (const [name, run] of [
    ["litestream", (o: string) => runLitestream(["restore", "-config", cfg, "-o", o, db], { env: b.env })],
    ["walship", (o: string) => walship(["restore", "-config", cfg, "-o", o, db], { env: b.env })],
  ] as const) {
    const out = path.join(dir, `${name}-${tag}.db`);
    const res = await run(out);
    assert.equal(res.code, 0, `${name}: ${res.stdout}${res.stderr}`);
    assert.equal(integrityCheck(out), "ok");
    assert.equal(logicalHash(out), want, `${b.name}: ${name} restore differs`);
  }
}

describe("seed 000's litestream.yml as written (sftp, port 2222, chrooted sftp-only user)", () => {
  before(() => sftpBackend.start());
  after(() => sftpBackend.stop());

  it("walship replicates and restores with it; litestream restores the same block as a replicas item", async () => {
    const s = sftp as SftpServer;
    const dir = tempDir("seed000");
    const db = path.join(dir, "bot.db");
    const cfg = path.join(dir, "litestream.yml");
    // Seed 000's block, with PROXMOX_HOST_IP and the key's location filled in.
    writeFileSync(
      cfg,
      `dbs:
  - path: ${db}
    replica:
      type: sftp
      host: 127.0.0.1:2222  # Use proxied port, not 22
      user: litestream
      key-path: ${s.keyPath}
      path: /cacmin-bot
`,
    );
    const app = openWorkload(db, 33);
    const rep = startReplicator(["-config", cfg], { env: sftpBackend.env });
    await writeFor(app, 2000);
    await sleep(1500);
    assert.equal(await rep.stop(), 0, rep.output());
    const want = logicalHashOf(app.db);
    app.close();
    const out = path.join(dir, "walship.db");
    const res = await walship(["restore", "-config", cfg, "-o", out, db], { env: sftpBackend.env });
    assert.equal(res.code, 0, res.stderr);
    assert.equal(logicalHash(out), want);
    // Litestream v0.3.13 ignores the singular `replica:` key (v0.5's spelling): with this very file it
    // finds no replica at all (and would not have replicated either).
    const ignored = await runLitestream(["restore", "-config", cfg, "-o", path.join(dir, "x.db"), db], {
      env: sftpBackend.env,
      allowFailure: true,
    });
    assert.notEqual(ignored.code, 0);
    assert.match(`${ignored.stdout}${ignored.stderr}`, /no matching backups found/);
    // The same block as a `replicas:` list item: litestream restores what walship wrote.
    const listCfg = path.join(dir, "litestream-list.yml");
    writeFileSync(
      listCfg,
      readFileSync(cfg, "utf8")
        .replace("    replica:\n      type: sftp", "    replicas:\n      - type: sftp")
        .replace(/^ {6}(host|user|key-path|path):/gm, "        $1:"),
    );
    const lsOut = path.join(dir, "litestream.db");
    const ls = await runLitestream(["restore", "-config", listCfg, "-o", lsOut, db], {
      env: sftpBackend.env,
    });
    assert.equal(ls.code, 0, ls.stderr);
    assert.equal(logicalHash(lsOut), want);
  });
});

for (const b of [sftpBackend, gcsBackend, absBackend]) {
  describe(`${b.name} destination, interop with litestream v0.3.13`, () => {
    before(() => b.start());
    after(() => b.stop());

    it("stock litestream restores a Walship replica with several generations; every command reads it", async () => {
      const { dir, cfg, db, label } = await setup(b);
      const app = openWorkload(db, 31);
      for (let gen = 0; gen < 3; gen++) {
        const rep = startReplicator(["-config", cfg], { env: b.env });
        await writeFor(app, 2500);
        await sleep(600);
        assert.equal(await rep.stop(), 0, rep.output());
        // A checkpoint while nothing replicates: the next start finds the WAL moved on (new generation).
        app.db.pragma("wal_checkpoint(TRUNCATE)");
        app.step();
      }
      const rep = startReplicator(["-config", cfg], { env: b.env });
      await writeFor(app, 1000);
      await sleep(600);
      assert.equal(await rep.stop(), 0, rep.output());
      const want = logicalHashOf(app.db);
      app.close();

      for (const tool of ["walship", "litestream"] as const) {
        const run = tool === "walship" ? walship : runLitestream;
        const gens = await run(["generations", "-config", cfg, db], { env: b.env });
        assert.equal(gens.code, 0, gens.stderr);
        assert.ok(
          gens.stdout.trim().split("\n").length - 1 >= 3,
          `${tool}: several generations:\n${gens.stdout}`,
        );
        const snaps = await run(["snapshots", "-config", cfg, db], { env: b.env });
        assert.equal(snaps.code, 0, snaps.stderr);
        assert.ok(snaps.stdout.trim().split("\n").length - 1 >= 3, `${tool}: snapshots:\n${snaps.stdout}`);
        const wal = await run(["wal", "-config", cfg, db], { env: b.env });
        assert.equal(wal.code, 0, wal.stderr);
        assert.ok(wal.stdout.trim().split("\n").length > 3, `${tool}: wal:\n${wal.stdout}`);
      }
      const dbs = await walship(["databases", "-config", cfg], { env: b.env });
      assert.equal(dbs.code, 0, dbs.stderr);
      assert.match(dbs.stdout, new RegExp(b.name));

      await restoreBoth(b, cfg, db, dir, want, "from-walship");
      // The URL form, as a user restores without a config file.
      const byUrl = path.join(dir, "by-url.db");
      const res = await walship(["restore", "-o", byUrl, b.url(label)], { env: b.env });
      assert.equal(res.code, 0, res.stderr);
      assert.equal(logicalHash(byUrl), want);
    });

    it("walship restores and continues a litestream replica; litestream continues after it; one config", async () => {
      const { dir, cfg, db } = await setup(b);
      const app = openWorkload(db, 32);
      const ls = spawnLitestream(["replicate", "-config", cfg], { env: b.env });
      await sleep(1500);
      await writeFor(app, 2000);
      await sleep(1500);
      await ls.stop();
      const afterLitestream = logicalHashOf(app.db);
      const first = path.join(dir, "from-litestream.db");
      const r1 = await walship(["restore", "-config", cfg, "-o", first, db], { env: b.env });
      assert.equal(r1.code, 0, r1.stderr);
      assert.equal(logicalHash(first), afterLitestream);

      const rep = startReplicator(["-config", cfg], { env: b.env });
      await writeFor(app, 1500);
      app.db.pragma("wal_checkpoint(PASSIVE)");
      await writeFor(app, 500);
      await sleep(800);
      assert.equal(await rep.stop(), 0, rep.output());
      const ls2 = spawnLitestream(["replicate", "-config", cfg], { env: b.env });
      await sleep(1500);
      await writeFor(app, 1000);
      await sleep(1500);
      await ls2.stop();
      const want = logicalHashOf(app.db);
      app.close();
      await restoreBoth(b, cfg, db, dir, want, "final");
    });
  });
}
