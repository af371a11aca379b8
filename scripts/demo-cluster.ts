/**
 * `make demo`: Walship on a local Kubernetes cluster, no cloud account, registry or Docker needed.
 * Starts a real single-node cluster (test/helpers/node: etcd, kube-apiserver, kube-controller-manager,
 * kube-scheduler, and a node with the kubelet, containerd, runc, kube-proxy and a default StorageClass)
 * and MinIO, with the walship image built from the Dockerfile by buildah and the example app's image
 * (a small SQLite writer that adds a row at each start) built on it; `helm install`s charts/walship,
 * applies deploy/examples/minio.yaml (its endpoint and Secret pointed at the local MinIO), shows
 * `kubectl get sqlitereplicas` with a live generation and lag, restarts the app (a second row), waits
 * with `kubectl walship wait` until that row is in the bucket, and runs an InPlace SqliteRestore
 * through the operator to the moment between the two rows: the app comes back with the first row
 * only, and replication goes on in a new generation.
 *
 * Without --keep it tears everything down and exits (non-zero if any step did not do what it shows).
 * With --keep it stays up, printing the kubeconfig to use, until SIGINT/SIGTERM or `make demo-down`
 * (which signals the pid in .demo/cluster/pid). Must run as root (containerd and the kubelet); every
 * host setting the node changes is put back when it stops.
 */
import { copyFileSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { parseAllDocuments, stringify } from "yaml";
import { RESTRICTED } from "../test/helpers/e2e.ts";
import { helm } from "../test/helpers/helm.ts";
import { type Minio, startMinio } from "../test/helpers/minio.ts";
import { type Cluster, IMAGES, startCluster } from "../test/helpers/node/index.ts";
import { runCommand, waitFor } from "../test/helpers/proc.ts";

const ROOT = path.resolve(import.meta.dirname, "..");
const DIR = path.join(ROOT, ".demo/cluster");
const keep = process.argv.includes("--keep");

function say(msg: string): void {
  process.stdout.write(`\n\x1b[1m== ${msg}\x1b[0m\n`);
}

interface ExampleObject {
  kind: string;
  stringData?: Record<string, string>;
  spec: {
    destinations: Array<{ s3: { endpoint?: string; region?: string } }>;
    template: { spec: { containers: Array<Record<string, unknown>> } };
  };
}

let cluster: Cluster | undefined;
let minio: Minio | undefined;
let stopping: Promise<void> | undefined;

function teardown(): Promise<void> {
  stopping ??= (async () => {
    say("tearing down");
    await minio?.close().catch(() => {});
    await cluster?.stop().catch(() => {});
    rmSync(DIR, { recursive: true, force: true });
  })();
  return stopping;
}

async function kubectl(args: string[]): Promise<string> {
  if (!cluster) throw new Error("no cluster");
  const r = await cluster.kubectl(args);
  return r.stdout;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Row {
  id: number;
  pod: string;
  at: string;
}

/** The rows the example app sees, from its /rows endpoint on app-0's pod IP. */
async function appRows(): Promise<Row[]> {
  const ip = await kubectl(["-n", "shop", "get", "pod", "app-0", "-o", "jsonpath={.status.podIP}"]);
  const res = await fetch(`http://${ip}:8080/rows`);
  if (!res.ok) throw new Error(`GET /rows on app-0 (${ip}): HTTP ${res.status}`);
  return (await res.json()) as Row[];
}

/** A field of SqliteReplica shop/app, by kubectl jsonpath. */
function replicaField(jsonpath: string): Promise<string> {
  return kubectl(["-n", "shop", "get", "sqlr", "app", "-o", `jsonpath=${jsonpath}`]);
}

async function replicaReady(): Promise<boolean> {
  return (await replicaField('{.status.conditions[?(@.type=="Ready")].status}')) === "True";
}

/**
 * `kubectl walship wait app -n shop`: returns once every commit the app has made is in the bucket (the
 * sidecar has read the WAL since the command started and has nothing pending). Run as kubectl would
 * run the plugin (bin/kubectl-walship, KUBECONFIG); fails the demo if it does not exit 0.
 */
async function waitReplicated(): Promise<void> {
  process.stdout.write("$ kubectl walship wait app -n shop\n");
  const r = await runCommand(
    path.join(ROOT, "bin/kubectl-walship"),
    ["wait", "app", "-n", "shop", "--timeout", "60s"],
    { env: { KUBECONFIG: cluster!.cp.kubeconfig }, allowFailure: true, timeoutMs: 90_000 },
  );
  process.stdout.write(r.stdout);
  if (r.code !== 0) throw new Error(`kubectl walship wait exited ${r.code}: ${r.stderr}`);
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0)
    throw new Error(
      "make demo: must run as root (containerd and the kubelet); `make demo-local` needs no root",
    );
  if (existsSync(path.join(DIR, "pid"))) {
    const pid = Number(readFileSync(path.join(DIR, "pid"), "utf8"));
    let alive = false;
    try {
      process.kill(pid, 0);
      alive = true;
    } catch {}
    if (alive) throw new Error(`make demo: already running (pid ${pid}); make demo-down first`);
  }
  rmSync(DIR, { recursive: true, force: true });
  mkdirSync(DIR, { recursive: true });
  writeFileSync(path.join(DIR, "pid"), `${process.pid}\n`);

  say("starting a local cluster (control plane + a real node: kubelet, containerd, runc) and MinIO");
  cluster = await startCluster();
  const c = cluster;
  minio = await startMinio({ host: c.gateway });
  await minio.createBucket("replicas");
  const kubeconfig = path.join(DIR, "kubeconfig");
  copyFileSync(c.cp.kubeconfig, kubeconfig);
  process.stdout.write(await kubectl(["get", "nodes", "-o", "wide"]));

  say(`helm install walship charts/walship (image ${IMAGES.walship}, built from the Dockerfile)`);
  await c.createNamespace("walship-system");
  const install = await helm([
    "--kubeconfig",
    c.cp.kubeconfig,
    "install",
    "walship",
    path.join(ROOT, "charts/walship"),
    "--namespace",
    "walship-system",
    "--set",
    `image.repository=${IMAGES.walship.split(":")[0]},image.tag=${IMAGES.walship.split(":")[1]}`,
    "--set",
    "operator.poll=2,operator.logFormat=text",
  ]);
  process.stdout.write(install.stdout);
  await waitFor(
    async () =>
      (
        await c.kubectl([
          "-n",
          "walship-system",
          "get",
          "deploy/walship",
          "-o",
          "jsonpath={.status.readyReplicas}",
        ])
      ).stdout === "1",
    { what: "the operator Ready", timeoutMs: 120_000, intervalMs: 500 },
  );
  process.stdout.write(await kubectl(["-n", "walship-system", "get", "pods,lease"]));

  say("kubectl apply -f deploy/examples/minio.yaml (endpoint and credentials of the local MinIO)");
  await c.createNamespace("shop");
  const objs = parseAllDocuments(readFileSync(path.join(ROOT, "deploy/examples/minio.yaml"), "utf8")).map(
    (d) => d.toJS() as ExampleObject,
  );
  for (const o of objs) {
    if (o.kind === "Secret")
      o.stringData = { "access-key-id": minio.accessKeyId, "secret-access-key": minio.secretAccessKey };
    if (o.kind === "StatefulSet") {
      // The example's application image: a SQLite writer that adds a row at each start.
      const app = o.spec.template.spec.containers[0]!;
      Object.assign(app, {
        image: IMAGES.app,
        imagePullPolicy: "IfNotPresent",
        args: ["serve"],
        env: [{ name: "DATA_DIR", value: "/data" }],
        securityContext: { ...RESTRICTED, ...(app.securityContext as object | undefined) },
      });
    }
    if (o.kind === "SqliteReplica") {
      const s3 = o.spec.destinations[0]!.s3;
      s3.endpoint = minio.endpoint;
      s3.region = minio.region;
    }
  }
  const example = path.join(DIR, "minio-example.yaml");
  writeFileSync(example, objs.map((o) => stringify(o)).join("---\n"));
  process.stdout.write(await kubectl(["apply", "-f", example]));

  say("waiting for the operator to inject the replicator and the pod to replicate");
  await waitFor(
    async () => {
      const out = await replicaField("{.status.phase} {.status.generation}");
      return /^Replicating [0-9a-f]{16}$/.test(out.trim());
    },
    { what: "SqliteReplica shop/app Replicating", timeoutMs: 180_000, intervalMs: 1000 },
  );
  process.stdout.write(await kubectl(["-n", "shop", "get", "pods"]));
  for (let i = 0; i < 3; i++) {
    process.stdout.write(
      `\n$ kubectl get sqlitereplicas -n shop\n${await kubectl(["-n", "shop", "get", "sqlitereplicas"])}`,
    );
    await new Promise((r) => setTimeout(r, 2000));
  }

  say("the app writes a row at each start: restart it, then restore to the moment between the two rows");
  const before = await appRows();
  await sleep(2000);
  const target = new Date().toISOString();
  await sleep(1500);
  const pod0 = await kubectl(["-n", "shop", "get", "pod", "app-0", "-o", "jsonpath={.metadata.uid}"]);
  process.stdout.write("$ kubectl -n shop delete pod app-0\n");
  await kubectl(["-n", "shop", "delete", "pod", "app-0", "--wait=true"]);
  await waitFor(
    async () =>
      (await kubectl(["-n", "shop", "get", "pod", "app-0", "-o", "jsonpath={.metadata.uid}"])) !== pod0 &&
      (await replicaReady()),
    { what: "app-0 back and the SqliteReplica Ready", timeoutMs: 180_000, intervalMs: 1000 },
  );
  const all = await appRows();
  if (all.length !== before.length + 1)
    throw new Error(`expected one more row after the restart: ${JSON.stringify(all)}`);
  await waitReplicated();
  process.stdout.write(
    `rows in the app now (GET /rows on app-0):\n${all.map((r) => `  ${JSON.stringify(r)}`).join("\n")}\n`,
  );

  const restore = {
    apiVersion: "walship.dev/v1alpha1",
    kind: "SqliteRestore",
    metadata: { name: "before-restart", namespace: "shop" },
    spec: { sqliteReplicaName: "app", pod: "app-0", target: { timestamp: target }, mode: "InPlace" },
  };
  const restoreFile = path.join(DIR, "sqliterestore.yaml");
  writeFileSync(restoreFile, stringify(restore));
  process.stdout.write(`\n$ cat ${path.relative(ROOT, restoreFile)}\n${stringify(restore)}`);
  process.stdout.write(`$ kubectl apply -f ${path.relative(ROOT, restoreFile)}\n`);
  process.stdout.write(await kubectl(["apply", "-f", restoreFile]));
  let lastPhase = "";
  const phase = await waitFor(
    async () => {
      const p = await kubectl([
        "-n",
        "shop",
        "get",
        "sqlrestore",
        "before-restart",
        "-o",
        "jsonpath={.status.phase}",
      ]);
      if (p && p !== lastPhase) {
        lastPhase = p;
        process.stdout.write(
          `\n$ kubectl get sqliterestores -n shop\n${await kubectl(["-n", "shop", "get", "sqliterestores"])}`,
        );
      }
      return p === "Succeeded" || p === "Failed" ? p : undefined;
    },
    { what: "the SqliteRestore to finish", timeoutMs: 300_000, intervalMs: 500 },
  );
  process.stdout.write(`\n$ kubectl -n shop describe sqliterestore before-restart\n`);
  process.stdout.write(await kubectl(["-n", "shop", "describe", "sqliterestore", "before-restart"]));
  if (phase !== "Succeeded") throw new Error("the SqliteRestore failed (see its status above)");

  await waitFor(replicaReady, {
    what: "the SqliteReplica Ready after the restore",
    timeoutMs: 180_000,
    intervalMs: 1000,
  });
  const after = await appRows();
  const kept = all.filter((r) => Date.parse(r.at) <= Date.parse(target));
  process.stdout.write(
    `\nrows in the app after the restore (the restored ones, then the row of this start):\n`,
  );
  process.stdout.write(`${after.map((r) => `  ${JSON.stringify(r)}`).join("\n")}\n`);
  const restored = after.slice(0, -1);
  if (JSON.stringify(restored) !== JSON.stringify(kept))
    throw new Error(`expected exactly the rows at or before ${target}: ${JSON.stringify(kept)}`);
  process.stdout.write(`the row written after ${target} is gone; replication goes on in a new generation:\n`);
  for (let i = 0; i < 2; i++) {
    process.stdout.write(
      `\n$ kubectl get sqlitereplicas -n shop\n${await kubectl(["-n", "shop", "get", "sqlitereplicas"])}`,
    );
    await sleep(2000);
  }

  if (keep) {
    say("running; stop with Ctrl-C or make demo-down");
    process.stdout.write(`export KUBECONFIG=${kubeconfig}\nkubectl get sqlitereplicas -A\n`);
    // Replace the test helpers' signal hooks (kill everything, re-raise) with an orderly teardown.
    for (const sig of ["SIGINT", "SIGTERM"] as const) process.removeAllListeners(sig);
    await new Promise<void>((resolve) => {
      const timer = setInterval(() => {}, 1 << 30);
      const done = () => {
        clearInterval(timer);
        resolve();
      };
      process.once("SIGINT", done);
      process.once("SIGTERM", done);
    });
  }
}

for (const sig of ["SIGINT", "SIGTERM"] as const)
  process.once(sig, () => {
    void teardown().then(() => process.exit(0));
  });

main().then(
  async () => {
    await teardown();
    process.exit(0);
  },
  async (err: unknown) => {
    process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
    await teardown();
    process.exit(1);
  },
);
