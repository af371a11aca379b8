/**
 * Pausing a SqliteReplica (annotation walship.dev/paused: "true", what `kubectl walship pause` sets),
 * against the real control plane (etcd and kube-apiserver; no controller manager, so no pods): the
 * reconcile removes exactly what Walship added to the StatefulSet, keeps the finalizer, reports phase
 * Paused with its conditions and Events; removing the annotation injects the replicator again.
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { after, before, describe, it } from "node:test";
import { stringify } from "yaml";
import { PAUSED_ANNOTATION, type SqliteReplicaStatus } from "../../src/api/v1alpha1/index.ts";
import { KubeClient } from "../../src/operator/kube/client.ts";
import { EventRecorder } from "../../src/operator/kube/events.ts";
import type { StatefulSet } from "../../src/operator/kube/types.ts";
import { type SqliteReplicaObject, SqliteReplicaReconciler } from "../../src/operator/replica/reconcile.ts";
import { nullLogger } from "../../src/shared/log.ts";
import { type ControlPlane, startControlPlane } from "../helpers/controlplane.ts";
import { appStatefulSet } from "../helpers/e2e.ts";
import { idleStatefulSet, s3Replica } from "./operator-fixtures.ts";

const ROOT = path.resolve(import.meta.dirname, "../..");
const NS = "pause";
const CR = `/apis/walship.dev/v1alpha1/namespaces/${NS}/sqlitereplicas/db`;
const STS = `/apis/apps/v1/namespaces/${NS}/statefulsets/app`;

describe("SqliteReplica paused by annotation (real kube-apiserver)", { timeout: 180_000 }, () => {
  let cp: ControlPlane;
  let client: KubeClient;
  let reconciler: SqliteReplicaReconciler;

  const apply = async (obj: unknown) => {
    const file = path.join(cp.dir, `obj-${Math.random().toString(16).slice(2)}.yaml`);
    fs.writeFileSync(file, stringify(obj));
    await cp.kubectl(["apply", "-f", file]);
  };
  const cr = () => client.get<SqliteReplicaObject & { status?: SqliteReplicaStatus }>(CR);
  const template = async () => (await client.get<StatefulSet>(STS)).spec?.template;
  const annotate = (value: string | null) =>
    client.request("PATCH", CR, {
      contentType: "application/merge-patch+json",
      body: { metadata: { annotations: { [PAUSED_ANNOTATION]: value } } },
    });
  const reasons = async () =>
    (
      await client.get<{ items: Array<{ reason: string; involvedObject: { name: string } }> }>(
        `/api/v1/namespaces/${NS}/events`,
      )
    ).items
      .filter((e) => e.involvedObject.name === "db")
      .map((e) => e.reason);

  before(async () => {
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
    await apply(idleStatefulSet(appStatefulSet, NS));
    await apply(s3Replica(NS, "http://127.0.0.1:1"));
    client = KubeClient.load(cp.kubeconfig);
    reconciler = new SqliteReplicaReconciler({
      client,
      events: new EventRecorder(client, "pause-test"),
      log: nullLogger(),
      listReplicas: () => [],
      options: { image: "walship-test/walship:dev" },
    });
  });

  after(async () => {
    await cp?.stop();
  });

  it("injects, then on pause removes exactly what it added and says Paused; resume injects again", async () => {
    await reconciler.reconcile(`${NS}/db`);
    const injected = await template();
    assert.deepEqual(
      injected?.spec?.initContainers?.map((c) => c.name),
      ["walship-restore", "walship"],
    );
    assert.equal(injected?.metadata?.annotations?.["walship.dev/sqlitereplica"], "db");

    await annotate("true");
    const result = await reconciler.reconcile(`${NS}/db`);
    assert.deepEqual(result, {}, "nothing to poll while paused");
    const paused = await template();
    assert.equal(paused?.spec?.initContainers, undefined, "no walship init container is left");
    assert.equal(paused?.metadata?.annotations?.["walship.dev/sqlitereplica"], undefined);
    assert.equal(paused?.metadata?.annotations?.["walship.dev/config-hash"], undefined);
    assert.deepEqual(
      paused?.spec?.containers.map((c) => c.name),
      ["app"],
      "the app's own containers are untouched",
    );
    const obj = await cr();
    assert.equal(obj.status?.phase, "Paused");
    assert.ok(obj.metadata?.finalizers?.includes("walship.dev/finalizer"), "the finalizer stays");
    const cond = (t: string) => obj.status?.conditions?.find((c) => c.type === t);
    assert.equal(cond("Injected")?.status, "False");
    assert.equal(cond("Injected")?.reason, "Paused");
    assert.equal(cond("Replicating")?.reason, "Paused");
    assert.equal(cond("Ready")?.status, "False");
    assert.equal(cond("Ready")?.reason, "Paused");
    assert.equal(obj.status?.pods, undefined);
    const r = await reasons();
    assert.ok(r.includes("Removed") && r.includes("Paused"), `Events: ${r.join(",")}`);

    // A second reconcile while paused changes nothing.
    const rv = (await client.get<StatefulSet>(STS)).metadata?.resourceVersion;
    await reconciler.reconcile(`${NS}/db`);
    assert.equal((await client.get<StatefulSet>(STS)).metadata?.resourceVersion, rv);

    await annotate(null);
    await reconciler.reconcile(`${NS}/db`);
    const resumed = await template();
    assert.deepEqual(
      resumed?.spec?.initContainers?.map((c) => c.name),
      ["walship-restore", "walship"],
    );
    const after = await cr();
    assert.notEqual(after.status?.phase, "Paused");
    assert.equal(after.status?.conditions?.find((c) => c.type === "Injected")?.status, "True");
  });
});
