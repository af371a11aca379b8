/**
 * The SqliteReplica reconcile's API requests once an object is settled, against the real control
 * plane (etcd and kube-apiserver; no controller manager, so the StatefulSet keeps 0 pods): a repeat
 * reconcile of an unchanged object reads the informers' caches and sends nothing; a changed spec, a
 * tampered StatefulSet template and an old apply (a deleted Secret) each bring the apply steps back.
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import * as path from "node:path";
import { after, before, describe, it } from "node:test";
import { stringify } from "yaml";
import type { SqliteReplicaStatus } from "../../src/api/v1alpha1/index.ts";
import { KubeClient, observeRequests } from "../../src/operator/kube/client.ts";
import { EventRecorder } from "../../src/operator/kube/events.ts";
import { Informer } from "../../src/operator/kube/informer.ts";
import type { StatefulSet } from "../../src/operator/kube/types.ts";
import { onlyStatusChanged } from "../../src/operator/main.ts";
import {
  nextWait,
  type SqliteReplicaObject,
  SqliteReplicaReconciler,
} from "../../src/operator/replica/reconcile.ts";
import { nullLogger } from "../../src/shared/log.ts";
import { type ControlPlane, startControlPlane } from "../helpers/controlplane.ts";
import { appStatefulSet } from "../helpers/e2e.ts";
import { waitFor } from "../helpers/proc.ts";
import { s3Replica } from "./operator-fixtures.ts";

const ROOT = path.resolve(import.meta.dirname, "../..");
const NS = "steady";
const KEY = `${NS}/db`;

describe("nextWait and onlyStatusChanged", () => {
  it("backs off from 3 s by doubling, up to the cap", () => {
    const seq: number[] = [];
    let w = 3_000;
    for (let i = 0; i < 6; i++) {
      seq.push(w);
      w = nextWait(w, 30_000);
    }
    assert.deepEqual(seq, [3_000, 6_000, 12_000, 24_000, 30_000, 30_000]);
    assert.equal(nextWait(3_000, 2_000), 3_000, "never below the first wait");
  });

  it("tells a status-only change from a spec, finalizer or deletion change", () => {
    const base: SqliteReplicaObject = {
      metadata: { name: "a", namespace: "n", uid: "u", generation: 1, resourceVersion: "1", finalizers: [] },
      status: { phase: "Injecting" },
    };
    const statusOnly = { ...base, metadata: { ...base.metadata, resourceVersion: "2" }, status: {} };
    assert.equal(onlyStatusChanged(base, statusOnly), true);
    assert.equal(onlyStatusChanged(base, { ...base, metadata: { ...base.metadata, generation: 2 } }), false);
    assert.equal(
      onlyStatusChanged(base, {
        ...base,
        metadata: { ...base.metadata, finalizers: ["walship.dev/finalizer"] },
      }),
      false,
    );
    assert.equal(
      onlyStatusChanged(base, {
        ...base,
        metadata: { ...base.metadata, deletionTimestamp: "2026-01-01T00:00:00Z" },
      }),
      false,
    );
  });
});

describe("SqliteReplica reconcile in steady state (real kube-apiserver)", { timeout: 180_000 }, () => {
  let cp: ControlPlane;
  const abort = new AbortController();
  let client: KubeClient;
  let replicas: Informer<SqliteReplicaObject>;
  let statefulSets: Informer<StatefulSet>;
  let reconciler: SqliteReplicaReconciler;
  const applyEveryMs = { value: 600_000 };
  let requests: string[] = [];
  let stopObserving: () => void = () => {};
  // A stand-in for the pod's sidecar (no kubelet here to run a real one): an idle, healthy
  // replicator's /status, or HTTP 500 while `sidecarFails`.
  let sidecar: Server;
  let sidecarPort = 0;
  let sidecarFails = false;
  const startedAt = new Date(Date.now() - 60_000).toISOString().replace(/\.\d{3}Z$/, "Z");
  const statusDoc = () => {
    const gen = "0123456789abcdef";
    const pos = { generation: gen, index: 1, offset: 4152 };
    return {
      apiVersion: "walship.dev/v1alpha1",
      kind: "ReplicatorStatus",
      version: "test-stand-in",
      time: startedAt,
      ready: true,
      databases: [
        {
          path: "/data/app.db",
          ready: true,
          generation: gen,
          position: pos,
          pageSize: 4096,
          sizeBytes: 8192,
          walSizeBytes: 4152,
          replicas: [
            {
              name: "s3",
              type: "s3",
              location: "s3://bucket",
              ready: true,
              generation: gen,
              position: pos,
              lagSeconds: 0,
              pendingTransactions: 0,
              pendingBytes: 0,
              lastSyncAt: startedAt,
              lastSnapshot: { at: startedAt, index: 0 },
              window: { oldest: startedAt, newest: startedAt },
              syncCount: 1,
              syncErrorCount: 0,
            },
          ],
        },
      ],
    };
  };

  const apply = async (obj: unknown) => {
    const file = path.join(cp.dir, `obj-${Math.random().toString(16).slice(2)}.yaml`);
    fs.writeFileSync(file, stringify(obj));
    await cp.kubectl(["apply", "-f", file]);
  };
  const replica = (syncInterval: string) =>
    s3Replica(NS, "http://127.0.0.1:1", { syncInterval, sidecar: { metricsPort: sidecarPort } });
  /** Reconciles once and returns the requests it sent, as "verb resource". */
  const reconcileOnce = async () => {
    requests = [];
    const r = await reconciler.reconcile(KEY);
    return { result: r, requests: [...requests].sort() };
  };
  /** Waits until the caches hold what the API server holds (so a reconcile sees our last writes). */
  const settleCaches = async () => {
    const live = (await client.get<SqliteReplicaObject>(
      `/apis/walship.dev/v1alpha1/namespaces/${NS}/sqlitereplicas/db`,
    )) as SqliteReplicaObject;
    const sts = await client.get<StatefulSet>(`/apis/apps/v1/namespaces/${NS}/statefulsets/app`);
    await waitFor(
      () =>
        replicas.get(KEY)?.metadata?.resourceVersion === live.metadata?.resourceVersion &&
        statefulSets.get(`${NS}/app`)?.metadata?.resourceVersion === sts.metadata?.resourceVersion,
      { what: "informer caches up to date", timeoutMs: 10_000, intervalMs: 20 },
    );
  };
  const condition = (type: string) =>
    (replicas.get(KEY)?.status as SqliteReplicaStatus | undefined)?.conditions?.find((c) => c.type === type);

  before(async () => {
    sidecar = createServer((req, res) => {
      req.resume();
      if (sidecarFails) res.writeHead(500).end("down");
      else res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(statusDoc()));
    });
    await new Promise<void>((r) => sidecar.listen(0, "127.0.0.1", r));
    sidecarPort = (sidecar.address() as AddressInfo).port;
    cp = await startControlPlane({ controllerManager: false });
    await cp.kubectl(["apply", "-f", path.join(ROOT, "crds")]);
    await cp.kubectl(["wait", "--for=condition=Established", "crd/sqlitereplicas.walship.dev"]);
    await cp.kubectl(["create", "namespace", NS]);
    await cp.kubectl([
      "-n",
      NS,
      "create",
      "secret",
      "generic",
      "creds",
      "--from-literal=id=a",
      "--from-literal=secret=b",
    ]);
    await apply({
      ...appStatefulSet(NS, "/data"),
      spec: { ...(appStatefulSet(NS, "/data").spec as object), replicas: 0 },
    });
    client = KubeClient.load(cp.kubeconfig);
    replicas = new Informer<SqliteReplicaObject>(
      client,
      { path: "/apis/walship.dev/v1alpha1/sqlitereplicas" },
      { onUpdate: () => {}, onDelete: () => {} },
    );
    statefulSets = new Informer<StatefulSet>(
      client,
      { path: "/apis/apps/v1/statefulsets" },
      { onUpdate: () => {}, onDelete: () => {} },
    );
    void replicas.run(abort.signal);
    void statefulSets.run(abort.signal);
    await Promise.all([replicas.waitSynced(), statefulSets.waitSynced()]);
    reconciler = new SqliteReplicaReconciler({
      client,
      events: new EventRecorder(client, "steady-test"),
      log: nullLogger(),
      listReplicas: () => replicas.list(),
      getReplica: (k) => replicas.get(k),
      getStatefulSet: (k) => statefulSets.get(k),
      options: {
        image: "walship-test/walship:dev",
        pollMs: 10_000,
        get applyEveryMs() {
          return applyEveryMs.value;
        },
      },
    });
    stopObserving = observeRequests((verb, resource) => {
      if (resource !== "events") requests.push(`${verb} ${resource}`);
    });
  });

  after(async () => {
    stopObserving();
    abort.abort();
    await cp?.stop();
    sidecar?.close();
  });

  it("a new SqliteReplica: finalizer, the applies and the status in one reconcile", async () => {
    await apply(replica("1s"));
    await waitFor(() => replicas.get(KEY), { what: "db in the cache", timeoutMs: 10_000, intervalMs: 20 });
    const first = await reconcileOnce();
    assert.deepEqual(first.requests, [
      "apply configmaps",
      "apply statefulsets",
      "get secrets",
      "patch sqlitereplicas",
      "update sqlitereplicas/status",
    ]);
    assert.equal(first.result.requeueAfterMs, 3_000, "no pod yet: look again soon");
    await settleCaches();
    assert.equal(condition("Injected")?.status, "True");
    const sts = statefulSets.get(`${NS}/app`);
    assert.ok(sts);
    assert.equal(reconciler.isOwnWrite(sts), true, "the StatefulSet's event is our own apply");
  });

  it("an unchanged SqliteReplica with no pods: no request at all, and a longer wait each time", async () => {
    const waits: number[] = [];
    for (let i = 0; i < 3; i++) {
      const r = await reconcileOnce();
      assert.deepEqual(r.requests, [], `reconcile ${i + 2}`);
      waits.push(r.result.requeueAfterMs ?? -1);
    }
    assert.deepEqual(waits, [6_000, 12_000, 24_000]);
  });

  it("a changed spec is applied again", async () => {
    await apply(replica("2s"));
    await settleCaches();
    const r = await reconcileOnce();
    assert.deepEqual(r.requests, [
      "apply configmaps",
      "apply statefulsets",
      "get secrets",
      "update sqlitereplicas/status",
    ]);
    await settleCaches();
    assert.deepEqual((await reconcileOnce()).requests, []);
  });

  it("a StatefulSet template that lost the injection is applied again", async () => {
    await cp.kubectl([
      "-n",
      NS,
      "patch",
      "statefulset",
      "app",
      "--type=json",
      "-p",
      JSON.stringify([{ op: "remove", path: "/spec/template/spec/initContainers" }]),
    ]);
    await settleCaches();
    const r = await reconcileOnce();
    assert.ok(r.requests.includes("apply statefulsets"), r.requests.join(", "));
    const sts = await client.get<StatefulSet>(`/apis/apps/v1/namespaces/${NS}/statefulsets/app`);
    assert.ok(sts.spec?.template.spec?.initContainers?.some((c) => c.name === "walship"));
  });

  it("a Ready pod: polled on the listed pod until the StatefulSet changes or the sidecar fails", async () => {
    // What the controller manager and the kubelet would do: one pod from the injected template, Running.
    await cp.kubectl(["-n", NS, "scale", "statefulset", "app", "--replicas=1"]);
    const sts = await client.get<StatefulSet>(`/apis/apps/v1/namespaces/${NS}/statefulsets/app`);
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
        // The claim the controller manager would make from the volumeClaimTemplate.
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
              state: { running: { startedAt } },
            },
          ],
        },
      },
    });
    await settleCaches();
    const first = await reconcileOnce();
    assert.deepEqual(
      first.requests,
      ["list pods", "update sqlitereplicas/status"],
      "a scale applies nothing",
    );
    assert.equal(first.result.requeueAfterMs, 10_000, "settled: the normal poll");
    await settleCaches();
    assert.equal(condition("Ready")?.status, "True");

    const again = await reconcileOnce();
    assert.deepEqual(again.requests, [], "the pod list is reused; nothing changed");

    sidecarFails = true;
    const failing = await reconcileOnce();
    assert.deepEqual(failing.requests, ["list pods", "update sqlitereplicas/status"], "listed again at once");
    await settleCaches();
    assert.equal(condition("Degraded")?.status, "True");
    sidecarFails = false;
    assert.ok((await reconcileOnce()).requests.includes("list pods"), "a failing pod's list is not kept");
    await settleCaches();
    assert.deepEqual((await reconcileOnce()).requests, []);

    await cp.kubectl(["-n", NS, "annotate", "statefulset", "app", "touched=1"]);
    await settleCaches();
    assert.deepEqual((await reconcileOnce()).requests, ["list pods"], "the StatefulSet changed");
  });

  it("an apply older than applyEveryMs is repeated: a deleted Secret is found", async () => {
    await settleCaches();
    assert.deepEqual((await reconcileOnce()).requests, []);
    await cp.kubectl(["-n", NS, "delete", "secret", "creds"]);
    assert.deepEqual((await reconcileOnce()).requests, [], "within applyEveryMs the Secret is not read");
    applyEveryMs.value = 0;
    const r = await reconcileOnce();
    assert.ok(r.requests.includes("get secrets"), r.requests.join(", "));
    await settleCaches();
    assert.equal(condition("Injected")?.reason, "SecretMissing");
  });
});
