/**
 * The destination self-test (src/replicator/probe.ts), by the real replicator CLI against real MinIO:
 * a good bucket passes; a missing bucket fails at `write` with NoSuchBucket and the missing-bucket
 * hint, and passes once the bucket is created (the retry); a wrong endpoint (a closed loopback port)
 * fails at `write` with ECONNREFUSED and the unreachable hint; a read-only user fails at `write`
 * with AccessDenied; a user that may write but not delete fails at `delete` with the hint naming
 * retention. Users are MinIO STS sessions (AssumeRole) restricted by a session policy: MinIO's S3 API
 * cannot create users, and a session policy limits the session to the policy's actions, as an IAM
 * user's policy does. A passed probe runs again when the key files it reads change (a rotated Secret
 * does not restart the pod): keys swapped for a wrong secret fail it with the wrong-credentials hint.
 * Each case is checked in /status, in the metric, and the good destination's
 * backup restores to the database as it was (the probe never touches the replicated layout).
 */
import assert from "node:assert/strict";
import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { ListObjectsV2Command } from "@aws-sdk/client-s3";
import { AssumeRoleCommand, STSClient } from "@aws-sdk/client-sts";
import { type DestinationStatus, ReplicatorStatusSchema } from "../../src/shared/protocol.ts";
import { type Minio, startMinio } from "../helpers/minio.ts";
import { freePort } from "../helpers/ports.ts";
import { makeTempDir, removeTempDir } from "../helpers/proc.ts";
import { logicalHash, logicalHashOf, openWorkload } from "../helpers/sqlite.ts";
import { type Replicator, replicate, sleep, walship } from "../helpers/walship.ts";

let dir = "";
let minio: Minio;
const running: Replicator[] = [];

before(async () => {
  dir = makeTempDir("probe");
  minio = await startMinio();
  await minio.createBucket("good");
});
after(async () => {
  for (const r of running) await r.stop();
  await minio?.close();
  removeTempDir(dir);
});

/** Session credentials limited to `actions` on the bucket `good` (MinIO STS AssumeRole). */
async function session(actions: string[]): Promise<NodeJS.ProcessEnv> {
  const sts = new STSClient({
    endpoint: minio.endpoint,
    region: minio.region,
    credentials: { accessKeyId: minio.accessKeyId, secretAccessKey: minio.secretAccessKey },
  });
  try {
    const { Credentials: c } = await sts.send(
      new AssumeRoleCommand({
        RoleArn: "arn:xxx:xxx:xxx:xxxx",
        RoleSessionName: "walship-probe",
        DurationSeconds: 3600,
        Policy: JSON.stringify({
          Version: "2012-10-17",
          Statement: [
            {
              Effect: "Allow",
              Action: actions,
              Resource: ["arn:aws:s3:::good", "arn:aws:s3:::good/*"],
            },
          ],
        }),
      }),
    );
    assert.ok(c?.AccessKeyId && c.SecretAccessKey && c.SessionToken, "MinIO minted session credentials");
    return {
      AWS_ACCESS_KEY_ID: c.AccessKeyId,
      AWS_SECRET_ACCESS_KEY: c.SecretAccessKey,
      AWS_SESSION_TOKEN: c.SessionToken,
      LITESTREAM_ACCESS_KEY_ID: "",
      LITESTREAM_SECRET_ACCESS_KEY: "",
      AWS_PROFILE: "",
      AWS_CONFIG_FILE: path.join(dir, "none"),
      AWS_SHARED_CREDENTIALS_FILE: path.join(dir, "none"),
    };
  } finally {
    sts.destroy();
  }
}

/** One s3 destination's config lines; `keys` false: the default chain (the session in the env). */
function s3Replica(name: string, bucket: string, prefix: string, endpoint: string, keys: boolean): string {
  return (
    `      - name: ${name}\n        url: s3://${bucket}/${prefix}\n        endpoint: ${endpoint}\n` +
    `        region: ${minio.region}\n        force-path-style: true\n        sync-interval: 100ms\n` +
    (keys
      ? `        access-key-id: ${minio.accessKeyId}\n        secret-access-key: ${minio.secretAccessKey}\n`
      : "")
  );
}

async function start(
  name: string,
  replicas: string,
  env?: NodeJS.ProcessEnv,
): Promise<{ port: number; db: string; cfg: string; rep: Replicator }> {
  const port = await freePort();
  const db = path.join(dir, `${name}.db`);
  const text =
    `addr: 127.0.0.1:${port}\nprobe-interval: 1s\ndbs:\n  - path: ${db}\n` +
    `    monitor-interval: 50ms\n    replicas:\n${replicas}`;
  const { cfg, rep } = replicate(dir, text, { file: `${name}.yml`, ...(env ? { env } : {}) });
  running.push(rep);
  return { port, db, cfg, rep };
}

async function destinations(port: number): Promise<DestinationStatus[]> {
  const res = await fetch(`http://127.0.0.1:${port}/status`);
  return ReplicatorStatusSchema.parse(await res.json()).databases[0]!.replicas;
}

/** Polls /status until `name`'s probe has the outcome (the last document is in the failure). */
async function probeOf(
  port: number,
  name: string,
  outcome: "ok" | "failed",
  rep: Replicator,
  timeoutMs = 30_000,
): Promise<NonNullable<DestinationStatus["probe"]>> {
  const end = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < end) {
    try {
      const d = (await destinations(port)).find((r) => r.name === name);
      last = d?.probe;
      if (d?.probe?.outcome === outcome) return d.probe;
    } catch (err) {
      last = err;
    }
    await sleep(200);
  }
  throw new Error(
    `probe of ${name} not ${outcome} within ${timeoutMs} ms: ${JSON.stringify(last)}\n${rep.output().slice(-2000)}`,
  );
}

async function probeMetric(port: number): Promise<Map<string, number>> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const out = new Map<string, number>();
  for (const m of text.matchAll(/^walship_destination_probe_ok\{db="[^"]*",name="([^"]*)"\} (\S+)$/gm)) {
    out.set(m[1]!, Number(m[2]));
  }
  return out;
}

async function keysIn(bucket: string): Promise<string[]> {
  const c = minio.client();
  try {
    const r = await c.send(new ListObjectsV2Command({ Bucket: bucket }));
    return (r.Contents ?? []).map((o) => o.Key ?? "");
  } finally {
    c.destroy();
  }
}

describe("destination self-test", () => {
  it("passes on a good bucket, names a missing bucket and a wrong endpoint, clears once fixed, loses nothing", async () => {
    const closed = await freePort();
    const { port, db, cfg, rep } = await start(
      "three",
      s3Replica("good", "good", "three", minio.endpoint, true) +
        s3Replica("nobucket", "missing", "three", minio.endpoint, true) +
        s3Replica("closed", "good", "closed", `http://127.0.0.1:${closed}`, true),
    );
    const app = openWorkload(db, 91, { vacuum: false });
    try {
      for (let i = 0; i < 30; i++) {
        app.step();
        await sleep(20);
      }
      const good = await probeOf(port, "good", "ok", rep);
      assert.equal(good.step, undefined);
      assert.equal(good.hint, undefined);

      const missing = await probeOf(port, "nobucket", "failed", rep);
      assert.equal(missing.step, "write");
      assert.match(missing.message ?? "", /NoSuchBucket/);
      assert.match(missing.hint ?? "", /^missing bucket: bucket "missing" does not exist/);

      const unreachable = await probeOf(port, "closed", "failed", rep);
      assert.equal(unreachable.step, "write");
      assert.match(unreachable.message ?? "", /ECONNREFUSED/);
      assert.match(
        unreachable.hint ?? "",
        new RegExp(`^unreachable endpoint: http://127\\.0\\.0\\.1:${closed}`),
      );

      const metric = await probeMetric(port);
      assert.deepEqual([...metric.entries()].sort(), [
        ["closed", 0],
        ["good", 1],
        ["nobucket", 0],
      ]);

      // The user creates the bucket: the retry (probe-interval 1s) clears the failure.
      await minio.createBucket("missing");
      const fixed = await probeOf(port, "nobucket", "ok", rep);
      assert.equal(fixed.hint, undefined);
      assert.equal((await probeMetric(port)).get("nobucket"), 1);

      for (let i = 0; i < 20; i++) {
        app.step();
        await sleep(20);
      }
      await sleep(500);
      await rep.stop();
      // No probe object is left behind, and the layout is Litestream's alone.
      const keys = await keysIn("good");
      assert.ok(keys.length > 0, "the good destination holds the backup");
      assert.deepEqual(
        keys.filter((k) => k.includes("/walship/probe/")),
        [],
        "no probe object left",
      );
      const want = logicalHashOf(app.db);
      const out = path.join(dir, "three-restored.db");
      const res = await walship(["restore", "-config", cfg, "-replica", "good", "-o", out, db]);
      assert.equal(res.code, 0, res.stderr);
      assert.equal(logicalHash(out), want, "the good destination restores every transaction");
    } finally {
      app.close();
    }
  });

  it("a read-only user fails at write; one that cannot delete fails at delete, naming retention", async () => {
    const readOnly = await start(
      "readonly",
      s3Replica("ro", "good", "readonly", minio.endpoint, false),
      await session(["s3:GetObject", "s3:ListBucket", "s3:GetBucketLocation"]),
    );
    const noDelete = await start(
      "nodelete",
      s3Replica("nd", "good", "nodelete", minio.endpoint, false),
      await session(["s3:GetObject", "s3:PutObject", "s3:ListBucket", "s3:GetBucketLocation"]),
    );
    const ro = await probeOf(readOnly.port, "ro", "failed", readOnly.rep);
    assert.equal(ro.step, "write");
    assert.match(ro.message ?? "", /AccessDenied/);
    assert.match(
      ro.hint ?? "",
      /^no permission to write: the credentials lack s3:PutObject on bucket "good"/,
    );
    assert.equal((await probeMetric(readOnly.port)).get("ro"), 0);

    const nd = await probeOf(noDelete.port, "nd", "failed", noDelete.rep);
    assert.equal(nd.step, "delete");
    assert.match(nd.message ?? "", /AccessDenied/);
    assert.match(nd.hint ?? "", /^no permission to delete: the credentials lack s3:DeleteObject/);
    assert.match(nd.hint ?? "", /retention deletes old snapshots and WAL/);
    assert.equal((await probeMetric(noDelete.port)).get("nd"), 0);
    // It still replicates: a bucket that refuses deletes takes the WAL.
    const app = openWorkload(noDelete.db, 92, { vacuum: false });
    try {
      for (let i = 0; i < 10; i++) app.step();
      const end = Date.now() + 20_000;
      let synced: DestinationStatus | undefined;
      while (Date.now() < end) {
        synced = (await destinations(noDelete.port)).find((r) => r.name === "nd");
        if (synced?.lastSyncAt && !synced.lastError) break;
        await sleep(200);
      }
      assert.ok(synced?.lastSyncAt && !synced.lastError, JSON.stringify(synced));
    } finally {
      app.close();
    }
    await readOnly.rep.stop();
    await noDelete.rep.stop();
  });

  it("a credential file that changes is probed again: a wrong secret fails with the wrong-credentials hint", async () => {
    const keys = path.join(dir, "keys");
    mkdirSync(keys, { recursive: true });
    writeFileSync(path.join(keys, "id"), minio.accessKeyId);
    writeFileSync(path.join(keys, "secret"), minio.secretAccessKey);
    const r = await start(
      "rotate",
      `      - name: rot\n        url: s3://good/rotate\n        endpoint: ${minio.endpoint}\n` +
        `        region: ${minio.region}\n        force-path-style: true\n` +
        `        access-key-id-file: ${keys}/id\n        secret-access-key-file: ${keys}/secret\n`,
    );
    await probeOf(r.port, "rot", "ok", r.rep);
    writeFileSync(path.join(keys, "secret"), "not-the-secret");
    // Looked at every second here (probe-interval 1s), probed once the client re-read its keys (10 s).
    const bad = await probeOf(r.port, "rot", "failed", r.rep, 40_000);
    assert.equal(bad.step, "write");
    assert.match(bad.message ?? "", /SignatureDoesNotMatch/);
    assert.match(bad.hint ?? "", /^wrong credentials: .*\(SignatureDoesNotMatch\)/);
    assert.match(r.rep.output(), /destination credentials changed: probing again/);
    assert.doesNotMatch(r.rep.output(), /not-the-secret/, "the secret is never logged");
    await r.rep.stop();
  });
});
