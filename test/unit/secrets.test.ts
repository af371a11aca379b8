// biome-ignore-all lint/suspicious/noTemplateCurlyInString: the strings are litestream.yml text, where ${VAR} is an env reference
/**
 * Secrets never pass through config text (issue 13): environment expansion applies to each parsed
 * value, so a hostile value cannot add keys (the issue's reproduction: `x'`, a newline, then
 * `exec: touch FILE` made `walship replicate` run `touch`); credentials lose a trailing newline;
 * errors and warnings never quote a value from the environment nor a URL's password; S3 keys can be
 * files, read when signing and re-read, so a rotated Secret reaches a running replicator.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import Database from "better-sqlite3";
import { parseConfig } from "../../src/replicator/config.ts";
import { fileKeyProvider } from "../../src/replicator/storage/credential-file.ts";
import { S3ReplicaClient } from "../../src/replicator/storage/s3-sdk.ts";
import { ErrorCodes, WalshipError } from "../../src/shared/errors.ts";
import { type Minio, startMinio } from "../helpers/minio.ts";
import { freePort } from "../helpers/ports.ts";
import { sleep, WALSHIP } from "../helpers/walship.ts";

let dir: string;
before(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), "walship-secrets-"));
});
after(() => rmSync(dir, { recursive: true, force: true }));

const parse = (text: string, env: NodeJS.ProcessEnv) => parseConfig(text, { env, cwd: "/w", homedir: "/h" });
const s3Replica = (keys: string) =>
  `dbs:\n  - path: /data/app.db\n    replicas:\n      - type: s3\n        bucket: b\n        endpoint: http://127.0.0.1:1\n${keys}`;

function configError(fn: () => unknown): WalshipError {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof WalshipError, String(err));
    assert.equal(err.code, ErrorCodes.CONFIG);
    return err;
  }
  assert.fail("expected a config error");
}

describe("environment expansion is per value", () => {
  const injected = (file: string) => `x'\nexec: touch ${file}\n#`;

  it("a value with a quote, a newline and `exec:` stays one value and adds no key", () => {
    for (const quoting of ["'${S}'", '"${S}"', "${S}"]) {
      const c = parse(s3Replica(`        access-key-id: id\n        secret-access-key: ${quoting}\n`), {
        S: injected("/tmp/x"),
      });
      assert.equal(c.exec, undefined, quoting);
      assert.equal(c.dbs[0]!.replicas[0]!.s3!.secretAccessKey, "x'\nexec: touch /tmp/x\n#", quoting);
    }
  });

  it("a trailing newline is dropped from credentials (a Secret made from a file)", () => {
    const c = parse(s3Replica("        access-key-id: '${A}'\n        secret-access-key: ${S}\n"), {
      A: "AKIA\n",
      S: "s3cret\r\n",
    });
    assert.equal(c.dbs[0]!.replicas[0]!.s3!.accessKeyId, "AKIA");
    assert.equal(c.dbs[0]!.replicas[0]!.s3!.secretAccessKey, "s3cret");
  });

  it("an empty expansion is 'not set', as in Litestream; keys and other values still work", () => {
    const c = parse("dbs:\n  - path: $DIR/app.db\n    monitor-interval: ${UNSET}\n", { DIR: "/srv" });
    assert.equal(c.dbs[0]!.path, "/srv/app.db");
    // Not set: the config leaves it unset and the Db takes Litestream's default (1 s).
    assert.equal(c.dbs[0]!.monitorIntervalMs, undefined);
  });

  it("errors and warnings never quote a value from the environment", () => {
    const secret = "hunter2-very-secret";
    for (const [text, key] of [
      [s3Replica("        skip-verify: ${S}\n"), "dbs[0].replicas[0].skip-verify"],
      ["dbs:\n  - path: /a\n    monitor-interval: ${S}\n", "dbs[0].monitor-interval"],
      ["dbs:\n  - path: /a\n    replicas:\n      - url: ${S}\n", "dbs[0].replicas[0].url"],
      ["addr: ${S}\n", "addr"],
    ] as const) {
      const err = configError(() => parse(text, { S: secret }));
      assert.equal(err.details.path, key);
      assert.ok(!err.message.includes(secret), err.message);
      assert.match(err.message, /a value from the environment/);
    }
    const w = parse("dbs:\n  - path: /a\n    replicas:\n      - path: /r\n        sync-interval: ${S}\n", {
      S: "123456789",
    }).warnings;
    assert.equal(w.length, 1);
    assert.ok(!w[0]!.includes("123456789"), w[0]);
  });

  it("a URL's password is never quoted, in a message or in details", () => {
    const err = configError(() =>
      parse("dbs:\n  - path: /a\n    replicas:\n      - url: 'sftp://me:pa55word@host/%E0%A4%A'\n", {}),
    );
    assert.ok(!err.message.includes("pa55word"), err.message);
    assert.match(err.message, /sftp:\/\/me:\(password\)@/);
  });

  it("a YAML syntax error does not quote the line that holds a value", () => {
    const err = configError(() =>
      parse(
        "dbs:\n  - path: /a\n    replicas:\n      - secret-access-key: lit3ral-s3cret\n     bad: [\n",
        {},
      ),
    );
    assert.ok(!err.message.includes("lit3ral-s3cret"), err.message);
  });
});

describe("S3 keys from files", () => {
  it("access-key-id-file and secret-access-key-file: both, absolute, not with the keys", () => {
    const c = parse(
      s3Replica("        access-key-id-file: keys/id\n        secret-access-key-file: /k/secret\n"),
      {},
    );
    const s3 = c.dbs[0]!.replicas[0]!.s3!;
    assert.equal(s3.accessKeyIdFile, "/w/keys/id");
    assert.equal(s3.secretAccessKeyFile, "/k/secret");
    assert.equal(s3.accessKeyId, undefined);
    assert.equal(
      configError(() => parse(s3Replica("        access-key-id-file: /k/id\n"), {})).details.path,
      "dbs[0].replicas[0].secret-access-key-file",
    );
    assert.equal(
      configError(() =>
        parse(
          s3Replica(
            "        access-key-id: a\n        access-key-id-file: /k/id\n        secret-access-key-file: /k/s\n",
          ),
          {},
        ),
      ).details.path,
      "dbs[0].replicas[0].access-key-id-file",
    );
  });

  it("the provider trims the newline, re-reads after its refresh, and names the file, not its content", async () => {
    const id = path.join(dir, "id");
    const secret = path.join(dir, "secret");
    writeFileSync(id, "AKIA1\n");
    writeFileSync(secret, "s1\n");
    const get = fileKeyProvider({ accessKeyIdFile: id, secretAccessKeyFile: secret }, 100);
    const first = await get();
    assert.deepEqual([first.accessKeyId, first.secretAccessKey], ["AKIA1", "s1"]);
    assert.ok(first.expiration.getTime() <= Date.now(), "expired at once: the SDK asks for every request");
    writeFileSync(secret, "s2\n");
    assert.equal((await get()).secretAccessKey, "s1", "cached within the refresh");
    await sleep(150);
    assert.equal((await get()).secretAccessKey, "s2", "re-read after the refresh");
    rmSync(secret);
    await sleep(150);
    await assert.rejects(get(), (err: WalshipError) => {
      assert.equal(err.code, ErrorCodes.CONFIG);
      assert.match(err.message, new RegExp(`secret-access-key-file ${secret}: ENOENT`));
      return true;
    });
  });
});

describe("a rotated key file reaches a running S3 client (real MinIO)", () => {
  let minio: Minio;
  before(async () => {
    minio = await startMinio();
  });
  after(async () => {
    await minio?.close();
  });

  it("a wrong key fails; once the file holds the right one, the same client works", async () => {
    await minio.createBucket("rotate");
    const id = path.join(dir, "rot-id");
    const secret = path.join(dir, "rot-secret");
    writeFileSync(id, `${minio.accessKeyId}\n`);
    writeFileSync(secret, "not-the-secret\n");
    const client = new S3ReplicaClient(
      {
        bucket: "rotate",
        path: "p",
        endpoint: minio.endpoint,
        region: minio.region,
        forcePathStyle: true,
        skipVerify: false,
        accessKeyIdFile: id,
        secretAccessKeyFile: secret,
      },
      { maxAttempts: 1, credentialRefreshMs: 100 },
    );
    try {
      await assert.rejects(client.generations(), (err: WalshipError) => {
        assert.equal(err.code, ErrorCodes.STORAGE);
        assert.match(err.message, /SignatureDoesNotMatch/);
        assert.ok(!err.message.includes("not-the-secret"));
        return true;
      });
      writeFileSync(secret, `${minio.secretAccessKey}\n`);
      await sleep(150);
      assert.deepEqual(await client.generations(), []);
    } finally {
      client.close();
    }
  });
});

describe("the issue's reproduction, with the CLI", () => {
  it("walship replicate with a hostile credential runs no injected command and never prints it", async () => {
    const db = path.join(dir, "app.db");
    const conn = new Database(db);
    conn.pragma("journal_mode = wal");
    conn.exec("CREATE TABLE t (x)");
    conn.close();
    const marker = path.join(dir, "injected");
    const port = await freePort(); // nothing listens there: the destination is down
    const cfg = path.join(dir, "hostile.yml");
    writeFileSync(
      cfg,
      `dbs:\n  - path: ${db}\n    replicas:\n      - type: s3\n        bucket: bkt\n        endpoint: http://127.0.0.1:${port}\n` +
        "        access-key-id: '${KEY_ID}'\n        secret-access-key: '${KEY_SECRET}'\n",
    );
    const hostile = `x'\nexec: touch ${marker}\n#`;
    const child = spawn(WALSHIP, ["replicate", "-config", cfg], {
      env: { ...process.env, AWS_EC2_METADATA_DISABLED: "true", KEY_ID: "id", KEY_SECRET: hostile },
      stdio: ["ignore", "pipe", "pipe"],
    });
    const exited = once(child, "exit");
    let out = "";
    child.stdout.on("data", (d: Buffer) => {
      out += d.toString();
    });
    child.stderr.on("data", (d: Buffer) => {
      out += d.toString();
    });
    await sleep(3000);
    child.kill("SIGTERM");
    await exited;
    assert.ok(!existsSync(marker), `the injected exec ran: ${out}`);
    assert.match(out, /replicating to/);
    assert.ok(!out.includes(`touch ${marker}`), out);
  });
});
