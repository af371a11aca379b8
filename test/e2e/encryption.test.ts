/**
 * Encrypted backups through the operator on the real node (helm-installed operator, MinIO on the
 * node's bridge): a SqliteReplica whose destination names its age identity and recipient by Secret
 * reference replicates the app's database as age files that hold none of its rows; the keys appear
 * nowhere (the ConfigMap, the pod spec, the SqliteReplica, Events, the sidecar's and the operator's
 * logs); a deleted database is restored by the init container before the app starts; a SqliteRestore
 * into a new claim restores it; a key rotated in the Secret (identities old + new, recipient new)
 * reaches the running sidecar, after which both old and new backups still restore.
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { after, before, describe, it } from "node:test";
import { GetObjectCommand, ListObjectsV2Command } from "@aws-sdk/client-s3";
import { generateX25519Identity, identityToRecipient } from "age-encryption";
import Database from "better-sqlite3";
import {
  appStatefulSet,
  createS3Secret,
  installOperator,
  type Operator,
  type PodLite,
  readyPod as readyPodIn,
  rows,
  s3SqliteReplica,
} from "../helpers/e2e.ts";
import { type Minio, startMinio } from "../helpers/minio.ts";
import { type Cluster, startCluster } from "../helpers/node/index.ts";
import { waitFor } from "../helpers/proc.ts";

const NS = "e2e-enc";
const MOUNT = "/var/lib/walship-e2e-enc/data";
const BUCKET = "encrypted";
const MARKER = "ENC-E2E-ROW-MARKER";

interface Cr {
  status?: {
    phase?: string;
    generation?: string;
    lagSeconds?: number;
    conditions?: Array<{ type: string; status: string }>;
  };
}

describe("encrypted backups (real node, helm-installed operator, MinIO)", { timeout: 1_200_000 }, () => {
  let c: Cluster;
  let minio: Minio;
  let op: Operator;
  let oldId = "";
  let newId = "";

  const cr = async () =>
    (await c.cp.request<Cr>("GET", `/apis/walship.dev/v1alpha1/namespaces/${NS}/sqlitereplicas/db`)).body;
  const readyPod = (name: string, pred: (p: PodLite) => boolean = () => true) =>
    readyPodIn(c, NS, name, pred);
  const injected = (p: PodLite) => (p.spec.initContainers ?? []).some((i) => i.name === "walship");
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
  const ageSecret = (identities: string, recipients: string) =>
    c.apply({
      apiVersion: "v1",
      kind: "Secret",
      metadata: { name: "age-keys", namespace: NS },
      data: {
        identities: Buffer.from(identities).toString("base64"),
        recipients: Buffer.from(recipients).toString("base64"),
      },
    });
  const writeRows = async (label: string, n: number) => {
    const db = new Database(path.join(await c.pvcDir(NS, "data-app-0"), "app.db"));
    try {
      for (let i = 0; i < n; i++)
        db.prepare("INSERT INTO starts (pod, at) VALUES (?, ?)").run(
          `${MARKER}-${label}-${i}`,
          new Date().toISOString(),
        );
    } finally {
      db.close();
    }
  };
  const synced = () =>
    waitFor(async () => ((await cr()).status?.lagSeconds === 0 ? true : undefined), {
      what: "lag 0",
      timeoutMs: 60_000,
      intervalMs: 250,
    }).then(() => sleep(1000));
  const objects = async () => {
    const out = await minio.client().send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: "app/app-0/" }));
    return (out.Contents ?? []).map((o) => o.Key as string);
  };
  const restoreCr = async (name: string) =>
    (
      await c.cp.request<{ status?: { phase?: string; message?: string } }>(
        "GET",
        `/apis/walship.dev/v1alpha1/namespaces/${NS}/sqliterestores/${name}`,
      )
    ).body;
  const restoreInto = async (name: string): Promise<Array<{ pod: string }>> => {
    await c.apply({
      apiVersion: "walship.dev/v1alpha1",
      kind: "SqliteRestore",
      metadata: { name, namespace: NS },
      spec: { sqliteReplicaName: "db", mode: "NewClaim", newClaim: { name: `${name}-claim` } },
    });
    const done = await waitFor(
      async () => {
        const r = await restoreCr(name);
        return ["Succeeded", "Failed"].includes(r.status?.phase ?? "") ? r : undefined;
      },
      { what: `SqliteRestore ${name} done`, timeoutMs: 240_000, intervalMs: 500 },
    );
    assert.equal(done.status?.phase, "Succeeded", JSON.stringify(done.status));
    const db = new Database(path.join(await c.pvcDir(NS, `${name}-claim`), "app.db"), { readonly: true });
    try {
      return db.prepare("SELECT pod FROM starts ORDER BY id").all() as Array<{ pod: string }>;
    } finally {
      db.close();
    }
  };

  before(async () => {
    c = await startCluster();
    minio = await startMinio({ host: c.gateway });
    await minio.createBucket(BUCKET);
    op = await installOperator(c);
    await c.createNamespace(NS);
    await createS3Secret(c, NS, minio);
    oldId = await generateX25519Identity();
    newId = await generateX25519Identity();
    await ageSecret(`# the first key\n${oldId}\n`, `${await identityToRecipient(oldId)}\n`);
    await c.apply(appStatefulSet(NS, MOUNT));
    const replica = s3SqliteReplica(NS, "db", minio, { mount: MOUNT, bucket: BUCKET });
    const spec = replica.spec as { destinations: Array<Record<string, unknown>> };
    spec.destinations[0]!.age = {
      identities: [{ name: "age-keys", key: "identities" }],
      recipients: [{ name: "age-keys", key: "recipients" }],
    };
    await c.apply(replica);
    await readyPod("app-0", injected);
    await waitFor(async () => ((await cr()).status?.phase === "Replicating" ? true : undefined), {
      what: "SqliteReplica db Replicating",
      timeoutMs: 180_000,
      intervalMs: 500,
    }).catch(async (err) => {
      throw new Error(
        `${(err as Error).message}\n${await c.describe(NS)}\n${await c.logs(NS, "app-0", "walship")}`,
      );
    });
  });

  after(async () => {
    await minio?.close();
    await c?.stop();
  });

  it("replicates age files holding none of the rows; the keys show nowhere", async () => {
    await writeRows("first", 50);
    await synced();
    const keys = await objects();
    assert.ok(
      keys.some((k) => k.endsWith(".snapshot.lz4")) && keys.some((k) => k.endsWith(".wal.lz4")),
      keys.join("\n"),
    );
    const secretPart = oldId.slice(20, 50);
    for (const key of keys) {
      const out = await minio.client().send(new GetObjectCommand({ Bucket: BUCKET, Key: key }));
      const bytes = Buffer.from(await out.Body!.transformToByteArray());
      assert.equal(bytes.indexOf(MARKER), -1, `${key} holds a row`);
      if (key.endsWith("/walship/claim.json")) {
        // The single-writer claim is the one plaintext object, by design (docs/encryption.md): any
        // writer, whatever its keys, must read who holds the path. It names the holder, nothing else.
        const claim = JSON.parse(bytes.toString()) as { holder?: { pod?: { name?: string } } };
        assert.equal(claim.holder?.pod?.name, "app-0", bytes.toString());
        assert.ok(!bytes.toString().includes(secretPart), "the identity shows in the claim");
        continue;
      }
      assert.equal(bytes.subarray(0, 21).toString(), "age-encryption.org/v1", key);
    }
    const places: Array<[string, string]> = [
      [
        "ConfigMap",
        JSON.stringify((await c.cp.request("GET", `/api/v1/namespaces/${NS}/configmaps/db-walship`)).body),
      ],
      ["pod", JSON.stringify((await c.cp.request("GET", `/api/v1/namespaces/${NS}/pods/app-0`)).body)],
      ["SqliteReplica", JSON.stringify(await cr())],
      ["Events", JSON.stringify((await c.cp.request("GET", `/api/v1/namespaces/${NS}/events`)).body)],
      ["sidecar log", await c.logs(NS, "app-0", "walship")],
      ["restore log", await c.logs(NS, "app-0", "walship-restore")],
      ["operator log", await op.logs()],
    ];
    for (const [where, text] of places)
      assert.ok(!text.includes(secretPart), `the identity shows in the ${where}`);
    assert.match(places[0]![1], /age-identity-0/, "the ConfigMap names the key file");
  });

  it("restores a deleted database before the app starts (restore on start)", async () => {
    const p = await readyPod("app-0");
    const before = await rows(p);
    await synced();
    const dir = await c.pvcDir(NS, "data-app-0");
    await c.cp.request("DELETE", `/api/v1/namespaces/${NS}/pods/app-0`);
    await waitFor(
      async () => {
        const r = await c.cp.request<PodLite>("GET", `/api/v1/namespaces/${NS}/pods/app-0`);
        return r.status !== 200 || r.body.metadata.uid !== p.metadata.uid ? true : undefined;
      },
      { what: "pod app-0 gone", timeoutMs: 60_000 },
    );
    for (const f of fs.readdirSync(dir)) fs.rmSync(path.join(dir, f), { recursive: true, force: true });
    const p2 = await readyPod("app-0", (x) => x.metadata.uid !== p.metadata.uid && injected(x));
    const after2 = await rows(p2);
    assert.deepEqual(after2.slice(0, before.length), before, "every synced row is back");
    assert.match(await c.logs(NS, "app-0", "walship-restore"), /restor/i);
  });

  it("a SqliteRestore into a new claim restores the encrypted replica", async () => {
    await writeRows("before-restore", 5);
    await synced();
    const got = await restoreInto("copy");
    assert.ok(
      got.some((r) => r.pod === `${MARKER}-before-restore-4`),
      "the last synced row is restored",
    );
  });

  it("a rotated key reaches the running sidecar; old and new backups restore with both identities", async () => {
    const newRecipient = await identityToRecipient(newId);
    await ageSecret(`${oldId}\n${newId}\n`, `${newRecipient}\n`);
    // The kubelet refreshes the projected volume (about a minute), the sidecar re-reads it (10 s):
    // wait for a segment sealed to the new recipient only (the old identity cannot open it).
    const { Decrypter } = await import("age-encryption");
    const opensWithOldOnly = async (key: string) => {
      const out = await minio.client().send(new GetObjectCommand({ Bucket: BUCKET, Key: key }));
      const d = new Decrypter();
      d.addIdentity(oldId);
      try {
        await d.decrypt(Buffer.from(await out.Body!.transformToByteArray()));
        return true;
      } catch {
        return false;
      }
    };
    const seen = new Set(await objects());
    await waitFor(
      async () => {
        await writeRows("rotating", 1);
        await sleep(2000);
        for (const key of await objects()) {
          if (seen.has(key) || !key.endsWith(".wal.lz4")) continue;
          seen.add(key);
          if (!(await opensWithOldOnly(key))) return true;
        }
        return undefined;
      },
      { what: "a segment sealed to the new recipient", timeoutMs: 240_000, intervalMs: 1000 },
    );
    const p = await readyPod("app-0");
    assert.equal(
      p.status?.initContainerStatuses?.find((s) => s.name === "walship")?.restartCount,
      0,
      "no sidecar restart",
    );
    await writeRows("after-rotation", 3);
    await synced();
    const got = await restoreInto("rotated");
    assert.ok(
      got.some((r) => r.pod === `${MARKER}-first-0`),
      "a row from before the rotation",
    );
    assert.ok(
      got.some((r) => r.pod === `${MARKER}-after-rotation-2`),
      "a row from after it",
    );
  });
});
