/**
 * S3 uploads as the store sees them (s3-upload.ts, @aws-sdk/lib-storage's Upload), against the real
 * MinIO through the HTTP fault proxy (test/helpers/s3-fault-proxy.ts), which records every request's
 * headers and times: no part, PutObject or multipart call carries a flexible checksum
 * (`x-amz-checksum-*`, `x-amz-sdk-checksum-algorithm`) or `aws-chunked` encoding, which several
 * S3-compatible stores reject; parts go up in parallel; a part that keeps failing ends the upload
 * with a STORAGE error naming the object and leaves no multipart upload behind.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { Readable } from "node:stream";
import { after, before, describe, it } from "node:test";
import { ListMultipartUploadsCommand } from "@aws-sdk/client-s3";
import {
  DEFAULT_UPLOAD_QUEUE_SIZE,
  MIN_PART_SIZE_BYTES,
  S3ReplicaClient,
} from "../../src/replicator/storage/s3.ts";
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
      // PutObject through Upload) and a small WAL segment (PutObject directly).
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
