/**
 * A SqliteReplica with an SFTP, a GCS and an Azure destination on the real node (test/helpers/node:
 * kubelet, containerd, the image built from the Dockerfile), the operator helm-installed, the
 * namespace enforcing Pod Security `restricted`. The servers run on the host and listen on the
 * node's bridge gateway, where pods reach them:
 *
 * - SFTP: OpenSSH with a chrooted sftp-only user; the private key and the server's host key come
 *   from Secrets (the host key is checked);
 * - GCS: fake-gcs-server behind a FAKE gate that passes only the token a service-account key earns
 *   at its token_uri (a FAKE token stand-in): the key comes from a Secret;
 * - Azure: Azurite (--disableTelemetry), the account key from a Secret.
 *
 * Checks: each server holds the replica's objects under <path>/<pod name>; no credential appears in
 * the ConfigMap, the pod spec or the SqliteReplica; a deleted database is restored on start; stock
 * litestream v0.3.13 restores the SFTP and Azure replicas the pod wrote.
 *
 * Written for the real node; run by the lead (only one node may exist on a machine).
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { after, before, describe, it } from "node:test";
import { type Azurite, startAzurite } from "../helpers/azurite.ts";
import { appStatefulSet, installOperator, readyPod as readyPodIn, rows } from "../helpers/e2e.ts";
import { type FakeGcs, startGcs } from "../helpers/gcs.ts";
import { runLitestream } from "../helpers/litestream.ts";
import { type Cluster, startCluster } from "../helpers/node/index.ts";
import { makeTempDir, waitFor } from "../helpers/proc.ts";
import { type SftpServer, startSftp } from "../helpers/sftp.ts";
import { logicalHash } from "../helpers/sqlite.ts";
import { bearerProxy, startTokenStandIn, type TokenStandIn } from "../helpers/token-standin.ts";

const NS = "e2e-dest";
const DATA_MOUNT = "/var/lib/walship-e2e/data";

describe("SqliteReplica with sftp, gcs and abs destinations (real node)", { timeout: 900_000 }, () => {
  let c: Cluster;
  let sftp: SftpServer;
  let gcs: FakeGcs;
  let az: Azurite;
  let tokens: TokenStandIn;
  let gate: Awaited<ReturnType<typeof bearerProxy>>;

  const cr = async () =>
    (
      await c.cp.request<{
        status?: {
          conditions?: Array<{ type: string; status: string; message: string }>;
          generation?: string;
        };
      }>("GET", `/apis/walship.dev/v1alpha1/namespaces/${NS}/sqlitereplicas/db`)
    ).body;

  before(async () => {
    c = await startCluster();
    sftp = await startSftp({ listenHost: c.gateway, writableDirs: ["backups"] });
    gcs = await startGcs({ listenHost: c.gateway });
    await gcs.createBucket("replicas");
    tokens = await startTokenStandIn(c.gateway);
    gate = await bearerProxy(gcs.endpoint, () => tokens.tokens.serviceAccount, c.gateway);
    az = await startAzurite({ listenHost: c.gateway });
    await az.createContainer("replicas");
    await installOperator(c);
    await c.createNamespace(NS);
    const secretDir = makeTempDir("e2e-secrets");
    const saKey = path.join(secretDir, "sa.json");
    fs.writeFileSync(saKey, JSON.stringify(tokens.serviceAccountKey()));
    await c.kubectl([
      "-n",
      NS,
      "create",
      "secret",
      "generic",
      "sftp",
      `--from-file=id_ed25519=${sftp.keyPath}`,
      `--from-literal=host_key=${sftp.hostKeyLine("ed25519")}`,
    ]);
    await c.kubectl(["-n", NS, "create", "secret", "generic", "gcs", `--from-file=sa.json=${saKey}`]);
    await c.kubectl(["-n", NS, "create", "secret", "generic", "azure", `--from-literal=key=${az.key}`]);
    await c.apply(appStatefulSet(NS, DATA_MOUNT));
  });

  after(async () => {
    await gate?.close();
    await tokens?.close();
    await az?.close();
    await gcs?.close();
    await sftp?.close();
    await c?.stop();
  });

  it("replicates to all three, with every credential from a Secret and none in the config or the pod", async () => {
    await c.apply({
      apiVersion: "walship.dev/v1alpha1",
      kind: "SqliteReplica",
      metadata: { name: "db", namespace: NS },
      spec: {
        statefulSetName: "app",
        database: { path: `${DATA_MOUNT}/app.db`, volumeName: "data" },
        syncInterval: "200ms",
        destinations: [
          {
            name: "backup-host",
            sftp: {
              host: sftp.address,
              user: sftp.user,
              path: "/backups/app",
              privateKey: { name: "sftp", key: "id_ed25519" },
              hostKey: { name: "sftp", key: "host_key" },
            },
          },
          {
            name: "gcs",
            gcs: {
              bucket: "replicas",
              path: "app",
              endpoint: gate.url,
              credentials: { serviceAccountKey: { name: "gcs", key: "sa.json" } },
            },
          },
          {
            name: "azure",
            abs: {
              accountName: az.account,
              container: "replicas",
              path: "app",
              endpoint: az.endpoint,
              credentials: { accountKey: { name: "azure", key: "key" } },
            },
          },
        ],
      },
    });
    await readyPodIn(c, NS, "app-0", (x) => (x.spec.initContainers ?? []).some((i) => i.name === "walship"));
    await waitFor(
      async () => (await cr()).status?.conditions?.find((x) => x.type === "Ready")?.status === "True",
      {
        what: "SqliteReplica db Ready",
        timeoutMs: 120_000,
        intervalMs: 1000,
      },
    ).catch(async (err) => {
      throw new Error(
        `${(err as Error).message}: ${JSON.stringify((await cr()).status)}\n${await c.logs(NS, "app-0", "walship")}`,
      );
    });

    // Each server holds the pod's replica.
    await waitFor(() => fs.existsSync(path.join(sftp.root, "backups/app/app-0/generations")), {
      what: "sftp objects",
      timeoutMs: 30_000,
    });
    assert.ok((await gcs.listObjects("replicas", "app/app-0/generations/")).length > 0, "gcs objects");
    assert.ok(
      tokens.calls.includes("sa"),
      `the key was exchanged at its token_uri: ${tokens.calls.join(",")}`,
    );
    assert.equal(gate.refused, 0, "every GCS request carried the token");
    const blobs: string[] = [];
    for await (const b of az
      .client()
      .getContainerClient("replicas")
      .listBlobsFlat({ prefix: "app/app-0/generations/" }))
      blobs.push(b.name);
    assert.ok(blobs.length > 0, "azure blobs");

    // No credential value in the ConfigMap, the StatefulSet, the pod or the SqliteReplica.
    const secrets = [
      fs.readFileSync(sftp.keyPath, "utf8").split("\n")[1] ?? "",
      az.key,
      tokens.tokens.serviceAccount,
    ];
    for (const what of [
      ["-n", NS, "get", "configmap", "db-walship", "-o", "yaml"],
      ["-n", NS, "get", "statefulset", "app", "-o", "yaml"],
      ["-n", NS, "get", "pod", "app-0", "-o", "yaml"],
      ["-n", NS, "get", "sqlitereplica", "db", "-o", "yaml"],
    ]) {
      const out = (await c.kubectl(what)).stdout;
      for (const s of secrets)
        assert.ok(s.length > 10 && !out.includes(s), `${what.join(" ")} holds a secret`);
    }
  });

  it("restores a deleted database on start, and litestream v0.3.13 reads what the pod wrote", async () => {
    const p = await readyPodIn(c, NS, "app-0");
    const before = await rows(p);
    await new Promise((r) => setTimeout(r, 2000));
    const dir = await c.pvcDir(NS, "data-app-0");
    await c.cp.request("DELETE", `/api/v1/namespaces/${NS}/pods/app-0`);
    await waitFor(
      async () => {
        const r = await c.cp.request<{ metadata: { uid: string } }>(
          "GET",
          `/api/v1/namespaces/${NS}/pods/app-0`,
        );
        return r.status !== 200 || r.body.metadata.uid !== p.metadata.uid;
      },
      { what: "pod app-0 gone", timeoutMs: 60_000 },
    );
    for (const f of fs.readdirSync(dir)) fs.rmSync(path.join(dir, f), { recursive: true, force: true });
    const p2 = await readyPodIn(c, NS, "app-0", (x) => x.metadata.uid !== p.metadata.uid);
    const after2 = await rows(p2);
    assert.deepEqual(after2.slice(0, before.length), before, "every synced row is back");

    // Stock litestream, from the host, on the same objects (sftp and abs; its GCS client cannot get
    // through the token gate).
    const work = makeTempDir("e2e-litestream");
    const cfg = path.join(work, "litestream.yml");
    fs.writeFileSync(
      cfg,
      `dbs:
  - path: ${path.join(work, "app.db")}
    replicas:
      - name: sftp
        type: sftp
        host: ${sftp.address}
        user: ${sftp.user}
        key-path: ${sftp.keyPath}
        path: /backups/app/app-0
      - name: abs
        type: abs
        account-name: ${az.account}
        account-key: ${az.key}
        bucket: replicas
        path: app/app-0
        endpoint: ${az.endpoint}
`,
    );
    const outs: string[] = [];
    for (const r of ["sftp", "abs"]) {
      const out = path.join(work, `${r}.db`);
      const res = await runLitestream([
        "restore",
        "-config",
        cfg,
        "-replica",
        r,
        "-o",
        out,
        path.join(work, "app.db"),
      ]);
      assert.equal(res.code, 0, res.stderr);
      outs.push(logicalHash(out));
    }
    assert.equal(outs[0], outs[1], "the sftp and abs replicas hold the same database");
  });
});
