/**
 * What the operator adds so a replicating pod can hold its Leases (src/operator/specs/lease.ts), and
 * how the sidecar finds its way to the API server (src/replicator/lease.ts): pure parts. The Leases
 * themselves are shown on a real API server in test/integration/lease.test.ts and on the real node in
 * test/e2e/fencing.test.ts.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { optionsFromFlags } from "../../src/operator/options.ts";
import {
  buildLeaseRoleBinding,
  KUBE_DIR,
  KUBE_VOLUME,
  parseLeaseRole,
  podServiceAccount,
  withLeaseAccess,
} from "../../src/operator/specs/lease.ts";
import { SIDECAR_CONTAINER } from "../../src/operator/specs/names.ts";
import type { WorkloadObject } from "../../src/operator/specs/workload.ts";
import { kubeAccessFromEnv, leaseName } from "../../src/replicator/lease.ts";
import { ErrorCodes } from "../../src/shared/errors.ts";

describe("the replicator's Lease role (operator flag)", () => {
  it("-replicator-lease-role takes ClusterRole/NAME or Role/NAME; none by default", () => {
    assert.deepEqual(parseLeaseRole("ClusterRole/walship-replicator"), {
      kind: "ClusterRole",
      name: "walship-replicator",
    });
    assert.deepEqual(parseLeaseRole("Role/x.y-z"), { kind: "Role", name: "x.y-z" });
    assert.equal(parseLeaseRole(""), undefined);
    assert.equal(optionsFromFlags([]).leaseRole, undefined);
    assert.deepEqual(optionsFromFlags(["-replicator-lease-role=Role/r"]).leaseRole, {
      kind: "Role",
      name: "r",
    });
  });

  it("refuses anything else, naming the flag", () => {
    for (const bad of ["walship-replicator", "ClusterRoleBinding/x", "Role/", "Role/UPPER", "Role/a/b"]) {
      assert.throws(
        () => parseLeaseRole(bad),
        (err: Error & { code?: string }) =>
          err.code === ErrorCodes.USAGE &&
          err.message.includes(`-replicator-lease-role: ${JSON.stringify(bad)}`),
        bad,
      );
    }
  });
});

describe("the pods' service account", () => {
  const wl = (spec: Record<string, unknown>) =>
    ({ spec: { template: { spec } } }) as unknown as WorkloadObject;
  it("is the template's serviceAccountName, else the deprecated serviceAccount, else default", () => {
    assert.deepEqual(podServiceAccount(wl({ serviceAccountName: "app" })), { name: "app", automount: true });
    assert.deepEqual(podServiceAccount(wl({ serviceAccount: "old" })), { name: "old", automount: true });
    assert.deepEqual(podServiceAccount(wl({})), { name: "default", automount: true });
  });
  it("automountServiceAccountToken: false means no token, so no Lease", () => {
    assert.equal(podServiceAccount(wl({ automountServiceAccountToken: false })).automount, false);
  });
});

describe("the RoleBinding and the sidecar's token", () => {
  it("binds the role to the service account in the SqliteReplica's namespace, owned by it", () => {
    const rb = buildLeaseRoleBinding({ name: "db", namespace: "apps", uid: "u-1" }, "app", {
      kind: "ClusterRole",
      name: "walship-replicator",
    });
    assert.equal(rb.metadata.name, "db-walship-lease");
    assert.equal(rb.metadata.namespace, "apps");
    assert.deepEqual(rb.roleRef, {
      apiGroup: "rbac.authorization.k8s.io",
      kind: "ClusterRole",
      name: "walship-replicator",
    });
    assert.deepEqual(rb.subjects, [{ kind: "ServiceAccount", name: "app", namespace: "apps" }]);
    assert.equal(rb.metadata.ownerReferences[0]?.uid, "u-1");
    assert.equal(rb.metadata.ownerReferences[0]?.kind, "SqliteReplica");
  });

  it("projects the token into the sidecar alone, and tells it where (and the Leases' owner)", () => {
    const patch = {
      apiVersion: "apps/v1",
      kind: "StatefulSet",
      metadata: { name: "app", namespace: "apps" },
      spec: {
        template: {
          spec: {
            initContainers: [
              { name: "walship-restore", env: [] },
              { name: SIDECAR_CONTAINER, env: [{ name: "POD_NAME", value: "x" }], volumeMounts: [] },
            ],
            volumes: [{ name: "walship-config", configMap: { name: "db-walship" } }],
          },
        },
      },
    };
    // biome-ignore lint/suspicious/noExplicitAny: a minimal patch
    const out = withLeaseAccess(patch as any, "u-1");
    const pod = out.spec?.template.spec;
    const vol = pod?.volumes?.find((v) => v.name === KUBE_VOLUME);
    assert.deepEqual(vol?.projected?.sources?.[0], {
      serviceAccountToken: { path: "token", expirationSeconds: 3600 },
    });
    assert.equal(vol?.projected?.sources?.[1]?.configMap?.name, "kube-root-ca.crt");
    const sidecar = pod?.initContainers?.find((c) => c.name === SIDECAR_CONTAINER);
    assert.deepEqual(sidecar?.volumeMounts, [{ name: KUBE_VOLUME, mountPath: KUBE_DIR, readOnly: true }]);
    assert.deepEqual(
      sidecar?.env?.map((e) => [e.name, e.value]),
      [
        ["POD_NAME", "x"],
        ["WALSHIP_KUBE_DIR", KUBE_DIR],
        ["WALSHIP_SQLITEREPLICA_UID", "u-1"],
      ],
    );
    const restore = pod?.initContainers?.find((c) => c.name === "walship-restore");
    assert.equal(restore?.volumeMounts, undefined, "the restore container gets no token");
  });
});

describe("the sidecar's way to the API server", () => {
  const env = {
    WALSHIP_KUBE_DIR: "/k",
    WALSHIP_POD_NAMESPACE: "apps",
    KUBERNETES_SERVICE_HOST: "10.96.0.1",
    KUBERNETES_SERVICE_PORT: "443",
    WALSHIP_SQLITEREPLICA: "db",
    WALSHIP_SQLITEREPLICA_UID: "u-1",
  };
  it("from the env the operator and the kubelet give it", () => {
    assert.deepEqual(kubeAccessFromEnv(env), {
      server: "https://10.96.0.1:443",
      dir: "/k",
      namespace: "apps",
      owner: { name: "db", uid: "u-1" },
    });
    assert.equal(
      kubeAccessFromEnv({ ...env, KUBERNETES_SERVICE_HOST: "fd00::1" })?.server,
      "https://[fd00::1]:443",
    );
  });
  it("none without the operator's token dir, outside a cluster, or without a namespace", () => {
    for (const k of ["WALSHIP_KUBE_DIR", "KUBERNETES_SERVICE_HOST", "WALSHIP_POD_NAMESPACE"] as const) {
      const { [k]: _, ...rest } = env;
      assert.equal(kubeAccessFromEnv(rest), undefined, k);
    }
  });
  it("one Lease name per replica path, a valid object name", () => {
    const a = leaseName("s3://bucket/shared/app-0");
    assert.match(a, /^walship-[0-9a-f]{20}$/);
    assert.equal(leaseName("s3://bucket/shared/app-0"), a);
    assert.notEqual(leaseName("s3://bucket/shared/app-1"), a);
  });
});
