/**
 * `make demo-cluster`: the operator on a local Kubernetes control plane, no cluster or Docker needed.
 * Starts the test components (etcd, kube-apiserver, kube-controller-manager, MinIO and the process
 * kubelet, which runs pods as local processes: the walship image maps to bin/walship, the example
 * app's image to a small SQLite writer), `helm install`s charts/walship, applies
 * deploy/examples/minio.yaml (its endpoint and Secret pointed at the local MinIO), shows
 * `kubectl get sqlitereplicas` with a live generation and lag, applies the SqliteRestore example
 * (accepted by its CRD; its controller is not written yet), and restores the pod's database from
 * MinIO with `walship restore` to show the rows are there.
 *
 * Without --keep it tears everything down and exits. With --keep it stays up, printing the
 * kubeconfig to use, until SIGINT/SIGTERM or `make demo-down` (which signals the pid in
 * .demo/cluster/pid). Must run as root (the process kubelet bind-mounts volumes).
 */
import { spawnSync } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import Database from "better-sqlite3";
import { parseAllDocuments, stringify } from "yaml";
import { type ControlPlane, startControlPlane } from "../test/helpers/controlplane.ts";
import { helm } from "../test/helpers/helm.ts";
import { type Kubelet, startKubelet } from "../test/helpers/kubelet/index.ts";
import { type Minio, startMinio } from "../test/helpers/minio.ts";
import { waitFor } from "../test/helpers/proc.ts";

const ROOT = path.resolve(import.meta.dirname, "..");
const DIR = path.join(ROOT, ".demo/cluster");
const WALSHIP = path.join(ROOT, "bin/walship");
const APP = path.join(ROOT, "test/fixtures/apps/app.ts");
const keep = process.argv.includes("--keep");

function say(msg: string): void {
  process.stdout.write(`\n\x1b[1m== ${msg}\x1b[0m\n`);
}

interface ExampleObject {
  kind: string;
  stringData?: Record<string, string>;
  spec: { destinations: Array<{ s3: { endpoint?: string; region?: string } }> };
}

let cp: ControlPlane | undefined;
let minio: Minio | undefined;
let kubelet: Kubelet | undefined;
let stopping: Promise<void> | undefined;

function teardown(): Promise<void> {
  stopping ??= (async () => {
    say("tearing down");
    await kubelet?.stop().catch(() => {});
    await minio?.close().catch(() => {});
    await cp?.stop().catch(() => {});
    rmSync(DIR, { recursive: true, force: true });
  })();
  return stopping;
}

async function kubectl(args: string[]): Promise<string> {
  if (!cp) throw new Error("no control plane");
  const r = await cp.kubectl(args);
  return r.stdout;
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0)
    throw new Error("demo-cluster: must run as root (the process kubelet bind-mounts volumes)");
  if (existsSync(path.join(DIR, "pid"))) {
    const pid = Number(readFileSync(path.join(DIR, "pid"), "utf8"));
    let alive = false;
    try {
      process.kill(pid, 0);
      alive = true;
    } catch {}
    if (alive) throw new Error(`demo-cluster: already running (pid ${pid}); make demo-down first`);
  }
  rmSync(DIR, { recursive: true, force: true });
  mkdirSync(DIR, { recursive: true });
  writeFileSync(path.join(DIR, "pid"), `${process.pid}\n`);

  say("starting etcd, kube-apiserver, kube-controller-manager, MinIO and the process kubelet");
  cp = await startControlPlane();
  minio = await startMinio();
  await minio.createBucket("replicas");
  kubelet = await startKubelet({
    kubeconfig: cp.kubeconfig,
    images: {
      "walship-demo/walship": { command: [WALSHIP], commandMap: { walship: [WALSHIP] } },
      // The example's application image: a SQLite writer that adds a row at each start.
      "registry.example.com/shop/app": {
        command: [process.execPath, APP],
        args: ["serve"],
        env: { DATA_DIR: "/data" },
      },
    },
  });
  const kubeconfig = path.join(DIR, "kubeconfig");
  copyFileSync(cp.kubeconfig, kubeconfig);

  say("helm install walship charts/walship (the image mapped to this checkout's bin/walship)");
  const install = await helm([
    "--kubeconfig",
    cp.kubeconfig,
    "install",
    "walship",
    path.join(ROOT, "charts/walship"),
    "--namespace",
    "walship-system",
    "--create-namespace",
    "--set",
    "image.repository=walship-demo/walship,image.tag=dev,operator.listenOnPodIP=true",
    "--set",
    "operator.sidecarBindPodIP=true,operator.poll=2,operator.logFormat=text",
  ]);
  process.stdout.write(install.stdout);
  await waitFor(
    async () =>
      (
        await cp!.kubectl([
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
  await kubectl(["create", "namespace", "shop"]);
  const objs = parseAllDocuments(readFileSync(path.join(ROOT, "deploy/examples/minio.yaml"), "utf8")).map(
    (d) => d.toJS() as ExampleObject,
  );
  for (const o of objs) {
    if (o.kind === "Secret")
      o.stringData = { "access-key-id": minio.accessKeyId, "secret-access-key": minio.secretAccessKey };
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
      const out = await kubectl([
        "-n",
        "shop",
        "get",
        "sqlr",
        "app",
        "-o",
        "jsonpath={.status.phase} {.status.generation}",
      ]);
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

  say("a new app pod writes another row; then a SqliteRestore");
  await kubectl(["-n", "shop", "delete", "pod", "app-0", "--wait=true"]);
  await waitFor(
    async () =>
      (await kubectl([
        "-n",
        "shop",
        "get",
        "sqlr",
        "app",
        "-o",
        'jsonpath={.status.conditions[?(@.type=="Ready")].status}',
      ])) === "True",
    { what: "Ready again", timeoutMs: 120_000, intervalMs: 1000 },
  );
  await new Promise((r) => setTimeout(r, 3000));
  const restore = readFileSync(path.join(ROOT, "deploy/examples/sqliterestore.yaml"), "utf8").replace(
    /timestamp: ".*"/,
    `timestamp: "${new Date().toISOString().replace(/\.\d+Z$/, "Z")}"`,
  );
  writeFileSync(path.join(DIR, "sqliterestore.yaml"), restore);
  process.stdout.write(await kubectl(["apply", "-f", path.join(DIR, "sqliterestore.yaml")]));
  process.stdout.write(await kubectl(["-n", "shop", "get", "sqliterestores"]));
  process.stdout.write(
    "(the SqliteRestore controller is not written yet: the CRD validated the object. The same restore by hand:)\n",
  );
  const cfg = path.join(DIR, "restore.yml");
  writeFileSync(
    cfg,
    stringify({
      dbs: [
        {
          path: "/data/app.db",
          replicas: [
            {
              name: "minio",
              type: "s3",
              bucket: "replicas",
              path: "shop/app/app-0",
              endpoint: minio.endpoint,
              region: minio.region,
              "access-key-id": minio.accessKeyId,
              "secret-access-key": minio.secretAccessKey,
            },
          ],
        },
      ],
    }),
  );
  const out = path.join(DIR, "restored.db");
  process.stdout.write(
    `$ walship restore -config ${path.relative(ROOT, cfg)} -o ${path.relative(ROOT, out)} /data/app.db\n`,
  );
  const r = spawnSync(WALSHIP, ["restore", "-config", cfg, "-o", out, "/data/app.db"], { encoding: "utf8" });
  process.stdout.write(r.stdout + r.stderr);
  if (r.status !== 0) throw new Error(`walship restore exited ${r.status}`);
  const db = new Database(out, { readonly: true });
  const rows = db.prepare("SELECT id, pod, at FROM starts ORDER BY id").all();
  db.close();
  process.stdout.write(`restored ${rows.length} rows (one per start of the app pod):\n`);
  for (const row of rows) process.stdout.write(`  ${JSON.stringify(row)}\n`);
  if (rows.length < 2) throw new Error("expected the rows of both starts in the restored database");

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
