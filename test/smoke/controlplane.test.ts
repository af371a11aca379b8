import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { type ControlPlane, startControlPlane } from "../helpers/controlplane.ts";
import { waitFor } from "../helpers/proc.ts";

let cp: ControlPlane;

before(async () => {
  cp = await startControlPlane();
});

after(async () => {
  await cp?.stop();
});

const crd = {
  apiVersion: "apiextensions.k8s.io/v1",
  kind: "CustomResourceDefinition",
  metadata: { name: "widgets.smoke.walship.test" },
  spec: {
    group: "smoke.walship.test",
    names: { kind: "Widget", plural: "widgets", singular: "widget", listKind: "WidgetList" },
    scope: "Namespaced",
    versions: [
      {
        name: "v1",
        served: true,
        storage: true,
        schema: {
          openAPIV3Schema: {
            type: "object",
            properties: {
              spec: {
                type: "object",
                required: ["size"],
                properties: { size: { type: "integer", minimum: 1 } },
              },
            },
          },
        },
      },
    ],
  },
};

test("control plane: /version reports the pinned Kubernetes", async () => {
  const r = await cp.request<{ gitVersion: string }>("GET", "/version");
  assert.equal(r.status, 200);
  assert.equal(r.body.gitVersion, "v1.33.13");
});

test("control plane: a CRD becomes Established and validates its objects", async () => {
  await cp.kubectl(["apply", "-f", "-"], { input: JSON.stringify(crd) });
  await cp.kubectl([
    "wait",
    "--for=condition=Established",
    "--timeout=30s",
    "crd/widgets.smoke.walship.test",
  ]);
  await cp.kubectl(["apply", "-f", "-"], {
    input: JSON.stringify({
      apiVersion: "smoke.walship.test/v1",
      kind: "Widget",
      metadata: { name: "w1", namespace: "default" },
      spec: { size: 3 },
    }),
  });
  const got = await cp.request<{ spec: { size: number } }>(
    "GET",
    "/apis/smoke.walship.test/v1/namespaces/default/widgets/w1",
  );
  assert.equal(got.status, 200);
  assert.equal(got.body.spec.size, 3);
  // The schema is enforced: size below the minimum is rejected (422 Invalid).
  const bad = await cp.request("POST", "/apis/smoke.walship.test/v1/namespaces/default/widgets", {
    apiVersion: "smoke.walship.test/v1",
    kind: "Widget",
    metadata: { name: "w2" },
    spec: { size: 0 },
  });
  assert.equal(bad.status, 422);
});

test("control plane: the controller manager turns a StatefulSet into a Pod", async () => {
  const sts = {
    apiVersion: "apps/v1",
    kind: "StatefulSet",
    metadata: { name: "web", namespace: "default" },
    spec: {
      replicas: 1,
      serviceName: "web",
      selector: { matchLabels: { app: "web" } },
      template: {
        metadata: { labels: { app: "web" } },
        spec: { containers: [{ name: "app", image: "registry.invalid/web:1" }] },
      },
    },
  };
  await cp.kubectl(["apply", "-f", "-"], { input: JSON.stringify(sts) });
  const pod = await waitFor(
    async () => {
      const r = await cp.request<{ metadata: { ownerReferences?: { kind: string; name: string }[] } }>(
        "GET",
        "/api/v1/namespaces/default/pods/web-0",
      );
      return r.status === 200 ? r.body : undefined;
    },
    { what: "pod web-0 created by the StatefulSet controller", timeoutMs: 30_000 },
  );
  assert.deepEqual(
    pod.metadata.ownerReferences?.map((o) => `${o.kind}/${o.name}`),
    ["StatefulSet/web"],
  );
});

test("control plane: a ServiceAccount token authenticates and RBAC applies to it", async () => {
  await cp.kubectl(["create", "namespace", "smoke"]);
  await cp.kubectl(["create", "serviceaccount", "robot", "-n", "smoke"]);
  const token = await cp.tokenFor("smoke", "robot");
  const kubeconfig = await cp.kubeconfigFor(token);
  const who = await cp.kubectl(["--kubeconfig", kubeconfig, "auth", "whoami", "-o", "json"]);
  assert.equal(
    (JSON.parse(who.stdout) as { status: { userInfo: { username: string } } }).status.userInfo.username,
    "system:serviceaccount:smoke:robot",
  );
  const denied = await cp.request("GET", "/api/v1/namespaces/smoke/pods", undefined, token);
  assert.equal(denied.status, 403);
  await cp.kubectl(["create", "role", "pod-reader", "-n", "smoke", "--verb=list", "--resource=pods"]);
  await cp.kubectl([
    "create",
    "rolebinding",
    "robot",
    "-n",
    "smoke",
    "--role=pod-reader",
    "--serviceaccount=smoke:robot",
  ]);
  const allowed = await cp.request("GET", "/api/v1/namespaces/smoke/pods", undefined, token);
  assert.equal(allowed.status, 200);
});
