/**
 * S3 uploads as the store sees them (s3-upload.ts), against the real
 * MinIO through the HTTP fault proxy (test/helpers/s3-fault-proxy.ts), which records every request's
 * headers and times: no part, PutObject or multipart call carries a flexible checksum
 * (`x-amz-checksum-*`, `x-amz-sdk-checksum-algorithm`) or `aws-chunked` encoding, which several
 * S3-compatible stores reject; parts go up in parallel; a part that keeps failing ends the upload
 * with a STORAGE error naming the object and leaves no multipart upload behind; bodies on part
 * boundaries take the requests they should; part buffers are reused and let go when idle.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { Readable } from "node:stream";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { ListMultipartUploadsCommand } from "@aws-sdk/client-s3";
import { DEFAULT_UPLOAD_QUEUE_SIZE, MIN_PART_SIZE_BYTES } from "../../src/replicator/storage/s3.ts";
import { S3ReplicaClient, SdkTransport } from "../../src/replicator/storage/s3-sdk.ts";
import { PartPool, uploadBody } from "../../src/replicator/storage/s3-upload.ts";
import { ErrorCodes } from "../../src/shared/errors.ts";
import { generatedBody, readAll } from "../contract/replica-client.contract.ts";
import { assertCode } from "../helpers/assert.ts";
import { type Minio, startMinio } from "../helpers/minio.ts";
import { type S3FaultProxy, type SeenRequest, startS3FaultProxy } from "../helpers/s3-fault-proxy.ts";

const G1 = "0a1b2c3d4e5f6071";
const PART = MIN_PART_SIZE_BYTES;

let minio: Minio | undefined;
let proxy: S3FaultProxy | undefined;
before(async () => {
  minio = await startMinio();
  proxy = await startS3FaultProxy(minio.port, { record: true });
});
after(async () => {
  await proxy?.close();
  await minio?.close();
});

let seq = 0;
async function freshBucket(label: string): Promise<string> {
  const name = `${label}-${++seq}`;
  await minio!.createBucket(name);
  return name;
}

function client(bucket: string, maxAttempts?: number): S3ReplicaClient {
  const m = minio!;
  return new S3ReplicaClient(
    {
      bucket,
      path: "db",
      region: m.region,
      endpoint: proxy!.endpoint,
      forcePathStyle: true,
      skipVerify: false,
      accessKeyId: m.accessKeyId,
      secretAccessKey: m.secretAccessKey,
    },
    { partSizeBytes: PART, ...(maxAttempts ? { maxAttempts } : {}) },
  );
}

async function openUploads(bucket: string): Promise<number> {
  const raw = minio!.client();
  try {
    return (await raw.send(new ListMultipartUploadsCommand({ Bucket: bucket }))).Uploads?.length ?? 0;
  } finally {
    raw.destroy();
  }
}

const isPart = (r: SeenRequest) => r.method === "PUT" && /[?&]partNumber=/.test(r.url);

/** The headers that must not go to an S3-compatible store on an upload, with their values. */
function checksumHeaders(r: SeenRequest): string[] {
  const bad: string[] = [];
  for (const [name, value] of Object.entries(r.headers)) {
    const v = String(value);
    if (
      /^x-amz-checksum-/.test(name) ||
      name === "x-amz-sdk-checksum-algorithm" ||
      name === "x-amz-trailer"
    ) {
      bad.push(`${name}: ${v}`);
    }
    if (name === "content-encoding" && /aws-chunked/i.test(v)) bad.push(`${name}: ${v}`);
    if (name === "x-amz-content-sha256" && /^STREAMING-/.test(v)) bad.push(`${name}: ${v}`);
  }
  return bad;
}

describe("S3 uploads through a recording proxy (MinIO behind it)", () => {
  it("sends no checksum header or aws-chunked encoding, on parts, PutObject and the multipart calls", async () => {
    const bucket = await freshBucket("headers");
    const p = proxy!;
    const c = client(bucket);
    try {
      const from = p.seen.length;
      // A snapshot of 3 parts and a bit (4 parts), a streamed body of less than one part (one
      // PutObject through s3-upload.ts) and a small WAL segment (PutObject directly).
      const big = generatedBody(3 * PART + 12345, 64 * 1024 + 3);
      assert.equal((await c.writeSnapshot(G1, 1, big.stream)).size, 3 * PART + 12345);
      const small = generatedBody(PART - 1, 64 * 1024);
      assert.equal((await c.writeSnapshot(G1, 2, small.stream)).size, PART - 1);
      await c.writeWalSegment(G1, 1, 0, Buffer.from("wal"));
      const back = await readAll(await c.snapshotReader(G1, 1));
      assert.equal(createHash("sha256").update(back).digest("hex"), big.digest());

      const writes = p.seen.slice(from).filter((r) => r.method === "PUT" || r.method === "POST");
      const parts = writes.filter(isPart);
      assert.equal(parts.length, 4, "the snapshot went up as 4 parts");
      assert.ok(
        writes.some((r) => r.method === "POST" && /[?&]uploads(=|&|$)/.test(r.url)),
        "a CreateMultipartUpload was sent",
      );
      assert.ok(
        writes.some((r) => r.method === "POST" && /[?&]uploadId=/.test(r.url)),
        "a CompleteMultipartUpload was sent",
      );
      assert.equal(writes.filter((r) => r.method === "PUT" && !isPart(r)).length, 2, "two PutObjects");
      // Parts first: they are what the stores reject.
      for (const r of [...parts, ...writes.filter((w) => !isPart(w))]) {
        assert.deepEqual(checksumHeaders(r), [], `${r.method} ${r.url}`);
      }
      assert.equal(await openUploads(bucket), 0);
    } finally {
      c.close();
    }
  });

  it(`uploads parts in parallel (${DEFAULT_UPLOAD_QUEUE_SIZE} at once)`, async () => {
    const bucket = await freshBucket("parallel");
    const p = proxy!;
    const c = client(bucket);
    // Each part's answer is held 300 ms, so parts sent one after the other could not overlap.
    p.set({ kind: "delay", ms: 300, share: 1, methods: ["PUT"] });
    try {
      const from = p.seen.length;
      const body = generatedBody(4 * PART, 1024 * 1024);
      assert.equal((await c.writeSnapshot(G1, 1, body.stream)).size, 4 * PART);
      const parts = p.seen.slice(from).filter(isPart);
      assert.equal(parts.length, 4);
      let overlapping = 0;
      for (const [i, a] of parts.entries()) {
        for (const b of parts.slice(i + 1)) {
          if (a.start < (b.end ?? Infinity) && b.start < (a.end ?? Infinity)) overlapping++;
        }
      }
      assert.ok(overlapping >= 1, "at least two part uploads overlapped in time");
      assert.equal(
        createHash("sha256")
          .update(await readAll(await c.snapshotReader(G1, 1)))
          .digest("hex"),
        body.digest(),
      );
    } finally {
      p.set(undefined);
      c.close();
    }
  });

  it("bodies on part boundaries: one part is one PutObject, two parts are two (no empty third), empty is empty", async () => {
    const bucket = await freshBucket("boundaries");
    const p = proxy!;
    const c = client(bucket);
    try {
      for (const [index, total, wantParts] of [
        [1, PART, 0],
        [2, 2 * PART, 2],
        [3, 0, 0],
        [4, PART + 1, 2],
      ] as const) {
        const from = p.seen.length;
        const body = generatedBody(total, 700_001);
        assert.equal((await c.writeSnapshot(G1, index, body.stream)).size, total, `size of ${total}`);
        const writes = p.seen.slice(from).filter((r) => r.method === "PUT" || r.method === "POST");
        assert.equal(writes.filter(isPart).length, wantParts, `parts for a body of ${total} bytes`);
        if (wantParts === 0) assert.equal(writes.length, 1, `one PutObject for a body of ${total} bytes`);
        const back = await readAll(await c.snapshotReader(G1, index));
        assert.equal(back.length, total);
        assert.equal(createHash("sha256").update(back).digest("hex"), body.digest());
      }
      assert.equal(await openUploads(bucket), 0);
    } finally {
      c.close();
    }
  });

  it("reuses its part buffers from one upload to the next, and lets them go when idle", async () => {
    const pool = new PartPool(PART, 4, 200);
    const taken = new Set<ArrayBuffer>();
    const take = pool.take.bind(pool);
    pool.take = () => {
      const b = take();
      taken.add(b.buffer as ArrayBuffer);
      return b;
    };
    const bucket = await freshBucket("pool");
    const m = minio!;
    const transport = new SdkTransport({
      bucket,
      path: "",
      region: m.region,
      endpoint: m.endpoint,
      forcePathStyle: true,
      skipVerify: false,
      accessKeyId: m.accessKeyId,
      secretAccessKey: m.secretAccessKey,
    });
    try {
      for (const key of ["a", "b", "c"]) {
        const body = generatedBody(3 * PART + 5, 1 << 20);
        const size = await uploadBody(
          {
            transport,
            bucket,
            key,
            pool,
            queueSize: DEFAULT_UPLOAD_QUEUE_SIZE,
            signal: undefined,
            what: `write ${key}`,
            log: undefined,
            toError: (err) => err as Error,
          },
          body.stream,
        );
        assert.equal(size, 3 * PART + 5);
      }
      assert.ok(taken.size <= DEFAULT_UPLOAD_QUEUE_SIZE + 2, `${taken.size} buffers for three uploads`);
      assert.equal(pool.held, taken.size, "every buffer came back");
      await sleep(400);
      assert.equal(pool.held, 0, "let go after the idle time");
    } finally {
      transport.close();
    }
  });

  it("a part that keeps failing: STORAGE naming the object, the upload aborted, nothing written", async () => {
    const bucket = await freshBucket("partfails");
    const p = proxy!;
    const c = client(bucket, 2);
    p.set({ kind: "status", status: 500, code: "InternalError", share: 1, methods: ["PUT"] });
    try {
      const write = c.writeSnapshot(G1, 1, Readable.from([Buffer.alloc(2 * PART + 1, 7)]));
      await assertCode(write, ErrorCodes.STORAGE, {
        bucket,
        key: `db/generations/${G1}/snapshots/00000001.snapshot.lz4`,
        s3Code: "InternalError",
        attempts: 2,
      });
      await write.catch((err: Error) => {
        assert.ok(!err.message.includes(minio!.secretAccessKey), "the secret is not in the message");
        assert.ok(!JSON.stringify(err).includes(minio!.secretAccessKey), "nor in its details");
      });
    } finally {
      p.set(undefined);
    }
    try {
      assert.equal(await openUploads(bucket), 0, "the multipart upload was aborted");
      assert.deepEqual(await c.snapshots(G1), []);
    } finally {
      c.close();
    }
  });
});
