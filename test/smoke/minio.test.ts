import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { GetObjectCommand, ListObjectsV2Command, PutObjectCommand } from "@aws-sdk/client-s3";
import { type Minio, startMinio } from "../helpers/minio.ts";

let minio: Minio;

before(async () => {
  minio = await startMinio();
});

after(async () => {
  await minio?.close();
});

test("minio: put, get and list an object with @aws-sdk/client-s3", async () => {
  await minio.createBucket("smoke");
  const s3 = minio.client();
  try {
    await s3.send(new PutObjectCommand({ Bucket: "smoke", Key: "dir/hello.txt", Body: "hello walship" }));
    const got = await s3.send(new GetObjectCommand({ Bucket: "smoke", Key: "dir/hello.txt" }));
    assert.equal(await got.Body?.transformToString(), "hello walship");
    const list = await s3.send(new ListObjectsV2Command({ Bucket: "smoke", Prefix: "dir/" }));
    assert.deepEqual(
      list.Contents?.map((o) => [o.Key, o.Size]),
      [["dir/hello.txt", 13]],
    );
  } finally {
    s3.destroy();
  }
});

test("minio: create-only put (If-None-Match: *) refuses an existing key", async () => {
  const s3 = minio.client();
  try {
    await s3.send(new PutObjectCommand({ Bucket: "smoke", Key: "once", Body: "a", IfNoneMatch: "*" }));
    await assert.rejects(
      s3.send(new PutObjectCommand({ Bucket: "smoke", Key: "once", Body: "b", IfNoneMatch: "*" })),
      (err: { $metadata?: { httpStatusCode?: number } }) => err.$metadata?.httpStatusCode === 412,
    );
  } finally {
    s3.destroy();
  }
});

test("minio: restart keeps the endpoint and the data", async () => {
  await minio.stop();
  const s3 = minio.client();
  try {
    await assert.rejects(s3.send(new GetObjectCommand({ Bucket: "smoke", Key: "dir/hello.txt" })));
    await minio.restart();
    const got = await s3.send(new GetObjectCommand({ Bucket: "smoke", Key: "dir/hello.txt" }));
    assert.equal(await got.Body?.transformToString(), "hello walship");
  } finally {
    s3.destroy();
  }
});
