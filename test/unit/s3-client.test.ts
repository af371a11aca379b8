import { after, before } from "node:test";
import type { S3Settings } from "../../src/replicator/config.ts";
import { MIN_PART_SIZE_BYTES, S3ReplicaClient } from "../../src/replicator/storage/s3.ts";
import { replicaClientContract } from "../contract/replica-client.contract.ts";
import { type Minio, startMinio } from "../helpers/minio.ts";

let minio: Minio | undefined;
before(async () => {
  minio = await startMinio();
});
after(async () => {
  await minio?.close();
});
let seq = 0;
function settings(bucket: string, path = ""): S3Settings {
  const m = minio!;
  return {
    bucket,
    path,
    region: m.region,
    endpoint: m.endpoint,
    forcePathStyle: true,
    skipVerify: false,
    accessKeyId: m.accessKeyId,
    secretAccessKey: m.secretAccessKey,
  };
}
replicaClientContract("s3 (MinIO)", async () => {
  const bucket = `contract-${++seq}`;
  await minio!.createBucket(bucket);
  const client = new S3ReplicaClient(settings(bucket, "db/prod"), { partSizeBytes: MIN_PART_SIZE_BYTES });
  return { client, cleanup: async () => client.close() };
});
