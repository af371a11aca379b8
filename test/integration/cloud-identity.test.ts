/**
 * Credentials of the gcs and abs destinations that come from the environment rather than a key in
 * the config, end to end through `walship replicate` and `walship restore`:
 *
 * - GKE Workload Identity: Application Default Credentials find the metadata server
 *   (GCE_METADATA_HOST points at a FAKE stand-in on 127.0.0.1);
 * - a service-account key file (`credentials-file`), whose JWT grant goes to the key's token_uri
 *   (the same stand-in, which checks the signature);
 * - Azure Workload Identity: the federated token file exchanged at AZURE_AUTHORITY_HOST (the
 *   stand-in) for a token that Azurite (HTTPS, OAuth on) accepts.
 *
 * fake-gcs-server ignores credentials, so it sits behind a FAKE proxy that passes only the expected
 * bearer token: a client that sent none, or the wrong one, fails. No request leaves 127.0.0.1.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { type Azurite, startAzurite } from "../helpers/azurite.ts";
import { type FakeGcs, startGcs } from "../helpers/gcs.ts";
import { logicalHash, logicalHashOf, openWorkload, writeFor } from "../helpers/sqlite.ts";
import { bearerProxy, gateProxy, startTokenStandIn, type TokenStandIn } from "../helpers/token-standin.ts";
import { sleep, startReplicator, walship } from "../helpers/walship.ts";

let standIn: TokenStandIn;
const dirs: string[] = [];
before(async () => {
  standIn = await startTokenStandIn();
});
after(async () => {
  await standIn?.close();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function tempDir(): string {
  const d = mkdtempSync(path.join(os.tmpdir(), "walship-identity-"));
  dirs.push(d);
  return d;
}

/** The environment of a pod with no cloud credentials of its own: only what each test adds. */
function cleanEnv(home: string, extra: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, HOME: home, ...extra };
  for (const k of [
    "GOOGLE_APPLICATION_CREDENTIALS",
    "STORAGE_EMULATOR_HOST",
    "METADATA_SERVER_DETECTION",
    "AZURE_STORAGE_KEY",
    "AZURE_STORAGE_ACCOUNT",
    "AZURE_STORAGE_SAS_TOKEN",
    "LITESTREAM_AZURE_ACCOUNT_KEY",
  ]) {
    if (!(k in extra)) delete env[k];
  }
  return env;
}

/** Replicates a small workload with `replica` (YAML), restores it, and checks the restore. */
async function roundTrip(replica: string, env: NodeJS.ProcessEnv): Promise<void> {
  const dir = tempDir();
  const db = path.join(dir, "app.db");
  const cfg = path.join(dir, "walship.yml");
  writeFileSync(
    cfg,
    `dbs:\n  - path: ${db}\n    replicas:\n      - ${replica.trim().split("\n").join("\n        ")}\n        sync-interval: 100ms\n`,
  );
  const app = openWorkload(db, 51);
  const rep = startReplicator(["-config", cfg], { env });
  await writeFor(app, 1500);
  await sleep(1000);
  assert.equal(await rep.stop(), 0, rep.output());
  const want = logicalHashOf(app.db);
  app.close();
  const out = path.join(dir, "restored.db");
  const r = await walship(["restore", "-config", cfg, "-o", out, db], { env });
  assert.equal(r.code, 0, r.stderr);
  assert.equal(logicalHash(out), want);
}

describe("gcs credentials from the environment", () => {
  let gcs: FakeGcs;
  before(async () => {
    gcs = await startGcs();
    await gcs.createBucket("identity");
  });
  after(() => gcs?.close());

  it("GKE Workload Identity: ADC takes a token from the metadata server", async () => {
    const proxy = await bearerProxy(gcs.endpoint, () => standIn.tokens.metadata);
    try {
      const env = cleanEnv(tempDir(), { GCE_METADATA_HOST: standIn.host });
      const before = standIn.calls.filter((c) => c === "metadata").length;
      await roundTrip(`url: gcs://identity/wi\nendpoint: ${proxy.url}`, env);
      assert.ok(standIn.calls.filter((c) => c === "metadata").length > before, standIn.calls.join(","));
      assert.ok(proxy.passed > 0);
      assert.equal(proxy.refused, 0, "every request carried the metadata server's token");
    } finally {
      await proxy.close();
    }
  });

  it("credentials-file: a service-account key's signed JWT is exchanged at its token_uri", async () => {
    const proxy = await bearerProxy(gcs.endpoint, () => standIn.tokens.serviceAccount);
    try {
      const home = tempDir();
      const key = path.join(home, "sa.json");
      writeFileSync(key, JSON.stringify(standIn.serviceAccountKey()), { mode: 0o600 });
      // A metadata host that would hand out the wrong token: the key file must win.
      const env = cleanEnv(home, { GCE_METADATA_HOST: standIn.host });
      const before = standIn.calls.filter((c) => c === "sa").length;
      await roundTrip(`url: gcs://identity/sa\nendpoint: ${proxy.url}\ncredentials-file: ${key}`, env);
      assert.ok(standIn.calls.filter((c) => c === "sa").length > before, standIn.calls.join(","));
      assert.equal(proxy.refused, 0);
      assert.ok(!standIn.calls.some((c) => c.startsWith("refused")), standIn.calls.join(","));
    } finally {
      await proxy.close();
    }
  });

  it("credentials that cannot delete stop `walship replicate` at start, naming the permission", async () => {
    // FAKE: the emulator enforces no permissions; this gate refuses every DELETE with GCS's 403.
    const gate = await gateProxy(gcs.endpoint, (req) =>
      req.method === "DELETE"
        ? {
            status: 403,
            body: { error: { code: 403, message: "does not have storage.objects.delete access" } },
          }
        : undefined,
    );
    try {
      const dir = tempDir();
      const db = path.join(dir, "app.db");
      const app = openWorkload(db, 53);
      app.step();
      app.close();
      const cfg = path.join(dir, "walship.yml");
      writeFileSync(
        cfg,
        `dbs:\n  - path: ${db}\n    replicas:\n      - url: gcs://identity/nodelete\n        endpoint: ${gate.url}\n`,
      );
      const env = cleanEnv(dir, { GCE_METADATA_HOST: standIn.host });
      const rep = startReplicator(["-config", cfg], { env });
      const code = await Promise.race([
        new Promise<number | null>((resolve) => rep.child.once("exit", (c) => resolve(c))),
        sleep(30_000).then(() => "still running" as const),
      ]);
      if (code === "still running") await rep.stop();
      assert.notEqual(code, "still running", `replicate kept running:\n${rep.output()}`);
      assert.notEqual(code, 0);
      assert.match(rep.output(), /cannot delete objects \(storage\.objects\.delete denied, HTTP 403\)/);
      assert.match(rep.output(), /roles\/storage\.objectAdmin/);
    } finally {
      await gate.close();
    }
  });

  it("without any credentials the gate refuses and replicate reports it", async () => {
    const proxy = await bearerProxy(gcs.endpoint, () => standIn.tokens.metadata);
    try {
      const dir = tempDir();
      const db = path.join(dir, "app.db");
      const app = openWorkload(db, 52);
      app.step();
      app.close();
      // The metadata stand-in is not named: ADC finds nothing (detection off keeps it off the network).
      const env = cleanEnv(dir, { METADATA_SERVER_DETECTION: "none" });
      const r = await walship(["snapshots", `gs://identity/none?endpoint=${encodeURIComponent(proxy.url)}`], {
        env,
      });
      assert.notEqual(r.code, 0, r.stdout);
      assert.match(r.stderr, /credentials|401/i);
    } finally {
      await proxy.close();
    }
  });
});

describe("abs credentials from the environment", () => {
  let az: Azurite;
  before(async () => {
    az = await startAzurite({ https: true, oauth: true });
    await az.createContainer("identity");
  });
  after(() => az?.close());

  it("Azure Workload Identity: the federated token is exchanged at the authority host", async () => {
    const home = tempDir();
    const tokenFile = path.join(home, "azure-identity-token");
    writeFileSync(tokenFile, standIn.azure.federatedToken);
    const env = cleanEnv(home, {
      AZURE_CLIENT_ID: standIn.azure.clientId,
      AZURE_TENANT_ID: standIn.azure.tenantId,
      AZURE_FEDERATED_TOKEN_FILE: tokenFile,
      AZURE_AUTHORITY_HOST: `${standIn.url}/`,
      NODE_EXTRA_CA_CERTS: az.caFile as string,
    });
    const before = standIn.calls.filter((c) => c === "azure").length;
    await roundTrip(
      `type: abs\naccount-name: ${az.account}\nbucket: identity\npath: wi\nendpoint: ${az.endpoint}`,
      env,
    );
    assert.ok(standIn.calls.filter((c) => c === "azure").length > before, standIn.calls.join(","));
  });

  it("a federated token the authority refuses is a STORAGE error naming the client", async () => {
    const home = tempDir();
    const tokenFile = path.join(home, "azure-identity-token");
    writeFileSync(tokenFile, "not-the-federated-token");
    const env = cleanEnv(home, {
      AZURE_CLIENT_ID: standIn.azure.clientId,
      AZURE_TENANT_ID: standIn.azure.tenantId,
      AZURE_FEDERATED_TOKEN_FILE: tokenFile,
      AZURE_AUTHORITY_HOST: `${standIn.url}/`,
      NODE_EXTRA_CA_CERTS: az.caFile as string,
    });
    const url = `abs://${az.account}@identity/wi?endpoint=${encodeURIComponent(az.endpoint)}`;
    const r = await walship(["generations", url], { env });
    assert.notEqual(r.code, 0, r.stdout);
    assert.match(r.stderr, new RegExp(`refused client ${standIn.azure.clientId}.*WALSHIP_ERR_STORAGE`));
    assert.ok(!r.stderr.includes("not-the-federated-token"), "the token text is never echoed");
  });
});
