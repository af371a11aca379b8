/**
 * Bad input, hostile Secret values: the config the operator renders for an S3 destination (its keys as
 * `access-key-id-file`/`secret-access-key-file`, the Secret's keys mounted as files), run by the real
 * replicator against real MinIO with odd, wrong and hostile key values in those files. Each gets a
 * clear error naming the field (access-key-id or secret-access-key), never echoes the value, and
 * writes nothing. (S6-S8 once broke the config when keys were `${VAR}` references expanded into the
 * text; the fuzz target config-secret keeps that path covered.) Case ids are the rows of the table in
 * docs/reliability-bad-input.md.
 */
import assert from "node:assert/strict";
import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { ListObjectsV2Command } from "@aws-sdk/client-s3";
import { SqliteReplicaSpec } from "../../src/api/v1alpha1/index.ts";
import { renderConfig } from "../../src/operator/specs/config.ts";
import { ReplicatorStatusSchema } from "../../src/shared/protocol.ts";
import { errorCode, walshipWithin } from "../helpers/bad-input.ts";
import { type Minio, startMinio } from "../helpers/minio.ts";
import { freePort } from "../helpers/ports.ts";
import { makeTempDir, removeTempDir } from "../helpers/proc.ts";
import { openWorkload } from "../helpers/sqlite.ts";
import { sleep, startReplicator } from "../helpers/walship.ts";

let dir = "";
let minio: Minio;
let db = "";

before(async () => {
  dir = makeTempDir("badsecrets");
  minio = await startMinio();
  await minio.createBucket("backups");
  db = path.join(dir, "app.db");
  const app = openWorkload(db, 31, { vacuum: false });
  for (let i = 0; i < 10; i++) app.step();
  app.close();
});
after(async () => {
  await minio?.close();
  removeTempDir(dir);
});

/** The operator's rendered config for this database and MinIO, on a loopback port. */
function operatorConfig(port: number): string {
  const text = renderConfig(
    SqliteReplicaSpec.parse({
      statefulSetName: "app",
      database: { path: db, volumeName: "data" },
      sidecar: { metricsPort: port },
      destinations: [
        {
          name: "minio",
          s3: {
            bucket: "backups",
            path: "prod/",
            endpoint: minio.endpoint,
            region: "us-east-1",
            forcePathStyle: true,
            credentials: {
              accessKeyId: { name: "s3-creds", key: "id" },
              secretAccessKey: { name: "s3-creds", key: "secret" },
            },
          },
        },
      ],
    }),
  );
  return text
    .replace(`addr: ':${port}'`, `addr: '127.0.0.1:${port}'`)
    .replaceAll("/var/run/walship/credentials/", `${dir}/credentials/`);
}

async function objectsInBucket(): Promise<number> {
  const c = minio.client();
  try {
    return (await c.send(new ListObjectsV2Command({ Bucket: "backups" }))).KeyCount ?? 0;
  } finally {
    c.destroy();
  }
}

/** The Secret's keys as the kubelet mounts them: one file per key. */
function writeKeys(keyId: string, secret: string): void {
  const d = path.join(dir, "credentials", "minio");
  mkdirSync(d, { recursive: true });
  writeFileSync(path.join(d, "access-key-id"), keyId);
  writeFileSync(path.join(d, "secret-access-key"), secret);
}

/** Runs the replicator with the Secret's values until its error shows (in /status or as an exit). */
async function runWith(
  keyId: string,
  secret: string,
): Promise<{ message: string; output: string; exited: boolean }> {
  const port = await freePort();
  const file = path.join(dir, `secrets-${port}.yml`);
  writeFileSync(file, operatorConfig(port));
  writeKeys(keyId, secret);
  const env = { POD_NAME: "app-0", AWS_EC2_METADATA_DISABLED: "true" };
  const rep = startReplicator(["-config", file], { env });
  try {
    const end = Date.now() + 20_000;
    while (Date.now() < end) {
      if (rep.child.exitCode !== null) {
        const line =
          rep
            .output()
            .split("\n")
            .find((l) => /\[WALSHIP_ERR_[A-Z_]+\]/.test(l)) ?? rep.output();
        return { message: line, output: rep.output(), exited: true };
      }
      try {
        const res = await fetch(`http://127.0.0.1:${port}/status`);
        const r = ReplicatorStatusSchema.parse(await res.json()).databases[0]!.replicas[0]!;
        if (r.lastError) return { message: r.lastError.message, output: rep.output(), exited: false };
      } catch {
        // not listening yet
      }
      await sleep(200);
    }
    throw new Error(`no error within 20 s: ${rep.output().slice(-1500)}`);
  } finally {
    await rep.stop();
  }
}

interface SecretCase {
  id: string;
  what: string;
  keyId: string;
  secret: string;
  /** The field the error must name. */
  field: RegExp;
}

const CASES: SecretCase[] = [
  {
    id: "S1",
    what: "an empty secret with a key id",
    keyId: "AKIAEXAMPLE",
    secret: "",
    field: /secret-access-key/,
  },
  {
    id: "S2",
    what: "a wrong secret of non-ASCII characters",
    keyId: "walship-test",
    secret: "é€😀-wrong-secret",
    field: /secret-access-key.*SignatureDoesNotMatch/,
  },
  {
    id: "S3",
    what: "an unknown key id with spaces",
    keyId: "AK IA unknown",
    secret: "whatever-secret-1",
    field: /access-key-id.*InvalidAccessKeyId/,
  },
  {
    id: "S4",
    what: "a 64 KiB secret",
    keyId: "walship-test",
    secret: "s".repeat(65536),
    field: /secret-access-key/,
  },
  {
    id: "S5",
    what: "a secret that looks like a variable reference",
    keyId: "walship-test",
    secret: "$" + "{POD_NAME}-secret",
    field: /secret-access-key.*SignatureDoesNotMatch/,
  },
  {
    id: "S6",
    what: "a secret with a single quote",
    keyId: "walship-test",
    secret: "it's-a-secret",
    field: /secret-access-key/,
  },
  {
    id: "S7",
    what: "a secret with a newline",
    keyId: "walship-test",
    secret: "line-one\nline-two",
    field: /secret-access-key/,
  },
  {
    id: "S8",
    what: "a secret that injects an endpoint",
    keyId: "walship-test",
    secret: "x'\n        endpoint: 'http://127.0.0.1:1",
    field: /secret-access-key/,
  },
];

describe("bad input: hostile Secret values", () => {
  for (const c of CASES) {
    it(`${c.id} ${c.what}`, async () => {
      const res = await runWith(c.keyId, c.secret);
      assert.match(res.message, c.field, res.output.slice(-2000));
      if (res.exited) assert.equal(errorCode(res.output), "WALSHIP_ERR_CONFIG", res.output.slice(-2000));
      assert.doesNotMatch(res.message, /127\.0\.0\.1:1\b/, "the Secret did not move the endpoint");
      for (const v of [c.secret, c.keyId]) {
        if (v.trim().length >= 6) assert.ok(!res.output.includes(v), "the value is never echoed");
      }
      assert.equal(await objectsInBucket(), 0, "nothing written with bad keys");
    });
  }

  it("the Secret's keys work once they are right, and nothing is left of the bad tries", async () => {
    const port = await freePort();
    const file = path.join(dir, "good.yml");
    writeFileSync(file, operatorConfig(port));
    writeKeys(minio.accessKeyId, minio.secretAccessKey);
    const res = await walshipWithin(["snapshots", "-config", file, db], 20_000, {
      POD_NAME: "app-0",
      AWS_EC2_METADATA_DISABLED: "true",
    });
    assert.equal(res.code, 0, res.stderr);
  });
});
