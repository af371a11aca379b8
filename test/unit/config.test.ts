// biome-ignore-all lint/suspicious/noTemplateCurlyInString: the strings are litestream.yml text, where ${VAR} is an env reference
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import {
  applyEnvCredentials,
  type Config,
  configFromArgs,
  DEFAULT_CONFIG_PATH,
  defaultConfigPath,
  expandEnvText,
  findDb,
  isUrl,
  loadConfig,
  parseConfig,
  parseS3Host,
  type ReplicaConfig,
  replicaFromUrl,
} from "../../src/replicator/config.ts";
import { Db } from "../../src/replicator/db.ts";
import { Replica } from "../../src/replicator/replica.ts";
import { FileReplicaClient } from "../../src/replicator/storage/file.ts";
import { formatGoDuration, parseGoDuration } from "../../src/shared/duration.ts";
import { ErrorCodes, WalshipError } from "../../src/shared/errors.ts";
import { assertCode } from "../helpers/assert.ts";

const FIXTURES = path.join(path.dirname(fileURLToPath(import.meta.url)), "..", "fixtures", "config");
const H = 3600_000;

async function fixture(name: string): Promise<string> {
  return readFile(path.join(FIXTURES, name), "utf8");
}

function indent(text: string, n: number): string {
  const pad = " ".repeat(n);
  return text
    .split("\n")
    .map((l) => (l === "" ? l : pad + l))
    .join("\n");
}

/** Places db-level keys (e.g. a `replicas:` list) inside one `dbs[]` entry. */
function inDb(fragment: string, dbPath = "/data/app.db"): string {
  return `dbs:\n  - path: ${dbPath}\n${indent(fragment, 4)}\n`;
}

/** Places replica-level keys inside the only replica of one database, after `base` lines. */
function inReplica(fragment: string, base: string[] = []): string {
  return `dbs:\n  - path: /data/app.db\n    replicas:\n      -\n${indent([...base, fragment].join("\n"), 8)}\n`;
}

function parse(text: string, env: NodeJS.ProcessEnv = {}): Config {
  return parseConfig(text, { env, cwd: "/work", homedir: "/home/me" });
}

function onlyReplica(c: Config): ReplicaConfig {
  assert.equal(c.dbs.length, 1);
  assert.equal(c.dbs[0]!.replicas.length, 1);
  return c.dbs[0]!.replicas[0]!;
}

/** Asserts a CONFIG error whose details.path is `key`. */
function throwsConfig(fn: () => unknown, key: string): void {
  assertCode(fn, ErrorCodes.CONFIG, { path: key });
}

/**
 * What a replica the file gives no intervals gets from the config: nothing. The Replica fills in its
 * own defaults (replica.ts; see "defaults live with their owners" below).
 */
const REPLICA_DEFAULTS = {};

describe("context configs (test/fixtures/config)", () => {
  it("000 cacmin: the sftp `replica:` block as written, at top level, is an unknown key", async () => {
    const c = parse(await fixture("000-cacmin-sftp-replica.fragment.yml"));
    assert.deepEqual(c.dbs, []);
    assert.deepEqual(c.warnings, ["replica: unknown key, ignored"]);
  });

  it("000 cacmin: the `replica:` block inside its dbs entry gives one sftp replica", async () => {
    const text = inDb(await fixture("000-cacmin-sftp-replica.fragment.yml"), "/opt/cacmin-bot/data/bot.db");
    const c = parse(text);
    assert.equal(c.dbs[0]!.path, "/opt/cacmin-bot/data/bot.db");
    assert.deepEqual(onlyReplica(c), {
      name: "sftp",
      type: "sftp",
      ...REPLICA_DEFAULTS,
      sftp: {
        host: "PROXMOX_HOST_IP:2222",
        user: "litestream",
        keyPath: "/etc/litestream/id_ed25519",
        path: "/cacmin-bot",
      },
    });
    assert.deepEqual(c.warnings, []);
  });

  it("001 hetzner: production values", async () => {
    const text = inReplica(await fixture("001-hetzner-production-values.fragment.yml"), [
      "type: s3",
      "bucket: postgres-1-backup",
    ]);
    const r = onlyReplica(parse(text));
    assert.equal(r.syncIntervalMs, 10_000);
    assert.equal(r.snapshotIntervalMs, H);
    assert.equal(r.retentionMs, 168 * H);
    assert.equal(r.retentionCheckIntervalMs, undefined);
    assert.equal(r.validationIntervalMs, undefined);
  });

  it("001 hetzner: development values", async () => {
    const text = inReplica(await fixture("001-hetzner-development-values.fragment.yml"), [
      "type: s3",
      "bucket: postgres-1-backup",
    ]);
    const r = onlyReplica(parse(text));
    assert.equal(r.syncIntervalMs, 30_000);
    assert.equal(r.snapshotIntervalMs, 6 * H);
    assert.equal(r.retentionMs, 72 * H);
  });

  it("001 hetzner: the encryption block as written has no bucket, an error naming the key", async () => {
    const text = inDb(await fixture("001-hetzner-encryption.fragment.yml"));
    throwsConfig(() => parse(text), "dbs[0].replicas[0].bucket");
  });

  it("001 hetzner (reconstructed): bucket-prefixed endpoint kept as written, region from the host, warned", async () => {
    const env = { HETZNER_ACCESS_KEY_ID: "HKEY", HETZNER_SECRET_ACCESS_KEY: "HSECRET" };
    const c = parse(await fixture("001-hetzner.reconstructed.yml"), env);
    assert.equal(c.dbs[0]!.path, "/root/yral-ai-chat/data/yral_chat.db");
    const r = onlyReplica(c);
    assert.deepEqual(r, {
      name: "s3",
      type: "s3",
      syncIntervalMs: 10_000,
      snapshotIntervalMs: H,
      retentionMs: 168 * H,
      s3: {
        bucket: "postgres-1-backup",
        path: "yral-ai-chat/db",
        endpoint: "https://postgres-1-backup.hel1.your-objectstorage.com",
        region: "hel1",
        forcePathStyle: true,
        skipVerify: false,
        accessKeyId: "HKEY",
        secretAccessKey: "HSECRET",
      },
    });
    assert.equal(c.warnings.length, 1);
    assert.match(c.warnings[0]!, /^dbs\[0\]\.replicas\[0\]\.endpoint: /);
  });

  it("002 nebulagc AWS S3: global keys from ${AWS_*} inherited by the url-form replica", async () => {
    const env = { AWS_ACCESS_KEY_ID: "AKIAEXAMPLE", AWS_SECRET_ACCESS_KEY: "secret/example" };
    const c = parse(await fixture("002-nebulagc-aws-s3.yml"), env);
    assert.equal(c.dbs[0]!.path, "/var/lib/nebulagc-server/nebulagc.db");
    assert.deepEqual(onlyReplica(c), {
      name: "s3",
      type: "s3",
      ...REPLICA_DEFAULTS,
      s3: {
        bucket: "my-bucket",
        path: "nebulagc/db",
        region: "us-east-1",
        forcePathStyle: false,
        skipVerify: false,
        accessKeyId: "AKIAEXAMPLE",
        secretAccessKey: "secret/example",
      },
    });
    assert.deepEqual(c.warnings, []);
  });

  it("002 nebulagc AWS S3 without the env vars: keys empty, so the default credential chain", async () => {
    const r = onlyReplica(parse(await fixture("002-nebulagc-aws-s3.yml"), {}));
    assert.equal(r.s3!.accessKeyId, undefined);
    assert.equal(r.s3!.secretAccessKey, undefined);
  });

  it("002 nebulagc GCS", async () => {
    const r = onlyReplica(parse(await fixture("002-nebulagc-gcs.yml")));
    assert.deepEqual(r, {
      name: "gcs",
      type: "gcs",
      ...REPLICA_DEFAULTS,
      gcs: { bucket: "my-bucket", path: "nebulagc/db" },
    });
  });

  it("002 nebulagc Azure: abs://account/container is read as container=account, warned (no account)", async () => {
    const c = parse(await fixture("002-nebulagc-azure.yml"), { LITESTREAM_AZURE_ACCOUNT_KEY: "k3y==" });
    assert.deepEqual(onlyReplica(c), {
      name: "abs",
      type: "abs",
      ...REPLICA_DEFAULTS,
      abs: { bucket: "my-account", path: "my-container/nebulagc/db", accountKey: "k3y==" },
    });
    assert.equal(c.warnings.length, 1);
    assert.match(c.warnings[0]!, /^dbs\[0\]\.replicas\[0\]\.url: abs replica has no account name/);
  });

  it("002 nebulagc MinIO: url plus endpoint, region and path style", async () => {
    const r = onlyReplica(parse(await fixture("002-nebulagc-minio.yml")));
    assert.deepEqual(r.s3, {
      bucket: "my-bucket",
      path: "nebulagc/db",
      endpoint: "https://minio.example.com:9000",
      region: "us-east-1",
      forcePathStyle: true,
      skipVerify: false,
    });
  });

  it("002 nebulagc local file", async () => {
    const r = onlyReplica(parse(await fixture("002-nebulagc-file.yml")));
    assert.deepEqual(r, {
      name: "file",
      type: "file",
      ...REPLICA_DEFAULTS,
      file: { path: "/backup/nebulagc/db" },
    });
  });

  it("002 nebulagc ConfigMap litestream.yml", async () => {
    const c = parse(await fixture("002-nebulagc-configmap.yml"));
    assert.equal(c.dbs[0]!.path, "/var/lib/nebulagc-server/nebulagc.db");
    assert.deepEqual(onlyReplica(c).s3, {
      bucket: "my-bucket",
      path: "nebulagc/db",
      region: "us-east-1",
      forcePathStyle: false,
      skipVerify: false,
    });
  });

  it("002 nebulagc reducing lag: sync-interval 500ms", async () => {
    const r = onlyReplica(parse(await fixture("002-nebulagc-reduce-lag.yml")));
    assert.equal(r.syncIntervalMs, 500);
    assert.equal(r.s3!.bucket, "my-bucket");
    assert.equal(r.s3!.region, undefined);
  });

  it("002 nebulagc retention fragment", async () => {
    const r = onlyReplica(
      parse(inReplica(await fixture("002-nebulagc-retention.fragment.yml"), ["url: s3://b/db"])),
    );
    assert.equal(r.retentionMs, 168 * H);
    assert.equal(r.retentionCheckIntervalMs, H);
  });

  it("002 nebulagc multiple replicas as written: accepted, the second unnamed s3 replica named s3-2", async () => {
    const text = inDb(await fixture("002-nebulagc-multiple-replicas.fragment.yml"));
    const c = parse(text);
    const [us, eu] = c.dbs[0]!.replicas;
    assert.equal(us!.name, "s3");
    assert.equal(us!.s3!.bucket, "us-bucket");
    assert.equal(eu!.name, "s3-2");
    assert.equal(eu!.s3!.bucket, "eu-bucket");
    assert.equal(eu!.s3!.region, "eu-west-1");
    assert.ok(
      c.warnings.some((w) => w.startsWith("dbs[0].replicas[1].name: no name given")),
      c.warnings.join("\n"),
    );
  });

  it("explicit duplicate replica names are still an error naming the key", () => {
    const text =
      "dbs:\n  - path: /d/a.db\n    replicas:\n      - name: x\n        url: s3://a/p\n      - name: x\n        url: s3://b/p\n";
    throwsConfig(() => parse(text), "dbs[0].replicas[1].name");
  });

  it("002 nebulagc snapshot-interval and validation-interval fragments", async () => {
    const snap = onlyReplica(
      parse(inReplica(await fixture("002-nebulagc-snapshot-interval.fragment.yml"), ["url: s3://b/db"])),
    );
    assert.equal(snap.snapshotIntervalMs, 6 * H);
    const val = onlyReplica(
      parse(inReplica(await fixture("002-nebulagc-validation.fragment.yml"), ["url: s3://b/db"])),
    );
    assert.equal(val.validationIntervalMs, 24 * H);
  });

  it("003 schedx: scheme-less AWS endpoint gets https://, keys from ${LITESTREAM_*}", async () => {
    const env = { LITESTREAM_ACCESS_KEY_ID: "LKEY", LITESTREAM_SECRET_ACCESS_KEY: "LSECRET" };
    const c = parse(await fixture("003-schedx-s3.yml"), env);
    assert.equal(c.dbs[0]!.path, "/data/schedx.db");
    assert.deepEqual(onlyReplica(c), {
      name: "s3",
      type: "s3",
      retentionMs: 720 * H,
      s3: {
        bucket: "your-bucket-name",
        path: "schedx/backups",
        endpoint: "https://s3.us-west-2.amazonaws.com",
        region: "us-west-2",
        forcePathStyle: true,
        skipVerify: false,
        accessKeyId: "LKEY",
        secretAccessKey: "LSECRET",
      },
    });
    assert.deepEqual(c.warnings, []);
  });

  it("004 logans3d: two databases sharing one bucket", async () => {
    const c = parse(await fixture("004-logans3d-spaces-multi-db.yml"));
    assert.deepEqual(
      c.dbs.map((d) => [d.path, d.replicas.map((r) => [r.name, r.s3?.bucket, r.s3?.path, r.s3?.endpoint])]),
      [
        [
          "/home/apprunner/sites/logans3d/data/database.db",
          [["s3", "digital-drywood", "logans3d-production", undefined]],
        ],
        [
          "/home/apprunner/sites/other-app/data/database.db",
          [["s3", "digital-drywood", "other-app-production", undefined]],
        ],
      ],
    );
    assert.equal(c.dbs[1]!.replicas[0]!.s3!.forcePathStyle, false);
  });

  it("004 logans3d (reconstructed): DigitalOcean endpoint from env without scheme", async () => {
    const env = {
      DIGITALOCEAN_SPACES_ENDPOINT: "nyc3.digitaloceanspaces.com",
      DIGITALOCEAN_SPACES_REGION: "nyc3",
    };
    const r = onlyReplica(parse(await fixture("004-logans3d-spaces.reconstructed.yml"), env));
    assert.equal(r.syncIntervalMs, 10_000);
    assert.equal(r.snapshotIntervalMs, 24 * H);
    assert.equal(r.retentionMs, 168 * H);
    assert.deepEqual(r.s3, {
      bucket: "digital-drywood",
      path: "logans3d-production",
      endpoint: "https://nyc3.digitaloceanspaces.com",
      region: "nyc3",
      forcePathStyle: true,
      skipVerify: false,
    });
  });
});

describe("parseConfig rules", () => {
  it("an entry with only a path sets only the path: the Db and the Replica own their defaults", () => {
    const c = parse("dbs:\n  - path: /d/a.db\n");
    assert.deepEqual(c, {
      logging: { level: "info", type: "text", stderr: false },
      dbs: [{ path: "/d/a.db", replicas: [] }],
      warnings: [],
    });
  });

  it("an empty file is an empty config", () => {
    assert.deepEqual(parse("").dbs, []);
    assert.deepEqual(parse("# nothing\n").dbs, []);
  });

  it("every db and global key is read", () => {
    const c = parse(
      [
        "addr: 127.0.0.1:9090",
        "exec: ./server --port 8080",
        "shutdown-sync-timeout: 30s",
        "logging: { level: DEBUG, type: JSON, stderr: true }",
        "dbs:",
        "  - path: /d/a.db",
        "    meta-path: ~/meta",
        "    monitor-interval: 250ms",
        "    checkpoint-interval: 0s",
        "    busy-timeout: 5s",
        "    min-checkpoint-page-count: 10",
        "    max-checkpoint-page-count: 0",
        "    truncate-page-count: 0",
      ].join("\n"),
    );
    assert.equal(c.addr, "127.0.0.1:9090");
    assert.equal(c.exec, "./server --port 8080");
    assert.equal(c.shutdownSyncTimeoutMs, 30_000);
    assert.deepEqual(c.logging, { level: "debug", type: "json", stderr: true });
    assert.deepEqual(c.dbs[0], {
      path: "/d/a.db",
      metaPath: "/home/me/meta",
      monitorIntervalMs: 250,
      checkpointIntervalMs: 0,
      busyTimeoutMs: 5000,
      minCheckpointPageCount: 10,
      maxCheckpointPageCount: 0,
      truncatePageCount: 0,
      replicas: [],
    });
    assert.deepEqual(c.warnings, []);
  });

  describe("environment expansion", () => {
    it("expands $VAR and ${VAR} over the whole text; unset is empty", () => {
      const text = "dbs:\n  - path: $DIR/${NAME}.db\n    replicas:\n      - url: s3://${BUCKET}/p$UNSET\n";
      const c = parse(text, { DIR: "/srv", NAME: "app", BUCKET: "bk" });
      assert.equal(c.dbs[0]!.path, "/srv/app.db");
      assert.equal(c.dbs[0]!.replicas[0]!.s3!.bucket, "bk");
      assert.equal(c.dbs[0]!.replicas[0]!.s3!.path, "p");
    });

    it("expandEnv: false keeps the text", () => {
      const text = "dbs:\n  - path: /d.db\n    replicas:\n      - type: s3\n        bucket: ${BUCKET}\n";
      const c = parseConfig(text, { expandEnv: false, env: { BUCKET: "bk" } });
      assert.equal(c.dbs[0]!.replicas[0]!.s3!.bucket, "${BUCKET}");
    });

    it("follows Go's os.ExpandEnv on odd input", () => {
      const env = { A: "x", "1": "one" };
      assert.equal(expandEnvText("$A-${A}-$1", env), "x-x-one");
      assert.equal(expandEnvText("a$$b", env), "ab"); // $$ is the (unset) variable "$"
      assert.equal(expandEnvText("a$-b", env), "ab"); // so is $-
      assert.equal(expandEnvText("a${}b$", env), "ab$"); // "${}" dropped, a trailing $ kept
      assert.equal(expandEnvText("a$ b", env), "a$ b");
      assert.equal(expandEnvText("p@ss$word", {}), "p@ss");
      assert.equal(expandEnvText("${unterminated", {}), "unterminated");
    });
  });

  describe("replica forms", () => {
    it("type defaults to file", () => {
      const r = onlyReplica(parse(inReplica("path: ~/backups")));
      assert.equal(r.type, "file");
      assert.equal(r.name, "file");
      assert.equal(r.file!.path, "/home/me/backups");
    });

    it("the url scheme wins over type, with a warning", () => {
      const c = parse(inReplica("type: file\nurl: s3://bk/p"));
      assert.equal(onlyReplica(c).type, "s3");
      assert.deepEqual(c.warnings, ['dbs[0].replicas[0].type: type "file" ignored, the url scheme says s3']);
    });

    it("type is case-insensitive", () => {
      assert.equal(onlyReplica(parse(inReplica("type: S3\nbucket: b"))).type, "s3");
    });

    it("url and path together are an error", () => {
      throwsConfig(() => parse(inReplica("url: s3://bk/p\npath: other")), "dbs[0].replicas[0].url");
    });

    it("a path that is a URL is an error", () => {
      throwsConfig(() => parse(inReplica("path: s3://bk/p")), "dbs[0].replicas[0].path");
    });

    it("url and bucket together are an error", () => {
      throwsConfig(() => parse(inReplica("url: s3://bk/p\nbucket: other")), "dbs[0].replicas[0].bucket");
      throwsConfig(() => parse(inReplica("url: gcs://bk/p\nbucket: other")), "dbs[0].replicas[0].bucket");
    });

    it("a url without a scheme is an error", () => {
      throwsConfig(() => parse(inReplica("url: /backups")), "dbs[0].replicas[0].url");
    });

    it("unknown types are errors; gs:// is gcs:// (v0.3.13 refuses gs://, #336)", () => {
      throwsConfig(() => parse(inReplica("type: ftp")), "dbs[0].replicas[0].type");
      throwsConfig(() => parse(inReplica("url: ftp://bk/p")), "dbs[0].replicas[0].url");
      const r = parse(inReplica("url: gs://bk/p")).dbs[0]!.replicas[0]!;
      assert.equal(r.type, "gcs");
      assert.equal(r.name, "gcs");
      assert.deepEqual(r.gcs, { bucket: "bk", path: "p" });
    });

    it("name defaults to the type; duplicates in one db are an error", () => {
      const c = parse(
        inDb("replicas:\n  - url: s3://a/p\n  - url: s3://b/p\n    name: second\n  - path: /x"),
      );
      assert.deepEqual(
        c.dbs[0]!.replicas.map((r) => r.name),
        ["s3", "second", "file"],
      );
      throwsConfig(
        () => parse(inDb("replicas:\n  - path: /x\n    name: a\n  - path: /y\n    name: a")),
        "dbs[0].replicas[1].name",
      );
    });

    it("the same name in two databases is fine", () => {
      const c = parse(
        "dbs:\n  - path: /a.db\n    replicas: [{path: /x}]\n  - path: /b.db\n    replicas: [{path: /y}]\n",
      );
      assert.equal(c.dbs.length, 2);
    });

    it("`replica:` (v0.5 spelling) is one replica; with `replicas:` too it is an error", () => {
      const c = parse(inDb("replica:\n  url: s3://bk/p"));
      assert.equal(onlyReplica(c).s3!.bucket, "bk");
      throwsConfig(
        () => parse(inDb("replica:\n  url: s3://bk/p\nreplicas:\n  - path: /x")),
        "dbs[0].replica",
      );
    });

    it("file paths are ~-expanded and absolute, db paths too", () => {
      const c = parse(
        "dbs:\n  - path: data/app.db\n    replicas:\n      - path: ../bak\n      - url: file:///abs/x/\n        name: u\n",
      );
      assert.equal(c.dbs[0]!.path, "/work/data/app.db");
      assert.equal(c.dbs[0]!.replicas[0]!.file!.path, "/bak");
      assert.equal(c.dbs[0]!.replicas[1]!.file!.path, "/abs/x");
      assert.equal(parse("dbs:\n  - path: ~/app.db\n").dbs[0]!.path, "/home/me/app.db");
      assert.equal(parse("dbs:\n  - path: '~'\n").dbs[0]!.path, "/home/me");
    });

    it("a file replica needs a path", () => {
      throwsConfig(() => parse(inReplica("name: f")), "dbs[0].replicas[0].path");
    });

    it("age: Litestream's lists and Walship's files, strict where Litestream is lax, never quoting a key", () => {
      const identity = "AGE-SECRET-KEY-1QQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQ";
      const recipient = "age1qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqq";
      const r = onlyReplica(
        parse(
          inReplica(
            `path: /x\nage:\n  identities:\n    - |\n      # created\n      ${identity}\n  recipients: [${recipient}]\n  identity-files: [~/old.key]\n  allow-plaintext-generations: yes`,
          ),
        ),
      );
      assert.deepEqual(r.age, {
        identities: [`# created\n${identity}\n`],
        recipients: [recipient],
        identityFiles: ["/home/me/old.key"],
        recipientFiles: [],
        allowPlaintextGenerations: true,
      });
      assert.equal(onlyReplica(parse(inReplica("path: /x"))).age, undefined);
      // Litestream writes plaintext for each of these; Walship refuses them, naming the key.
      const cases: Array<[string, string, RegExp]> = [
        [inReplica("path: /x\nage: {}"), "dbs[0].replicas[0].age", /empty/],
        [inReplica("path: /x\nage:"), "dbs[0].replicas[0].age", /empty/],
        [inReplica("path: /x\nage: 5"), "dbs[0].replicas[0].age", /expected a mapping/],
        [
          inReplica(`path: /x\nage:\n  identities: [${identity}]\n  recipient: [${recipient}]`),
          "dbs[0].replicas[0].age",
          /unknown key "recipient" .*Litestream would ignore it and write plaintext/,
        ],
        [
          inDb(`replica:\n  url: s3://bk/p\n  age:\n    identities: ${identity}`),
          "dbs[0].replica.age.identities",
          /expected a list/,
        ],
      ];
      for (const [text, key, re] of cases) {
        throwsConfig(() => parse(text), key);
        assert.throws(
          () => parse(text),
          (err: Error) =>
            re.test(err.message) &&
            !err.message.includes("AGE-SECRET-KEY") &&
            !err.message.includes(recipient),
        );
      }
    });

    it("S3 server-side encryption keys, checked together", () => {
      const s3 = (extra: string) => inReplica(`url: s3://bk/p\n${extra}`);
      assert.deepEqual(onlyReplica(parse(s3("server-side-encryption: AES256"))).s3?.sse, {
        serverSideEncryption: "AES256",
      });
      assert.deepEqual(onlyReplica(parse(s3("sse-kms-key-id: alias/k"))).s3?.sse, { kmsKeyId: "alias/k" });
      assert.deepEqual(
        onlyReplica(parse(s3("sse-customer-key-path: ~/k\nsse-customer-algorithm: AES256"))).s3?.sse,
        {
          customerKeyPath: "/home/me/k",
        },
      );
      assert.equal(onlyReplica(parse(s3(""))).s3?.sse, undefined);
      throwsConfig(
        () => parse(s3("server-side-encryption: aes")),
        "dbs[0].replicas[0].server-side-encryption",
      );
      throwsConfig(
        () => parse(s3("sse-customer-algorithm: AES256")),
        "dbs[0].replicas[0].sse-customer-algorithm",
      );
      throwsConfig(() => parse(s3("sse-customer-key: short")), "dbs[0].replicas[0].sse-customer-key");
      throwsConfig(
        () => parse(s3("sse-customer-key-path: /k\nserver-side-encryption: AES256")),
        "dbs[0].replicas[0].sse-customer-key-path",
      );
      throwsConfig(
        () => parse(s3("endpoint: http://minio:9000\nsse-customer-key-path: /k")),
        "dbs[0].replicas[0].sse-customer-key-path",
      );
      assert.match(
        parse(inReplica("path: /x\nserver-side-encryption: AES256")).warnings.join("\n"),
        /server-side-encryption: not used by file replicas/,
      );
    });

    it("interval settings; 0 snapshot/validation means none, 0 retention disables it", () => {
      const r = onlyReplica(
        parse(
          inReplica(
            "path: /x\nsync-interval: 250ms\nsnapshot-interval: 0s\nvalidation-interval: 0\nretention: 0s\nretention-check-interval: 10m",
          ),
        ),
      );
      assert.equal(r.syncIntervalMs, 250);
      assert.equal(r.snapshotIntervalMs, undefined);
      assert.equal(r.validationIntervalMs, undefined);
      assert.equal(r.retentionMs, 0);
      assert.equal(r.retentionCheckIntervalMs, 600_000);
    });
  });

  describe("s3", () => {
    it("global access-key-id/secret-access-key are inherited only where the replica leaves them empty", () => {
      const text = [
        "access-key-id: GLOBAL",
        "secret-access-key: GSECRET",
        "dbs:",
        "  - path: /a.db",
        "    replicas:",
        "      - url: s3://one/p",
        "      - url: s3://two/p",
        "        name: own",
        "        access-key-id: OWN",
        "      - url: s3://three/p",
        "        name: empty",
        "        access-key-id: ${UNSET}",
      ].join("\n");
      const [a, b, c] = parse(text).dbs[0]!.replicas;
      assert.deepEqual([a!.s3!.accessKeyId, a!.s3!.secretAccessKey], ["GLOBAL", "GSECRET"]);
      assert.deepEqual([b!.s3!.accessKeyId, b!.s3!.secretAccessKey], ["OWN", "GSECRET"]);
      assert.deepEqual([c!.s3!.accessKeyId, c!.s3!.secretAccessKey], ["GLOBAL", "GSECRET"]);
    });

    it("an endpoint without a region gets us-east-1; without an endpoint the region stays unset", () => {
      const withEp = onlyReplica(parse(inReplica("type: s3\nbucket: b\nendpoint: http://127.0.0.1:9000")));
      assert.equal(withEp.s3!.region, "us-east-1");
      assert.equal(withEp.s3!.endpoint, "http://127.0.0.1:9000");
      const aws = onlyReplica(parse(inReplica("type: s3\nbucket: b")));
      assert.equal(aws.s3!.region, undefined);
      assert.equal(aws.s3!.endpoint, undefined);
    });

    it("an endpoint turns path style on; an explicit false turns it off", () => {
      const on = onlyReplica(parse(inReplica("type: s3\nbucket: b\nendpoint: https://minio:9000")));
      assert.equal(on.s3!.forcePathStyle, true);
      const off = onlyReplica(
        parse(inReplica("type: s3\nbucket: b\nendpoint: https://minio:9000\nforce-path-style: false")),
      );
      assert.equal(off.s3!.forcePathStyle, false);
      const aws = onlyReplica(parse(inReplica("type: s3\nbucket: b")));
      assert.equal(aws.s3!.forcePathStyle, false);
    });

    it("a URL-derived path-style 'on' wins over an explicit false", () => {
      const r = onlyReplica(
        parse(inReplica("url: s3://b.nyc3.digitaloceanspaces.com/p\nforce-path-style: false")),
      );
      assert.equal(r.s3!.forcePathStyle, true);
    });

    it("URL paths are cleaned without a leading /; YAML paths are used as written", () => {
      assert.equal(onlyReplica(parse(inReplica("url: s3://b//a/./c/../d/"))).s3!.path, "a/d");
      assert.equal(onlyReplica(parse(inReplica("url: s3://b"))).s3!.path, "");
      assert.equal(onlyReplica(parse(inReplica("url: s3://b/"))).s3!.path, "");
      assert.equal(
        onlyReplica(parse(inReplica("type: s3\nbucket: b\npath: /lead//x/"))).s3!.path,
        "/lead//x/",
      );
    });

    it("YAML region and endpoint win over the URL's", () => {
      const r = onlyReplica(
        parse(
          inReplica(
            "url: s3://b.nyc3.digitaloceanspaces.com/p\nregion: ams3\nendpoint: https://ams3.example",
          ),
        ),
      );
      assert.equal(r.s3!.region, "ams3");
      assert.equal(r.s3!.endpoint, "https://ams3.example");
    });

    it("provider endpoints users write: R2, Hetzner, DigitalOcean (with or without scheme)", () => {
      const cases: Array<[string, string, string]> = [
        [
          "https://0123456789abcdef0123456789abcdef.r2.cloudflarestorage.com",
          "auto",
          "https://0123456789abcdef0123456789abcdef.r2.cloudflarestorage.com",
        ],
        [
          "https://0123456789abcdef0123456789abcdef.eu.r2.cloudflarestorage.com",
          "auto",
          "https://0123456789abcdef0123456789abcdef.eu.r2.cloudflarestorage.com",
        ],
        ["https://fsn1.your-objectstorage.com", "fsn1", "https://fsn1.your-objectstorage.com"],
        ["nbg1.your-objectstorage.com", "nbg1", "https://nbg1.your-objectstorage.com"],
        ["https://sfo3.digitaloceanspaces.com", "sfo3", "https://sfo3.digitaloceanspaces.com"],
        ["ams3.digitaloceanspaces.com", "ams3", "https://ams3.digitaloceanspaces.com"],
        [
          "https://s3.eu-central-003.backblazeb2.com",
          "eu-central-003",
          "https://s3.eu-central-003.backblazeb2.com",
        ],
        ["https://minio.internal:9000", "us-east-1", "https://minio.internal:9000"],
      ];
      for (const [endpoint, region, normalized] of cases) {
        const c = parse(inReplica(`type: s3\nbucket: bk\nendpoint: ${endpoint}`));
        const r = onlyReplica(c);
        assert.deepEqual(
          [r.s3!.region, r.s3!.endpoint, r.s3!.forcePathStyle],
          [region, normalized, true],
          endpoint,
        );
        assert.deepEqual(c.warnings, [], endpoint);
      }
    });

    it("a bad endpoint is an error naming it", () => {
      throwsConfig(
        () => parse(inReplica("type: s3\nbucket: b\nendpoint: ftp://x")),
        "dbs[0].replicas[0].endpoint",
      );
      throwsConfig(
        () => parse(inReplica("type: s3\nbucket: b\nendpoint: 'http://'")),
        "dbs[0].replicas[0].endpoint",
      );
    });

    it("bucket is required", () => {
      throwsConfig(() => parse(inReplica("type: s3\npath: x")), "dbs[0].replicas[0].bucket");
      throwsConfig(() => parse(inReplica("url: s3://localhost:9000/p")), "dbs[0].replicas[0].url");
    });

    it("skip-verify and YAML 1.1 booleans", () => {
      const r = onlyReplica(parse(inReplica("type: s3\nbucket: b\nskip-verify: yes\nforce-path-style: On")));
      assert.equal(r.s3!.skipVerify, true);
      assert.equal(r.s3!.forcePathStyle, true);
      throwsConfig(
        () => parse(inReplica("type: s3\nbucket: b\nskip-verify: maybe")),
        "dbs[0].replicas[0].skip-verify",
      );
    });
  });

  describe("other backends", () => {
    it("gcs from YAML keys", () => {
      assert.deepEqual(onlyReplica(parse(inReplica("type: gcs\nbucket: g\npath: /x/y"))).gcs, {
        bucket: "g",
        path: "/x/y",
      });
      throwsConfig(() => parse(inReplica("type: gcs")), "dbs[0].replicas[0].bucket");
    });

    it("abs from YAML keys, account key from the env when unset", () => {
      const c = parse(
        inReplica(
          "type: abs\naccount-name: acct\nbucket: cont\npath: p\nendpoint: http://127.0.0.1:10000/acct",
        ),
        { LITESTREAM_AZURE_ACCOUNT_KEY: "envkey" },
      );
      assert.deepEqual(onlyReplica(c).abs, {
        accountName: "acct",
        accountKey: "envkey",
        bucket: "cont",
        path: "p",
        endpoint: "http://127.0.0.1:10000/acct",
      });
      const own = parse(inReplica("type: abs\naccount-name: acct\naccount-key: mine\nbucket: c"), {
        LITESTREAM_AZURE_ACCOUNT_KEY: "envkey",
      });
      assert.equal(onlyReplica(own).abs!.accountKey, "mine");
    });

    it("sftp from YAML keys; host and user are required; url and host together are an error", () => {
      const r = onlyReplica(
        parse(
          inReplica("type: sftp\nhost: h:2022\nuser: u\npassword: 0123\nkey-path: ~/.ssh/id\npath: rel/dir"),
        ),
      );
      assert.deepEqual(r.sftp, {
        host: "h:2022",
        user: "u",
        password: "0123",
        keyPath: "/home/me/.ssh/id",
        path: "rel/dir",
      });
      throwsConfig(() => parse(inReplica("type: sftp\nuser: u")), "dbs[0].replicas[0].host");
      throwsConfig(() => parse(inReplica("type: sftp\nhost: h")), "dbs[0].replicas[0].user");
      throwsConfig(() => parse(inReplica("url: sftp://u@h/p\nhost: h2")), "dbs[0].replicas[0].host");
    });
  });

  describe("checks that name the key", () => {
    it("bad durations", () => {
      const text = inDb("replicas:\n  - path: /x\n  - path: /y\n    name: y\n    sync-interval: 5x");
      throwsConfig(() => parse(text), "dbs[0].replicas[1].sync-interval");
      throwsConfig(() => parse(inReplica("path: /x\nretention: -1h")), "dbs[0].replicas[0].retention");
      throwsConfig(() => parse(inReplica("path: /x\nretention: 1.5")), "dbs[0].replicas[0].retention");
      throwsConfig(
        () => parse("dbs:\n  - path: /a\n    monitor-interval: fast\n"),
        "dbs[0].monitor-interval",
      );
      throwsConfig(() => parse("shutdown-sync-timeout: [1s]\n"), "shutdown-sync-timeout");
      throwsConfig(() => parse("claim-ttl: 500ms\n"), "claim-ttl");
      assert.equal(parse("claim-ttl: 0s\n").claimTtlMs, 0);
      assert.equal(parse("claim-ttl: 45s\n").claimTtlMs, 45_000);
    });

    it("the message names the file and the key path; details carry path, line and source", () => {
      const text =
        "dbs:\n  - path: /a.db\n    replicas:\n      - path: /x\n      - path: /y\n        name: y\n        sync-interval: 5x\n";
      assert.throws(
        () => parseConfig(text, { source: "/etc/litestream.yml" }),
        (err: unknown) => {
          assert.ok(err instanceof WalshipError);
          assert.equal(err.code, ErrorCodes.CONFIG);
          assert.deepEqual(err.details, {
            path: "dbs[0].replicas[1].sync-interval",
            line: 7,
            source: "/etc/litestream.yml",
          });
          assert.ok(
            err.message.includes("/etc/litestream.yml") &&
              err.message.includes("dbs[0].replicas[1].sync-interval"),
          );
          return true;
        },
      );
    });

    it("min-checkpoint-page-count must be > 0; the other page counts must not be negative", () => {
      throwsConfig(
        () => parse("dbs:\n  - path: /a\n    min-checkpoint-page-count: 0\n"),
        "dbs[0].min-checkpoint-page-count",
      );
      throwsConfig(
        () => parse("dbs:\n  - path: /a\n    max-checkpoint-page-count: -1\n"),
        "dbs[0].max-checkpoint-page-count",
      );
      throwsConfig(
        () => parse("dbs:\n  - path: /a\n    truncate-page-count: lots\n"),
        "dbs[0].truncate-page-count",
      );
      assert.equal(
        parse("dbs:\n  - path: /a\n    min-checkpoint-page-count: 1_000\n").dbs[0]!.minCheckpointPageCount,
        1000,
      );
      assert.equal(
        parse("dbs:\n  - path: /a\n    max-checkpoint-page-count: 0x10\n").dbs[0]!.maxCheckpointPageCount,
        16,
      );
    });

    it("logging.level is case-insensitive with warning = warn; an unknown level warns and means info", () => {
      assert.equal(parse("logging:\n  level: WARNING\n").logging.level, "warn");
      assert.equal(parse("logging:\n  level: Warn\n").logging.level, "warn");
      assert.equal(parse("logging:\n  level: error\n").logging.level, "error");
      const c = parse("logging:\n  level: trace\n");
      assert.equal(c.logging.level, "info");
      assert.match(c.warnings[0]!, /^logging\.level: /);
    });

    it("logging.type is text or json only", () => {
      assert.equal(parse("logging:\n  type: json\n").logging.type, "json");
      throwsConfig(() => parse("logging:\n  type: logfmt\n"), "logging.type");
    });

    it("addr needs a port", () => {
      assert.equal(parse("addr: ':9091'\n").addr, ":9091");
      assert.equal(parse("addr: '[::1]:9091'\n").addr, "[::1]:9091");
      throwsConfig(() => parse("addr: localhost\n"), "addr");
      throwsConfig(() => parse("addr: ':99999'\n"), "addr");
    });

    it("a database needs a path, and may be listed once", () => {
      throwsConfig(() => parse("dbs:\n  - replicas: []\n"), "dbs[0].path");
      throwsConfig(
        () => parse("dbs:\n  - path: /a.db\n  - path: /b.db\n  - path: /x/../a.db\n"),
        "dbs[2].path",
      );
    });

    it("wrong shapes name the key", () => {
      throwsConfig(() => parse("dbs:\n  path: /a.db\n"), "dbs");
      throwsConfig(() => parse("dbs:\n  - path: /a.db\n    replicas: /x\n"), "dbs[0].replicas");
      throwsConfig(() => parse("dbs:\n  - path: [/a.db]\n"), "dbs[0].path");
      throwsConfig(() => parse("dbs:\n  - path: /a.db\n    replicas:\n      -\n"), "dbs[0].replicas[0]");
      throwsConfig(() => parse("- just\n- a list\n"), "(root)");
    });

    it("YAML syntax errors and duplicate keys are CONFIG errors with a line", () => {
      assert.throws(
        () => parse("dbs:\n  - path: /a\n    replicas: [\n"),
        (err: unknown) =>
          err instanceof WalshipError &&
          err.code === ErrorCodes.CONFIG &&
          typeof err.details.line === "number",
      );
      throwsConfig(() => parse("addr: ':1'\naddr: ':2'\n"), "(root)");
    });
  });

  describe("YAML as yaml.v2 reads it", () => {
    it("string settings keep their text as written", () => {
      const r = onlyReplica(parse(inReplica("type: sftp\nhost: h\nuser: yes\npassword: 0123")));
      assert.equal(r.sftp!.user, "yes");
      assert.equal(r.sftp!.password, "0123");
    });

    it("empty values and ~ mean unset", () => {
      const r = onlyReplica(parse(inReplica("path: /x\nsync-interval:\nretention: ~\nname: null")));
      assert.equal(r.syncIntervalMs, undefined);
      assert.equal(r.retentionMs, undefined);
      assert.equal(r.name, "file");
      assert.deepEqual(parse("dbs:\n").dbs, []);
      assert.deepEqual(parse("dbs:\n  - path: /a\n    replicas:\n").dbs[0]!.replicas, []);
    });

    it("a bare integer duration is nanoseconds, with a warning", () => {
      const c = parse(inReplica("path: /x\nsync-interval: 2000000000"));
      assert.equal(onlyReplica(c).syncIntervalMs, 2000);
      assert.deepEqual(c.warnings.length, 1);
      assert.match(c.warnings[0]!, /^dbs\[0\]\.replicas\[0\]\.sync-interval: bare number/);
    });

    it("anchors, aliases and merge keys", () => {
      const text = [
        "x-s3: &s3",
        "  type: s3",
        "  bucket: shared",
        "  sync-interval: 5s",
        "dbs:",
        "  - path: /a.db",
        "    replicas:",
        "      - <<: *s3",
        "        path: a",
        "  - path: /b.db",
        "    replicas:",
        "      - <<: *s3",
        "        path: b",
        "        sync-interval: 7s",
      ].join("\n");
      const c = parse(text);
      const [a, b] = c.dbs.map((d) => d.replicas[0]!);
      assert.deepEqual([a!.s3!.bucket, a!.s3!.path, a!.syncIntervalMs], ["shared", "a", 5000]);
      assert.deepEqual([b!.s3!.bucket, b!.s3!.path, b!.syncIntervalMs], ["shared", "b", 7000]);
      assert.deepEqual(c.warnings, ["x-s3: unknown key, ignored"]);
    });
  });

  describe("warnings", () => {
    it("name every unknown key, at every level", () => {
      const text = [
        "mcp-addr: ':3001'",
        "logging: { level: info, color: true }",
        "dbs:",
        "  - path: /a.db",
        "    retention: 24h",
        "    replicas:",
        "      - url: s3://b/p",
        "        encryption: aes256",
      ].join("\n");
      assert.deepEqual(parse(text).warnings, [
        "mcp-addr: unknown key, ignored",
        "logging.color: unknown key, ignored",
        "dbs[0].retention: unknown key, ignored (a replica setting: move it into a replica)",
        "dbs[0].replicas[0].encryption: unknown key, ignored",
      ]);
    });

    it("name keys the replica's type does not use", () => {
      const c = parse(inReplica("path: /x\nbucket: b\nhost: h\nskip-verify: false"));
      assert.deepEqual(c.warnings, [
        "dbs[0].replicas[0].bucket: not used by file replicas, ignored",
        "dbs[0].replicas[0].skip-verify: not used by file replicas, ignored",
        "dbs[0].replicas[0].host: not used by file replicas, ignored",
      ]);
    });
  });
});

describe("replicaFromUrl", () => {
  const s3 = (url: string) => replicaFromUrl(url).s3;

  it("provider host patterns", () => {
    assert.deepEqual(s3("s3://bk.localhost:9000/p"), {
      bucket: "bk",
      path: "p",
      region: "us-east-1",
      endpoint: "http://localhost:9000",
      forcePathStyle: true,
      skipVerify: false,
    });
    const cases: Array<[string, string, string | undefined, string]> = [
      ["s3://bk.localhost/p", "bk", "us-east-1", "http://localhost"],
      [
        "s3://bk.s3.us-west-002.backblazeb2.com/p",
        "bk",
        "us-west-002",
        "https://s3.us-west-002.backblazeb2.com",
      ],
      // No region in the host: an endpoint without a region gets us-east-1.
      ["s3://bk.s3.filebase.com/p", "bk", "us-east-1", "https://s3.filebase.com"],
      ["s3://bk.nyc3.digitaloceanspaces.com/p", "bk", "nyc3", "https://nyc3.digitaloceanspaces.com"],
      [
        "s3://my.dotted.bk.fra1.digitaloceanspaces.com/p",
        "my.dotted.bk",
        "fra1",
        "https://fra1.digitaloceanspaces.com",
      ],
      ["s3://bk.s3.fr-par.scw.cloud/p", "bk", "fr-par", "https://s3.fr-par.scw.cloud"],
      ["s3://bk.us-east-1.linodeobjects.com/p", "bk", "us-east-1", "https://us-east-1.linodeobjects.com"],
      ["s3://bk.hel1.your-objectstorage.com/p", "bk", "hel1", "https://hel1.your-objectstorage.com"],
      [
        "s3://bk.0123456789abcdef0123456789abcdef.r2.cloudflarestorage.com/p",
        "bk",
        "auto",
        "https://0123456789abcdef0123456789abcdef.r2.cloudflarestorage.com",
      ],
      [
        "s3://bk.0123456789abcdef0123456789abcdef.eu.r2.cloudflarestorage.com/p",
        "bk",
        "auto",
        "https://0123456789abcdef0123456789abcdef.eu.r2.cloudflarestorage.com",
      ],
    ];
    for (const [url, bucket, region, endpoint] of cases) {
      const got = s3(url)!;
      assert.deepEqual(
        [got.bucket, got.region, got.endpoint, got.forcePathStyle, got.path],
        [bucket, region, endpoint, true, "p"],
        url,
      );
    }
  });

  it("any other host is the bucket, AWS virtual-host style", () => {
    assert.deepEqual(s3("s3://my-bucket/a/b"), {
      bucket: "my-bucket",
      path: "a/b",
      forcePathStyle: false,
      skipVerify: false,
    });
    assert.deepEqual(parseS3Host("bk.example.com:443"), { bucket: "bk.example.com", forcePathStyle: false });
  });

  it("gcs, abs, sftp and file URLs", () => {
    assert.deepEqual(replicaFromUrl("gcs://bk/a//b/").gcs, { bucket: "bk", path: "a/b" });
    assert.deepEqual(replicaFromUrl("abs://acct@cont/x/y").abs, {
      accountName: "acct",
      bucket: "cont",
      path: "x/y",
    });
    assert.deepEqual(replicaFromUrl("sftp://u:p%40ss@host:2222/srv/back//up").sftp, {
      host: "host:2222",
      user: "u",
      password: "p@ss",
      path: "/srv/back//up",
    });
    assert.deepEqual(replicaFromUrl("file:///var/backups/app").file, { path: "/var/backups/app" });
    assert.deepEqual(replicaFromUrl("file:///var/backups/app/../x/").file, { path: "/var/backups/x" });
  });

  it("the base's common settings; the rest left to the Replica", () => {
    const r = replicaFromUrl("s3://bk/p", {
      name: "primary",
      syncIntervalMs: 10,
      retentionMs: 0,
      type: "file",
    });
    assert.equal(r.name, "primary");
    assert.equal(r.type, "s3");
    assert.equal(r.syncIntervalMs, 10);
    assert.equal(r.retentionMs, 0);
    assert.equal(r.retentionCheckIntervalMs, undefined);
    assert.equal(replicaFromUrl("gcs://bk/p").name, "gcs");
  });

  it("bad URLs are CONFIG errors", () => {
    throwsConfig(() => replicaFromUrl("/not/a/url"), "url");
    throwsConfig(() => replicaFromUrl("gs:///p"), "url");
    throwsConfig(() => replicaFromUrl("s3:///p"), "url");
    throwsConfig(() => replicaFromUrl("sftp://host/p"), "url");
  });

  it("isUrl is ^\\w+://", () => {
    assert.equal(isUrl("s3://b"), true);
    assert.equal(isUrl("file:///x"), true);
    assert.equal(isUrl("/x/y"), false);
    assert.equal(isUrl("C:\\x"), false);
    assert.equal(isUrl("my-s3://b"), false);
  });
});

describe("defaults live with their owners", () => {
  it("a config that sets nothing: the Db and the Replica it makes take Litestream's defaults", () => {
    const c = parse("dbs:\n  - path: /d/a.db\n    replicas:\n      - path: /d/backup\n");
    const dc = c.dbs[0]!;
    const rc = dc.replicas[0]!;
    const db = new Db(dc.path, {
      monitorIntervalMs: dc.monitorIntervalMs,
      checkpointIntervalMs: dc.checkpointIntervalMs,
      minCheckpointPageCount: dc.minCheckpointPageCount,
      maxCheckpointPageCount: dc.maxCheckpointPageCount,
      truncatePageCount: dc.truncatePageCount,
    });
    assert.deepEqual(
      [
        db.monitorIntervalMs,
        db.checkpointIntervalMs,
        db.minCheckpointPageCount,
        db.maxCheckpointPageCount,
        db.truncatePageCount,
      ],
      [1000, 60_000, 1000, 10_000, 500_000],
    );
    const replica = new Replica(db, new FileReplicaClient(rc.file!.path), {
      name: rc.name,
      syncIntervalMs: rc.syncIntervalMs,
      retentionMs: rc.retentionMs,
      retentionCheckIntervalMs: rc.retentionCheckIntervalMs,
    });
    assert.deepEqual(
      [replica.syncIntervalMs, replica.retentionMs, replica.retentionCheckIntervalMs],
      [1000, 24 * H, H],
    );
    replica.close();
  });
});

describe("command-line helpers", () => {
  it("configFromArgs builds one database with a replica per URL", () => {
    const c = configFromArgs("app.db", ["s3://bk/db", "file:///bak"], { cwd: "/srv" });
    assert.equal(c.dbs.length, 1);
    assert.equal(c.dbs[0]!.path, "/srv/app.db");
    assert.deepEqual(
      c.dbs[0]!.replicas.map((r) => [r.name, r.type]),
      [
        ["s3", "s3"],
        ["file", "file"],
      ],
    );
    assert.equal(c.dbs[0]!.minCheckpointPageCount, undefined);
    assert.equal(c.shutdownSyncTimeoutMs, undefined);
    assert.deepEqual(c.logging, { level: "info", type: "text", stderr: false });
  });

  it("configFromArgs rejects non-URLs and two URLs of one type (same default name)", () => {
    throwsConfig(() => configFromArgs("/a.db", ["/backups"]), "args[1]");
    throwsConfig(() => configFromArgs("/a.db", ["s3://a/p", "s3://b/p"]), "args[2]");
  });

  it("findDb matches by expanded absolute path", () => {
    const c = parse("dbs:\n  - path: /srv/a.db\n  - path: /srv/b.db\n");
    assert.equal(findDb(c, "/srv/b.db"), c.dbs[1]);
    assert.equal(findDb(c, "b.db", { cwd: "/srv" }), c.dbs[1]);
    assert.equal(findDb(c, "./x/../a.db", { cwd: "/srv" }), c.dbs[0]);
    assert.equal(findDb(c, "/srv/c.db"), undefined);
  });

  it("defaultConfigPath", () => {
    assert.equal(defaultConfigPath({}), DEFAULT_CONFIG_PATH);
    assert.equal(defaultConfigPath({ LITESTREAM_CONFIG: "/l.yml" }), "/l.yml");
    assert.equal(defaultConfigPath({ LITESTREAM_CONFIG: "/l.yml", WALSHIP_CONFIG: "/w.yml" }), "/w.yml");
  });

  it("applyEnvCredentials copies LITESTREAM_* to AWS_* only when unset", () => {
    const env: NodeJS.ProcessEnv = {
      LITESTREAM_ACCESS_KEY_ID: "L",
      LITESTREAM_SECRET_ACCESS_KEY: "LS",
      AWS_SECRET_ACCESS_KEY: "A",
    };
    applyEnvCredentials(env);
    assert.equal(env.AWS_ACCESS_KEY_ID, "L");
    assert.equal(env.AWS_SECRET_ACCESS_KEY, "A");
    const empty: NodeJS.ProcessEnv = {};
    applyEnvCredentials(empty);
    assert.deepEqual(empty, {});
  });
});

describe("loadConfig", () => {
  it("reads a file, records its source, and names it in errors", async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), "walship-config-"));
    try {
      const good = path.join(dir, "litestream.yml");
      await writeFile(good, "dbs:\n  - path: /a.db\n    replicas:\n      - url: s3://${B}/p\n");
      const c = await loadConfig(good, { env: { B: "bk" } });
      assert.equal(c.source, good);
      assert.equal(c.dbs[0]!.replicas[0]!.s3!.bucket, "bk");
      const raw = await loadConfig(good, { env: { B: "bk" }, expandEnv: false });
      assert.equal(raw.dbs[0]!.replicas[0]!.s3!.bucket, "${B}");

      const bad = path.join(dir, "bad.yml");
      await writeFile(bad, "dbs:\n  - path: /a.db\n    checkpoint-interval: soon\n");
      await assert.rejects(loadConfig(bad, { env: {} }), (err: unknown) => {
        assert.ok(err instanceof WalshipError);
        assert.equal(err.code, ErrorCodes.CONFIG);
        assert.equal(err.details.path, "dbs[0].checkpoint-interval");
        assert.equal(err.details.source, bad);
        return true;
      });

      const missing = path.join(dir, "missing.yml");
      await assert.rejects(loadConfig(missing), (err: unknown) => {
        assert.ok(err instanceof WalshipError);
        assert.equal(err.code, ErrorCodes.CONFIG);
        assert.equal(err.details.file, missing);
        return true;
      });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe("Go durations (duration.ts)", () => {
  it("parses Go syntax into milliseconds", () => {
    const cases: Array<[string, number]> = [
      ["0", 0],
      ["0s", 0],
      ["1s", 1000],
      ["500ms", 500],
      ["1h30m", 90 * 60_000],
      ["1.5s", 1500],
      [".5s", 500],
      ["5.s", 5000],
      ["1h0.5m", H + 30_000],
      ["300us", 0.3],
      ["300\u00b5s", 0.3],
      ["300\u03bcs", 0.3],
      ["1500000ns", 1.5],
      ["+2m", 120_000],
      ["-1s", -1000],
      ["168h", 168 * H],
    ];
    for (const [text, ms] of cases) assert.equal(parseGoDuration(text, "k"), ms, text);
  });

  it("a bare integer is nanoseconds, as yaml.v2 decodes it", () => {
    assert.equal(parseGoDuration(1_000_000_000, "k"), 1000);
    assert.equal(parseGoDuration("1000000000", "k"), 1000);
    assert.equal(parseGoDuration(24, "k"), 0.000024);
    assert.equal(parseGoDuration("0", "k"), 0);
  });

  it("accepts a d (day) unit as a Walship extension", () => {
    assert.equal(parseGoDuration("7d", "k"), 7 * 24 * H);
    assert.equal(parseGoDuration("1d12h", "k"), 36 * H);
  });

  it("rejects bad input with a CONFIG error naming the key", () => {
    for (const bad of [
      "",
      "5x",
      "h",
      "1.h5",
      ".s",
      "-",
      "1h-5m",
      "1 h",
      "1hh",
      "3000000h",
      "1e3s",
      "0x10s",
    ]) {
      throwsConfig(
        () => parseGoDuration(bad, "dbs[0].replicas[1].sync-interval"),
        "dbs[0].replicas[1].sync-interval",
      );
    }
    throwsConfig(() => parseGoDuration(1.5, "retention"), "retention");
  });

  it("formats as Go's Duration.String does", () => {
    const cases: Array<[number, string]> = [
      [0, "0s"],
      [1000, "1s"],
      [1500, "1.5s"],
      [500, "500ms"],
      [1.5, "1.5ms"],
      [0.3, "300µs"],
      [0.000024, "24ns"],
      [90_000, "1m30s"],
      [H, "1h0m0s"],
      [5_400_000, "1h30m0s"],
      [168 * H, "168h0m0s"],
      [-1500, "-1.5s"],
    ];
    for (const [ms, text] of cases) {
      assert.equal(formatGoDuration(ms), text, String(ms));
      assert.equal(parseGoDuration(text, "k"), ms, text);
    }
  });
});
