/**
 * The reconcile's part in single-writer Leases (specs/lease.ts), against the real control plane (etcd
 * and kube-apiserver; no controller manager, so no pods): the RoleBinding of the replicator role to
 * the pods' ServiceAccount and the sidecar's token; a refused RoleBinding, as the operator with only
 * its own RBAC (deploy/rbac/clusterrole.yaml) meets it for a role it may not bind, is a Warning Event
 * and does not stop the injection; a template that refuses a token gets neither.
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { after, before, describe, it } from "node:test";
import { parse as parseYaml } from "yaml";
import { KubeClient } from "../../src/operator/kube/client.ts";
import { EventRecorder } from "../../src/operator/kube/events.ts";
import type { StatefulSet } from "../../src/operator/kube/types.ts";
import { SqliteReplicaReconciler } from "../../src/operator/replica/reconcile.ts";
import { KUBE_DIR, KUBE_VOLUME, type LeaseRole } from "../../src/operator/specs/lease.ts";
import { nullLogger } from "../../src/shared/log.ts";
import { type ControlPlane, startControlPlane } from "../helpers/controlplane.ts";
import { appStatefulSet } from "../helpers/e2e.ts";
import { idleStatefulSet, s3Replica } from "./operator-fixtures.ts";

const ROOT = path.resolve(import.meta.dirname, "../..");

describe("the reconcile's Lease access (real kube-apiserver)", { timeout: 180_000 }, () => {
  let cp: ControlPlane;
  let admin: KubeClient;
  /** The operator's own identity: a ServiceAccount bound to deploy/rbac/clusterrole.yaml. */
  let operator: KubeClient;

  const apply = (obj: unknown) => cp.kubectl(["apply", "-f", "-"], { input: JSON.stringify(obj) });
  const setUp = async (ns: string, template: Record<string, unknown> = {}) => {
    await cp.kubectl(["create", "namespace", ns]);
    await cp.kubectl([
      "-n",
      ns,
      "create",
      "secret",
      "generic",
      "creds",
      "--from-literal=id=a",
      "--from-literal=secret=b",
    ]);
    const sts = idleStatefulSet(appStatefulSet, ns) as unknown as {
      spec: { template: { spec: Record<string, unknown> } };
    };
    Object.assign(sts.spec.template.spec, template);
    await apply(sts);
    await apply(s3Replica(ns, "http://127.0.0.1:1"));
    await apply({
      apiVersion: "rbac.authorization.k8s.io/v1",
      kind: "RoleBinding",
      metadata: { name: "walship-operator", namespace: ns },
      roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: "walship-operator" },
      subjects: [{ kind: "ServiceAccount", name: "operator", namespace: "walship-system" }],
    });
  };
  const reconcile = (client: KubeClient, ns: string, leaseRole: LeaseRole) =>
    new SqliteReplicaReconciler({
      client,
      events: new EventRecorder(client, "lease-test"),
      log: nullLogger(),
      listReplicas: () => [],
      options: { image: "walship-test/walship:dev", leaseRole },
    }).reconcile(`${ns}/db`);
  const podSpec = async (ns: string) =>
    (await admin.get<StatefulSet>(`/apis/apps/v1/namespaces/${ns}/statefulsets/app`)).spec?.template.spec;
  const binding = (ns: string) =>
    cp.request<{ roleRef: { kind: string; name: string }; subjects: Array<{ name: string }> }>(
      "GET",
      `/apis/rbac.authorization.k8s.io/v1/namespaces/${ns}/rolebindings/db-walship-lease`,
    );
  const events = async (ns: string) =>
    (
      await admin.get<{ items: Array<{ type: string; reason: string; message: string }> }>(
        `/api/v1/namespaces/${ns}/events`,
      )
    ).items;

  before(async () => {
    cp = await startControlPlane({ controllerManager: false });
    await cp.kubectl(["apply", "-f", path.join(ROOT, "crds")]);
    await cp.kubectl(["wait", "--for=condition=Established", "crd/sqlitereplicas.walship.dev"]);
    await apply(parseYaml(fs.readFileSync(path.join(ROOT, "deploy/rbac/clusterrole.yaml"), "utf8")));
    await apply(parseYaml(fs.readFileSync(path.join(ROOT, "deploy/rbac/replicator.yaml"), "utf8")));
    await cp.kubectl(["create", "namespace", "walship-system"]);
    await cp.kubectl(["-n", "walship-system", "create", "serviceaccount", "operator"]);
    admin = KubeClient.load(cp.kubeconfig);
    operator = KubeClient.load(await cp.kubeconfigFor(await cp.tokenFor("walship-system", "operator")));
  });
  after(async () => {
    await cp?.stop();
  });

  it("binds the replicator role to the pods' ServiceAccount and gives the sidecar alone the token", async () => {
    await setUp("leases", { serviceAccountName: "app" });
    await reconcile(operator, "leases", { kind: "ClusterRole", name: "walship-operator-replicator" });
    const rb = await binding("leases");
    assert.equal(rb.status, 200, "the RoleBinding, made with the operator's own rights");
    assert.deepEqual(rb.body.roleRef, {
      apiGroup: "rbac.authorization.k8s.io",
      kind: "ClusterRole",
      name: "walship-operator-replicator",
    });
    assert.deepEqual(
      rb.body.subjects.map((s) => s.name),
      ["app"],
    );
    const spec = await podSpec("leases");
    assert.ok(spec?.volumes?.some((v) => v.name === KUBE_VOLUME && v.projected));
    const sidecar = spec?.initContainers?.find((c) => c.name === "walship");
    assert.ok(sidecar?.volumeMounts?.some((m) => m.name === KUBE_VOLUME && m.mountPath === KUBE_DIR));
    assert.ok(sidecar?.env?.some((e) => e.name === "WALSHIP_KUBE_DIR" && e.value === KUBE_DIR));
    const restore = spec?.initContainers?.find((c) => c.name === "walship-restore");
    assert.ok(!restore?.volumeMounts?.some((m) => m.name === KUBE_VOLUME), "the restore container: no token");
    assert.ok(
      !spec?.containers.some((c) => c.volumeMounts?.some((m) => m.name === KUBE_VOLUME)),
      "the app: no token",
    );
  });

  it("a role the operator may not bind: a Warning Event naming it, and the injection goes on", async () => {
    await setUp("denied");
    await reconcile(operator, "denied", { kind: "ClusterRole", name: "cluster-admin" });
    assert.equal((await binding("denied")).status, 404, "no RoleBinding");
    const ev = (await events("denied")).find((e) => e.reason === "LeaseBindingFailed");
    assert.ok(ev, "a LeaseBindingFailed Event");
    assert.equal(ev.type, "Warning");
    assert.match(
      ev.message,
      /^could not bind ClusterRole cluster-admin to ServiceAccount denied\/default \(RoleBinding db-walship-lease\): .*forbidden/,
    );
    assert.deepEqual(
      (await podSpec("denied"))?.initContainers?.map((c) => c.name),
      ["walship-restore", "walship"],
      "injected all the same",
    );
  });

  it("automountServiceAccountToken: false: no RoleBinding, no token", async () => {
    await setUp("notoken", { automountServiceAccountToken: false });
    await reconcile(operator, "notoken", { kind: "ClusterRole", name: "walship-operator-replicator" });
    assert.equal((await binding("notoken")).status, 404);
    const spec = await podSpec("notoken");
    assert.deepEqual(
      spec?.initContainers?.map((c) => c.name),
      ["walship-restore", "walship"],
    );
    assert.ok(!spec?.volumes?.some((v) => v.name === KUBE_VOLUME));
  });
});
