/**
 * Storage faults, the short variant of the torture part (test/torture/storage-faults.ts): every
 * fault kind for a few seconds (WALSHIP_FAULT_SECONDS, default 4) and a MinIO outage
 * (WALSHIP_OUTAGE_SECONDS, default 15) while the app writes. After each: the lag comes back to normal,
 * and a restore equals the source; memory stays within its budget; restores through the faulty path
 * equal the source or fail clearly, and one with Litestream v0.3.13 equals it. The long run: `make torture` (5-minute outage).
 */
import assert from "node:assert/strict";
import { Readable } from "node:stream";
import { it } from "node:test";
import type { S3Settings } from "../../src/replicator/config.ts";
import { S3ReplicaClient } from "../../src/replicator/storage/s3-sdk.ts";
import { ErrorCodes, WalshipError } from "../../src/shared/errors.ts";
import { startMinio } from "../helpers/minio.ts";
import { startS3FaultProxy } from "../helpers/s3-fault-proxy.ts";
import { storageFaultsPart } from "../torture/storage-faults.ts";

it("survives every storage fault kind, loses nothing, and recovers its lag after each", async () => {
  const figures = await storageFaultsPart({
    faultSeconds: Number(process.env.WALSHIP_FAULT_SECONDS ?? 4),
    outageSeconds: Number(process.env.WALSHIP_OUTAGE_SECONDS ?? 15),
    log: (l) => console.log(l),
  });
  assert.deepEqual(figures.problems, [], JSON.stringify(figures, null, 2));
  assert.equal(figures.faults.length, 12);
  for (const f of figures.faults) {
    assert.ok(f.restoreEqual, `${f.fault}: restore equals the source`);
    assert.ok(Number.isFinite(f.recoverySeconds), `${f.fault}: lag recovered`);
  }
  // The faults really happened: the HTTP ones were injected, and the replicator saw failures.
  for (const f of figures.faults.filter((x) => x.layer === "http"))
    assert.ok(
      Object.values(f.injected).some((n) => n > 0),
      `${f.fault}: injected`,
    );
  const outage = figures.faults.find((x) => x.layer === "server")!;
  assert.ok(outage.syncErrors > 0 && outage.maxLagSeconds > 5, JSON.stringify(outage));
  for (const r of figures.restoreUnderFaults) assert.notEqual(r.outcome, "wrong", JSON.stringify(r));
  assert.ok(figures.litestreamRestoreEqual);
});

it("a download that breaks off is resumed where it stopped (ranged GET of the same version)", async () => {
  const minio = await startMinio();
  const fp = await startS3FaultProxy(minio.port, { seed: 3 });
  try {
    await minio.createBucket("resume");
    const settings: S3Settings = {
      bucket: "resume",
      path: "r",
      endpoint: fp.endpoint,
      region: "us-east-1",
      forcePathStyle: true,
      skipVerify: false,
      accessKeyId: minio.accessKeyId,
      secretAccessKey: minio.secretAccessKey,
    };
    const client = new S3ReplicaClient(settings);
    const gen = "0123456789abcdef";
    const body = Buffer.from(Array.from({ length: 3 << 20 }, (_, i) => (i * 2654435761) >>> 24));
    await client.writeSnapshot(gen, 1, Readable.from([body]));
    const read = async () => Buffer.concat(await (await client.snapshotReader(gen, 1)).toArray());
    // Cut twice: resumed twice, every byte there once.
    fp.set({ kind: "truncate", share: 1, methods: ["GET"], times: 2 });
    const got = await read();
    assert.equal(fp.counts.injected["truncate download"], 2);
    assert.ok(got.equals(body), `read ${got.length} of ${body.length} bytes, equal: ${got.equals(body)}`);
    // Cut on every attempt: a STORAGE error naming the object.
    fp.set({ kind: "truncate", share: 1, methods: ["GET"] });
    await assert.rejects(read(), (err: unknown) => {
      assert.ok(err instanceof WalshipError && err.code === ErrorCodes.STORAGE, String(err));
      assert.match(
        err.message,
        /s3:\/\/resume\/r\/generations\/0123456789abcdef\/snapshots\/00000001\.snapshot\.lz4/,
      );
      return true;
    });
    client.close();
  } finally {
    await fp.close();
    await minio.close();
  }
});
