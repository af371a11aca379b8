/**
 * No keys in the config: the AWS default credential chain. EKS Pod Identity hands pods an HTTP
 * credentials endpoint (AWS_CONTAINER_CREDENTIALS_FULL_URI) and a token file
 * (AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE); this test serves that endpoint on loopback with MinIO's
 * session credentials minted by MinIO's STS (AssumeRole) — a stand-in for the EKS agent, named as
 * such — and checks the token reaches it and the session credentials are what replicate with.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { AssumeRoleCommand, STSClient } from "@aws-sdk/client-sts";
import { type Minio, startMinio } from "../helpers/minio.ts";
import { logicalHash, logicalHashOf, openWorkload } from "../helpers/sqlite.ts";
import { sleep, startReplicator, walship } from "../helpers/walship.ts";

let minio: Minio;
const dir = mkdtempSync(path.join(os.tmpdir(), "walship-creds-"));
before(async () => {
  minio = await startMinio();
  await minio.createBucket("podidentity");
});
after(async () => {
  await minio?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe("S3 credentials from the default chain", () => {
  it("EKS Pod Identity's container credentials endpoint (stand-in agent on loopback)", async () => {
    const sts = new STSClient({
      endpoint: minio.endpoint,
      region: "us-east-1",
      credentials: { accessKeyId: minio.accessKeyId, secretAccessKey: minio.secretAccessKey },
    });
    const { Credentials: session } = await sts.send(
      new AssumeRoleCommand({
        RoleArn: "arn:xxx:xxx:xxx:xxxx",
        RoleSessionName: "walship-test",
        DurationSeconds: 3600,
      }),
    );
    sts.destroy();
    assert.ok(
      session?.AccessKeyId && session.SecretAccessKey && session.SessionToken,
      "MinIO minted session credentials",
    );
    assert.notEqual(session.AccessKeyId, minio.accessKeyId);
    const seen: string[] = [];
    const agent = http.createServer((req, res) => {
      seen.push(String(req.headers.authorization));
      if (req.headers.authorization !== "pod-identity-token") {
        res.writeHead(401).end();
        return;
      }
      res.writeHead(200, { "content-type": "application/json" }).end(
        JSON.stringify({
          AccessKeyId: session.AccessKeyId,
          SecretAccessKey: session.SecretAccessKey,
          Token: session.SessionToken,
          Expiration: new Date(Date.now() + 3600_000).toISOString(),
        }),
      );
    });
    await new Promise<void>((r) => agent.listen(0, "127.0.0.1", r));
    const port = (agent.address() as { port: number }).port;
    const tokenFile = path.join(dir, "token");
    writeFileSync(tokenFile, "pod-identity-token");
    const env = {
      AWS_CONTAINER_CREDENTIALS_FULL_URI: `http://127.0.0.1:${port}/v1/credentials`,
      AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE: tokenFile,
      AWS_ACCESS_KEY_ID: "",
      AWS_SECRET_ACCESS_KEY: "",
      LITESTREAM_ACCESS_KEY_ID: "",
      LITESTREAM_SECRET_ACCESS_KEY: "",
      AWS_PROFILE: "",
      AWS_CONFIG_FILE: path.join(dir, "none"),
      AWS_SHARED_CREDENTIALS_FILE: path.join(dir, "none"),
    };
    const cfg = path.join(dir, "walship.yml");
    writeFileSync(
      cfg,
      `dbs:
  - path: ${dir}/app.db
    replicas:
      - url: s3://podidentity/app
        endpoint: ${minio.endpoint}
        region: us-east-1
        sync-interval: 100ms
`,
    );
    const app = openWorkload(path.join(dir, "app.db"), 81, { vacuum: false });
    try {
      const rep = startReplicator(["-config", cfg], { env });
      for (let i = 0; i < 20; i++) {
        app.step();
        await sleep(30);
      }
      await sleep(800);
      assert.equal(await rep.stop(), 0, rep.output().slice(-1500));
      assert.doesNotMatch(rep.output(), /replica sync failed/);
      const want = logicalHashOf(app.db);
      const out = path.join(dir, "restored.db");
      const res = await walship(["restore", "-config", cfg, "-o", out, path.join(dir, "app.db")], { env });
      assert.equal(res.code, 0, res.stderr);
      assert.equal(logicalHash(out), want);
      assert.ok(
        seen.length > 0 && seen.every((h) => h === "pod-identity-token"),
        `agent saw: ${seen.join(",")}`,
      );
    } finally {
      app.close();
      agent.close();
    }
  });
});
