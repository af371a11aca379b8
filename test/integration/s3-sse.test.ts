/**
 * S3 server-side encryption against a real MinIO over TLS (a self-signed certificate, trusted through
 * NODE_EXTRA_CA_CERTS as a user would) with its KMS configured (a static key): SSE-S3, SSE-KMS with a
 * key id, and SSE-C with the key in a file. For each, `walship replicate` writes every object (the
 * snapshot big enough for a multipart upload) the way the option says, as MinIO reports it, and
 * `walship restore` reads it back. Without SSE nothing is encrypted (the control); an SSE-C object
 * cannot be read without its key, and an SSE-C option over http is refused before anything starts.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { GetObjectCommand, HeadObjectCommand, ListObjectsV2Command, type S3Client } from "@aws-sdk/client-s3";
import Database from "better-sqlite3";
import { MINIO_KMS_KEY_ID, type Minio, startMinio } from "../helpers/minio.ts";
import { integrityCheck, logicalHash, logicalHashOf } from "../helpers/sqlite.ts";
import { walship } from "../helpers/walship.ts";

let minio: Minio;
let s3: S3Client;
let env: NodeJS.ProcessEnv;
const dirs: string[] = [];
const CUSTOMER_KEY = randomBytes(32).toString("base64");

before(async () => {
  minio = await startMinio({ tls: true, kms: true });
  s3 = minio.client();
  env = {
    AWS_ACCESS_KEY_ID: minio.accessKeyId,
    AWS_SECRET_ACCESS_KEY: minio.secretAccessKey,
    NODE_EXTRA_CA_CERTS: minio.caFile,
  };
});
after(async () => {
  s3?.destroy();
  await minio?.close();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** A database of about 8 MiB (incompressible blobs, so the snapshot goes up in parts) and its config. */
async function setup(bucket: string, sse: string, endpoint = minio.endpoint) {
  const dir = mkdtempSync(path.join(os.tmpdir(), "walship-sse-"));
  dirs.push(dir);
  await minio.createBucket(bucket);
  const db = path.join(dir, "app.db");
  const app = new Database(db);
  app.pragma("journal_mode = wal");
  app.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)");
  const ins = app.prepare("INSERT INTO t (v) VALUES (?)");
  for (let i = 0; i < 128; i++) ins.run(randomBytes(64 * 1024));
  const want = logicalHashOf(app);
  app.close();
  const keyFile = path.join(dir, "sse-c.key");
  writeFileSync(keyFile, `${CUSTOMER_KEY}\n`);
  const cfg = path.join(dir, "walship.yml");
  writeFileSync(
    cfg,
    `dbs:
  - path: ${db}
    replicas:
      - name: minio
        type: s3
        bucket: ${bucket}
        path: app
        endpoint: ${endpoint}
        region: us-east-1
        force-path-style: true
${sse.replace("KEYFILE", keyFile).replace(/^/gm, "        ")}
`,
  );
  return { dir, db, cfg, want };
}

async function keys(bucket: string): Promise<string[]> {
  const out = await s3.send(new ListObjectsV2Command({ Bucket: bucket }));
  return (out.Contents ?? []).map((c) => c.Key as string).sort();
}

const ssec = { SSECustomerAlgorithm: "AES256", SSECustomerKey: CUSTOMER_KEY };

describe("S3 server-side encryption on MinIO (TLS, KMS)", () => {
  const modes: Array<{
    name: string;
    sse: string;
    head?: typeof ssec;
    check: (h: Awaited<ReturnType<S3Client["send"]>> & Record<string, unknown>) => void;
  }> = [
    {
      name: "none (control)",
      sse: "",
      check: (h) => {
        assert.equal(h.ServerSideEncryption, undefined);
        assert.equal(h.SSECustomerAlgorithm, undefined);
      },
    },
    {
      name: "SSE-S3",
      sse: "server-side-encryption: AES256",
      check: (h) => assert.equal(h.ServerSideEncryption, "AES256"),
    },
    {
      name: "SSE-KMS with a key id",
      sse: `sse-kms-key-id: ${MINIO_KMS_KEY_ID}`,
      check: (h) => {
        assert.equal(h.ServerSideEncryption, "aws:kms");
        assert.match(String(h.SSEKMSKeyId), new RegExp(`${MINIO_KMS_KEY_ID}$`));
      },
    },
    {
      name: "SSE-C with the key in a file",
      sse: "sse-customer-key-path: KEYFILE",
      head: ssec,
      check: (h) => assert.equal(h.SSECustomerAlgorithm, "AES256"),
    },
  ];
  for (const [i, m] of modes.entries()) {
    it(`${m.name}: every object is stored so, and restores`, async () => {
      const bucket = `sse-${i}`;
      const { dir, db, cfg, want } = await setup(bucket, m.sse);
      const rep = await walship(["replicate", "-config", cfg, "-exec", "true"], { env });
      assert.equal(rep.code, 0, rep.stderr);
      const stored = await keys(bucket);
      assert.ok(
        stored.some((k) => k.endsWith(".snapshot.lz4")),
        stored.join("\n"),
      );
      assert.ok(
        stored.some((k) => k.startsWith("app/walship/")),
        "side objects too",
      );
      for (const key of stored) {
        const h = await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: key, ...(m.head ?? {}) }));
        m.check(h as never);
        if (key.endsWith(".snapshot.lz4")) assert.ok((h.ContentLength ?? 0) > 5 * 1024 * 1024, "multipart");
      }
      const out = path.join(dir, "restored.db");
      const res = await walship(["restore", "-config", cfg, "-o", out, db], { env });
      assert.equal(res.code, 0, res.stderr);
      assert.equal(integrityCheck(out), "ok");
      assert.equal(logicalHash(out), want);
      assert.ok(!(rep.stdout + rep.stderr + res.stderr).includes(CUSTOMER_KEY), "the SSE-C key was echoed");
      if (m.head) {
        // Without the key the store refuses the object.
        const snap = stored.find((k) => k.endsWith(".snapshot.lz4")) as string;
        await assert.rejects(s3.send(new GetObjectCommand({ Bucket: bucket, Key: snap })));
        const other = path.join(dir, "other-key.yml");
        writeFileSync(
          other,
          readFileSync(cfg, "utf8").replace(
            /sse-customer-key-path: .*/,
            `sse-customer-key: ${randomBytes(32).toString("base64")}`,
          ),
        );
        const bad = await walship(["restore", "-config", other, "-o", path.join(dir, "never.db"), db], {
          env,
        });
        assert.equal(bad.code, 1, bad.stderr);
        assert.match(bad.stderr, /WALSHIP_ERR_STORAGE/);
      }
    });
  }

  it("SSE-C over http is refused before anything starts", async () => {
    const { db, cfg } = await setup("sse-http", "sse-customer-key-path: KEYFILE", "http://127.0.0.1:9");
    const res = await walship(["replicate", "-config", cfg, "-exec", "true"], { env });
    assert.equal(res.code, 1, res.stderr);
    assert.match(
      res.stderr,
      /replicas\[0\]\.sse-customer-key-path: SSE-C needs an https endpoint.*\[WALSHIP_ERR_CONFIG\]/,
    );
    assert.deepEqual(
      readdirSync(path.dirname(db)).filter((f) => f.includes("litestream")),
      [],
    );
  });
});
