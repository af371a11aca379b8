/**
 * The process kubelet: a Node for a real control plane whose pods run as local processes.
 * See README.md beside this file.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import {
  CoordinationV1Api,
  CoreV1Api,
  KubeConfig,
  PatchStrategy,
  setHeaderOptions,
  type V1ConfigMap,
  type V1PersistentVolumeClaim,
  type V1Pod,
  type V1Secret,
  Watch,
} from "@kubernetes/client-node";
import { ErrorCodes, WalshipError } from "../../../src/shared/errors.ts";
import {
  CgroupTree,
  checkHost,
  type HostTools,
  IpPool,
  MountPoints,
  newOwnerId,
  onProcessExit,
  sweepStale,
} from "./host.ts";
import { findImage, mapCommand, type PodHost, PodWorker } from "./pod.ts";
import type { ExecResult, Kubelet, KubeletOptions } from "./types.ts";
import { ConfigError, type NodeFacts, type ObjectSource } from "./volumes.ts";

export type { ExecResult, ImageMapping, Kubelet, KubeletOptions } from "./types.ts";

const mergePatch = setHeaderOptions("Content-Type", PatchStrategy.MergePatch);
const HOST_IP = "127.0.0.1";
const NODE_CPU = String(os.availableParallelism());
const NODE_MEMORY = `${Math.floor(os.totalmem() / 2 ** 20)}Mi`;

function statusCode(err: unknown): number | undefined {
  const e = err as { code?: unknown; statusCode?: unknown };
  if (typeof e?.code === "number") return e.code;
  if (typeof e?.statusCode === "number") return e.statusCode;
  return undefined;
}

async function orUndefined<T>(p: Promise<T>): Promise<T | undefined> {
  try {
    return await p;
  } catch (err) {
    if (statusCode(err) === 404) return undefined;
    throw err;
  }
}

/** metav1.MicroTime wants exactly six fractional digits. */
function microTime(d = new Date()): string {
  return d.toISOString().replace(/\.(\d{3})Z$/, ".$1000Z");
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

class ProcessKubelet implements Kubelet {
  readonly nodeName: string;
  readonly dataDir: string;
  readonly #opts: KubeletOptions;
  readonly #tempDir: boolean;
  readonly #core: CoreV1Api;
  readonly #coord: CoordinationV1Api;
  readonly #watch: Watch;
  readonly #cgroups: CgroupTree;
  readonly #ips: IpPool;
  readonly #mountPoints: MountPoints;
  readonly #workers = new Map<string, PodWorker>();
  /** UIDs whose worker has finished: never run again. */
  readonly #finished = new Set<string>();
  readonly #pods = new Map<string, V1Pod>();
  readonly #binding = new Set<string>();
  readonly #claims = new Map<string, Promise<string>>();
  readonly #timers: NodeJS.Timeout[] = [];
  readonly #host: PodHost;
  readonly #unhookExit: () => void;
  #watchAbort: AbortController | undefined;
  #stopped = false;
  #loop: Promise<void> | undefined;
  #nodeUid = "";

  constructor(opts: KubeletOptions, tools: HostTools) {
    this.#opts = opts;
    const owner = newOwnerId();
    this.nodeName = opts.nodeName ?? `process-kubelet-${owner.split("-")[1]}`;
    this.#tempDir = opts.dataDir === undefined;
    this.dataDir = opts.dataDir ?? fs.mkdtempSync(path.join(os.tmpdir(), "process-kubelet-"));
    for (const d of ["pods", "pvc", "logs"]) fs.mkdirSync(path.join(this.dataDir, d), { recursive: true });
    const kc = new KubeConfig();
    kc.loadFromFile(opts.kubeconfig);
    this.#core = kc.makeApiClient(CoreV1Api);
    this.#coord = kc.makeApiClient(CoordinationV1Api);
    this.#watch = new Watch(kc);
    this.#cgroups = new CgroupTree(owner);
    this.#ips = new IpPool(owner, opts.podNetwork ?? "loopback");
    this.#mountPoints = new MountPoints(owner);
    const server = new URL(kc.getCurrentCluster()?.server ?? "https://127.0.0.1:6443");
    const port = server.port || "443";
    const node: NodeFacts = { nodeName: this.nodeName, hostIP: HOST_IP, cpu: NODE_CPU, memory: NODE_MEMORY };
    const log = opts.log ?? (() => {});
    this.#host = {
      tools,
      cgroups: this.#cgroups,
      mountPoints: this.#mountPoints,
      images: opts.images,
      node,
      src: this.#objectSource(),
      apiEnv: {
        KUBERNETES_SERVICE_HOST: server.hostname,
        KUBERNETES_SERVICE_PORT: port,
        KUBERNETES_SERVICE_PORT_HTTPS: port,
        KUBERNETES_PORT: `tcp://${server.hostname}:${port}`,
      },
      backoff: opts.restartBackoffMs ?? { initial: 1000, max: 20_000 },
      podDir: (uid) => path.join(this.dataDir, "pods", uid),
      claimDir: (ns, name) => this.#claimDir(ns, name),
      logPath: (ns, pod, c) => this.logPath(ns, pod, c),
      claimIP: () => this.#ips.claim(),
      releaseIP: (ip) => this.#ips.release(ip),
      patchStatus: async (pod, status) => {
        await this.#core.patchNamespacedPodStatus(
          { name: pod.metadata?.name ?? "", namespace: pod.metadata?.namespace ?? "", body: { status } },
          mergePatch,
        );
      },
      deletePod: async (pod) => {
        await orUndefined(
          this.#core.deleteNamespacedPod({
            name: pod.metadata?.name ?? "",
            namespace: pod.metadata?.namespace ?? "",
            gracePeriodSeconds: 0,
            body: { gracePeriodSeconds: 0, preconditions: { uid: pod.metadata?.uid ?? "" } },
          }),
        );
      },
      log: (line) => log(`[kubelet ${this.nodeName}] ${line}`),
    };
    this.#unhookExit = onProcessExit(() => {
      for (const w of this.#workers.values()) w.killSync();
      CgroupTree.killSync(this.#cgroups.root);
      this.#ips.releaseAll();
    });
  }

  #objectSource(): ObjectSource {
    return {
      configMap: (namespace, name): Promise<V1ConfigMap | undefined> =>
        orUndefined(this.#core.readNamespacedConfigMap({ name, namespace })),
      secret: (namespace, name): Promise<V1Secret | undefined> =>
        orUndefined(this.#core.readNamespacedSecret({ name, namespace })),
      token: async (pod, audience, expirationSeconds) => {
        const tr = await this.#core.createNamespacedServiceAccountToken({
          name: pod.spec?.serviceAccountName ?? "default",
          namespace: pod.metadata?.namespace ?? "default",
          body: {
            spec: {
              audiences: audience === undefined || audience === "" ? [] : [audience],
              expirationSeconds: expirationSeconds ?? 3600,
              boundObjectRef: {
                apiVersion: "v1",
                kind: "Pod",
                name: pod.metadata?.name,
                uid: pod.metadata?.uid,
              },
            },
          },
        });
        return tr.status?.token ?? "";
      },
    };
  }

  pvcDir(namespace: string, claimName: string): string {
    return path.join(this.dataDir, "pvc", namespace, claimName);
  }

  logPath(namespace: string, pod: string, container: string): string {
    return path.join(this.dataDir, "logs", `${namespace}_${pod}_${container}.log`);
  }

  async logs(namespace: string, pod: string, container: string): Promise<string> {
    try {
      return await fs.promises.readFile(this.logPath(namespace, pod, container), "utf8");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return "";
      throw err;
    }
  }

  async exec(
    namespace: string,
    pod: string,
    container: string,
    argv: string[],
    timeoutMs = 10_000,
  ): Promise<ExecResult> {
    const w = [...this.#workers.values()].find((x) => x.namespace === namespace && x.name === pod);
    const proc = w?.process(container);
    if (w === undefined || proc === undefined || !proc.running) {
      throw new WalshipError(
        ErrorCodes.NOT_FOUND,
        `exec in container: ${namespace}/${pod}/${container} is not running`,
        {
          details: { namespace, pod, container },
        },
      );
    }
    const c = [...(w.pod.spec?.containers ?? []), ...(w.pod.spec?.initContainers ?? [])].find(
      (x) => x.name === container,
    );
    const mapping = findImage(this.#opts.images, c?.image ?? "");
    return proc.exec(mapCommand(mapping, argv), timeoutMs);
  }

  // --- node ---

  async register(): Promise<void> {
    const labels = {
      "kubernetes.io/hostname": this.nodeName,
      "kubernetes.io/os": "linux",
      "kubernetes.io/arch": process.arch === "x64" ? "amd64" : process.arch,
      "walship.test/process-kubelet": "true",
      ...this.#opts.nodeLabels,
    };
    try {
      const n = await this.#core.createNode({
        body: { apiVersion: "v1", kind: "Node", metadata: { name: this.nodeName, labels } },
      });
      this.#nodeUid = n.metadata?.uid ?? "";
    } catch (err) {
      if (statusCode(err) !== 409) {
        throw new WalshipError(ErrorCodes.CONFIG, `register node: cannot create Node ${this.nodeName}`, {
          cause: err,
        });
      }
      const n = await this.#core.patchNode(
        { name: this.nodeName, body: { metadata: { labels } } },
        mergePatch,
      );
      this.#nodeUid = n.metadata?.uid ?? "";
    }
    await this.#nodeStatus(true);
    // kube-node-lease may not exist yet on a fresh API server; the periodic renewal retries.
    await this.#renewLease().catch((err) => this.#host.log(`create lease failed: ${String(err)}`));
  }

  async #nodeStatus(full: boolean): Promise<void> {
    const now = new Date().toISOString();
    const cond = (type: string, status: string, reason: string, message: string) => ({
      type,
      status,
      reason,
      message,
      lastHeartbeatTime: now,
      lastTransitionTime: this.#since,
    });
    const capacity = { cpu: NODE_CPU, memory: NODE_MEMORY, pods: "110", "ephemeral-storage": "100Gi" };
    const status: Record<string, unknown> = {
      conditions: [
        cond("MemoryPressure", "False", "KubeletHasSufficientMemory", "process kubelet"),
        cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "process kubelet"),
        cond("PIDPressure", "False", "KubeletHasSufficientPID", "process kubelet"),
        cond("Ready", "True", "KubeletReady", "process kubelet is posting ready status"),
      ],
    };
    if (full) {
      Object.assign(status, {
        capacity,
        allocatable: capacity,
        addresses: [
          { type: "InternalIP", address: HOST_IP },
          { type: "Hostname", address: this.nodeName },
        ],
        daemonEndpoints: { kubeletEndpoint: { Port: 0 } },
        nodeInfo: {
          machineID: "process-kubelet",
          systemUUID: "process-kubelet",
          bootID: "process-kubelet",
          kernelVersion: os.release(),
          osImage: "process kubelet (local processes)",
          containerRuntimeVersion: "process://1",
          kubeletVersion: "v1.32.0-process",
          kubeProxyVersion: "",
          operatingSystem: "linux",
          architecture: process.arch === "x64" ? "amd64" : process.arch,
        },
      });
    }
    await this.#core.patchNodeStatus({ name: this.nodeName, body: { status } }, mergePatch);
  }

  readonly #since = new Date().toISOString();

  async #renewLease(): Promise<void> {
    const namespace = "kube-node-lease";
    const body = {
      spec: { holderIdentity: this.nodeName, leaseDurationSeconds: 40, renewTime: microTime() },
    };
    try {
      await this.#coord.patchNamespacedLease({ name: this.nodeName, namespace, body }, mergePatch);
    } catch (err) {
      if (statusCode(err) !== 404) throw err;
      await this.#coord.createNamespacedLease({
        namespace,
        body: {
          metadata: {
            name: this.nodeName,
            namespace,
            ownerReferences: [{ apiVersion: "v1", kind: "Node", name: this.nodeName, uid: this.#nodeUid }],
          },
          spec: { holderIdentity: this.nodeName, leaseDurationSeconds: 40 },
        },
      });
      await this.#coord.patchNamespacedLease({ name: this.nodeName, namespace, body }, mergePatch);
    }
  }

  #every(ms: number, f: () => Promise<void>): void {
    let busy = false;
    const t = setInterval(() => {
      if (busy || this.#stopped) return;
      busy = true;
      f()
        .catch((err) => this.#host.log(`periodic task failed: ${String(err)}`))
        .finally(() => {
          busy = false;
        });
    }, ms);
    t.unref();
    this.#timers.push(t);
  }

  start(): void {
    this.#every(10_000, () => this.#renewLease());
    this.#every(20_000, () => this.#nodeStatus(false));
    this.#every(this.#opts.resyncMs ?? 2000, async () => {
      for (const p of this.#pods.values()) this.#onPod(p);
      await Promise.all([...this.#workers.values()].map((w) => w.refreshVolumes()));
    });
    this.#loop = this.#watchLoop();
  }

  // --- pods ---

  async #watchLoop(): Promise<void> {
    let delay = 0;
    while (!this.#stopped) {
      if (delay > 0) await sleep(delay);
      if (this.#stopped) return;
      try {
        const list = await this.#core.listPodForAllNamespaces();
        const seen = new Set<string>();
        for (const p of list.items) {
          const uid = p.metadata?.uid ?? "";
          seen.add(uid);
          this.#pods.set(uid, p);
          this.#onPod(p);
        }
        for (const [uid, p] of this.#pods) {
          if (!seen.has(uid)) {
            this.#pods.delete(uid);
            this.#onPodGone(p);
          }
        }
        delay = 0;
        const rv = list.metadata?.resourceVersion ?? "";
        // Watch from the list; when the watch ends for any reason, list again.
        await new Promise<void>((resolve) => {
          this.#watch
            .watch(
              "/api/v1/pods",
              { resourceVersion: rv, allowWatchBookmarks: true },
              (type: string, obj: V1Pod) => {
                const uid = obj?.metadata?.uid;
                if (uid === undefined) return;
                if (type === "ADDED" || type === "MODIFIED") {
                  this.#pods.set(uid, obj);
                  this.#onPod(obj);
                } else if (type === "DELETED") {
                  this.#pods.delete(uid);
                  this.#onPodGone(obj);
                }
              },
              () => resolve(),
            )
            .then(
              (ac) => {
                this.#watchAbort = ac;
                if (this.#stopped) ac.abort();
              },
              () => resolve(),
            );
        });
      } catch (err) {
        if (this.#stopped) return;
        this.#host.log(`list pods failed: ${String(err)}`);
        delay = Math.min(5000, Math.max(250, delay * 2));
      }
    }
  }

  #onPod(pod: V1Pod): void {
    if (this.#stopped) return;
    const uid = pod.metadata?.uid ?? "";
    const deleted = pod.metadata?.deletionTimestamp !== undefined && pod.metadata?.deletionTimestamp !== null;
    const nodeName = pod.spec?.nodeName;
    if (nodeName === undefined || nodeName === "") {
      const phase = pod.status?.phase;
      if ((this.#opts.schedule ?? true) && !deleted && phase !== "Succeeded" && phase !== "Failed") {
        void this.#bind(pod);
      }
      return;
    }
    if (nodeName !== this.nodeName || this.#finished.has(uid)) return;
    let w = this.#workers.get(uid);
    if (w === undefined) {
      if (deleted) {
        // Bound here but never run by this kubelet (or already finished): let it go at once.
        void this.#host.deletePod(pod).catch(() => {});
        return;
      }
      const phase = pod.status?.phase;
      if (phase === "Succeeded" || phase === "Failed") return;
      w = new PodWorker(pod, this.#host);
      this.#workers.set(uid, w);
      const worker = w;
      void w.done.then(() => {
        this.#finished.add(uid);
        if (this.#workers.get(uid) === worker) this.#workers.delete(uid);
      });
    }
    w.update(pod);
  }

  #onPodGone(pod: V1Pod): void {
    this.#workers.get(pod.metadata?.uid ?? "")?.vanished();
  }

  #fits(pod: V1Pod): boolean {
    const labels: Record<string, string> = {
      "kubernetes.io/hostname": this.nodeName,
      "kubernetes.io/os": "linux",
      ...this.#opts.nodeLabels,
    };
    return Object.entries(pod.spec?.nodeSelector ?? {}).every(([k, v]) => labels[k] === v);
  }

  async #bind(pod: V1Pod): Promise<void> {
    const uid = pod.metadata?.uid ?? "";
    if (this.#binding.has(uid) || !this.#fits(pod)) return;
    this.#binding.add(uid);
    const name = pod.metadata?.name ?? "";
    const namespace = pod.metadata?.namespace ?? "default";
    try {
      await this.#core.createNamespacedPodBinding({
        name,
        namespace,
        body: {
          apiVersion: "v1",
          kind: "Binding",
          metadata: { name, namespace, uid },
          target: { apiVersion: "v1", kind: "Node", name: this.nodeName },
        },
      });
      this.#host.log(`bound pod ${namespace}/${name}`);
    } catch (err) {
      const code = statusCode(err);
      if (code !== 409 && code !== 404) {
        this.#host.log(`bind pod ${namespace}/${name} failed: ${String(err)}`);
        setTimeout(() => this.#binding.delete(uid), 1000).unref();
      }
    }
  }

  // --- persistent volume claims ---

  #claimDir(namespace: string, name: string): Promise<string> {
    const key = `${namespace}/${name}`;
    let p = this.#claims.get(key);
    if (p === undefined) {
      p = this.#bindClaim(namespace, name);
      this.#claims.set(key, p);
      p.catch(() => this.#claims.delete(key));
    }
    return p;
  }

  /**
   * Makes the PVC's directory and binds the claim to a hostPath PersistentVolume pointing at it:
   * the PV controller of kube-controller-manager completes the binding; without it, the kubelet
   * writes the bound state itself.
   */
  async #bindClaim(namespace: string, name: string): Promise<string> {
    const dir = this.pvcDir(namespace, name);
    const pvc = await orUndefined(this.#core.readNamespacedPersistentVolumeClaim({ name, namespace }));
    if (pvc === undefined) {
      throw new ConfigError("FailedMount", `persistentvolumeclaim "${name}" not found`);
    }
    fs.mkdirSync(dir, { recursive: true });
    if (pvc.status?.phase === "Bound") return dir;
    const pvName = `pvc-${pvc.metadata?.uid}`;
    const storage = String(pvc.spec?.resources?.requests?.storage ?? "1Gi");
    const accessModes = pvc.spec?.accessModes ?? ["ReadWriteOnce"];
    try {
      await this.#core.createPersistentVolume({
        body: {
          apiVersion: "v1",
          kind: "PersistentVolume",
          metadata: {
            name: pvName,
            labels: { "walship.test/process-kubelet": this.nodeName },
            annotations: { "pv.kubernetes.io/provisioned-by": "process-kubelet" },
          },
          spec: {
            capacity: { storage },
            accessModes,
            hostPath: { path: dir },
            persistentVolumeReclaimPolicy: "Retain",
            storageClassName: pvc.spec?.storageClassName ?? "",
            volumeMode: pvc.spec?.volumeMode ?? "Filesystem",
            claimRef: {
              apiVersion: "v1",
              kind: "PersistentVolumeClaim",
              namespace,
              name,
              uid: pvc.metadata?.uid,
            },
          },
        },
      });
    } catch (err) {
      if (statusCode(err) !== 409)
        this.#host.log(`create PV for ${namespace}/${name} failed: ${String(err)}`);
    }
    for (let i = 0; i < 15; i++) {
      await sleep(200);
      const cur = await orUndefined(this.#core.readNamespacedPersistentVolumeClaim({ name, namespace }));
      if (cur?.status?.phase === "Bound") return dir;
    }
    await this.#markBound(namespace, name, pvName, storage, accessModes).catch((err) =>
      this.#host.log(`mark PVC ${namespace}/${name} bound failed: ${String(err)}`),
    );
    return dir;
  }

  async #markBound(namespace: string, name: string, pvName: string, storage: string, accessModes: string[]) {
    const cur: V1PersistentVolumeClaim = await this.#core.readNamespacedPersistentVolumeClaim({
      name,
      namespace,
    });
    if (cur.status?.phase === "Bound") return;
    if (cur.spec?.volumeName === undefined || cur.spec.volumeName === "") {
      await this.#core.patchNamespacedPersistentVolumeClaim(
        {
          name,
          namespace,
          body: {
            metadata: { annotations: { "pv.kubernetes.io/bind-completed": "yes" } },
            spec: { volumeName: pvName },
          },
        },
        mergePatch,
      );
    }
    await this.#core.patchNamespacedPersistentVolumeClaimStatus(
      { name, namespace, body: { status: { phase: "Bound", accessModes, capacity: { storage } } } },
      mergePatch,
    );
    await this.#core
      .patchPersistentVolumeStatus({ name: pvName, body: { status: { phase: "Bound" } } }, mergePatch)
      .catch(() => {});
    this.#host.log(`marked PVC ${namespace}/${name} bound to ${pvName}`);
  }

  // --- stop ---

  async stop(opts?: { removeVolumes?: boolean }): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    for (const t of this.#timers) clearInterval(t);
    this.#watchAbort?.abort();
    const workers = [...this.#workers.values()];
    await Promise.all(workers.map((w) => w.shutdown(2)));
    CgroupTree.killSync(this.#cgroups.root);
    await Promise.race([this.#loop, sleep(2000)]);
    await Promise.race([
      Promise.allSettled([
        this.#core.deleteNode({ name: this.nodeName }),
        this.#coord.deleteNamespacedLease({ name: this.nodeName, namespace: "kube-node-lease" }),
      ]),
      sleep(3000),
    ]);
    // Processes are gone: their cgroups can go, then what the host lent the pods.
    for (let i = 0; i < 20 && CgroupTree.pids(this.#cgroups.root).length > 0; i++) await sleep(100);
    CgroupTree.remove(this.#cgroups.root);
    this.#mountPoints.releaseAll();
    this.#ips.releaseAll();
    this.#unhookExit();
    fs.rmSync(path.join(this.dataDir, "pods"), { recursive: true, force: true });
    if (this.#tempDir) {
      fs.rmSync(this.dataDir, { recursive: true, force: true });
    } else if (opts?.removeVolumes === true) {
      fs.rmSync(path.join(this.dataDir, "pvc"), { recursive: true, force: true });
    }
  }
}

/**
 * Registers a Node on the control plane behind `opts.kubeconfig` and runs the pods bound to it
 * (binding unscheduled ones itself) as local processes. Stop it with `stop()`, in a `finally`.
 */
export async function startKubelet(opts: KubeletOptions): Promise<Kubelet> {
  const tools = checkHost();
  sweepStale();
  const k = new ProcessKubelet(opts, tools);
  try {
    await k.register();
  } catch (err) {
    await k.stop();
    throw err;
  }
  k.start();
  return k;
}
