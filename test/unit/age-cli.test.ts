/**
 * `age:` through the built CLI on real SQLite files and file replicas: every way it fails closed
 * (each with its code, the key or object named, no key echoed, and nothing written in plaintext),
 * key rotation, the listings and validation on an encrypted replica. Interop with litestream v0.3.13
 * and S3 are in test/integration/age-interop.test.ts.
 */
import assert from "node:assert/strict";
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { generateHybridIdentity, generateX25519Identity, identityToRecipient } from "age-encryption";
import Database from "better-sqlite3";
import { integrityCheck, logicalHash, logicalHashOf } from "../helpers/sqlite.ts";
import { sleep, startReplicator, walship } from "../helpers/walship.ts";

const A = await generateX25519Identity();
const RA = await identityToRecipient(A);
const B = await generateX25519Identity();
const RB = await identityToRecipient(B);

let dir: string;
let seq = 0;

before(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), "walship-age-cli-"));
});
after(() => rmSync(dir, { recursive: true, force: true }));

function errorCode(stderr: string): string | undefined {
  return /\[(WALSHIP_ERR_[A-Z_]+)\]/.exec(stderr)?.[1];
}

/** A fresh database with a row that names it, and a replica directory beside it. */
function fresh(): { db: string; replica: string; app: Database.Database } {
  seq++;
  const sub = path.join(dir, `case${seq}`);
  mkdirSync(sub);
  const db = path.join(sub, "app.db");
  const app = new Database(db);
  app.pragma("journal_mode = wal");
  app.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)");
  app.prepare("INSERT INTO t (v) VALUES (?)").run(`SECRET-ROW-${seq}`);
  return { db, replica: path.join(sub, "replica"), app };
}

/** A config for `db` → file `replica`, with `age` as YAML lines under the replica (or none). */
function config(db: string, replica: string, age: string | undefined, extra = ""): string {
  seq++;
  const file = path.join(dir, `cfg${seq}.yml`);
  const ageBlock = age === undefined ? "" : `        age:\n${age.replace(/^/gm, "          ")}\n`;
  writeFileSync(
    file,
    `dbs:\n  - path: ${db}\n    replicas:\n      - name: backup\n        url: file://${replica}\n        sync-interval: 100ms\n${extra}${ageBlock}`,
  );
  return file;
}

const both = (ids: string[], rcpts: string[]) =>
  `identities: [${ids.map((k) => JSON.stringify(k)).join(", ")}]\nrecipients: [${rcpts.map((k) => JSON.stringify(k)).join(", ")}]`;

/** Every file under a directory, relative, sorted. */
function tree(d: string): string[] {
  if (!existsSync(d)) return [];
  return readdirSync(d, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => path.relative(d, path.join(e.parentPath, e.name)))
    .sort();
}

function assertNoKeys(out: string): void {
  for (const k of [A, B]) assert.ok(!out.includes(k.slice(20)), "a key was echoed");
}

/** `walship replicate` once (it syncs, then -exec true ends it). */
async function replicateOnce(cfg: string) {
  return walship(["replicate", "-config", cfg, "-exec", "true"]);
}

describe("age: fails closed at start", () => {
  const cases: Array<[string, string, RegExp]> = [
    ["recipients without identities", `recipients: ["${RA}"]`, /age: recipients without identities/],
    ["identities without recipients", `identities: ["${A}"]`, /age: identities without recipients/],
    ["a misspelled key", `identities: ["${A}"]\nrecipient: ["${RA}"]`, /age: unknown key "recipient"/],
    ["an empty block", "{}", /age: empty/],
    ["recipients that are no identity's", both([A], [RB]), /age: no recipient matches an identity/],
    [
      "an unset variable",
      `identities: ["$UNSET_AGE_IDENTITY"]\nrecipients: ["${RA}"]`,
      /age\.identities\[0\]: no age identity found/,
    ],
  ];
  for (const [what, age, re] of cases) {
    it(`${what}: a config error naming the key, no key echoed, nothing written`, async () => {
      const { db, replica, app } = fresh();
      app.close();
      const res = await replicateOnce(config(db, replica, age));
      assert.equal(res.code, 1, res.stderr);
      assert.equal(errorCode(res.stderr), "WALSHIP_ERR_CONFIG", res.stderr);
      assert.match(res.stderr, /dbs\[0\]\.replicas\[0\]\.age/);
      assert.match(res.stderr, re);
      assertNoKeys(res.stderr + res.stdout);
      assert.deepEqual(tree(replica), []);
      assert.deepEqual(
        readdirSync(path.dirname(db)).filter((f) => f.includes("litestream")),
        [],
        "replication never started",
      );
    });
  }

  it("a post-quantum key: refused with its line, as Litestream v0.3.13 cannot read it", async () => {
    const pq = await generateHybridIdentity();
    const { db, replica, app } = fresh();
    app.close();
    const res = await replicateOnce(config(db, replica, both([pq], [RA])));
    assert.equal(errorCode(res.stderr), "WALSHIP_ERR_CONFIG", res.stderr);
    assert.match(res.stderr, /age\.identities\[0\]: line 1 is a post-quantum age key/);
    assert.ok(!res.stderr.includes(pq.slice(20)));
    assert.deepEqual(tree(replica), []);
  });
});

describe("age: encrypted replicas", () => {
  it("stores nothing in plaintext, restores, lists and validates", async () => {
    const { db, replica, app } = fresh();
    const cfg = config(db, replica, both([A], [RA]), "        validation-interval: 1s\n");
    const rep = startReplicator(["-config", cfg]);
    for (let i = 0; i < 50; i++) {
      app.prepare("INSERT INTO t (v) VALUES (?)").run(`SECRET-ROW-more-${i}`);
      await sleep(40);
    }
    await sleep(2500);
    assert.equal(await rep.stop(), 0, rep.output());
    assert.match(rep.output(), /validator: ok/);
    assert.doesNotMatch(rep.output(), /validator: (invalid|could not)/);
    assertNoKeys(rep.output());
    const want = logicalHashOf(app);
    app.close();

    const files = tree(replica);
    assert.ok(files.some((f) => f.endsWith(".snapshot.lz4")) && files.some((f) => f.endsWith(".wal.lz4")));
    assert.ok(
      files.some((f) => f.startsWith("walship/")),
      "Walship's side objects are there",
    );
    for (const f of files) {
      const bytes = readFileSync(path.join(replica, f));
      assert.equal(bytes.subarray(0, 21).toString(), "age-encryption.org/v1", f);
      assert.equal(bytes.indexOf("SECRET-ROW"), -1, `${f} holds the database's contents`);
    }

    const out = path.join(path.dirname(db), "restored.db");
    const res = await walship(["restore", "-config", cfg, "-o", out, db]);
    assert.equal(res.code, 0, res.stderr);
    assert.equal(integrityCheck(out), "ok");
    assert.equal(logicalHash(out), want);
    for (const cmd of ["snapshots", "generations", "wal"]) {
      const l = await walship([cmd, "-config", cfg, "-json", db]);
      assert.equal(l.code, 0, `${cmd}: ${l.stderr}`);
      assert.ok((JSON.parse(l.stdout) as unknown[]).length > 0, `${cmd} lists nothing`);
    }
    const dbs = await walship(["databases", "-config", cfg]);
    assert.equal(dbs.code, 0, dbs.stderr);
    assert.match(dbs.stdout, /backup/);
  });

  it("a restart in the same generation reads back its own encrypted segment (Litestream stalls here with recipients only)", async () => {
    const { db, replica, app } = fresh();
    const cfg = config(db, replica, both([A], [RA]));
    const first = startReplicator(["-config", cfg]);
    for (let i = 0; i < 20; i++) {
      app.prepare("INSERT INTO t (v) VALUES (?)").run(`before restart ${i}`);
      await sleep(30);
    }
    await sleep(500);
    assert.equal(await first.stop(), 0, first.output());
    const second = startReplicator(["-config", cfg]);
    await sleep(800);
    for (let i = 0; i < 20; i++) {
      app.prepare("INSERT INTO t (v) VALUES (?)").run(`after restart ${i}`);
      await sleep(30);
    }
    await sleep(800);
    assert.equal(await second.stop(), 0, second.output());
    assert.doesNotMatch(second.output(), /new generation/);
    // Its position came from the last segment, decrypted: an offset past the snapshot's start.
    assert.match(second.output(), /"msg":"replica position"/);
    assert.doesNotMatch(second.output(), /"position":"[0-9a-f]{16}\/[0-9a-f]{8}:0"/);
    assert.doesNotMatch(second.output(), /"level":"error"/);
    const want = logicalHashOf(app);
    app.close();
    const out = path.join(path.dirname(db), "restored.db");
    const res = await walship(["restore", "-config", cfg, "-o", out, db]);
    assert.equal(res.code, 0, res.stderr);
    assert.equal(logicalHash(out), want);
  });

  it("restoring it without age keys, by config or URL, or with another key: ENCRYPTION naming the object, no output", async () => {
    const { db, replica, app } = fresh();
    app.close();
    const cfg = config(db, replica, both([A], [RA]));
    assert.equal((await replicateOnce(cfg)).code, 0);
    const out = path.join(path.dirname(db), "never.db");
    const attempts = [
      ["-config", config(db, replica, undefined), db],
      [`file://${replica}`],
      ["-config", config(db, replica, `identities: ["${B}"]`), db],
    ];
    // The first object a restore opens is Walship's record of the snapshot (sealed like the
    // snapshot); without those records (as Litestream writes a replica), the snapshot itself.
    const record = `${replica}/walship/generations/[0-9a-f]{16}/snapshots/[0-9a-f]{8}\\.json`;
    const snapshot = `${replica}/generations/[0-9a-f]{16}/snapshots/[0-9a-f]{8}\\.snapshot\\.lz4`;
    for (const [named, prepare] of [
      [record, () => {}],
      [snapshot, () => rmSync(path.join(replica, "walship"), { recursive: true })],
    ] as const) {
      prepare();
      for (const args of attempts) {
        const res = await walship(["restore", "-o", out, ...args]);
        assert.equal(res.code, 1, res.stderr);
        assert.equal(errorCode(res.stderr), "WALSHIP_ERR_ENCRYPTION", res.stderr);
        assert.match(
          res.stderr,
          new RegExp(
            `${named}: (an age-encrypted object, and the replica has no age keys|no configured age identity opens this object)`,
          ),
        );
        assert.ok(!existsSync(out), "no database was written");
        assertNoKeys(res.stderr);
      }
    }
  });

  it("a plaintext object in an encrypted replica: restore fails naming it", async () => {
    const plain = fresh();
    plain.app.close();
    assert.equal((await replicateOnce(config(plain.db, plain.replica, undefined))).code, 0);
    const enc = fresh();
    enc.app.close();
    const cfg = config(enc.db, enc.replica, both([A], [RA]));
    assert.equal((await replicateOnce(cfg)).code, 0);
    // Put the plaintext snapshot in place of the encrypted one.
    const snap = tree(enc.replica).find((f) => f.endsWith(".snapshot.lz4")) as string;
    const plainSnap = tree(plain.replica).find((f) => f.endsWith(".snapshot.lz4")) as string;
    copyFileSync(path.join(plain.replica, plainSnap), path.join(enc.replica, snap));
    const out = path.join(path.dirname(enc.db), "never.db");
    const res = await walship(["restore", "-config", cfg, "-o", out, enc.db]);
    assert.equal(errorCode(res.stderr), "WALSHIP_ERR_ENCRYPTION", res.stderr);
    assert.ok(
      res.stderr.includes(`${enc.replica}/${snap}: a plaintext object in a replica configured with age`),
      res.stderr,
    );
    assert.ok(!existsSync(out));
  });

  it("a path holding plaintext generations: refused unless allowed, then a new encrypted generation beside them", async () => {
    const { db, replica, app } = fresh();
    assert.equal((await replicateOnce(config(db, replica, undefined))).code, 0);
    const before = tree(replica);
    const refused = await replicateOnce(config(db, replica, both([A], [RA])));
    assert.equal(refused.code, 1, refused.stderr);
    assert.equal(errorCode(refused.stderr), "WALSHIP_ERR_ENCRYPTION", refused.stderr);
    assert.match(refused.stderr, /holds plaintext generations .*allow-plaintext-generations/);
    assert.deepEqual(tree(replica), before, "nothing was written");

    const cfg = config(db, replica, `${both([A], [RA])}\nallow-plaintext-generations: true`);
    app.prepare("INSERT INTO t (v) VALUES ('after the switch')").run();
    const want = logicalHashOf(app);
    app.close();
    const ok = await replicateOnce(cfg);
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout + ok.stderr, /a new generation starts/);
    const gens = JSON.parse(
      (await walship(["generations", "-config", cfg, "-json", db])).stdout,
    ) as unknown[];
    assert.equal(gens.length, 2);
    for (const f of before) assert.ok(tree(replica).includes(f), `${f} was kept`);
    const out = path.join(path.dirname(db), "restored.db");
    const res = await walship(["restore", "-config", cfg, "-o", out, db]);
    assert.equal(res.code, 0, res.stderr);
    assert.equal(logicalHash(out), want);
  });

  it("a plaintext replica on a path holding encrypted generations refuses to start", async () => {
    const { db, replica, app } = fresh();
    app.close();
    assert.equal((await replicateOnce(config(db, replica, both([A], [RA])))).code, 0);
    const before = tree(replica);
    const other = fresh();
    other.app.close();
    const res = await replicateOnce(config(other.db, replica, undefined));
    assert.equal(res.code, 1, res.stderr);
    assert.equal(errorCode(res.stderr), "WALSHIP_ERR_ENCRYPTION", res.stderr);
    assert.match(res.stderr, /holds age-encrypted generations .*no age keys are configured/);
    assert.deepEqual(tree(replica), before);
  });

  it("key rotation: add the new identity, send to the new recipient; old and new backups restore", async () => {
    const { db, replica, app } = fresh();
    const first = config(db, replica, both([A], [RA]));
    assert.equal((await replicateOnce(first)).code, 0);
    const generations = async (cfg: string) =>
      (
        JSON.parse((await walship(["generations", "-config", cfg, "-json", db])).stdout) as Array<{
          generation: string;
        }>
      ).map((g) => g.generation);
    const [old] = await generations(first);
    const rotated = config(db, replica, both([A, B], [RB]));
    app.prepare("INSERT INTO t (v) VALUES ('after rotation')").run();
    const want = logicalHashOf(app);
    app.close();
    assert.equal((await replicateOnce(rotated)).code, 0);
    const out = (name: string) => path.join(path.dirname(db), `${name}.db`);
    const res = await walship(["restore", "-config", rotated, "-o", out("latest"), db]);
    assert.equal(res.code, 0, res.stderr);
    assert.equal(logicalHash(out("latest")), want);
    // Every generation, the one from before the rotation included, restores with both identities.
    for (const g of await generations(rotated)) {
      const r = await walship(["restore", "-config", rotated, "-generation", g, "-o", out(g), db]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(integrityCheck(out(g)), "ok");
    }
    // The old key alone cannot open what was written after; the new key alone not what was before.
    const onlyA = await walship([
      "restore",
      "-config",
      config(db, replica, `identities: ["${A}"]`),
      "-o",
      out("a"),
      db,
    ]);
    assert.equal(errorCode(onlyA.stderr), "WALSHIP_ERR_ENCRYPTION", onlyA.stderr);
    const onlyB = await walship([
      "restore",
      "-config",
      config(db, replica, `identities: ["${B}"]`),
      "-generation",
      old as string,
      "-o",
      out("b"),
      db,
    ]);
    assert.equal(errorCode(onlyB.stderr), "WALSHIP_ERR_ENCRYPTION", onlyB.stderr);
    // The first object it opens: Walship's record of the old generation's snapshot.
    assert.match(
      onlyB.stderr,
      /\/walship\/generations\/[0-9a-f]{16}\/snapshots\/[0-9a-f]{8}\.json: no configured age identity opens this object/,
    );
  });
});
