/**
 * charts/walship against the real tools: `helm lint --strict`; `helm template` with the default
 * values and with every option on, applied with `kubectl apply --dry-run=server` to the real control
 * plane; values.schema.json rejecting bad values; the chart's RBAC equal to deploy/rbac; the plain
 * manifests in deploy/ current and valid; the examples in deploy/examples valid against the CRDs;
 * and the operator installed by `helm install` on the real node (test/helpers/node: the image built from
 * the Dockerfile, run by containerd under Pod Security `restricted`) with only the chart's RBAC,
 * injecting a StatefulSet that then replicates to MinIO.
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { after, before, describe, it } from "node:test";
import { ListObjectsV2Command } from "@aws-sdk/client-s3";
import { parseAllDocuments, stringify } from "yaml";
import type { ControlPlane } from "../helpers/controlplane.ts";
import { appStatefulSet, type PodLite } from "../helpers/e2e.ts";
import { helm, helmBin } from "../helpers/helm.ts";
import { type Minio, startMinio } from "../helpers/minio.ts";
import { type Cluster, IMAGES, startCluster } from "../helpers/node/index.ts";
import { waitFor } from "../helpers/proc.ts";

const ROOT = path.resolve(import.meta.dirname, "../..");
const CHART = path.join(ROOT, "charts/walship");

/** Every option on: monitoring objects, a watched namespace, overrides. */
const ALL_ON = [
  "monitoring.serviceMonitor.enabled=true",
  "monitoring.podMonitor.enabled=true",
  "monitoring.podMonitor.namespaces={shop}",
  "monitoring.prometheusRule.enabled=true",
  "monitoring.grafanaDashboard.enabled=true",
  "operator.replicas=2",
  "operator.watchNamespace=shop",
  "operator.sidecarImage=example.com/walship:1",
  "operator.listenOnPodIP=true",
  "operator.logFormat=text",
  "operator.extraArgs={-workers=3}",
  "operator.priorityClassName=system-cluster-critical",
  "operator.nodeSelector.kubernetes\\.io/os=linux",
  "serviceAccount.annotations.eks\\.amazonaws\\.com/role-arn=arn:aws:iam::1:role/x",
  "imagePullSecrets[0].name=regcred",
  "metrics.service.annotations.a=b",
].flatMap((s) => ["--set", s]);

/**
 * Stand-ins for the Prometheus Operator's CRDs (not part of any test component): same group, kinds
 * and version, schema left open. They let the API server accept the chart's monitoring objects.
 */
function prometheusStandInCrds(): unknown[] {
  return [
    ["ServiceMonitor", "servicemonitors"],
    ["PodMonitor", "podmonitors"],
    ["PrometheusRule", "prometheusrules"],
  ].map(([kind, plural]) => ({
    apiVersion: "apiextensions.k8s.io/v1",
    kind: "CustomResourceDefinition",
    metadata: { name: `${plural}.monitoring.coreos.com`, labels: { "walship.dev/test": "stand-in" } },
    spec: {
      group: "monitoring.coreos.com",
      scope: "Namespaced",
      names: { kind, plural, singular: kind!.toLowerCase(), listKind: `${kind}List` },
      versions: [
        {
          name: "v1",
          served: true,
          storage: true,
          schema: {
            openAPIV3Schema: { type: "object", "x-kubernetes-preserve-unknown-fields": true },
          },
        },
      ],
    },
  }));
}

interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string };
  [k: string]: unknown;
}

const docs = (text: string) =>
  parseAllDocuments(text)
    .map((d) => d.toJS() as K8sObject | null)
    .filter((d): d is K8sObject => d !== null);

describe("charts/walship (helm, the real node, MinIO)", { timeout: 900_000 }, () => {
  let c: Cluster;
  let cp: ControlPlane;
  let tmp = "";
  const file = (name: string, text: string) => {
    const p = path.join(tmp, name);
    fs.writeFileSync(p, text);
    return p;
  };
  const template = async (args: string[] = [], ns = "walship-system") =>
    (await helm(["template", "walship", CHART, "--namespace", ns, ...args])).stdout;
  const dryRun = (p: string) => cp.kubectl(["apply", "--dry-run=server", "-f", p], { allowFailure: true });

  before(async () => {
    helmBin(); // fail early, naming the install command, when helm is not built
    c = await startCluster();
    cp = c.cp;
    tmp = fs.mkdtempSync(path.join(cp.dir, "chart-"));
    await cp.kubectl(["apply", "-f", path.join(ROOT, "crds")]);
    await cp.kubectl([
      "apply",
      "-f",
      file(
        "prom-crds.yaml",
        prometheusStandInCrds()
          .map((o) => stringify(o))
          .join("---\n"),
      ),
    ]);
    await cp.kubectl(["wait", "--for=condition=Established", "crd", "--all", "--timeout=60s"]);
    // The operator's pod and the injected app must pass the restricted Pod Security Standard.
    for (const ns of ["walship-system", "shop"]) await c.createNamespace(ns);
  });
  after(async () => {
    await c?.stop();
  });

  it("helm lint --strict is clean, with the default values and with every option on", async () => {
    for (const args of [[], ALL_ON]) {
      const r = await helm(["lint", "--strict", CHART, ...args], { allowFailure: true });
      assert.equal(r.code, 0, r.stdout + r.stderr);
      assert.doesNotMatch(r.stdout, /\[(WARNING|ERROR)\]/, r.stdout);
    }
  });

  it("helm template with the default values passes kubectl apply --dry-run=server", async () => {
    const text = await template();
    const kinds = docs(text)
      .map((d) => d.kind)
      .sort();
    assert.deepEqual(kinds, [
      "ClusterRole",
      "ClusterRole",
      "ClusterRoleBinding",
      "Deployment",
      "Role",
      "RoleBinding",
      "Service",
      "ServiceAccount",
    ]);
    const r = await dryRun(file("default.yaml", text));
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /deployment\.apps\/walship created \(server dry run\)/);
  });

  it("helm template with every option on passes kubectl apply --dry-run=server", async () => {
    const text = await template(ALL_ON);
    const objs = docs(text);
    for (const k of ["ServiceMonitor", "PodMonitor", "PrometheusRule", "ConfigMap", "RoleBinding"])
      assert.ok(
        objs.some((o) => o.kind === k),
        k,
      );
    assert.ok(
      !objs.some((o) => o.kind === "ClusterRoleBinding"),
      "one watched namespace: a RoleBinding there",
    );
    const r = await dryRun(file("all-on.yaml", text));
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /prometheusrule\.monitoring\.coreos\.com\/walship created \(server dry run\)/);
    // The dashboard in the ConfigMap is the committed JSON.
    const cm = objs.find((o) => o.kind === "ConfigMap") as K8sObject & { data: Record<string, string> };
    assert.deepEqual(
      JSON.parse(cm.data["walship.json"]!),
      JSON.parse(fs.readFileSync(path.join(CHART, "files/dashboards/walship.json"), "utf8")),
    );
    const dep = objs.find((o) => o.kind === "Deployment") as unknown as {
      spec: { replicas: number; template: { spec: { containers: Array<{ args: string[] }> } } };
    };
    assert.equal(dep.spec.replicas, 2);
    const args = dep.spec.template.spec.containers[0]!.args;
    for (const a of ["-leader-elect=true", "-namespace=shop", "-addr=$(POD_IP):8080", "-workers=3"])
      assert.ok(args.includes(a), `${a} in ${args.join(" ")}`);
  });

  it("the CRDs the chart installs are crds/ (helm template --include-crds)", async () => {
    const text = await template(["--include-crds"]);
    const crds = docs(text).filter((d) => d.kind === "CustomResourceDefinition");
    const want = fs
      .readdirSync(path.join(ROOT, "crds"))
      .flatMap((f) => docs(fs.readFileSync(path.join(ROOT, "crds", f), "utf8")));
    assert.deepEqual(
      crds.sort((a, b) => a.metadata.name.localeCompare(b.metadata.name)),
      want.sort((a, b) => a.metadata.name.localeCompare(b.metadata.name)),
    );
  });

  it("values.schema.json rejects bad values, naming the value", async () => {
    const cases: Array<[string[], RegExp]> = [
      [["--set", "operator.workers=0"], /\/operator\/workers': minimum: got 0, want 1/],
      [["--set", "image.pullPolicy=Sometimes"], /\/image\/pullPolicy': value must be one of/],
      [["--set", "operator.logFormat=xml"], /\/operator\/logFormat'/],
      [["--set", "operator.bogus=1"], /\/operator': additional properties 'bogus' not allowed/],
      [
        ["--set", "monitoring.podMonitor.interval=5x"],
        /\/monitoring\/podMonitor\/interval': '5x' does not match/,
      ],
      [["--set", "metrics.port=70000"], /\/metrics\/port': maximum/],
      [["--set", "operator.watchNamespace=Not_A_Namespace"], /\/operator\/watchNamespace'/],
      [["--set", "monitoring.runbookBaseUrl=docs/runbooks"], /\/monitoring\/runbookBaseUrl'/],
      [["--set-string", "operator.leaderElect=yes"], /\/operator\/leaderElect': got string, want boolean/],
    ];
    for (const [args, want] of cases) {
      const r = await helm(["template", "walship", CHART, ...args], { allowFailure: true });
      assert.notEqual(r.code, 0, `${args.join(" ")} accepted`);
      assert.match(r.stderr, /values don't meet the specifications of the schema/);
      assert.match(r.stderr, want, `${args.join(" ")}: ${r.stderr}`);
    }
  });

  it("the chart's RBAC is deploy/rbac: the same rules, bound to the chart's ServiceAccount", async () => {
    const objs = docs(await template());
    const rules = (f: string) =>
      (docs(fs.readFileSync(path.join(ROOT, "deploy/rbac", f), "utf8"))[0] as { rules?: unknown }).rules;
    const byKind = (k: string, name?: string) =>
      objs.find((o) => o.kind === k && (name === undefined || o.metadata.name === name)) as K8sObject &
        Record<string, unknown>;
    // The same rules, but the one role the operator may bind is this release's replicator role.
    const clusterRules = (rules("clusterrole.yaml") as Array<Record<string, unknown>>).map((r) =>
      r.resourceNames ? { ...r, resourceNames: ["walship-replicator"] } : r,
    );
    assert.deepEqual(byKind("ClusterRole", "walship").rules, clusterRules);
    // The replicating pods' Lease rights, which the operator binds (and may bind nothing else).
    assert.deepEqual(byKind("ClusterRole", "walship-replicator").rules, rules("replicator.yaml"));
    assert.deepEqual(byKind("Role").rules, rules("role.yaml"));
    assert.equal(byKind("Role").metadata.namespace, "walship-system");
    const sa = byKind("ServiceAccount").metadata;
    for (const b of ["ClusterRoleBinding", "RoleBinding"])
      assert.deepEqual((byKind(b) as unknown as { subjects: unknown }).subjects, [
        { kind: "ServiceAccount", name: sa.name, namespace: "walship-system" },
      ]);
  });

  // Whether deploy/operator.yaml is current is checked by `make check` (scripts/render-deploy.ts --check).
  it("deploy/ (kustomize): kubectl apply -k passes --dry-run=server", async () => {
    const built = docs((await cp.kubectl(["kustomize", path.join(ROOT, "deploy")])).stdout);
    const rules = (f: string) =>
      (docs(fs.readFileSync(path.join(ROOT, "deploy/rbac", f), "utf8"))[0] as { rules?: unknown }).rules;
    const obj = (kind: string, name?: string) =>
      built.find((o) => o.kind === kind && (name === undefined || o.metadata.name === name)) as K8sObject &
        Record<string, unknown>;
    assert.deepEqual(obj("ClusterRole", "walship-operator").rules, rules("clusterrole.yaml"));
    assert.deepEqual(obj("ClusterRole", "walship-operator-replicator").rules, rules("replicator.yaml"));
    assert.deepEqual(obj("Role").rules, rules("role.yaml"));
    assert.equal((obj("ClusterRoleBinding").roleRef as { name: string }).name, "walship-operator");
    // The operator binds the replicator role the kustomization installs, which its rules let it bind.
    const args = JSON.stringify(obj("Deployment").spec);
    assert.match(args, /-replicator-lease-role=ClusterRole\/walship-operator-replicator/);
    assert.ok(
      (
        obj("ClusterRole", "walship-operator").rules as Array<{ verbs: string[]; resourceNames?: string[] }>
      ).some((r) => r.verbs.includes("bind") && r.resourceNames?.includes("walship-operator-replicator")),
    );
    assert.equal((obj("RoleBinding").roleRef as { name: string }).name, obj("Role").metadata.name);
    assert.ok(
      built.every(
        (o) =>
          o.kind.startsWith("Cluster") || o.kind === "Namespace" || o.metadata.namespace === "walship-system",
      ),
    );
    const r = await cp.kubectl(["apply", "--dry-run=server", "-k", path.join(ROOT, "deploy")], {
      allowFailure: true,
    });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /deployment\.apps\/walship-operator created \(server dry run\)/);
    assert.doesNotMatch(r.stderr, /PodSecurity/, "the Deployment meets the restricted standard");
  });

  it("every example in deploy/examples passes --dry-run=server against the CRDs", async () => {
    const dir = path.join(ROOT, "deploy/examples");
    const files = fs.readdirSync(dir).filter((f) => f.endsWith(".yaml"));
    assert.ok(files.length >= 4, files.join(" "));
    const kinds = new Set<string>();
    for (const f of files) {
      for (const d of docs(fs.readFileSync(path.join(dir, f), "utf8"))) kinds.add(d.kind);
      const r = await dryRun(path.join(dir, f));
      assert.equal(r.code, 0, `${f}: ${r.stderr}`);
    }
    for (const k of ["StatefulSet", "SqliteReplica", "SqliteRestore", "Secret", "ServiceAccount"])
      assert.ok(kinds.has(k), k);
  });

  it("the dry run does catch a bad example (an S3 destination with a key and fromServiceAccount)", async () => {
    const bad = fs
      .readFileSync(path.join(ROOT, "deploy/examples/r2.yaml"), "utf8")
      .replace("credentials:\n", "credentials:\n          fromServiceAccount: true\n");
    const r = await dryRun(file("bad.yaml", bad));
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /fromServiceAccount/);
  });

  describe("the operator installed by helm install, with only the chart's RBAC", () => {
    let minio: Minio;
    const NS = "shop";
    const mount = "/var/lib/walship-chart-e2e/data";
    const readyPod = (pred: (p: PodLite) => boolean) =>
      waitFor(
        async () => {
          const r = await cp.request<PodLite>("GET", `/api/v1/namespaces/${NS}/pods/app-0`);
          const p = r.status === 200 ? r.body : undefined;
          return p &&
            !p.metadata.deletionTimestamp &&
            p.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True") &&
            pred(p)
            ? p
            : undefined;
        },
        { what: "pod app-0 Ready", timeoutMs: 120_000, intervalMs: 250 },
      );
    const rows = async (p: PodLite) =>
      (await (await fetch(`http://${p.status?.podIP}:8080/rows`)).json()) as Array<{ id: number }>;

    before(async () => {
      minio = await startMinio({ host: c.gateway });
      await minio.createBucket("replicas");
    });
    after(async () => {
      await helm(["--kubeconfig", cp.kubeconfig, "uninstall", "walship", "-n", "walship-system", "--wait"], {
        allowFailure: true,
      });
      await minio?.close();
    });

    it("installs, elects a leader, injects a StatefulSet and reports Replicating with a generation", async () => {
      const r = await helm([
        "--kubeconfig",
        cp.kubeconfig,
        "install",
        "walship",
        CHART,
        "-n",
        "walship-system",
        "--skip-crds", // installed in before()
        "--set",
        `image.repository=${IMAGES.walship.split(":")[0]},image.tag=${IMAGES.walship.split(":")[1]}`,
        "--set",
        "operator.poll=2,operator.resync=30,operator.logFormat=text",
      ]);
      assert.match(r.stdout, /Next step: replicate a StatefulSet's SQLite database/);
      const opPod = await waitFor(
        async () => {
          const pods = await cp.request<{
            items: Array<{
              metadata: { name: string };
              status?: { conditions?: Array<{ type: string; status: string }> };
            }>;
          }>(
            "GET",
            "/api/v1/namespaces/walship-system/pods?labelSelector=app.kubernetes.io%2Fname%3Dwalship",
          );
          return pods.body.items.find((p) =>
            p.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True"),
          );
        },
        { what: "operator pod Ready", timeoutMs: 120_000, intervalMs: 500 },
      ).catch(async (err) => {
        throw new Error(`${(err as Error).message}\n${await c.describe("walship-system")}`);
      });
      const lease = await waitFor(
        async () => {
          const l = await cp.request<{ spec?: { holderIdentity?: string } }>(
            "GET",
            "/apis/coordination.k8s.io/v1/namespaces/walship-system/leases/walship",
          );
          return l.status === 200 && l.body.spec?.holderIdentity ? l.body.spec.holderIdentity : undefined;
        },
        { what: "the Lease walship held", timeoutMs: 60_000, intervalMs: 500 },
      );
      assert.ok(lease.startsWith(opPod.metadata.name), `${lease} is ${opPod.metadata.name}`);

      await cp.kubectl([
        "-n",
        NS,
        "create",
        "secret",
        "generic",
        "s3-creds",
        `--from-literal=id=${minio.accessKeyId}`,
        `--from-literal=secret=${minio.secretAccessKey}`,
      ]);
      const objs = [
        appStatefulSet(NS, mount),
        {
          apiVersion: "walship.dev/v1alpha1",
          kind: "SqliteReplica",
          metadata: { name: "db", namespace: NS },
          spec: {
            statefulSetName: "app",
            database: { path: `${mount}/app.db`, volumeName: "data" },
            destinations: [
              {
                name: "minio",
                s3: {
                  bucket: "replicas",
                  path: "shop",
                  endpoint: minio.endpoint,
                  region: minio.region,
                  credentials: {
                    accessKeyId: { name: "s3-creds", key: "id" },
                    secretAccessKey: { name: "s3-creds", key: "secret" },
                  },
                },
              },
            ],
            syncInterval: "200ms",
          },
        },
      ];
      await cp.kubectl(["apply", "-f", file("app.yaml", objs.map((o) => stringify(o)).join("---\n"))]);
      const ready = await waitFor(
        async () => {
          const c = await cp.request<{
            status?: {
              phase?: string;
              generation?: string;
              conditions?: Array<{ type: string; status: string }>;
            };
          }>("GET", `/apis/walship.dev/v1alpha1/namespaces/${NS}/sqlitereplicas/db`);
          const ok = c.body.status?.conditions?.some((x) => x.type === "Ready" && x.status === "True");
          return ok && c.body.status?.generation ? c.body : undefined;
        },
        { what: "SqliteReplica db Ready with a generation", timeoutMs: 180_000, intervalMs: 500 },
      ).catch(async (err) => {
        const opLogs = await c.logs("walship-system", opPod.metadata.name, "operator");
        throw new Error(`${(err as Error).message}\n${await c.describe(NS)}\n${opLogs.slice(-4000)}`);
      });
      assert.equal(ready.status?.phase, "Replicating");
      const table = (await cp.kubectl(["-n", NS, "get", "sqlitereplicas"])).stdout;
      assert.match(table, new RegExp(`db\\s+app\\s+Replicating\\s+${ready.status?.generation}\\s+\\d`));
      const listed = await minio
        .client()
        .send(new ListObjectsV2Command({ Bucket: "replicas", Prefix: "shop/app-0/generations/" }));
      assert.ok((listed.KeyCount ?? 0) > 0, "objects under shop/app-0/generations/");
      // What the PodMonitor and WalshipReplicatorDown rely on: the sidecar is the container named
      // walship, with a port named walship-http that serves /metrics.
      const pod = await cp.request<{
        spec: {
          initContainers?: Array<{ name: string; ports?: Array<{ name?: string; containerPort: number }> }>;
        };
        status: { podIP: string };
      }>("GET", `/api/v1/namespaces/${NS}/pods/app-0`);
      const port = pod.body.spec.initContainers
        ?.find((c) => c.name === "walship")
        ?.ports?.find((p) => p.name === "walship-http")?.containerPort;
      assert.ok(port, JSON.stringify(pod.body.spec.initContainers));
      const scrape = await (await fetch(`http://${pod.body.status.podIP}:${port}/metrics`)).text();
      assert.match(scrape, /^walship_replica_up\{[^}]*name="minio"[^}]*\} 1$/m);
      // The operator used only the chart's RBAC: no forbidden errors in its log.
      const opLogs = await c.logs("walship-system", opPod.metadata.name, "operator");
      assert.doesNotMatch(opLogs, /forbidden/i);
    });

    it("the chart's ServiceAccount may do what the operator needs and no more", async () => {
      const can = async (args: string[]) =>
        (
          await cp.kubectl(["auth", "can-i", ...args, "--as=system:serviceaccount:walship-system:walship"], {
            allowFailure: true,
          })
        ).stdout.trim();
      const cases: Array<[string[], string]> = [
        [["watch", "sqlitereplicas.walship.dev", "-n", NS], "yes"],
        [["patch", "sqlitereplicas.walship.dev", "--subresource=status", "-n", NS], "yes"],
        [["patch", "statefulsets.apps", "-n", NS], "yes"],
        [["get", "secrets", "-n", NS], "yes"],
        [["list", "secrets", "-n", NS], "no"],
        [["delete", "statefulsets.apps", "-n", NS], "no"],
        [["delete", "pods", "-n", NS], "no"],
        [["update", "leases.coordination.k8s.io", "-n", "walship-system"], "yes"],
        [["update", "leases.coordination.k8s.io", "-n", NS], "no"],
        [["list", "nodes"], "no"],
      ];
      for (const [args, want] of cases) assert.equal(await can(args), want, args.join(" "));
    });

    it("restores a deleted database before the app starts (restore init container, chart's operator)", async () => {
      const p = await readyPod(() => true);
      const before = await rows(p);
      await waitFor(
        async () => {
          const c = await cp.request<{ status?: { lagSeconds?: number } }>(
            "GET",
            `/apis/walship.dev/v1alpha1/namespaces/${NS}/sqlitereplicas/db`,
          );
          return c.body.status?.lagSeconds === 0 ? true : undefined;
        },
        { what: "lag 0", timeoutMs: 30_000 },
      );
      await new Promise((r) => setTimeout(r, 1000));
      const dir = await c.pvcDir(NS, "data-app-0");
      await cp.request("DELETE", `/api/v1/namespaces/${NS}/pods/app-0`);
      await waitFor(
        async () => {
          const r = await cp.request<PodLite>("GET", `/api/v1/namespaces/${NS}/pods/app-0`);
          return r.status !== 200 || r.body.metadata.uid !== p.metadata.uid ? true : undefined;
        },
        { what: "pod app-0 gone", timeoutMs: 60_000 },
      );
      for (const f of fs.readdirSync(dir)) fs.rmSync(path.join(dir, f), { recursive: true, force: true });
      const p2 = await readyPod((x) => x.metadata.uid !== p.metadata.uid);
      const after2 = await rows(p2);
      assert.deepEqual(after2.slice(0, before.length), before, "every synced row is back");
      assert.equal(after2.length, before.length + 1, "plus the row of this start");
    });

    it("deleting the SqliteReplica removes the injection (finalizer released) and the app keeps its data", async () => {
      const p = await readyPod(() => true);
      const before = await rows(p);
      await cp.kubectl(["-n", NS, "delete", "sqlitereplica", "db", "--wait=true", "--timeout=60s"]);
      const p2 = await readyPod((x) => (x.spec.initContainers ?? []).length === 0);
      assert.deepEqual((await rows(p2)).slice(0, before.length), before);
    });
  });
});
