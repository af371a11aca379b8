/**
 * Faults on the S3 destination (real MinIO): a 30-second outage in the middle of replication, bad
 * credentials, and a missing bucket. Each shows in the logs, /status, /metrics and /readyz, never
 * crash-loops the replicator, and loses nothing.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { ReplicatorStatusSchema } from "../../src/shared/protocol.ts";
import { type Minio, startMinio } from "../helpers/minio.ts";
import { freePort } from "../helpers/ports.ts";
import { integrityCheck, logicalHash, logicalHashOf, openWorkload } from "../helpers/sqlite.ts";
import { sleep, startReplicator, walship } from "../helpers/walship.ts";

let minio: Minio;
const dirs: string[] = [];
before(async () => {
  minio = await startMinio();
});
after(async () => {
  await minio?.close();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

async function setup(bucket: string, creds: { id: string; secret: string }, create = true) {
  const dir = mkdtempSync(path.join(os.tmpdir(), "walship-s3f-"));
  dirs.push(dir);
  if (create) await minio.createBucket(bucket);
  const port = await freePort();
  const cfg = path.join(dir, "walship.yml");
  writeFileSync(
    cfg,
    `addr: 127.0.0.1:${port}
dbs:
  - path: ${dir}/app.db
    monitor-interval: 100ms
    replicas:
      - name: minio
        url: s3://${bucket}/app
        endpoint: ${minio.endpoint}
        region: us-east-1
        access-key-id: ${creds.id}
        secret-access-key: ${creds.secret}
        sync-interval: 100ms
`,
  );
  return { dir, cfg, base: `http://127.0.0.1:${port}`, db: path.join(dir, "app.db") };
}

async function status(base: string) {
  const res = await fetch(`${base}/status`);
  return ReplicatorStatusSchema.parse(await res.json()).databases[0]!.replicas[0]!;
}

async function waitFor<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs: number): Promise<T> {
  const end = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < end) {
    try {
      const v = await fn();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    await sleep(250);
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ""}`);
}

const good = () => ({ id: minio.accessKeyId, secret: minio.secretAccessKey });

describe("S3 faults", () => {
  it("a 30 s outage: errors and growing lag show, then replication resumes and nothing is lost", async () => {
    const { dir, cfg, base, db } = await setup("outage", good());
    const app = openWorkload(db, 61, { vacuum: false });
    const rep = startReplicator(["-config", cfg]);
    let writing = true;
    const writer = (async () => {
      while (writing) {
        app.step();
        await sleep(50);
      }
    })();
    try {
      await waitFor(
        "ready",
        async () => ((await fetch(`${base}/readyz`)).status === 200 ? true : undefined),
        20_000,
      );
      await minio.stop();
      const outageStart = Date.now();
      const lags: number[] = [];
      let sawError: string | undefined;
      while (Date.now() - outageStart < 30_000) {
        await sleep(2000);
        const s = await status(base);
        lags.push(s.lagSeconds);
        sawError ??= s.lastError?.message;
      }
      assert.ok(sawError, "/status shows the error during the outage");
      assert.match(sawError, /outage|ECONNREFUSED|connect/i);
      assert.ok(lags.at(-1)! > 20, `lag grows during the outage: ${lags.join(", ")}`);
      // Synced before the outage: still ready (the app's pod stays in its Service); the error shows
      // in /status and the metrics instead.
      assert.equal((await fetch(`${base}/readyz`)).status, 200);
      const metrics = await (await fetch(`${base}/metrics`)).text();
      assert.match(metrics, /^walship_replica_up\{[^}]*name="minio"[^}]*\} 0$/m);
      await minio.restart();
      const recovered = await waitFor(
        "recovery",
        async () => {
          const s = await status(base);
          return !s.lastError && s.lagSeconds < 2 ? s : undefined;
        },
        30_000,
      );
      assert.ok(recovered.lagSeconds < 2);
      assert.equal((await fetch(`${base}/readyz`)).status, 200);
      // Litestream's backend metrics, by replica type and operation.
      const after = await (await fetch(`${base}/metrics`)).text();
      const op = (name: string, operation: string) =>
        Number(
          new RegExp(
            `^${name}\\{[^}]*operation="${operation}"[^}]*replica_type="s3"[^}]*\\} (\\d+)$`,
            "m",
          ).exec(after)?.[1] ??
            new RegExp(
              `^${name}\\{[^}]*replica_type="s3"[^}]*operation="${operation}"[^}]*\\} (\\d+)$`,
              "m",
            ).exec(after)?.[1],
        );
      assert.ok(op("litestream_replica_operation_total", "PUT") > 10, after.slice(0, 500));
      assert.ok(op("litestream_replica_operation_total", "LIST") > 0);
      assert.ok(op("litestream_replica_operation_bytes", "PUT") > 1000);
    } finally {
      writing = false;
      await writer;
    }
    await sleep(500);
    assert.equal(await rep.stop(), 0, rep.output().slice(-2000));
    const want = logicalHashOf(app.db);
    app.close();
    const out = path.join(dir, "restored.db");
    const res = await walship(["restore", "-config", cfg, "-o", out, db]);
    assert.equal(res.code, 0, res.stderr);
    assert.equal(integrityCheck(out), "ok");
    assert.equal(logicalHash(out), want);
  });

  for (const [name, bucket, creds, create, code] of [
    [
      "bad credentials",
      "badcreds",
      () => ({ id: minio.accessKeyId, secret: "wrong-secret-key" }),
      true,
      /SignatureDoesNotMatch|InvalidAccessKeyId/,
    ],
    ["a missing bucket", "no-such-bucket", good, false, /NoSuchBucket/],
  ] as const) {
    it(`${name}: a clear error in logs, /status and /metrics, and no crash loop`, async () => {
      const { cfg, base, db } = await setup(bucket, creds(), create);
      const app = openWorkload(db, 62, { vacuum: false });
      app.step();
      const rep = startReplicator(["-config", cfg]);
      try {
        const s = await waitFor("the error in /status", async () => (await status(base)).lastError, 20_000);
        assert.match(s.message, code);
        assert.match(s.message, new RegExp(bucket));
        await sleep(3000);
        assert.equal(rep.child.exitCode, null, "still running: no crash loop");
        assert.equal((await fetch(`${base}/readyz`)).status, 503);
        assert.match(await (await fetch(`${base}/metrics`)).text(), /^walship_replica_up\{[^}]*\} 0$/m);
        assert.match(rep.output(), code);
        assert.match(rep.output(), /"replica sync failed"/);
      } finally {
        assert.equal(await rep.stop(), 0);
        app.close();
      }
    });
  }
});
