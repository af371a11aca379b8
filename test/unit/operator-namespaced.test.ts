/**
 * The chart's namespaced mode (issue 13): `operator.watchNamespaces` renders a Role and a RoleBinding
 * in each namespace and nothing cluster-wide, and the operator works with exactly those rights: the
 * chart's own RBAC objects and ServiceAccount are applied to the real kube-apiserver, the operator
 * runs in-process with only that ServiceAccount's token and `-namespace a,b`, and it reconciles
 * SqliteReplicas and a SqliteRestore in both namespaces (one informer per namespace), leaves a third
 * namespace alone, and is refused anything cluster-wide. No kubelet: no pod runs, so "works" is
 * Injected=True, the ConfigMap and the injected StatefulSet, and the restore's plan Job.
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { after, before, describe, it } from "node:test";
import { parseAllDocuments, stringify } from "yaml";
import type { SqliteReplicaStatus, SqliteRestoreStatus } from "../../src/api/v1alpha1/index.ts";
import { KubeClient } from "../../src/operator/kube/client.ts";
import { type RunningOperator, startOperator } from "../../src/operator/main.ts";
import { namespaceList } from "../../src/operator/options.ts";
import { nullLogger } from "../../src/shared/log.ts";
import { type ControlPlane, startControlPlane } from "../helpers/controlplane.ts";
import { appStatefulSet } from "../helpers/e2e.ts";
import { helm } from "../helpers/helm.ts";
import { waitFor } from "../helpers/proc.ts";
import { sleep } from "../helpers/walship.ts";
import { idleStatefulSet, s3Replica } from "./operator-fixtures.ts";

const ROOT = path.resolve(import.meta.dirname, "../..");
const CHART = path.join(ROOT, "charts/walship");

interface Obj {
  kind: string;
  metadata: { name: string; namespace?: string };
  rules?: unknown;
  spec?: { template?: { spec?: { containers?: Array<{ args?: string[] }> } } };
}

async function render(args: string[]): Promise<Obj[]> {
  const r = await helm(["template", "walship", CHART, "--namespace", "walship-system", ...args]);
  return parseAllDocuments(r.stdout)
    .map((d) => d.toJS() as Obj | null)
    .filter((o): o is Obj => o !== null);
}

describe("-namespace takes a list", () => {
  it("DNS labels, de-duplicated; anything else is a usage error", () => {
    assert.deepEqual(namespaceList(undefined), []);
    assert.deepEqual(namespaceList("a,b, a"), ["a", "b"]);
    assert.throws(() => namespaceList("a,Not_A_Namespace"), { code: "WALSHIP_ERR_USAGE" });
  });
});

describe("the chart's namespaced mode", { timeout: 240_000 }, () => {
  let objs: Obj[];
  let cp: ControlPlane;
  let op: RunningOperator | undefined;
  let admin: KubeClient;
  let token: string;

  before(async () => {
    objs = await render(["--set", "operator.watchNamespaces={a,b}"]);
  });
  after(async () => {
    await op?.stop();
    await cp?.stop();
  });

  it("renders a Role and a RoleBinding per namespace with deploy/rbac's rules, and nothing cluster-wide", () => {
    const kinds = objs.map((o) => `${o.kind} ${o.metadata.namespace ?? "(cluster)"}`).sort();
    assert.deepEqual(kinds, [
      "Deployment walship-system",
      "Role a",
      "Role a",
      "Role b",
      "Role b",
      "Role walship-system",
      "RoleBinding a",
      "RoleBinding b",
      "RoleBinding walship-system",
      "Service walship-system",
      "ServiceAccount walship-system",
    ]);
    const want = (
      parseAllDocuments(
        fs.readFileSync(path.join(ROOT, "deploy/rbac/clusterrole.yaml"), "utf8"),
      )[0]!.toJS() as Obj
    ).rules;
    const replicator = (
      parseAllDocuments(
        fs.readFileSync(path.join(ROOT, "deploy/rbac/replicator.yaml"), "utf8"),
      )[0]!.toJS() as Obj
    ).rules;
    const role = (ns: string, name: string) =>
      objs.find((o) => o.kind === "Role" && o.metadata.namespace === ns && o.metadata.name === name)?.rules;
    // The one role the operator may bind is the release's own replicator role.
    const wantHere = (want as Array<Record<string, unknown>>).map((r) =>
      r.resourceNames ? { ...r, resourceNames: ["walship-replicator"] } : r,
    );
    for (const ns of ["a", "b"]) {
      assert.deepEqual(role(ns, "walship"), wantHere, ns);
      // The replicating pods' Lease rights, which the operator binds and nothing wider.
      assert.deepEqual(role(ns, "walship-replicator"), replicator, ns);
    }
    const args = objs.find((o) => o.kind === "Deployment")?.spec?.template?.spec?.containers?.[0]?.args ?? [];
    assert.ok(args.includes("-namespace=a,b"), args.join(" "));
    assert.ok(args.includes("-replicator-lease-role=Role/walship-replicator"), args.join(" "));
  });

  it("the operator works with only those rights, in both namespaces and nowhere else", async () => {
    cp = await startControlPlane({ controllerManager: false });
    await cp.kubectl(["apply", "-f", path.join(ROOT, "crds")]);
    await cp.kubectl(["wait", "--for=condition=Established", "crd", "--all", "--timeout=60s"]);
    for (const ns of ["walship-system", "a", "b", "c"]) await cp.kubectl(["create", "namespace", ns]);
    const rbac = objs.filter((o) => ["ServiceAccount", "Role", "RoleBinding"].includes(o.kind));
    const file = path.join(cp.dir, "rbac.yaml");
    fs.writeFileSync(file, rbac.map((o) => stringify(o)).join("---\n"));
    await cp.kubectl(["apply", "-f", file]);
    token = await cp.tokenFor("walship-system", "walship");
    admin = KubeClient.load(cp.kubeconfig);

    // Nothing cluster-wide, nothing in c.
    for (const p of [
      "/apis/walship.dev/v1alpha1/sqlitereplicas",
      "/apis/apps/v1/statefulsets",
      "/apis/walship.dev/v1alpha1/namespaces/c/sqlitereplicas",
      "/api/v1/namespaces/a/secrets",
    ]) {
      const r = await cp.request("GET", p, undefined, token);
      assert.equal(r.status, 403, `${p} is refused`);
    }

    for (const ns of ["a", "b", "c"]) {
      await cp.kubectl([
        "-n",
        ns,
        "create",
        "secret",
        "generic",
        "creds",
        "--from-literal=id=x",
        "--from-literal=secret=y",
      ]);
      const f = path.join(cp.dir, `${ns}.yaml`);
      const replica = s3Replica(ns, "http://127.0.0.1:1");
      fs.writeFileSync(f, [stringify(idleStatefulSet(appStatefulSet, ns)), stringify(replica)].join("---\n"));
      await cp.kubectl(["apply", "-f", f]);
    }

    op = await startOperator(
      {
        kubeconfig: await cp.kubeconfigFor(token),
        namespaces: ["a", "b"],
        leaderElection: true,
        leaderElectionNamespace: "walship-system",
        leaderElectionId: "walship",
        identity: "namespaced-test",
        addr: "",
        image: "walship-test/walship:dev",
        workers: 2,
        resyncMs: 30_000,
        pollMs: 2_000,
        shutdownTimeoutMs: 5_000,
      },
      nullLogger(),
    );
    const status = (ns: string) =>
      admin
        .get<{ status?: SqliteReplicaStatus }>(
          `/apis/walship.dev/v1alpha1/namespaces/${ns}/sqlitereplicas/db`,
        )
        .then((o) => o.status);
    for (const ns of ["a", "b"]) {
      await waitFor(
        async () => (await status(ns))?.conditions?.find((c) => c.type === "Injected")?.status === "True",
        {
          what: `SqliteReplica ${ns}/db injected`,
          timeoutMs: 60_000,
          intervalMs: 250,
        },
      );
      const sts = await admin.get<{
        spec: { template: { spec: { initContainers?: Array<{ name: string }> } } };
      }>(`/apis/apps/v1/namespaces/${ns}/statefulsets/app`);
      assert.ok(
        sts.spec.template.spec.initContainers?.some((c) => c.name === "walship"),
        ns,
      );
      await admin.get(`/api/v1/namespaces/${ns}/configmaps/db-walship`);
    }
    await sleep(2000);
    assert.equal(await status("c"), undefined, "namespace c is not watched: untouched");

    // A SqliteRestore in b reaches its plan Job with the same rights.
    const f = path.join(cp.dir, "restore.yaml");
    fs.writeFileSync(
      f,
      stringify({
        apiVersion: "walship.dev/v1alpha1",
        kind: "SqliteRestore",
        metadata: { name: "r1", namespace: "b" },
        spec: { sqliteReplicaName: "db", mode: "NewClaim", newClaim: { name: "restored" } },
      }),
    );
    await cp.kubectl(["apply", "-f", f]);
    await waitFor(
      async () =>
        (
          await admin.get<{ status?: SqliteRestoreStatus }>(
            "/apis/walship.dev/v1alpha1/namespaces/b/sqliterestores/r1",
          )
        ).status?.phase === "Planning",
      { what: "SqliteRestore b/r1 Planning", timeoutMs: 60_000, intervalMs: 250 },
    );
    await admin.get("/apis/batch/v1/namespaces/b/jobs/r1-plan");
  });
});
