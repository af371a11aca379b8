/**
 * A real Kubernetes cluster on this machine for end-to-end tests: the control plane
 * (test/helpers/controlplane.ts with kube-scheduler and node authorization) and one real node: the
 * kubelet, containerd and runc (Debian's packages), the CNI bridge plugin, kube-proxy in nftables mode,
 * and a default StorageClass (Rancher's local-path-provisioner, run as a pod). Images come from
 * test/infra/images (the project's Dockerfile built by buildah, no registry) and are imported into
 * containerd when they changed. See docs/testing.md for what runs and how to look into a failing run.
 *
 *   const c = await startCluster();
 *   try {
 *     await c.createNamespace("e2e");                // Pod Security `restricted` enforced
 *     await c.apply(obj);
 *     await c.logs("e2e", "app-0", "walship");       // kubectl logs
 *   } finally {
 *     await c.stop();                                 // every host setting put back
 *   }
 *
 * One node per test file (test files run one at a time). Pods live on the bridge `walship0`
 * (10.214.0.0/24); the API server and test servers (MinIO) listen on its gateway 10.214.0.1, where
 * both the pods and the test reach them. Nothing in 10.214.0.0/16 can leave the machine (see host.ts).
 */
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { stringify } from "yaml";
import { binPath, cacheDir } from "../cache.ts";
import { type ControlPlane, startControlPlane } from "../controlplane.ts";
import {
  InfraError,
  type ManagedProcess,
  type RunOptions,
  type RunResult,
  runCommand,
  spawnManaged,
  waitFor,
} from "../proc.ts";
import {
  BRIDGE,
  GATEWAY,
  hasLeftovers,
  KUBELET_ROOT,
  NODE_NAME,
  POD_CIDR,
  RUN_DIR,
  recordHost,
  recordPid,
  SERVICE_CIDR,
  STATE_DIR,
  setUpNetwork,
  sweepHost,
  unmountAll,
} from "./host.ts";
import { storageManifests } from "./storage.ts";

export { GATEWAY, NODE_NAME } from "./host.ts";

const ROOT = join(import.meta.dirname, "../../..");
/** The images the tests' pods run, as pod specs name them. */
export const IMAGES = {
  walship: "walship-test/walship:dev",
  app: "walship-test/app:1",
  busybox: "walship-test/busybox:1",
} as const;
/** Images the node imports: archive name in $WALSHIP_CACHE/images -> reference. */
const ARCHIVES: Record<string, string> = {
  pause: "registry.k8s.io/pause:3.10",
  busybox: "docker.io/walship-test/busybox:1",
  "local-path": "docker.io/walship-test/local-path-provisioner:v0.0.30",
  walship: "docker.io/walship-test/walship:dev",
  app: "docker.io/walship-test/app:1",
};

const CONTAINERD_DIR = join(RUN_DIR, "containerd");
const SOCK = join(CONTAINERD_DIR, "containerd.sock");

export type PodSecurityLevel = "restricted" | "baseline" | "privileged";

export interface Cluster {
  /** The control plane: kubectl and API requests as admin, tokens, kubeconfigs. */
  cp: ControlPlane;
  /** The bridge gateway: where test servers listen so pods reach them (and the test too). */
  gateway: string;
  /** kubectl as admin (throws on non-zero unless allowFailure). */
  kubectl(args: readonly string[], opts?: RunOptions): Promise<RunResult>;
  /** `kubectl apply -f` of one object or several. */
  apply(objs: unknown): Promise<void>;
  /** A namespace that enforces a Pod Security level (default `restricted`). */
  createNamespace(name: string, level?: PodSecurityLevel): Promise<void>;
  /** `kubectl logs` of one container ("" when it has none yet). */
  logs(ns: string, pod: string, container: string, opts?: { previous?: boolean }): Promise<string>;
  /** `kubectl exec` in one container. */
  exec(
    ns: string,
    pod: string,
    container: string,
    cmd: readonly string[],
    opts?: RunOptions,
  ): Promise<RunResult>;
  /** The host directory behind a bound claim (a local-path hostPath volume). */
  pvcDir(ns: string, claim: string): Promise<string>;
  /** Pods, their containers' states, recent Events and failing containers' logs: for failure messages. */
  describe(ns: string): Promise<string>;
  /** crictl against the node's containerd. */
  crictl(args: readonly string[], opts?: RunOptions): Promise<RunResult>;
  /** Log files of the node's daemons. */
  logFiles: Record<string, string>;
  /** Tears everything down and puts the host back. Safe to call twice. */
  stop(): Promise<void>;
}

export interface ClusterOptions {
  /** How long to wait for the node to be Ready; default 120 s. */
  timeoutMs?: number;
  /** How long to wait while another process has the machine's one node; default 1 h. */
  lockTimeoutMs?: number;
}

function requireRoot(): void {
  if (process.getuid?.() !== 0) {
    throw new InfraError(
      "INFRA_MISSING_BINARY",
      "the real node needs root (containerd, the kubelet, a bridge): run the end-to-end tests as root",
    );
  }
}

function systemBinary(name: string, paths: string[]): string {
  for (const p of paths) if (existsSync(p)) return p;
  throw new InfraError(
    "INFRA_MISSING_BINARY",
    `${name} is not installed (looked in ${paths.join(", ")}); run test/infra/install (it installs the node's Debian packages)`,
  );
}

function containerdConfig(root: string): string {
  // restrict_oom_score_adj: this sandbox lacks CAP_SYS_RESOURCE, so runc cannot lower a pod's
  // oom_score_adj (every sandbox would fail). config_path: every registry resolves to a closed
  // loopback port, so no pull can leave the machine.
  return `version = 2
root = "${root}"
state = "${CONTAINERD_DIR}/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]
[grpc]
  address = "${SOCK}"
[ttrpc]
  address = "${SOCK}.ttrpc"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "${ARCHIVES.pause}"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        BinaryName = "/usr/sbin/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "${STATE_DIR}/cni/net.d"
    max_conf_num = 1
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "${STATE_DIR}/certs.d"
`;
}

function cniConfig(): string {
  return JSON.stringify(
    {
      cniVersion: "1.0.0",
      name: "walship",
      plugins: [
        {
          type: "bridge",
          bridge: BRIDGE,
          isGateway: true,
          isDefaultGateway: false,
          ipMasq: false,
          hairpinMode: true,
          ipam: {
            type: "host-local",
            dataDir: join(STATE_DIR, "cni/ipam"),
            ranges: [[{ subnet: POD_CIDR, rangeStart: "10.214.0.10", gateway: GATEWAY }]],
            // Pods get the Service range through the gateway and no default route.
            routes: [{ dst: SERVICE_CIDR }],
          },
        },
        { type: "portmap", capabilities: { portMappings: true } },
      ],
    },
    null,
    2,
  );
}

function kubeletConfig(caFile: string): string {
  return stringify({
    apiVersion: "kubelet.config.k8s.io/v1beta1",
    kind: "KubeletConfiguration",
    address: GATEWAY,
    port: 10250,
    readOnlyPort: 0,
    healthzBindAddress: "127.0.0.1",
    healthzPort: 10248,
    authentication: {
      anonymous: { enabled: false },
      webhook: { enabled: false },
      x509: { clientCAFile: caFile },
    },
    authorization: { mode: "AlwaysAllow" },
    cgroupDriver: "cgroupfs",
    cgroupsPerQOS: true,
    failCgroupV1: false,
    failSwapOn: false,
    containerRuntimeEndpoint: `unix://${SOCK}`,
    imageServiceEndpoint: `unix://${SOCK}`,
    podLogsDir: join(STATE_DIR, "pod-logs"),
    resolvConf: "",
    clusterDomain: "cluster.local",
    makeIPTablesUtilChains: false,
    // Never collect the imported images: nothing could pull them back.
    imageGCHighThresholdPercent: 100,
    imageGCLowThresholdPercent: 99,
    evictionHard: {
      "memory.available": "100Mi",
      "nodefs.available": "1%",
      "nodefs.inodesFree": "1%",
      "imagefs.available": "1%",
    },
    syncFrequency: "10s",
    serializeImagePulls: false,
    registerNode: true,
    rotateCertificates: false,
    serverTLSBootstrap: false,
  });
}

function kubeProxyConfig(kubeconfig: string): string {
  return stringify({
    apiVersion: "kubeproxy.config.k8s.io/v1alpha1",
    kind: "KubeProxyConfiguration",
    clientConnection: { kubeconfig },
    hostnameOverride: NODE_NAME,
    mode: "nftables",
    clusterCIDR: POD_CIDR,
    nodePortAddresses: [`${GATEWAY}/32`],
    bindAddress: GATEWAY,
    healthzBindAddress: "127.0.0.1:10356",
    metricsBindAddress: "127.0.0.1:10349",
    // Zero: leave the host's conntrack sysctls alone.
    conntrack: { maxPerCore: 0, min: 0, tcpEstablishedTimeout: "0s", tcpCloseWaitTimeout: "0s" },
  });
}

function crictlSync(args: string[]): string {
  return execFileSync(
    binPath("crictl"),
    [
      "--runtime-endpoint",
      `unix://${SOCK}`,
      "--image-endpoint",
      `unix://${SOCK}`,
      "--timeout",
      "30s",
      ...args,
    ],
    { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"], timeout: 90_000 },
  );
}

/** Removes every pod sandbox (stops containers, runs CNI DEL) while containerd answers. */
function removeAllPods(): void {
  if (!existsSync(SOCK)) return;
  crictlSync(["rmp", "--all", "--force"]);
}

/** Imports the archives whose stamp differs from the one recorded at their last import. */
async function importImages(ctr: string, log: (l: string) => void): Promise<void> {
  const dir = join(cacheDir(), "images");
  const imported = join(cacheDir(), "node/imported");
  mkdirSync(imported, { recursive: true });
  const present = new Set(
    execFileSync(ctr, ["-a", SOCK, "-n", "k8s.io", "images", "ls", "-q"], { encoding: "utf8" }).split("\n"),
  );
  for (const [name, ref] of Object.entries(ARCHIVES)) {
    const tar = join(dir, `${name}.tar`);
    const stampFile = join(dir, `${name}.stamp`);
    if (!existsSync(tar) || !existsSync(stampFile)) {
      throw new InfraError("INFRA_MISSING_BINARY", `image ${ref}: ${tar} is missing; run test/infra/images`);
    }
    const stamp = readFileSync(stampFile, "utf8").trim();
    const mark = join(imported, name);
    if (present.has(ref) && existsSync(mark) && readFileSync(mark, "utf8").trim() === stamp) continue;
    const t0 = Date.now();
    await runCommand(
      ctr,
      ["-a", SOCK, "-n", "k8s.io", "images", "import", "--snapshotter", "overlayfs", tar],
      {
        timeoutMs: 600_000,
      },
    );
    writeFileSync(mark, `${stamp}\n`);
    log(`imported ${ref} in ${Date.now() - t0} ms`);
  }
}

/**
 * One node per machine: the bridge, the nft tables and the daemons' paths are fixed. A lock directory
 * holding its owner's pid serializes test processes (another worktree's, a helper's); a dead owner's
 * lock is taken over (its leftovers are then swept).
 */
const LOCK_DIR = "/run/walship-node.lock";

function lockOwner(): number | undefined {
  try {
    return Number(readFileSync(join(LOCK_DIR, "pid"), "utf8"));
  } catch {
    return undefined;
  }
}

async function acquireNodeLock(timeoutMs: number, log: (l: string) => void): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let said = false;
  for (;;) {
    try {
      mkdirSync(LOCK_DIR);
      writeFileSync(join(LOCK_DIR, "pid"), `${process.pid}\n`);
      return;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
    }
    const owner = lockOwner();
    if (owner === process.pid) return;
    const alive = owner !== undefined && existsSync(`/proc/${owner}`);
    if (!alive) {
      // A dead owner (or one that had not written its pid yet: give it a moment).
      await new Promise((r) => setTimeout(r, 200));
      if (lockOwner() === owner) rmSync(LOCK_DIR, { recursive: true, force: true });
      continue;
    }
    if (!said) {
      log(`waiting for the node of process ${owner} to stop`);
      process.stderr.write(`[node] another test process (pid ${owner}) has the node; waiting for it\n`);
      said = true;
    }
    if (Date.now() > deadline) {
      throw new InfraError(
        "INFRA_TIMEOUT",
        `the node is held by process ${owner} (${LOCK_DIR}) for too long`,
      );
    }
    await new Promise((r) => setTimeout(r, 1000));
  }
}

function releaseNodeLock(): void {
  if (lockOwner() === process.pid) rmSync(LOCK_DIR, { recursive: true, force: true });
}

let exitHookInstalled = false;
let active: { stopSync: () => void } | undefined;

/** On exit or a signal, a node still up is torn down synchronously before other cleanup runs. */
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.prependListener("exit", () => active?.stopSync());
  for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
    process.prependListener(sig, () => active?.stopSync());
  }
}

/** Starts the control plane and the node; resolves when the node is Ready and storage works. */
export async function startCluster(opts: ClusterOptions = {}): Promise<Cluster> {
  requireRoot();
  if (active) throw new InfraError("INFRA_COMMAND_FAILED", "a node is already running in this process");
  const timeoutMs = opts.timeoutMs ?? 120_000;
  const containerd = systemBinary("containerd", ["/usr/bin/containerd", "/usr/sbin/containerd"]);
  const ctr = systemBinary("ctr", ["/usr/bin/ctr", "/usr/sbin/ctr"]);
  systemBinary("runc", ["/usr/sbin/runc"]);
  systemBinary("the CNI bridge plugin", ["/usr/lib/cni/bridge"]);
  systemBinary("nft", ["/usr/sbin/nft"]);
  const kubeletBin = binPath("kubelet");
  const proxyBin = binPath("kube-proxy");
  binPath("crictl");
  const logLines: string[] = [];
  const log = (l: string) => {
    logLines.push(l);
    if (process.env.WALSHIP_NODE_DEBUG === "1") process.stderr.write(`[node] ${l}\n`);
  };

  installExitHook();
  await acquireNodeLock(opts.lockTimeoutMs ?? 3_600_000, log);
  // The images of this checkout, rebuilt when their inputs changed (make test has built them already:
  // then this is a stamp check of a second). Under the lock: worktrees share the image names.
  try {
    await runCommand(join(ROOT, "test/infra/images"), [], { timeoutMs: 1_800_000 });
  } catch (err) {
    releaseNodeLock();
    throw err;
  }
  if (hasLeftovers()) {
    // A crashed run: its containerd state is still there, so its pods can be removed properly.
    const found = sweepHost({ removePods: () => startContainerdForSweep(containerd) });
    log(`swept a previous run's leftovers: ${found.join("; ")}`);
  }

  const logDir = join(cacheDir(), "node/logs");
  rmSync(logDir, { recursive: true, force: true });
  mkdirSync(logDir, { recursive: true });
  const procs: ManagedProcess[] = [];
  let cp: ControlPlane | undefined;
  let stopped = false;

  const stopSync = (): void => {
    if (stopped) return;
    stopped = true;
    active = undefined;
    const byName = (n: string) => procs.find((p) => p.name === n);
    byName("kubelet")?.kill("SIGKILL");
    byName("kube-proxy")?.kill("SIGKILL");
    sweepHost({ removePods: removeAllPods });
    byName("containerd")?.kill("SIGKILL");
    releaseNodeLock();
  };
  const stop = async (): Promise<void> => {
    if (stopped) return;
    const byName = (n: string) => procs.find((p) => p.name === n);
    await byName("kubelet")?.stop({ graceMs: 5_000 });
    try {
      removeAllPods();
    } catch (err) {
      log(`crictl rmp: ${(err as Error).message}`);
    }
    await byName("kube-proxy")?.stop({ graceMs: 5_000 });
    unmountAll(KUBELET_ROOT);
    await byName("containerd")?.stop({ graceMs: 10_000 });
    stopped = true;
    active = undefined;
    const left = sweepHost();
    if (left.length > 0) log(`put back: ${left.join("; ")}`);
    await cp?.stop();
    releaseNodeLock();
  };
  active = { stopSync };

  try {
    recordHost();
    for (const d of ["cni/net.d", "cni/ipam", "certs.d/_default", "pod-logs", "volumes", "kubelet-pki"]) {
      mkdirSync(join(STATE_DIR, d), { recursive: true });
    }
    mkdirSync(CONTAINERD_DIR, { recursive: true });
    setUpNetwork();
    writeFileSync(join(STATE_DIR, "cni/net.d/10-walship.conflist"), cniConfig());
    writeFileSync(
      join(STATE_DIR, "certs.d/_default/hosts.toml"),
      'server = "http://127.0.0.1:9"\n[host."http://127.0.0.1:9"]\n  capabilities = ["pull", "resolve"]\n',
    );

    const ctrdRoot = join(cacheDir(), "node/containerd");
    mkdirSync(ctrdRoot, { recursive: true });
    const ctrdConfig = join(STATE_DIR, "containerd.toml");
    writeFileSync(ctrdConfig, containerdConfig(ctrdRoot));
    const ctrd = spawnManaged(containerd, ["--config", ctrdConfig], {
      name: "containerd",
      logFile: join(logDir, "containerd.log"),
    });
    procs.push(ctrd);
    recordPid("containerd", ctrd.pid);
    await waitFor(async () => existsSync(SOCK) && crictlOk(), {
      what: "containerd's CRI socket",
      timeoutMs: 30_000,
      processes: [ctrd],
    });
    removeAllPods();
    await importImages(ctr, log);

    cp = await startControlPlane({
      node: { address: GATEWAY, serviceCidr: SERVICE_CIDR, nodeName: NODE_NAME },
      timeoutMs,
    });
    const certs = cp.nodeCerts;
    if (!certs) throw new Error("the control plane made no node certificates");

    const kubeletYaml = join(STATE_DIR, "kubelet.yaml");
    writeFileSync(kubeletYaml, kubeletConfig(cp.caFile));
    const kubelet = spawnManaged(
      kubeletBin,
      [
        `--config=${kubeletYaml}`,
        `--kubeconfig=${cp.kubeconfigForCert("kubelet", certs.kubelet)}`,
        `--root-dir=${KUBELET_ROOT}`,
        `--cert-dir=${join(STATE_DIR, "kubelet-pki")}`,
        `--hostname-override=${NODE_NAME}`,
        `--node-ip=${GATEWAY}`,
        "--node-labels=walship.test/real-node=true",
        "--v=2",
      ],
      { name: "kubelet", logFile: join(logDir, "kubelet.log") },
    );
    procs.push(kubelet);
    recordPid("kubelet", kubelet.pid);

    const proxyYaml = join(STATE_DIR, "kube-proxy.yaml");
    writeFileSync(proxyYaml, kubeProxyConfig(cp.kubeconfigForCert("kube-proxy", certs.kubeProxy)));
    const proxy = spawnManaged(proxyBin, [`--config=${proxyYaml}`], {
      name: "kube-proxy",
      logFile: join(logDir, "kube-proxy.log"),
    });
    procs.push(proxy);
    recordPid("kube-proxy", proxy.pid);

    const controlPlane = cp;
    await waitFor(
      async () => {
        const r = await controlPlane.request<{
          spec?: { taints?: unknown[] };
          status?: { conditions?: Array<{ type: string; status: string }> };
        }>("GET", `/api/v1/nodes/${NODE_NAME}`);
        if (r.status !== 200) return undefined;
        const ready = r.body.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True");
        return ready && (r.body.spec?.taints ?? []).length === 0 ? true : undefined;
      },
      {
        what: `node ${NODE_NAME} Ready without taints`,
        timeoutMs,
        intervalMs: 250,
        processes: [ctrd, kubelet, proxy],
      },
    );
    await waitFor(
      async () =>
        (await controlPlane.request("GET", "/api/v1/namespaces/default/serviceaccounts/default")).status ===
        200,
      { what: "the default ServiceAccount", timeoutMs },
    );

    const cluster = makeCluster(controlPlane, stop, {
      containerd: ctrd.logFile,
      kubelet: kubelet.logFile,
      kubeProxy: proxy.logFile,
      ...controlPlane.logs,
    });
    await cluster.apply(storageManifests(join(STATE_DIR, "volumes"), IMAGES.busybox));
    await cluster
      .kubectl([
        "-n",
        "local-path-storage",
        "rollout",
        "status",
        "deployment/local-path-provisioner",
        `--timeout=${Math.round(timeoutMs / 1000)}s`,
      ])
      .catch(async (err) => {
        throw new Error(`${(err as Error).message}\n${await cluster.describe("local-path-storage")}`);
      });
    log("node ready");
    return cluster;
  } catch (err) {
    const tail = procs.map((p) => `--- ${p.name} (${p.logFile})\n${p.logTail(15)}`).join("\n");
    await stop().catch(() => {});
    throw new InfraError(
      err instanceof InfraError ? err.code : "INFRA_PROCESS_EXITED",
      `start the real node: ${(err as Error).message}\n${logLines.join("\n")}\n${tail}`,
      { cause: err },
    );
  }
}

function crictlOk(): boolean {
  try {
    crictlSync(["info"]);
    return true;
  } catch {
    return false;
  }
}

/** A crashed run's pods: start containerd on its state for as long as `crictl rmp` takes. */
function startContainerdForSweep(containerd: string): void {
  const ctrdRoot = join(cacheDir(), "node/containerd");
  const cfg = join(RUN_DIR, "sweep-containerd.toml");
  if (!existsSync(join(CONTAINERD_DIR, "state"))) return;
  mkdirSync(RUN_DIR, { recursive: true });
  writeFileSync(cfg, containerdConfig(ctrdRoot));
  execFileSync("sh", [
    "-c",
    `setsid "${containerd}" --config "${cfg}" >/dev/null 2>&1 & echo $! > "${RUN_DIR}/sweep.pid"`,
  ]);
  const pid = Number(readFileSync(join(RUN_DIR, "sweep.pid"), "utf8"));
  try {
    for (let i = 0; i < 100 && !crictlOk(); i++) execFileSync("sleep", ["0.1"]);
    removeAllPods();
  } finally {
    try {
      process.kill(pid, "SIGTERM");
    } catch {
      // gone
    }
    for (let i = 0; i < 50 && existsSync(`/proc/${pid}`); i++) execFileSync("sleep", ["0.1"]);
    rmSync(cfg, { force: true });
  }
}

function makeCluster(cp: ControlPlane, stop: () => Promise<void>, logFiles: Record<string, string>): Cluster {
  let n = 0;
  const kubectl = (args: readonly string[], opts?: RunOptions) => cp.kubectl(args, opts);
  const cluster: Cluster = {
    cp,
    gateway: GATEWAY,
    kubectl,
    async apply(objs) {
      const list = Array.isArray(objs) ? objs : [objs];
      const file = join(cp.dir, `apply-${++n}.yaml`);
      writeFileSync(file, list.map((o) => stringify(o)).join("---\n"));
      await kubectl(["apply", "-f", file]);
    },
    async createNamespace(name, level = "restricted") {
      await cluster.apply({
        apiVersion: "v1",
        kind: "Namespace",
        metadata: {
          name,
          labels: {
            "pod-security.kubernetes.io/enforce": level,
            "pod-security.kubernetes.io/enforce-version": "latest",
          },
        },
      });
      // Pods need the namespace's default ServiceAccount (made by the controller manager).
      await waitFor(
        async () =>
          (await cp.request("GET", `/api/v1/namespaces/${name}/serviceaccounts/default`)).status === 200,
        { what: `ServiceAccount ${name}/default`, timeoutMs: 30_000 },
      );
    },
    async logs(ns, pod, container, opts = {}) {
      const r = await kubectl(
        ["-n", ns, "logs", pod, "-c", container, ...(opts.previous ? ["--previous"] : [])],
        {
          allowFailure: true,
        },
      );
      return r.code === 0 ? r.stdout : "";
    },
    exec(ns, pod, container, cmd, opts) {
      return kubectl(["-n", ns, "exec", pod, "-c", container, "--", ...cmd], opts);
    },
    async pvcDir(ns, claim) {
      const pvc = await cp.request<{ spec?: { volumeName?: string } }>(
        "GET",
        `/api/v1/namespaces/${ns}/persistentvolumeclaims/${claim}`,
      );
      const pvName = pvc.body.spec?.volumeName;
      if (pvc.status !== 200 || !pvName) throw new Error(`claim ${ns}/${claim} is not bound`);
      const pv = await cp.request<{ spec?: { hostPath?: { path?: string }; local?: { path?: string } } }>(
        "GET",
        `/api/v1/persistentvolumes/${pvName}`,
      );
      const dir = pv.body.spec?.hostPath?.path ?? pv.body.spec?.local?.path;
      if (!dir) throw new Error(`volume ${pvName} of claim ${ns}/${claim} has no host path`);
      return dir;
    },
    async describe(ns) {
      const out: string[] = [];
      const get = await kubectl(["-n", ns, "get", "pods,jobs,pvc", "-o", "wide"], { allowFailure: true });
      out.push(get.stdout.trim());
      const ev = await kubectl(["-n", ns, "get", "events", "--sort-by=.lastTimestamp"], {
        allowFailure: true,
      });
      out.push(ev.stdout.trim().split("\n").slice(-25).join("\n"));
      const pods = await cp.request<{
        items: Array<{
          metadata: { name: string };
          status?: {
            initContainerStatuses?: Array<{
              name: string;
              ready: boolean;
              restartCount: number;
              state?: unknown;
            }>;
            containerStatuses?: Array<{
              name: string;
              ready: boolean;
              restartCount: number;
              state?: unknown;
            }>;
          };
        }>;
      }>("GET", `/api/v1/namespaces/${ns}/pods`);
      for (const p of pods.body.items ?? []) {
        for (const c of [
          ...(p.status?.initContainerStatuses ?? []),
          ...(p.status?.containerStatuses ?? []),
        ]) {
          if (c.ready && c.restartCount === 0) continue;
          out.push(`--- ${p.metadata.name}/${c.name}: ${JSON.stringify(c.state)} restarts ${c.restartCount}`);
          const l = await cluster.logs(ns, p.metadata.name, c.name);
          out.push(l.split("\n").slice(-20).join("\n"));
        }
      }
      return out.join("\n");
    },
    crictl(args, opts) {
      return runCommand(
        binPath("crictl"),
        ["--runtime-endpoint", `unix://${SOCK}`, "--image-endpoint", `unix://${SOCK}`, ...args],
        opts,
      );
    },
    logFiles,
    stop,
  };
  return cluster;
}

/** For tests of the harness itself: the host's current state that the node may change. */
export function hostSnapshot(): Record<string, string> {
  const read = (cmd: string, args: string[]) => {
    try {
      return execFileSync(cmd, args, { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim();
    } catch {
      return "";
    }
  };
  const sysctls: string[] = [];
  for (const k of [
    "vm.overcommit_memory",
    "kernel.panic",
    "kernel.panic_on_oops",
    "net.ipv4.ip_forward",
    "net.ipv4.conf.all.route_localnet",
  ]) {
    try {
      sysctls.push(`${k}=${readFileSync(join("/proc/sys", ...k.split(".")), "utf8").trim()}`);
    } catch {
      sysctls.push(`${k}=?`);
    }
  }
  const mounts = readFileSync("/proc/self/mounts", "utf8")
    .split("\n")
    .filter((l) => /walship-node|kubelet|containerd|netns/.test(l))
    .sort()
    .join("\n");
  const cgroups = [
    "/sys/fs/cgroup/memory/kubepods",
    "/sys/fs/cgroup/cpu/kubepods",
    "/sys/fs/cgroup/unified/kubepods",
  ]
    .filter((p) => existsSync(p))
    .join("\n");
  const netns = existsSync("/var/run/netns") ? readdirSync("/var/run/netns").sort().join(",") : "";
  return {
    sysctls: sysctls.join("\n"),
    links: read("ip", ["-o", "link", "show"])
      .replace(/^\d+: /gm, "")
      .split("\n")
      .map((l) => l.split(":")[0])
      .sort()
      .join(","),
    routes: read("ip", ["route", "show", "table", "all"]),
    nftTables: read("nft", ["list", "tables"]),
    mounts,
    cgroups,
    netns,
    processes: read("sh", ["-c", "pgrep -x 'kubelet|kube-proxy|containerd|containerd-shim-runc-v2' || true"]),
  };
}
