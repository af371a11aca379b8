/**
 * No secret value in anything Walship creates or says (issue 13): a Secret with hostile values
 * (quotes, newlines, `${X}`, `$(cmd)`, YAML document markers, a 4 KiB value, bytes that are not
 * UTF-8), then everything rendered from it is searched for them: the ConfigMap, the StatefulSet's pod
 * template, the SqliteReplica's status and conditions, the Events, a SqliteRestore's status and its
 * Jobs (the one the controller created and every step's, built), the operator's log, and a real
 * replicator and restore started with those keys against a destination that is down (their output
 * and the sidecar's /status, which the reconcile then reads from a pod).
 *
 * The real kube-apiserver (no controller manager, no kubelet): the pod is created and its status set
 * by the test, its IP is 127.0.0.1 where the real replicator listens.
 */
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { once } from "node:events";
import * as fs from "node:fs";
import * as path from "node:path";
import { after, before, describe, it } from "node:test";
import Database from "better-sqlite3";
import { stringify } from "yaml";
import {
  databasesOf,
  SqliteReplicaSpec,
  SqliteRestoreSpec,
  withDatabase,
} from "../../src/api/v1alpha1/index.ts";
import { KubeClient } from "../../src/operator/kube/client.ts";
import { EventRecorder } from "../../src/operator/kube/events.ts";
import { Informer } from "../../src/operator/kube/informer.ts";
import type { StatefulSet } from "../../src/operator/kube/types.ts";
import { type SqliteReplicaObject, SqliteReplicaReconciler } from "../../src/operator/replica/reconcile.ts";
import { type SqliteRestoreObject, SqliteRestoreReconciler } from "../../src/operator/restore/controller.ts";
import { buildRestoreJob } from "../../src/operator/specs/restorejob.ts";
import { appIdentity } from "../../src/operator/specs/security.ts";
import { createLogger } from "../../src/shared/log.ts";
import { type ControlPlane, startControlPlane } from "../helpers/controlplane.ts";
import { appStatefulSet } from "../helpers/e2e.ts";
import { freePort } from "../helpers/ports.ts";
import { waitFor } from "../helpers/proc.ts";
import { WALSHIP } from "../helpers/walship.ts";
import { idleStatefulSet, s3Replica } from "./operator-fixtures.ts";

const ROOT = path.resolve(import.meta.dirname, "../..");
const NS = "leak";

/** The hostile values, as the Secret's bytes. Each holds a canary that must never show up. */
const ID = Buffer.from(
  `AKIA'"\n$(touch /tmp/walship-leak)\${HOME}\n---\nexec: touch /tmp/x\n...\nCANARYID7q\n`,
);
const SECRET = Buffer.concat([
  Buffer.from("CANARYSECRET9z"),
  Buffer.from("x".repeat(4096 - 40)),
  Buffer.from([0xff, 0xfe, 0xc3, 0x28, 0x80]), // not UTF-8
  Buffer.from("'\n"),
]);
const CANARIES = ["CANARYID7q", "CANARYSECRET9z", "touch /tmp/walship-leak"];

/** Every way a value could be found: the canaries, the raw bytes, their base64 and UTF-8 decoding. */
function assertNoSecret(what: string, data: string | Buffer): void {
  const text = Buffer.isBuffer(data) ? data.toString("utf8") : data;
  const bytes = Buffer.isBuffer(data) ? data : Buffer.from(data);
  for (const c of CANARIES) assert.ok(!text.includes(c), `${what} holds ${c}:\n${text.slice(0, 2000)}`);
  for (const v of [ID, SECRET]) {
    assert.ok(!bytes.includes(v.subarray(0, 24)), `${what} holds a value's bytes`);
    assert.ok(!text.includes(v.toString("base64").slice(0, 24)), `${what} holds a value's base64`);
  }
  assert.ok(!bytes.includes(Buffer.from([0xff, 0xfe, 0xc3, 0x28])), `${what} holds the non-UTF-8 bytes`);
}

describe("no secret value in what Walship creates (real kube-apiserver)", { timeout: 240_000 }, () => {
  let cp: ControlPlane;
  let client: KubeClient;
  let dir: string;
  let port: number;
  let operatorLog = "";
  const outputs: Array<[string, Buffer | string]> = [];
  const abort = new AbortController();
  let replicas: Informer<SqliteReplicaObject>;
  let statefulSets: Informer<StatefulSet>;
  let restores: Informer<SqliteRestoreObject>;
  let reconciler: SqliteReplicaReconciler;

  /** A logger that keeps every line the operator writes. */
  const operatorLogger = () =>
    createLogger({
      level: "debug",
      sink: (line) => {
        operatorLog += line;
      },
    });
  const apply = async (obj: unknown) => {
    const file = path.join(cp.dir, `obj-${Math.random().toString(16).slice(2)}.yaml`);
    fs.writeFileSync(file, stringify(obj));
    await cp.kubectl(["apply", "-f", file]);
  };

  before(async () => {
    port = await freePort();
    cp = await startControlPlane({ controllerManager: false });
    dir = fs.mkdtempSync(path.join(cp.dir, "leak-"));
    await cp.kubectl(["apply", "-f", path.join(ROOT, "crds")]);
    await cp.kubectl(["wait", "--for=condition=Established", "crd/sqlitereplicas.walship.dev"]);
    await cp.kubectl(["create", "namespace", NS]);
    client = KubeClient.load(cp.kubeconfig);
    await client.request("POST", `/api/v1/namespaces/${NS}/secrets`, {
      body: {
        apiVersion: "v1",
        kind: "Secret",
        metadata: { name: "creds" },
        data: { id: ID.toString("base64"), secret: SECRET.toString("base64") },
      },
    });
    await apply(idleStatefulSet(appStatefulSet, NS));
    const closed = await freePort(); // nothing listens: the destination is down
    await apply(s3Replica(NS, `http://127.0.0.1:${closed}`, { sidecar: { metricsPort: port } }));
    const logger = operatorLogger();
    const informer = <T extends SqliteReplicaObject | StatefulSet | SqliteRestoreObject>(p: string) =>
      new Informer<T>(client, { path: p }, { onUpdate: () => {}, onDelete: () => {} });
    replicas = informer<SqliteReplicaObject>("/apis/walship.dev/v1alpha1/sqlitereplicas");
    statefulSets = informer<StatefulSet>("/apis/apps/v1/statefulsets");
    restores = informer<SqliteRestoreObject>("/apis/walship.dev/v1alpha1/sqliterestores");
    for (const i of [replicas, statefulSets, restores]) void i.run(abort.signal);
    await Promise.all([replicas.waitSynced(), statefulSets.waitSynced(), restores.waitSynced()]);
    await waitFor(() => replicas.get(`${NS}/db`), { what: "db cached", timeoutMs: 10_000, intervalMs: 20 });
    reconciler = new SqliteReplicaReconciler({
      client,
      events: new EventRecorder(client, "leak-test"),
      log: logger,
      listReplicas: () => replicas.list(),
      getReplica: (k) => replicas.get(k),
      getStatefulSet: (k) => statefulSets.get(k),
      options: { image: "walship-test/walship:dev", pollMs: 10_000 },
    });
  });

  after(async () => {
    abort.abort();
    await cp?.stop();
  });

  it("renders and runs everything with the hostile Secret", async () => {
    await reconciler.reconcile(`${NS}/db`);
    const cm = await client.get<{ data: Record<string, string> }>(
      `/api/v1/namespaces/${NS}/configmaps/db-walship`,
    );
    const sts = await client.get<StatefulSet>(`/apis/apps/v1/namespaces/${NS}/statefulsets/app`);
    assert.ok(
      sts.spec?.template.spec?.initContainers?.some((c) => c.name === "walship"),
      "injected",
    );

    // The sidecar as the pod would run it: the rendered config, the key files the projected volume
    // would hold, the pod's name; the database and the key directory moved under the test's dir.
    const keys = path.join(dir, "keys", "s3");
    fs.mkdirSync(keys, { recursive: true });
    fs.writeFileSync(path.join(keys, "access-key-id"), ID);
    fs.writeFileSync(path.join(keys, "secret-access-key"), SECRET);
    const data = path.join(dir, "data");
    fs.mkdirSync(data);
    const conn = new Database(path.join(data, "app.db"));
    conn.pragma("journal_mode = wal");
    conn.exec("CREATE TABLE t (x); INSERT INTO t VALUES (1)");
    conn.close();
    const config = path.join(dir, "walship.yml");
    fs.writeFileSync(
      config,
      cm.data["walship.yml"]!.replaceAll("/var/run/walship/credentials", path.join(dir, "keys")).replaceAll(
        "'/data/",
        `'${data}/`,
      ),
    );
    // Also the variables an older operator put into the pods (env from the Secret, expanded into the
    // config text); today's config does not read them.
    const env = {
      ...process.env,
      POD_NAME: "app-0",
      AWS_EC2_METADATA_DISABLED: "true",
      WALSHIP_S3_S3_ACCESS_KEY_ID: ID.toString("utf8"),
      WALSHIP_S3_S3_SECRET_ACCESS_KEY: SECRET.toString("utf8"),
    };
    const sidecar = spawn(WALSHIP, ["replicate", "-config", config], {
      env,
      stdio: ["ignore", "pipe", "pipe"],
    });
    const exited = once(sidecar, "exit");
    const chunks: Buffer[] = [];
    sidecar.stdout.on("data", (d: Buffer) => chunks.push(d));
    sidecar.stderr.on("data", (d: Buffer) => chunks.push(d));
    try {
      let status = "";
      let gone = false;
      void exited.then(() => {
        gone = true;
      });
      await waitFor(
        async () => {
          if (gone) {
            // It could not start (an older config text broke on the value): its output must not say it.
            assertNoSecret("the sidecar's output", Buffer.concat(chunks));
            assert.fail(`the sidecar exited: ${Buffer.concat(chunks).toString().slice(0, 1000)}`);
          }
          try {
            status = await (await fetch(`http://127.0.0.1:${port}/status`)).text();
          } catch {
            return false;
          }
          return status.includes('"lastError"');
        },
        { what: "the sidecar reports the destination's error", timeoutMs: 30_000, intervalMs: 200 },
      );
      outputs.push(["the sidecar's /status", status]);

      // The pod the StatefulSet controller and the kubelet would make, its sidecar at 127.0.0.1.
      await cp.kubectl(["-n", NS, "scale", "statefulset", "app", "--replicas=1"]);
      const podPath = `/api/v1/namespaces/${NS}/pods`;
      await client.request("POST", podPath, {
        body: {
          apiVersion: "v1",
          kind: "Pod",
          metadata: {
            name: "app-0",
            labels: sts.spec?.template.metadata?.labels,
            annotations: sts.spec?.template.metadata?.annotations,
          },
          spec: {
            ...sts.spec?.template.spec,
            volumes: [...(sts.spec?.template.spec?.volumes ?? []), { name: "data", emptyDir: {} }],
          },
        },
      });
      await client.request("PATCH", `${podPath}/app-0/status`, {
        contentType: "application/merge-patch+json",
        body: {
          status: {
            phase: "Running",
            podIP: "127.0.0.1",
            podIPs: [{ ip: "127.0.0.1" }],
            initContainerStatuses: [
              {
                name: "walship",
                image: "x",
                imageID: "",
                ready: true,
                restartCount: 0,
                state: { running: { startedAt: new Date(Date.now() - 60_000).toISOString() } },
              },
            ],
          },
        },
      });
      await waitFor(() => statefulSets.get(`${NS}/app`)?.spec?.replicas === 1, {
        what: "the scaled StatefulSet cached",
        timeoutMs: 10_000,
        intervalMs: 20,
      });
      await reconciler.reconcile(`${NS}/db`);
    } finally {
      sidecar.kill("SIGTERM");
      await exited;
    }
    outputs.push(["the sidecar's output", Buffer.concat(chunks)]);

    // The restore init container's command, failing on the unreachable destination.
    const restore = spawnSync(
      WALSHIP,
      ["restore", "-config", config, "-if-db-not-exists", "-if-replica-exists", path.join(data, "gone.db")],
      { env, timeout: 60_000 },
    );
    assert.notEqual(restore.status, 0, "the restore fails: the destination is down");
    outputs.push(["the restore's output", Buffer.concat([restore.stdout, restore.stderr])]);

    // A SqliteRestore: its status, and the plan Job the controller creates.
    await apply({
      apiVersion: "walship.dev/v1alpha1",
      kind: "SqliteRestore",
      metadata: { name: "r1", namespace: NS },
      spec: { sqliteReplicaName: "db", mode: "InPlace" },
    });
    await waitFor(() => restores.get(`${NS}/r1`), { what: "r1 cached", timeoutMs: 10_000 });
    const restoreReconciler = new SqliteRestoreReconciler({
      client,
      events: new EventRecorder(client, "leak-test"),
      log: operatorLogger(),
      listRestores: () => restores.list(),
      options: { image: "walship-test/walship:dev" },
    });
    await restoreReconciler.reconcile(`${NS}/r1`);
    const jobs = await client.get<{ items: unknown[] }>(`/apis/batch/v1/namespaces/${NS}/jobs`);
    assert.ok(jobs.items.length > 0, "the plan Job was created");
    const parsed = SqliteReplicaSpec.parse(replicas.get(`${NS}/db`)?.spec);
    const replicaSpec = withDatabase(parsed, databasesOf(parsed)[0]!);
    for (const step of ["plan", "restore", "swap", "rollback"] as const) {
      outputs.push([
        `the ${step} Job`,
        JSON.stringify(
          buildRestoreJob({
            step,
            restore: { name: "r1", namespace: NS, uid: "u" },
            spec: SqliteRestoreSpec.parse({ sqliteReplicaName: "db", mode: "InPlace" }),
            replica: replicaSpec,
            sts,
            pod: "app-0",
            claimName: "data-app-0",
            mount: { mountPath: "/data" },
            identity: appIdentity(sts.spec?.template.spec, "app"),
          }),
        ),
      ]);
    }
    const get = (p: string) => client.get<unknown>(p).then((o) => JSON.stringify(o));
    outputs.push(
      ["the ConfigMap", JSON.stringify(cm)],
      ["the StatefulSet", JSON.stringify(sts)],
      ["the SqliteReplica", await get(`/apis/walship.dev/v1alpha1/namespaces/${NS}/sqlitereplicas/db`)],
      ["the SqliteRestore", await get(`/apis/walship.dev/v1alpha1/namespaces/${NS}/sqliterestores/r1`)],
      ["the Jobs", JSON.stringify(jobs)],
      ["the Events", await get(`/api/v1/namespaces/${NS}/events`)],
      ["the operator's log", operatorLog],
    );
  });

  it("and finds no value anywhere", async () => {
    assert.ok(outputs.length >= 14, `everything was collected (${outputs.length})`);
    const replica = JSON.parse(outputs.find(([w]) => w === "the SqliteReplica")![1] as string) as {
      status?: { conditions?: Array<{ type: string; status: string; message: string }> };
    };
    const degraded = replica.status?.conditions?.find((c) => c.type === "Degraded");
    assert.equal(degraded?.status, "True", "the reconcile read the failing sidecar's /status");
    assert.match(degraded?.message ?? "", /destination s3:/);
    for (const [what, data] of outputs) assertNoSecret(what, data);
  });
});
