/**
 * The SqliteRestore controller's reading of what it did not create (issue 13), against the real
 * kube-apiserver (no controller manager, no kubelet: nothing runs; the test sets what it needs):
 * a NewClaim whose claim name is taken ends ClaimExists with nothing created, and a Job left over
 * under a step's name ends JobExists and is not touched.
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { after, before, describe, it } from "node:test";
import { stringify } from "yaml";
import { KubeClient } from "../../src/operator/kube/client.ts";
import { EventRecorder } from "../../src/operator/kube/events.ts";
import { Informer } from "../../src/operator/kube/informer.ts";
import { type SqliteRestoreObject, SqliteRestoreReconciler } from "../../src/operator/restore/controller.ts";
import { nullLogger } from "../../src/shared/log.ts";
import { type ControlPlane, startControlPlane } from "../helpers/controlplane.ts";
import { appStatefulSet } from "../helpers/e2e.ts";
import { waitFor } from "../helpers/proc.ts";

const ROOT = path.resolve(import.meta.dirname, "../..");
const NS = "restores";

describe("SqliteRestore controller: claims and Jobs it did not create (real kube-apiserver)", {
  timeout: 180_000,
}, () => {
  let cp: ControlPlane;
  let client: KubeClient;
  let restores: Informer<SqliteRestoreObject>;
  let reconciler: SqliteRestoreReconciler;
  const abort = new AbortController();
  const apply = async (obj: unknown) => {
    const file = path.join(cp.dir, `obj-${Math.random().toString(16).slice(2)}.yaml`);
    fs.writeFileSync(file, stringify(obj));
    await cp.kubectl(["apply", "-f", file]);
  };
  const restorePath = (n: string) => `/apis/walship.dev/v1alpha1/namespaces/${NS}/sqliterestores/${n}`;
  const restore = async (name: string, spec: object) => {
    await apply({
      apiVersion: "walship.dev/v1alpha1",
      kind: "SqliteRestore",
      metadata: { name, namespace: NS },
      spec,
    });
    await waitFor(() => restores.get(`${NS}/${name}`), { what: `${name} cached`, timeoutMs: 10_000 });
  };
  const complete = async (name: string) => {
    const o = await client.get<SqliteRestoreObject>(restorePath(name));
    return { phase: o.status?.phase, c: o.status?.conditions?.find((x) => x.type === "Complete") };
  };

  before(async () => {
    cp = await startControlPlane({ controllerManager: false });
    await cp.kubectl(["apply", "-f", path.join(ROOT, "crds")]);
    await cp.kubectl(["wait", "--for=condition=Established", "crd/sqliterestores.walship.dev"]);
    await cp.kubectl(["create", "namespace", NS]);
    await apply({
      ...appStatefulSet(NS, "/data"),
      spec: { ...(appStatefulSet(NS, "/data").spec as object), replicas: 0 },
    });
    // Two SqliteReplicas (not reconciled here), so that each test's restore is the only one of its own.
    for (const name of ["db", "db2"]) {
      await apply({
        apiVersion: "walship.dev/v1alpha1",
        kind: "SqliteReplica",
        metadata: { name, namespace: NS },
        spec: {
          statefulSetName: "app",
          database: { path: "/data/app.db", volumeName: "data" },
          destinations: [{ name: "s3", s3: { bucket: "bucket", credentials: { fromServiceAccount: true } } }],
        },
      });
    }
    client = KubeClient.load(cp.kubeconfig);
    restores = new Informer<SqliteRestoreObject>(
      client,
      { path: "/apis/walship.dev/v1alpha1/sqliterestores" },
      { onUpdate: () => {}, onDelete: () => {} },
    );
    void restores.run(abort.signal);
    await restores.waitSynced();
    reconciler = new SqliteRestoreReconciler({
      client,
      events: new EventRecorder(client, "restore-test"),
      log: nullLogger(),
      listRestores: () => restores.list(),
      options: { image: "walship-test/walship:dev" },
    });
  });
  after(async () => {
    abort.abort();
    await cp?.stop();
  });

  it("NewClaim naming the app's claim: Failed ClaimExists, no Job, the claim untouched", async () => {
    await apply({
      apiVersion: "v1",
      kind: "PersistentVolumeClaim",
      metadata: { name: "data-app-0", namespace: NS, labels: { app: "app" } },
      spec: { accessModes: ["ReadWriteOnce"], resources: { requests: { storage: "1Gi" } } },
    });
    const before = await client.get<{ metadata: { resourceVersion: string } }>(
      `/api/v1/namespaces/${NS}/persistentvolumeclaims/data-app-0`,
    );
    await restore("into-app", {
      sqliteReplicaName: "db",
      mode: "NewClaim",
      newClaim: { name: "data-app-0" },
    });
    await reconciler.reconcile(`${NS}/into-app`);
    const { phase, c } = await complete("into-app");
    assert.equal(phase, "Failed");
    assert.equal(c?.reason, "ClaimExists");
    const jobs = await client.get<{ items: unknown[] }>(`/apis/batch/v1/namespaces/${NS}/jobs`);
    assert.equal(jobs.items.length, 0, "no Job at all");
    const after = await client.get<{ metadata: { resourceVersion: string } }>(
      `/api/v1/namespaces/${NS}/persistentvolumeclaims/data-app-0`,
    );
    assert.equal(after.metadata.resourceVersion, before.metadata.resourceVersion, "the claim is untouched");
  });

  it("a claim it created itself is its own: the restore goes on", async () => {
    await restore("fresh", { sqliteReplicaName: "db", mode: "NewClaim", newClaim: { name: "restored" } });
    await reconciler.reconcile(`${NS}/fresh`);
    assert.equal((await complete("fresh")).phase, "Planning");
  });

  it("a Job left over under a step's name is refused, not reused, and left alone", async () => {
    const job = {
      apiVersion: "batch/v1",
      kind: "Job",
      metadata: { name: "again-plan", namespace: NS },
      spec: {
        suspend: true,
        template: {
          spec: { restartPolicy: "Never", containers: [{ name: "x", image: "busybox", command: ["true"] }] },
        },
      },
    };
    await apply(job);
    await restore("again", { sqliteReplicaName: "db2", mode: "InPlace" });
    await reconciler.reconcile(`${NS}/again`); // Pending -> Planning (creating the plan Job: 409, left)
    await reconciler.reconcile(`${NS}/again`); // Planning: the Job is not this restore's
    const { phase, c } = await complete("again");
    assert.equal(phase, "Failed");
    assert.equal(c?.reason, "JobExists");
    const left = await client.get<{ metadata: { ownerReferences?: unknown[] } }>(
      `/apis/batch/v1/namespaces/${NS}/jobs/again-plan`,
    );
    assert.equal(left.metadata.ownerReferences, undefined, "the foreign Job is left as it was");
    const sts = await client.get<{ spec: { replicas: number } }>(
      `/apis/apps/v1/namespaces/${NS}/statefulsets/app`,
    );
    assert.equal(sts.spec.replicas, 0, "never scaled (it was at 0, the count is unchanged)");
  });
});
