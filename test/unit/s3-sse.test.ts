/**
 * S3 server-side encryption options (storage/s3-sse.ts), on literal inputs: which combinations are
 * refused and with which key named, the SSE-C key's form (never echoed), the parameters each mode
 * sends on writes and reads, and a key file read again after its refresh period. The same options
 * against a real MinIO (TLS and its KMS) are in test/integration/s3-sse.test.ts.
 */
import assert from "node:assert/strict";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { describe, it } from "node:test";
import { parseCustomerKey, sseParams, sseProblem, sseSource } from "../../src/replicator/storage/s3-sse.ts";
import { ErrorCodes, WalshipError } from "../../src/shared/errors.ts";

const KEY = "q83vEjRWeJq83vEjRWeJq83vEjRWeJq83vEjRWeJq80=";
const KEY2 = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

function refused(fn: () => unknown, re: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof WalshipError);
    assert.equal(e.code, ErrorCodes.CONFIG);
    assert.match(e.message, re);
    assert.ok(!e.message.includes(KEY.slice(0, 20)), "the key leaked");
    return true;
  });
}

describe("S3 server-side encryption options", () => {
  it("refuses SSE-C with another mode, both key sources, a KMS key with AES256, SSE-C over http, a bad key", () => {
    const cases: Array<[Parameters<typeof sseProblem>[0], string | undefined, string, RegExp]> = [
      [
        { customerKey: KEY, serverSideEncryption: "AES256" },
        undefined,
        "sse-customer-key",
        /cannot be combined/,
      ],
      [{ customerKeyPath: "/k", kmsKeyId: "k1" }, undefined, "sse-customer-key-path", /cannot be combined/],
      [{ customerKey: KEY, customerKeyPath: "/k" }, undefined, "sse-customer-key", /not both/],
      [
        { kmsKeyId: "k1", serverSideEncryption: "AES256" },
        undefined,
        "sse-kms-key-id",
        /needs server-side-encryption aws:kms/,
      ],
      [{ customerKey: KEY }, "http://127.0.0.1:9000", "sse-customer-key", /SSE-C needs an https endpoint/],
      [
        { customerKeyPath: "/k" },
        "HTTP://minio:9000",
        "sse-customer-key-path",
        /SSE-C needs an https endpoint/,
      ],
      [{ customerKey: "not-a-key" }, undefined, "sse-customer-key", /must be 32 bytes in base64/],
    ];
    for (const [s, endpoint, key, re] of cases) {
      const p = sseProblem(s, endpoint);
      assert.equal(p?.key, key, JSON.stringify(s));
      assert.match(p?.message ?? "", re);
      assert.ok(!p?.message.includes(KEY.slice(0, 20)), "the key leaked");
    }
    for (const [s, endpoint] of [
      [{ customerKey: KEY }, "https://127.0.0.1:9000"],
      [{ customerKey: KEY }, undefined],
      [{ serverSideEncryption: "AES256" }, "http://127.0.0.1:9000"],
      [{ kmsKeyId: "k1" }, undefined],
      [{ serverSideEncryption: "aws:kms", kmsKeyId: "k1" }, undefined],
    ] as const) {
      assert.equal(sseProblem(s, endpoint), undefined, JSON.stringify(s));
    }
  });

  it("an SSE-C key is base64 of exactly 32 bytes; a trailing newline is dropped", () => {
    assert.equal(parseCustomerKey(`${KEY}\n`, "k"), KEY);
    for (const bad of [
      "",
      "short",
      KEY.slice(0, 40),
      `${KEY}A`,
      KEY.replace("q", "*"),
      Buffer.alloc(32, 1).toString("hex"),
    ]) {
      refused(
        () => parseCustomerKey(bad, "r.sse-customer-key"),
        /^r\.sse-customer-key: an SSE-C key must be 32 bytes in base64/,
      );
    }
  });

  it("each mode's parameters on writes and reads", () => {
    assert.deepEqual(sseParams(undefined), { write: {}, read: {} });
    assert.deepEqual(sseParams({}), { write: {}, read: {} });
    assert.deepEqual(sseParams({ serverSideEncryption: "AES256" }), {
      write: { ServerSideEncryption: "AES256" },
      read: {},
    });
    assert.deepEqual(sseParams({ serverSideEncryption: "aws:kms" }), {
      write: { ServerSideEncryption: "aws:kms" },
      read: {},
    });
    assert.deepEqual(sseParams({ kmsKeyId: "k1" }), {
      write: { ServerSideEncryption: "aws:kms", SSEKMSKeyId: "k1" },
      read: {},
    });
    const c = { SSECustomerAlgorithm: "AES256", SSECustomerKey: KEY };
    assert.deepEqual(sseParams({ customerKey: KEY }, KEY), { write: c, read: c });
  });

  it("a key file is read again after the refresh period, and a bad one names the file only", async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), "walship-sse-"));
    try {
      const file = path.join(dir, "key");
      await fs.writeFile(file, `${KEY}\n`);
      const source = sseSource({ customerKeyPath: file }, 40);
      assert.equal((await source()).read.SSECustomerKey, KEY);
      await fs.writeFile(file, KEY2);
      assert.equal((await source()).read.SSECustomerKey, KEY);
      await new Promise((r) => setTimeout(r, 60));
      assert.equal((await source()).write.SSECustomerKey, KEY2);
      await fs.writeFile(file, "not a key");
      await new Promise((r) => setTimeout(r, 60));
      await assert.rejects(source(), /^WalshipError: sse-customer-key-path .*key: an SSE-C key must be/);
      await fs.rm(file);
      await new Promise((r) => setTimeout(r, 60));
      await assert.rejects(source(), /read sse-customer-key-path .*key: ENOENT/);
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });
});
