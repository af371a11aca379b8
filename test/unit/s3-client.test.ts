/**
 * The S3 destination against a real MinIO: the shared ReplicaClient contract, plus what only an object
 * store shows (key placement, multipart, memory, credentials, missing buckets, retries, outages,
 * unsorted listings, batched deletes, TLS).
 *
 * MinIO always sorts, never throttles and never refuses its root user, so a few tests go through
 * FaultProxy: a FAKE fault-injecting HTTP proxy in front of the real MinIO that forwards requests
 * unchanged and can shuffle listings, answer with injected errors, hold requests unanswered, report
 * keys as not deleted, and serve TLS with a self-signed certificate.
 *
 * The raw S3Client here only observes the bucket (independently of the code under test).
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import http, { type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from "node:http";
import https from "node:https";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { Readable } from "node:stream";
import { after, before, describe, it } from "node:test";
import v8 from "node:v8";
import vm from "node:vm";
import { HeadObjectCommand, ListMultipartUploadsCommand, ListObjectsV2Command } from "@aws-sdk/client-s3";
import { replicaFromUrl, type S3Settings } from "../../src/replicator/config.ts";
import type { ObjectStoreClient } from "../../src/replicator/storage/object-store.ts";
import {
  DEFAULT_UPLOAD_QUEUE_SIZE,
  MIN_PART_SIZE_BYTES,
  rootPrefix,
} from "../../src/replicator/storage/s3.ts";
import { S3HttpReplicaClient } from "../../src/replicator/storage/s3-http.ts";
import { S3ReplicaClient } from "../../src/replicator/storage/s3-sdk.ts";
import { ErrorCodes, WalshipError } from "../../src/shared/errors.ts";
import {
  bytesStream,
  chunked,
  generatedBody,
  readAll,
  replicaClientContract,
} from "../contract/replica-client.contract.ts";
import { assertCode } from "../helpers/assert.ts";
import { type Minio, startMinio } from "../helpers/minio.ts";
import { makeTempDir } from "../helpers/proc.ts";

const G1 = "0a1b2c3d4e5f6071";
const G2 = "1111111111111111";
const G3 = "fedcba9876543210";
const MiB = 1024 * 1024;

let minio: Minio | undefined;
before(async () => {
  // Fails (never skips) with INFRA_MISSING_BINARY and the command to run: `test/infra/install minio`.
  minio = await startMinio();
});
after(async () => {
  await minio?.close();
});

function server(): Minio {
  assert.ok(minio, "minio did not start (see the before hook's error; run `test/infra/install minio`)");
  return minio;
}

let seq = 0;
/** A new, empty bucket. */
async function freshBucket(label: string): Promise<string> {
  const name = `${label}-${++seq}`;
  await server().createBucket(name);
  return name;
}

function settings(bucket: string, path = "", over: Partial<S3Settings> = {}): S3Settings {
  const m = server();
  return {
    bucket,
    path,
    region: m.region,
    endpoint: m.endpoint,
    forcePathStyle: true,
    skipVerify: false,
    accessKeyId: m.accessKeyId,
    secretAccessKey: m.secretAccessKey,
    ...over,
  };
}

/** Every object key in a bucket, sorted, as MinIO reports them. */
async function bucketKeys(bucket: string): Promise<string[]> {
  const raw = server().client();
  try {
    const out: string[] = [];
    let token: string | undefined;
    do {
      const page = await raw.send(new ListObjectsV2Command({ Bucket: bucket, ContinuationToken: token }));
      for (const o of page.Contents ?? []) if (o.Key) out.push(o.Key);
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
    return out.sort();
  } finally {
    raw.destroy();
  }
}

async function etagOf(bucket: string, key: string): Promise<string> {
  const raw = server().client();
  try {
    return (await raw.send(new HeadObjectCommand({ Bucket: bucket, Key: key }))).ETag ?? "";
  } finally {
    raw.destroy();
  }
}

async function openUploads(bucket: string): Promise<number> {
  const raw = server().client();
  try {
    return (await raw.send(new ListMultipartUploadsCommand({ Bucket: bucket }))).Uploads?.length ?? 0;
  } finally {
    raw.destroy();
  }
}

/** Asserts a STORAGE error and returns its details. */
async function storageError(p: Promise<unknown>): Promise<Readonly<Record<string, unknown>>> {
  let details: Readonly<Record<string, unknown>> = {};
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof WalshipError, `expected a WalshipError, got ${String(err)}`);
    assert.equal(err.code, ErrorCodes.STORAGE, `wrong code for: ${err.message}`);
    details = err.details;
    return true;
  });
  return details;
}

/** A client that is closed after `fn`, whatever happens. */
async function withS3<T>(client: ObjectStoreClient, fn: (c: ObjectStoreClient) => Promise<T>): Promise<T> {
  try {
    return await fn(client);
  } finally {
    client.close();
  }
}

// -------------------------------------------------------------------------------------------------
// The contract: a fresh bucket per test, a nested path, and the smallest part size so the contract's
// 6 MiB body goes up as a multipart upload.

// Every test below runs on both transports: the AWS SDK's (S3ReplicaClient) and Walship's own
// requests over node:http(s) (S3HttpReplicaClient, used whenever the keys are given): the same
// contract, keys, uploads, errors, faults and TLS.
const CLIENTS = [
  ["S3ReplicaClient (AWS SDK)", S3ReplicaClient],
  ["S3HttpReplicaClient (no SDK)", S3HttpReplicaClient],
] as const;

for (const [name, Client] of CLIENTS) {
  replicaClientContract(`s3 (MinIO), ${name}`, async () => {
    const client = new Client(settings(await freshBucket("contract"), "db/prod"), {
      partSizeBytes: MIN_PART_SIZE_BYTES,
    });
    return { client, cleanup: async () => client.close() };
  });

  // -------------------------------------------------------------------------------------------------

  describe(name, () => {
    describe("configuration", () => {
      it("joins the path as Litestream does (Go path.Join)", () => {
        assert.equal(rootPrefix(""), "");
        assert.equal(rootPrefix("db"), "db/");
        assert.equal(rootPrefix("db/"), "db/");
        assert.equal(rootPrefix("a//b/./c/"), "a/b/c/");
        assert.equal(rootPrefix("/lead"), "/lead/");
        assert.equal(rootPrefix("."), "");
        assert.equal(rootPrefix("/"), "/");
      });

      it("reports s3://bucket/path as its location", () => {
        const loc = (path: string) => new Client(settings("b", path)).location;
        assert.equal(loc(""), "s3://b");
        assert.equal(loc("db/prod/"), "s3://b/db/prod");
        assert.equal(new Client(settings("b", "x")).type, "s3");
      });

      it("rejects a part size S3 cannot take, one key without the other, and no bucket with CONFIG", () => {
        const config = (fn: () => unknown) => assertCode(fn, ErrorCodes.CONFIG);
        config(() => new Client(settings("b"), { partSizeBytes: MIN_PART_SIZE_BYTES - 1 }));
        config(() => new Client(settings("b"), { maxAttempts: 0 }));
        config(() => new Client(settings("b", "", { secretAccessKey: "" })));
        config(() => new Client(settings("b", "", { accessKeyId: undefined })));
        config(() => new Client(settings("")));
      });
    });

    describe("keys", () => {
      it("puts objects at Litestream's keys for every path form", async () => {
        const cases: Array<[string, string]> = [
          ["", ""],
          ["db", "db/"],
          ["db/", "db/"],
          ["a//b/./c/", "a/b/c/"],
        ];
        for (const [path, root] of cases) {
          const bucket = await freshBucket("keys");
          await withS3(new Client(settings(bucket, path)), async (c) => {
            await c.writeSnapshot(G1, 1, bytesStream("snap"));
            await c.writeWalSegment(G1, 1, 0x1038, Buffer.from("wal"));
            await c.putExtra(`walship/generations/${G1}/commits/00000001_00001038.json`, Buffer.from("[]"));
            assert.deepEqual(
              await bucketKeys(bucket),
              [
                `${root}generations/${G1}/snapshots/00000001.snapshot.lz4`,
                `${root}generations/${G1}/wal/00000001_00001038.wal.lz4`,
                `${root}walship/generations/${G1}/commits/00000001_00001038.json`,
              ],
              `path ${JSON.stringify(path)}`,
            );
          });
        }
      });

      it("works with the settings a Litestream URL gives (s3://BUCKET.localhost:PORT/path)", async () => {
        const bucket = await freshBucket("url");
        const m = server();
        const parsed = replicaFromUrl(`s3://${bucket}.localhost:${m.port}/backups/app.db`);
        assert.ok(parsed.s3);
        const s3 = { ...parsed.s3, accessKeyId: m.accessKeyId, secretAccessKey: m.secretAccessKey };
        await withS3(new Client(s3), async (c) => {
          assert.equal(c.location, `s3://${bucket}/backups/app.db`);
          await c.writeSnapshot(G1, 7, bytesStream("from a url"));
          assert.deepEqual(await bucketKeys(bucket), [
            `backups/app.db/generations/${G1}/snapshots/00000007.snapshot.lz4`,
          ]);
          assert.equal((await readAll(await c.snapshotReader(G1, 7))).toString(), "from a url");
        });
      });

      it("uses the AWS default credential chain when no keys are set (environment here)", async () => {
        const bucket = await freshBucket("chain");
        const m = server();
        const saved = { id: process.env.AWS_ACCESS_KEY_ID, secret: process.env.AWS_SECRET_ACCESS_KEY };
        process.env.AWS_ACCESS_KEY_ID = m.accessKeyId;
        process.env.AWS_SECRET_ACCESS_KEY = m.secretAccessKey;
        try {
          const s = settings(bucket);
          delete s.accessKeyId;
          delete s.secretAccessKey;
          await withS3(new Client(s), async (c) => {
            await c.writeWalSegment(G1, 1, 0, Buffer.from("env creds"));
            assert.equal((await c.walSegments(G1)).length, 1);
          });
        } finally {
          restoreEnv("AWS_ACCESS_KEY_ID", saved.id);
          restoreEnv("AWS_SECRET_ACCESS_KEY", saved.secret);
        }
      });
    });

    describe("multipart uploads", () => {
      it("streams bodies larger than a part as parts and reads them back unchanged", async () => {
        const bucket = await freshBucket("multipart");
        const part = MIN_PART_SIZE_BYTES;
        await withS3(new Client(settings(bucket, "mp"), { partSizeBytes: part }), async (c) => {
          // [size, parts]: a short last part, exact part boundaries, exactly one part, empty.
          const cases: Array<[number, number]> = [
            [2 * part + 7, 3],
            [2 * part, 2],
            [part, 1],
            [part + 1, 2],
            [0, 1],
          ];
          for (const [i, [size, parts]] of cases.entries()) {
            const { stream, digest } = generatedBody(size, 64 * 1024 + 3);
            const info = await c.writeSnapshot(G1, i, stream);
            assert.equal(info.size, size);
            const back = await readAll(await c.snapshotReader(G1, i));
            assert.equal(back.length, size);
            assert.equal(createHash("sha256").update(back).digest("hex"), digest());
            const etag = await etagOf(
              bucket,
              `mp/generations/${G1}/snapshots/${i.toString(16).padStart(8, "0")}.snapshot.lz4`,
            );
            // S3 (and MinIO) mark a multipart object's ETag with "-<parts>".
            if (parts > 1) assert.match(etag, new RegExp(`-${parts}"?$`), `size ${size}`);
            else assert.doesNotMatch(etag, /-\d+"?$/, `size ${size}`);
          }
          // A Uint8Array body larger than a part (a WAL segment) goes the same way.
          const big = randomBytes(part + 100);
          assert.equal((await c.writeWalSegment(G1, 1, 0, big)).size, big.length);
          assert.deepEqual(await readAll(await c.walSegmentReader(G1, 1, 0)), big);
          assert.equal(await openUploads(bucket), 0);
        });
      });

      // s3-upload.ts gathers parts in the client's part buffers: the parts in flight, the one being
      // gathered and a full one waiting for the body's next bytes, at most queue + 2 parts. Measured
      // with 5 MiB parts: 11 MiB at 1, 16 MiB at 2, 26 MiB at 4 (lib-storage's Upload, before it, held
      // 2 × queue + 2: 13-16, 21 and 35-41 MiB).
      for (const queue of [1, DEFAULT_UPLOAD_QUEUE_SIZE, 4]) {
        const bound = queue + 2;
        it(`keeps memory under ${bound} parts while streaming 96 MiB up, ${queue} part(s) at once`, async (t) => {
          const bucket = await freshBucket("memory");
          const part = MIN_PART_SIZE_BYTES;
          const total = 96 * MiB;
          const opts = { partSizeBytes: part, uploadQueueSize: queue };
          await withS3(new Client(settings(bucket), opts), async (c) => {
            v8.setFlagsFromString("--expose-gc");
            const gc = vm.runInNewContext("gc") as () => void;
            gc();
            const start = process.memoryUsage().arrayBuffers;
            let peak = 0;
            let sent = 0;
            const hash = createHash("sha256");
            const body = new Readable({
              read() {
                if (sent >= total) {
                  this.push(null);
                  return;
                }
                if (sent % MiB === 0) {
                  gc();
                  peak = Math.max(peak, process.memoryUsage().arrayBuffers - start);
                }
                const chunk = randomBytes(64 * 1024);
                hash.update(chunk);
                sent += chunk.length;
                this.push(chunk);
              },
            });
            const info = await c.writeSnapshot(G1, 1, body);
            assert.equal(info.size, total);
            t.diagnostic(
              `peak extra array buffer memory ${(peak / MiB).toFixed(1)} MiB (part ${part / MiB} MiB, ${queue} at once)`,
            );
            assert.ok(peak < bound * part, `peak extra array buffer memory ${(peak / MiB).toFixed(1)} MiB`);
            const back = createHash("sha256");
            let got = 0;
            for await (const chunk of await c.snapshotReader(G1, 1)) {
              back.update(chunk as Buffer);
              got += (chunk as Buffer).length;
            }
            assert.equal(got, total);
            assert.equal(back.digest("hex"), hash.digest("hex"));
          });
        });
      }

      it("aborts the multipart upload when the caller aborts or the body fails midway", async () => {
        const bucket = await freshBucket("mpabort");
        const part = MIN_PART_SIZE_BYTES;
        await withS3(new Client(settings(bucket), { partSizeBytes: part }), async (c) => {
          await c.writeSnapshot(G1, 1, bytesStream("previous"));

          const ac = new AbortController();
          await assertCode(
            c.writeSnapshot(
              G1,
              1,
              bodyThen(2 * part + MiB, () => ac.abort()),
              { signal: ac.signal },
            ),
            ErrorCodes.ABORTED,
          );
          await assertCode(
            c.writeSnapshot(
              G1,
              2,
              bodyThen(2 * part + MiB, (s) => s.destroy(new Error("disk on fire"))),
            ),
            ErrorCodes.STORAGE,
          );
          const corrupt = new WalshipError(ErrorCodes.CORRUPT, "encode snapshot: bad page");
          await assertCode(
            c.writeSnapshot(
              G1,
              3,
              bodyThen(part + MiB, (s) => s.destroy(corrupt)),
            ),
            ErrorCodes.CORRUPT,
          );

          assert.equal(await openUploads(bucket), 0, "every multipart upload was aborted");
          assert.equal((await readAll(await c.snapshotReader(G1, 1))).toString(), "previous");
          assert.deepEqual(
            (await c.snapshots(G1)).map((s) => s.index),
            [1],
          );
        });
      });
    });

    describe("errors", () => {
      it("bad credentials: STORAGE with InvalidAccessKeyId or SignatureDoesNotMatch, never NOT_FOUND", async () => {
        const bucket = await freshBucket("creds");
        const m = server();
        for (const [over, want] of [
          [{ accessKeyId: "nobody-knows-me" }, "InvalidAccessKeyId"],
          [{ secretAccessKey: `${m.secretAccessKey}-wrong` }, "SignatureDoesNotMatch"],
        ] as const) {
          await withS3(new Client(settings(bucket, "db", over), { maxAttempts: 2 }), async (c) => {
            for (const call of [
              () => c.generations(),
              () => c.writeSnapshot(G1, 1, bytesStream("x")),
              () => c.snapshotReader(G1, 1),
              () => c.getExtra("walship/x"),
              () => c.deleteWalSegments([{ generation: G1, index: 1, offset: 0 }]),
            ]) {
              const d = await storageError(call());
              assert.equal(d.s3Code, want);
              assert.equal(d.bucket, bucket);
              assert.equal(d.httpStatus, 403);
            }
          });
        }
      });

      it("a missing bucket: STORAGE with NoSuchBucket naming the bucket, never NOT_FOUND", async () => {
        const bucket = `missing-${++seq}`;
        await withS3(
          new Client(settings(bucket, "db"), { partSizeBytes: MIN_PART_SIZE_BYTES }),
          async (c) => {
            for (const call of [
              () => c.generations(),
              () => c.snapshots(G1),
              () => c.writeSnapshot(G1, 1, bytesStream("x")),
              () => c.writeSnapshot(G1, 2, generatedBody(MIN_PART_SIZE_BYTES + 1, 65536).stream),
              () => c.snapshotReader(G1, 1),
              () => c.getExtra("walship/x"),
              () => c.deleteSnapshot(G1, 1),
              () => c.deleteGeneration(G1),
            ]) {
              const d = await storageError(call());
              assert.equal(d.s3Code, "NoSuchBucket");
              assert.equal(d.bucket, bucket);
            }
          },
        );
      });
    });

    describe("through a fault-injecting proxy (fake)", () => {
      let proxy: FaultProxy | undefined;
      before(async () => {
        proxy = await startFaultProxy(server().endpoint);
      });
      after(async () => {
        await proxy?.close();
      });
      const via = (bucket: string, path = "", opts: ConstructorParameters<typeof Client>[1] = {}) =>
        new Client(settings(bucket, path, { endpoint: proxy!.endpoint }), opts);

      it("sorts every listing itself when the store returns them shuffled", async () => {
        const bucket = await freshBucket("unsorted");
        const p = proxy!;
        await withS3(via(bucket, "app"), async (c) => {
          for (const gen of [G3, G1, G2]) await c.writeSnapshot(gen, 1, bytesStream(gen));
          for (const index of [9, 0x10, 2, 0, 0xa, 1])
            await c.writeSnapshot(G1, index, bytesStream(`s${index}`));
          const segs: Array<[number, number]> = [];
          for (const index of [3, 1, 2]) for (const offset of [0x2070, 0, 0x1038]) segs.push([index, offset]);
          for (const [index, offset] of segs) await c.writeWalSegment(G1, index, offset, Buffer.from("w"));
          for (const k of ["walship/b", "walship/a/z", "walship/a/b", "walship/c"])
            await c.putExtra(k, Buffer.from(k));

          p.shuffleListings = true;
          try {
            assert.deepEqual(await c.generations(), [G1, G2, G3]);
            assert.deepEqual(
              (await c.snapshots(G1)).map((s) => s.index),
              [0, 1, 2, 9, 0xa, 0x10],
            );
            assert.deepEqual(
              (await c.walSegments(G1)).map((s) => [s.index, s.offset]),
              [...segs].sort((a, b) => a[0] - b[0] || a[1] - b[1]),
            );
            assert.deepEqual(await c.listExtras("walship/"), [
              "walship/a/b",
              "walship/a/z",
              "walship/b",
              "walship/c",
            ]);
            assert.ok(p.shuffled > 0, "the proxy shuffled the listings");
          } finally {
            p.shuffleListings = false;
          }
        });
      });

      it("deletes 2500 segments in one call as three DeleteObjects of at most 1000 keys with Content-MD5", async () => {
        const bucket = await freshBucket("bulk");
        const p = proxy!;
        await withS3(via(bucket, "db"), async (c) => {
          const segs = Array.from({ length: 2500 }, (_, i) => ({
            generation: G1,
            index: Math.floor(i / 25),
            offset: (i % 25) * 0x1038,
          }));
          // Written straight to MinIO (quicker); listed and deleted through the proxy.
          await withS3(new Client(settings(bucket, "db")), async (direct) => {
            await mapLimit(segs, 16, (s) =>
              direct.writeWalSegment(s.generation, s.index, s.offset, Buffer.from([1])),
            );
            await direct.writeWalSegment(G1, 0x1000, 0, Buffer.from("keep"));
          });

          // Three listing pages, each shuffled, come back as one sorted list.
          p.shuffleListings = true;
          try {
            const listed = await c.walSegments(G1);
            assert.equal(listed.length, 2501);
            assert.deepEqual(
              listed.map((s) => [s.index, s.offset]),
              [...segs.map((s) => [s.index, s.offset]), [0x1000, 0]],
            );
          } finally {
            p.shuffleListings = false;
          }

          const before = p.seen.length;
          await c.deleteWalSegments(segs);
          const deletes = p.seen
            .slice(before)
            .filter((r) => r.method === "POST" && /[?&]delete(=|&|$)/.test(r.path));
          assert.deepEqual(
            deletes.map((r) => countKeys(r.body)),
            [1000, 1000, 500],
          );
          for (const r of deletes) {
            assert.equal(r.headers["content-md5"], createHash("md5").update(r.body).digest("base64"));
            assert.equal(r.headers["x-amz-checksum-crc32"], undefined);
          }
          assert.deepEqual(
            (await c.walSegments(G1)).map((s) => [s.index, s.offset]),
            [[0x1000, 0]],
          );
        });
      });

      it("reports keys a DeleteObjects refused as one STORAGE error listing them; NoSuchKey is success", async () => {
        const bucket = await freshBucket("partial");
        const p = proxy!;
        await withS3(via(bucket), async (c) => {
          const segs = [0, 1, 2, 3].map((index) => ({ generation: G1, index, offset: 0 }));
          for (const s of segs) await c.writeWalSegment(G1, s.index, 0, Buffer.from("x"));
          const refused = [
            `generations/${G1}/wal/00000001_00000000.wal.lz4`,
            `generations/${G1}/wal/00000003_00000000.wal.lz4`,
          ];
          p.deleteErrors.set(refused[0]!, "AccessDenied");
          p.deleteErrors.set(refused[1]!, "AccessDenied");
          p.deleteErrors.set(`generations/${G1}/wal/00000002_00000000.wal.lz4`, "NoSuchKey");
          try {
            const d = await storageError(c.deleteWalSegments(segs));
            assert.equal(d.s3Code, "AccessDenied");
            assert.deepEqual(
              (d.failed as Array<{ key: string }>).map((f) => f.key),
              refused,
            );
          } finally {
            p.deleteErrors.clear();
          }
          await c.deleteWalSegments(segs);
        });
      });

      it("retries 503, 500 and 429 answers with backoff and succeeds", async () => {
        const bucket = await freshBucket("retry");
        const p = proxy!;
        await withS3(via(bucket, "", { maxAttempts: 4 }), async (c) => {
          p.failNext.push({ status: 503, code: "SlowDown" }, { status: 500, code: "InternalError" });
          const before = p.seen.length;
          await c.writeWalSegment(G1, 1, 0, Buffer.from("after retries"));
          assert.equal(p.seen.length - before, 3, "two failed attempts, then the one that worked");

          p.failNext.push(
            { status: 429, code: "TooManyRequests" },
            { status: 503, code: "ServiceUnavailable" },
          );
          assert.equal((await readAll(await c.walSegmentReader(G1, 1, 0))).toString(), "after retries");
          assert.equal(p.failNext.length, 0);
        });
      });

      it("gives up after maxAttempts with STORAGE carrying the code, status and attempts", async () => {
        const bucket = await freshBucket("giveup");
        const p = proxy!;
        await withS3(via(bucket, "", { maxAttempts: 3 }), async (c) => {
          for (let i = 0; i < 3; i++) p.failNext.push({ status: 503, code: "SlowDown" });
          const d = await storageError(c.snapshots(G1));
          assert.equal(d.s3Code, "SlowDown");
          assert.equal(d.httpStatus, 503);
          assert.equal(d.attempts, 3);
          assert.equal(p.failNext.length, 0);
        });
      });

      it("times out a request that gets no answer and retries it", async () => {
        const bucket = await freshBucket("timeout");
        const p = proxy!;
        await withS3(via(bucket, "", { maxAttempts: 3, requestTimeoutMs: 500 }), async (c) => {
          await c.putExtra("walship/k", Buffer.from("v"));
          p.stallNext = 1;
          const t0 = Date.now();
          assert.equal(Buffer.from(await c.getExtra("walship/k")).toString(), "v");
          assert.ok(Date.now() - t0 >= 450, "the first attempt waited for its timeout");
          assert.equal(p.stallNext, 0);

          p.stallNext = 3;
          const d = await storageError(c.getExtra("walship/k"));
          assert.equal(d.attempts, 3);
          p.stallNext = 0;
        });
      });
    });

    describe("TLS", () => {
      let proxy: FaultProxy | undefined;
      before(async () => {
        proxy = await startFaultProxy(server().endpoint, { tls: selfSignedCert() });
      });
      after(async () => {
        await proxy?.close();
      });

      it("refuses a self-signed certificate unless skip-verify is set", async () => {
        const bucket = await freshBucket("tls");
        const endpoint = proxy!.endpoint;
        assert.match(endpoint, /^https:/);
        await withS3(new Client(settings(bucket, "", { endpoint }), { maxAttempts: 1 }), async (c) => {
          const d = await storageError(c.generations());
          assert.match(String(d.s3Code), /SELF_SIGNED|CERT/);
        });
        await withS3(new Client(settings(bucket, "", { endpoint, skipVerify: true })), async (c) => {
          await c.writeSnapshot(G1, 1, bytesStream("over tls"));
          assert.equal((await readAll(await c.snapshotReader(G1, 1))).toString(), "over tls");
        });
      });

      it("leaves object bodies out of the signature over TLS only; MinIO verifies both", async () => {
        const plain = await startFaultProxy(server().endpoint);
        try {
          // The same uploads through each proxy: a PutObject (one segment) and a multipart upload.
          const body = randomBytes(MIN_PART_SIZE_BYTES + 1234);
          const contentHashes = async (p: FaultProxy, skipVerify: boolean) => {
            const endpoint = p.endpoint;
            const from = p.seen.length;
            const bucket = await freshBucket("unsigned");
            await withS3(
              new Client(settings(bucket, "", { endpoint, skipVerify }), {
                partSizeBytes: MIN_PART_SIZE_BYTES,
              }),
              async (c) => {
                await c.writeWalSegment(G1, 1, 0, Buffer.from("one segment"));
                await c.writeSnapshot(G1, 1, chunked(body, 64 * 1024));
                assert.ok((await readAll(await c.snapshotReader(G1, 1))).equals(body));
                assert.equal((await readAll(await c.walSegmentReader(G1, 1, 0))).toString(), "one segment");
              },
            );
            const puts = p.seen.slice(from).filter((r) => r.method === "PUT");
            assert.equal(puts.length, 3, "one PutObject and two parts");
            return puts.map((r) => String(r.headers["x-amz-content-sha256"]));
          };
          for (const h of await contentHashes(proxy!, true)) assert.equal(h, "UNSIGNED-PAYLOAD");
          const signed = await contentHashes(plain, false);
          assert.equal(signed[0], createHash("sha256").update("one segment").digest("hex"));
          // The two parts go up at once, so either may arrive first.
          const parts = [body.subarray(0, MIN_PART_SIZE_BYTES), body.subarray(MIN_PART_SIZE_BYTES)];
          assert.deepEqual(
            signed.slice(1).sort(),
            parts.map((b) => createHash("sha256").update(b).digest("hex")).sort(),
          );
        } finally {
          await plain.close();
        }
      });
    });

    // Last: it stops and restarts the shared MinIO.
    describe("MinIO stopped", () => {
      it("fails with STORAGE after bounded retries, and the same client works once it is back", async (t) => {
        const bucket = await freshBucket("outage");
        const m = server();
        await withS3(
          new Client(settings(bucket, "db"), { maxAttempts: 3, requestTimeoutMs: 2_000 }),
          async (c) => {
            await c.writeSnapshot(G1, 1, bytesStream("before the outage"));
            await m.stop();
            try {
              const t0 = Date.now();
              const d = await storageError(c.generations());
              const elapsed = Date.now() - t0;
              t.diagnostic(`gave up after ${elapsed} ms, ${d.attempts} attempts, ${String(d.s3Code)}`);
              assert.equal(d.attempts, 3);
              assert.ok(elapsed < 10_000, `gave up after ${elapsed} ms`);
              await storageError(c.writeWalSegment(G1, 1, 0, Buffer.from("during")));
              await storageError(c.snapshotReader(G1, 1));
            } finally {
              await m.restart();
            }
            assert.deepEqual(await c.generations(), [G1]);
            assert.equal((await readAll(await c.snapshotReader(G1, 1))).toString(), "before the outage");
            await c.writeWalSegment(G1, 1, 0, Buffer.from("after"));
          },
        );
      });
    });
  });
}

// -------------------------------------------------------------------------------------------------
// Helpers

function restoreEnv(name: string, value: string | undefined): void {
  if (value === undefined) delete process.env[name];
  else process.env[name] = value;
}

/** `size` random bytes in 1 MiB chunks, then `then(stream)` instead of the end (it never ends itself). */
function bodyThen(size: number, then: (s: Readable) => void): Readable {
  let sent = 0;
  return new Readable({
    read() {
      if (sent < size) {
        const chunk = randomBytes(Math.min(MiB, size - sent));
        sent += chunk.length;
        this.push(chunk);
      } else if (sent === size) {
        sent++;
        setImmediate(() => then(this));
      }
    },
  });
}

function countKeys(body: Buffer): number {
  return (body.toString().match(/<Key>/g) ?? []).length;
}

async function mapLimit<T>(
  items: readonly T[],
  limit: number,
  fn: (item: T) => Promise<unknown>,
): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await fn(items[next++] as T);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

/** A throwaway self-signed certificate for 127.0.0.1 (openssl, as the control plane helpers use). */
function selfSignedCert(): { key: Buffer; cert: Buffer } {
  const dir = makeTempDir("s3tls");
  const key = join(dir, "key.pem");
  const cert = join(dir, "cert.pem");
  execFileSync(
    "openssl",
    [
      "req",
      "-x509",
      "-newkey",
      "rsa:2048",
      "-nodes",
      "-keyout",
      key,
      "-out",
      cert,
      "-days",
      "1",
      "-subj",
      "/CN=127.0.0.1",
      "-addext",
      "subjectAltName=IP:127.0.0.1",
    ],
    { stdio: "ignore" },
  );
  return { key: readFileSync(key), cert: readFileSync(cert) };
}

interface SeenRequest {
  method: string;
  path: string;
  headers: IncomingHttpHeaders;
  /** POST bodies only (DeleteObjects, multipart create/complete); empty otherwise. */
  body: Buffer;
}

/**
 * FAKE: an HTTP(S) proxy in front of the real MinIO that injects what MinIO never does. Requests go
 * through unchanged (the Host header the client signed is kept, so SigV4 still verifies).
 */
interface FaultProxy {
  endpoint: string;
  /** Every request seen, in order. */
  seen: SeenRequest[];
  /** Reverse the entries of every ListObjectsV2 answer (a store that does not sort). */
  shuffleListings: boolean;
  /** How many listing answers were shuffled. */
  shuffled: number;
  /** Answer the next requests with these errors, one each, without forwarding them. */
  failNext: Array<{ status: number; code: string }>;
  /** Hold this many next requests without ever answering. */
  stallNext: number;
  /** DeleteObjects answers report these keys as not deleted, with these codes. */
  deleteErrors: Map<string, string>;
  close(): Promise<void>;
}

async function startFaultProxy(
  target: string,
  opts: { tls?: { key: Buffer; cert: Buffer } } = {},
): Promise<FaultProxy> {
  const upstream = new URL(target);
  const state: FaultProxy = {
    endpoint: "",
    seen: [],
    shuffleListings: false,
    shuffled: 0,
    failNext: [],
    stallNext: 0,
    deleteErrors: new Map(),
    close: async () => {},
  };

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const parts: Buffer[] = [];
    for await (const c of req) parts.push(c as Buffer);
    const body = Buffer.concat(parts);
    const method = req.method ?? "GET";
    const path = req.url ?? "/";
    state.seen.push({ method, path, headers: req.headers, body: method === "POST" ? body : Buffer.alloc(0) });
    if (state.stallNext > 0) {
      state.stallNext--;
      return; // never answered; the client's timeout ends it
    }
    const fail = state.failNext.shift();
    if (fail) {
      const xml = `<?xml version="1.0" encoding="UTF-8"?><Error><Code>${fail.code}</Code><Message>injected by the test proxy</Message></Error>`;
      res.writeHead(fail.status, {
        "content-type": "application/xml",
        "content-length": Buffer.byteLength(xml),
      });
      res.end(xml);
      return;
    }
    const isList = method === "GET" && /[?&]list-type=2(&|$)/.test(path);
    const isDelete = method === "POST" && /[?&]delete(=|&|$)/.test(path);
    const up = http.request(
      { host: upstream.hostname, port: upstream.port, method, path, headers: req.headers },
      (ur) => {
        const rewrite =
          (isList && state.shuffleListings) ||
          (isDelete && state.deleteErrors.size > 0 && ur.statusCode === 200);
        if (!rewrite) {
          res.writeHead(ur.statusCode ?? 502, ur.headers);
          ur.pipe(res);
          return;
        }
        const got: Buffer[] = [];
        ur.on("data", (c: Buffer) => got.push(c));
        ur.on("end", () => {
          let xml = Buffer.concat(got).toString();
          if (isList) {
            xml = reverseBlocks(xml, "Contents");
            xml = reverseBlocks(xml, "CommonPrefixes");
            state.shuffled++;
          } else {
            const asked = [...body.toString().matchAll(/<Key>([^<]*)<\/Key>/g)].map((m) => m[1] ?? "");
            const errors = asked
              .filter((k) => state.deleteErrors.has(k))
              .map(
                (k) =>
                  `<Error><Key>${k}</Key><Code>${state.deleteErrors.get(k)}</Code><Message>injected</Message></Error>`,
              )
              .join("");
            xml = xml.includes("</DeleteResult>")
              ? xml.replace("</DeleteResult>", `${errors}</DeleteResult>`)
              : xml.replace(/<DeleteResult([^>]*)\/>/, `<DeleteResult$1>${errors}</DeleteResult>`);
          }
          const headers = { ...ur.headers, "content-length": String(Buffer.byteLength(xml)) };
          delete headers["transfer-encoding"];
          res.writeHead(ur.statusCode ?? 200, headers);
          res.end(xml);
        });
      },
    );
    up.on("error", () => res.destroy());
    up.end(body);
  };

  const onRequest = (req: IncomingMessage, res: ServerResponse) => {
    handle(req, res).catch(() => res.destroy());
  };
  const srv = opts.tls
    ? https.createServer({ key: opts.tls.key, cert: opts.tls.cert }, onRequest)
    : http.createServer(onRequest);
  await new Promise<void>((resolve) => srv.listen(0, "127.0.0.1", resolve));
  const port = (srv.address() as AddressInfo).port;
  state.endpoint = `${opts.tls ? "https" : "http"}://127.0.0.1:${port}`;
  state.close = () =>
    new Promise<void>((resolve) => {
      srv.closeAllConnections();
      srv.close(() => resolve());
    });
  return state;
}

/** Reverses the order of the `<tag>...</tag>` blocks in an XML answer, leaving the rest in place. */
function reverseBlocks(xml: string, tag: string): string {
  const re = new RegExp(`<${tag}>[\\s\\S]*?</${tag}>`, "g");
  const blocks = xml.match(re) ?? [];
  if (blocks.length < 2) return xml;
  const reversed = [...blocks].reverse();
  let i = 0;
  return xml.replace(re, () => reversed[i++] ?? "");
}
