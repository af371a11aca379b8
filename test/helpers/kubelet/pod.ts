/**
 * The life of one pod on the process kubelet: volumes, init containers (native sidecars included),
 * containers, restarts with backoff, probes, status, and termination on delete.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import type { V1Container, V1ContainerStatus, V1Pod, V1PodCondition, V1Probe } from "@kubernetes/client-node";
import { ContainerProcess, type Exit, type Mount } from "./container.ts";
import type { CgroupTree, HostTools, MountPoints } from "./host.ts";
import { runProbe } from "./probe.ts";
import type { ImageMapping } from "./types.ts";
import {
  ConfigError,
  containerEnv,
  expandVars,
  type NodeFacts,
  type ObjectSource,
  setupVolumes,
  type VolumeSource,
} from "./volumes.ts";

/** What a pod worker needs from its kubelet. */
export interface PodHost {
  tools: HostTools;
  cgroups: CgroupTree;
  mountPoints: MountPoints;
  images: Record<string, ImageMapping>;
  node: NodeFacts;
  src: ObjectSource;
  /** KUBERNETES_SERVICE_HOST and friends: how a pod reaches the API server. */
  apiEnv: Record<string, string>;
  backoff: { initial: number; max: number };
  podDir(uid: string): string;
  claimDir(namespace: string, claimName: string): Promise<string>;
  logPath(namespace: string, pod: string, container: string): string;
  claimIP(): string;
  releaseIP(ip: string): void;
  /** Merge-patches the pod's status; throws an error with `code` 404 when the pod is gone. */
  patchStatus(pod: V1Pod, status: Record<string, unknown>): Promise<void>;
  /** Deletes the pod object with grace 0 and a UID precondition. */
  deletePod(pod: V1Pod): Promise<void>;
  log(line: string): void;
}

type State =
  | { kind: "waiting"; reason: string; message?: string }
  | { kind: "running"; startedAt: Date }
  | {
      kind: "terminated";
      exitCode: number;
      signal?: number;
      reason: string;
      message?: string;
      startedAt: Date;
      finishedAt: Date;
      containerID: string;
    };

/** Resolves after `ms`, or earlier when `signal` aborts. */
function sleep(ms: number, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const t = setTimeout(done, ms);
    function done(): void {
      clearTimeout(t);
      signal.removeEventListener("abort", done);
      resolve();
    }
    signal.addEventListener("abort", done);
  });
}

/** Finds the mapping of an image by its full name, then without tag or digest. */
export function findImage(images: Record<string, ImageMapping>, image: string): ImageMapping | undefined {
  const exact = images[image];
  if (exact !== undefined) return exact;
  let repo = image.split("@")[0] as string;
  const slash = repo.lastIndexOf("/");
  const colon = repo.lastIndexOf(":");
  if (colon > slash) repo = repo.slice(0, colon);
  return images[repo];
}

/** The argv a runtime would exec: ENTRYPOINT/CMD from the mapping, overridden by command/args. */
export function composeArgv(m: ImageMapping, c: V1Container, env: Record<string, string>): string[] {
  const x = (a: string[] | undefined): string[] | undefined => a?.map((s) => expandVars(s, env));
  const command = x(c.command);
  const args = x(c.args);
  if (command === undefined || command.length === 0) return [...m.command, ...(args ?? m.args ?? [])];
  return [...mapCommand(m, command), ...(args ?? [])];
}

/** Replaces argv[0] by its commandMap entry (by name as written, then basename). */
export function mapCommand(m: ImageMapping | undefined, argv: string[]): string[] {
  const [first, ...rest] = argv;
  if (first === undefined || m?.commandMap === undefined) return argv;
  const mapped = m.commandMap[first] ?? m.commandMap[path.basename(first)];
  return mapped === undefined ? argv : [...mapped, ...rest];
}

/** Where a container's termination message is read from when the spec names no path. */
export const DEFAULT_TERMINATION_MESSAGE_PATH = "/dev/termination-log";
/** The kubelet's limits: the file's last 4096 bytes; the log fallback's last 80 lines or 2048 bytes. */
export const MAX_TERMINATION_MESSAGE_BYTES = 4096;
export const MAX_TERMINATION_LOG_LINES = 80;
export const MAX_TERMINATION_LOG_BYTES = 2048;

function fileSize(file: string): number {
  try {
    return fs.statSync(file).size;
  } catch {
    return 0;
  }
}

/** The bytes of `file` from `start` on, at most the last `max` of them; "" when it cannot be read. */
export function readTail(file: string, start: number, max = Number.POSITIVE_INFINITY): string {
  let fd: number | undefined;
  try {
    fd = fs.openSync(file, "r");
    const size = fs.fstatSync(fd).size;
    const from = Math.max(start, size - max);
    const buf = Buffer.alloc(Math.max(0, size - from));
    fs.readSync(fd, buf, 0, buf.length, from);
    return buf.toString("utf8");
  } catch {
    return "";
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
}

/** The last `lines` lines of `text`, then at most its last `bytes` bytes (the kubelet's log fallback). */
export function lastLines(text: string, lines: number, bytes: number): string {
  const all = text.split("\n");
  if (all.at(-1) === "") all.pop();
  const kept = all.slice(-lines).join("\n") + (text.endsWith("\n") && all.length > 0 ? "\n" : "");
  const buf = Buffer.from(kept, "utf8");
  return buf.length <= bytes ? kept : buf.subarray(buf.length - bytes).toString("utf8");
}

class ContainerRun {
  readonly spec: V1Container;
  readonly init: boolean;
  readonly sidecar: boolean;
  state: State;
  last: State | undefined;
  restarts = 0;
  /** Restarts since the last long healthy run: the exponent of the backoff. */
  backoffN = 0;
  started = false;
  ready = false;
  /** No further run will happen (completed and not to be restarted). */
  finished = false;
  proc: ContainerProcess | undefined;
  /** This run's host file behind `terminationMessagePath`, and where its log output starts. */
  termFile: string | undefined;
  logStart = 0;

  constructor(spec: V1Container, init: boolean, afterInits: boolean) {
    this.spec = spec;
    this.init = init;
    this.sidecar = init && spec.restartPolicy === "Always";
    this.state = { kind: "waiting", reason: init || afterInits ? "PodInitializing" : "ContainerCreating" };
  }
}

export class PodWorker {
  pod: V1Pod;
  readonly uid: string;
  readonly namespace: string;
  readonly name: string;
  readonly #host: PodHost;
  readonly #inits: ContainerRun[];
  readonly #mains: ContainerRun[];
  readonly #abort = new AbortController();
  readonly #hashes = new Map<string, string>();
  readonly #conditionTimes = new Map<string, { status: string; time: string }>();
  #ip: string | undefined;
  #volumes = new Map<string, VolumeSource>();
  #startTime = new Date();
  #initialized = false;
  #phase: "Pending" | "Running" | "Succeeded" | "Failed" = "Pending";
  #waiters: (() => void)[] = [];
  #dirty = false;
  #flushing: Promise<void> | undefined;
  #gone = false;
  #terminating: Promise<void> | undefined;
  readonly #launches = new Set<Promise<unknown>>();
  #deadline = 0;
  /** Resolves when the worker has nothing left to do (terminated and cleaned up). */
  readonly done: Promise<void>;
  #resolveDone!: () => void;

  constructor(pod: V1Pod, host: PodHost) {
    this.pod = pod;
    this.uid = pod.metadata?.uid ?? "";
    this.namespace = pod.metadata?.namespace ?? "default";
    this.name = pod.metadata?.name ?? "";
    this.#host = host;
    this.#inits = (pod.spec?.initContainers ?? []).map((c) => new ContainerRun(c, true, false));
    this.#mains = (pod.spec?.containers ?? []).map((c) => new ContainerRun(c, false, this.#inits.length > 0));
    this.done = new Promise((resolve) => {
      this.#resolveDone = resolve;
    });
    void this.#run();
  }

  get podIP(): string | undefined {
    return this.#ip;
  }

  get phase(): string {
    return this.#phase;
  }

  /** The running process of a container, if any. */
  process(container: string): ContainerProcess | undefined {
    return [...this.#inits, ...this.#mains].find((c) => c.spec.name === container)?.proc;
  }

  /** A newer copy of the pod object arrived (watch or resync). */
  update(pod: V1Pod): void {
    this.pod = pod;
    if (pod.metadata?.deletionTimestamp !== undefined && pod.metadata.deletionTimestamp !== null) {
      const grace = pod.metadata.deletionGracePeriodSeconds ?? pod.spec?.terminationGracePeriodSeconds ?? 30;
      void this.terminate(grace, true);
    }
  }

  /** The pod object is gone from the API server: kill everything at once and clean up. */
  vanished(): void {
    this.#gone = true;
    void this.terminate(0, false);
  }

  /** The kubelet stops: stop the containers without reporting status or deleting the pod object. */
  shutdown(graceSeconds: number): Promise<void> {
    this.#gone = true;
    return this.terminate(graceSeconds, false);
  }

  /** Re-reads ConfigMaps and Secrets into the pod's volumes (as the kubelet does periodically). */
  async refreshVolumes(): Promise<void> {
    if (this.#ip === undefined || this.#terminating !== undefined || !this.#initialized) return;
    try {
      await this.#setupVolumes();
    } catch {
      // keep the previous content; the next resync retries
    }
  }

  #notify(): void {
    const w = this.#waiters;
    this.#waiters = [];
    for (const f of w) f();
    this.#markDirty();
  }

  async #waitUntil(pred: () => boolean): Promise<void> {
    while (!pred() && !this.#abort.signal.aborted) {
      await new Promise<void>((resolve) => {
        this.#waiters.push(resolve);
        this.#abort.signal.addEventListener("abort", () => resolve(), { once: true });
      });
    }
  }

  async #setupVolumes(): Promise<void> {
    this.#volumes = await setupVolumes({
      pod: this.pod,
      podDir: this.#host.podDir(this.uid),
      podIP: this.#ip ?? "",
      node: this.#host.node,
      src: this.#host.src,
      claimDir: (ns, name) => this.#host.claimDir(ns, name),
      hashes: this.#hashes,
    });
  }

  async #run(): Promise<void> {
    const signal = this.#abort.signal;
    try {
      this.#ip = this.#host.claimIP();
      this.#startTime = new Date();
      this.#host.log(`pod ${this.namespace}/${this.name}: ip ${this.#ip}`);
      this.#notify();
      // Volumes first: a missing ConfigMap or Secret keeps every container waiting, as in Kubernetes.
      for (;;) {
        try {
          await this.#setupVolumes();
          break;
        } catch (err) {
          for (const c of [...this.#inits, ...this.#mains]) {
            c.state = {
              kind: "waiting",
              reason: "ContainerCreating",
              message: String((err as Error).message),
            };
          }
          this.#notify();
          await sleep(1000, signal);
          if (signal.aborted) return;
        }
      }
      for (const c of this.#inits) {
        if (signal.aborted) return;
        if (c.sidecar) {
          void this.#supervise(c);
          await this.#waitUntil(() => c.started);
          continue;
        }
        const ok = await this.#runToCompletion(c);
        if (signal.aborted) return;
        if (!ok) {
          this.#phase = "Failed";
          this.#notify();
          await this.#stopSidecars(Date.now() + this.#grace() * 1000);
          return;
        }
      }
      this.#initialized = true;
      this.#notify();
      for (const c of this.#mains) void this.#supervise(c);
      await this.#waitUntil(() => this.#mains.every((c) => c.finished));
      if (signal.aborted) return;
      // Every container completed and none restarts: the pod is done; sidecars stop after them.
      await this.#stopSidecars(Date.now() + this.#grace() * 1000);
      this.#phase = this.#mains.every((c) => c.state.kind === "terminated" && c.state.exitCode === 0)
        ? "Succeeded"
        : "Failed";
      this.#host.log(`pod ${this.namespace}/${this.name}: ${this.#phase}`);
      this.#notify();
    } catch (err) {
      this.#host.log(`pod ${this.namespace}/${this.name}: worker failed: ${String(err)}`);
    }
  }

  #grace(): number {
    return this.pod.spec?.terminationGracePeriodSeconds ?? 30;
  }

  #restartPolicy(c: ContainerRun): "Always" | "OnFailure" | "Never" {
    if (c.sidecar) return "Always";
    const p = this.pod.spec?.restartPolicy ?? "Always";
    if (c.init && p === "Always") return "OnFailure";
    return p as "Always" | "OnFailure" | "Never";
  }

  /** One run: resolves with the exit, or undefined when aborted before the process started. */
  async #runOnce(c: ContainerRun): Promise<Exit | undefined> {
    const signal = this.#abort.signal;
    const image = c.spec.image ?? "";
    let proc: ContainerProcess | undefined;
    for (;;) {
      if (signal.aborted) return undefined;
      try {
        const launch = this.#launch(c);
        this.#launches.add(launch);
        try {
          proc = await launch;
        } finally {
          this.#launches.delete(launch);
        }
        break;
      } catch (err) {
        const reason = err instanceof ConfigError ? err.reason : "RunContainerError";
        c.state = { kind: "waiting", reason, message: (err as Error).message };
        this.#notify();
        await sleep(1000, signal);
      }
    }
    c.proc = proc;
    c.state = { kind: "running", startedAt: proc.startedAt };
    c.started = c.spec.startupProbe === undefined;
    c.ready = c.started && c.spec.readinessProbe === undefined;
    this.#host.log(`pod ${this.namespace}/${this.name}: started ${c.spec.name} (${image}) pid ${proc.pid}`);
    this.#notify();
    const probes = new AbortController();
    void this.#probeLoops(c, proc, probes.signal);
    const exit = await proc.exited;
    probes.abort();
    c.ready = false;
    c.started = false;
    const message = this.#terminationMessage(c, exit.code);
    c.state = {
      kind: "terminated",
      exitCode: exit.code,
      ...(exit.signal === undefined ? {} : { signal: exit.code - 128 }),
      reason: exit.code === 0 ? "Completed" : "Error",
      ...(message === "" ? {} : { message }),
      startedAt: proc.startedAt,
      finishedAt: exit.finishedAt,
      containerID: `process://${proc.pid}`,
    };
    this.#host.log(`pod ${this.namespace}/${this.name}: ${c.spec.name} exited ${exit.code}`);
    this.#notify();
    return exit;
  }

  async #launch(c: ContainerRun): Promise<ContainerProcess> {
    const image = c.spec.image ?? "";
    const mapping = findImage(this.#host.images, image);
    if (mapping === undefined) {
      throw new ConfigError("ErrImagePull", `image ${image} has no mapping to a local command`);
    }
    const base: Record<string, string> = {
      PATH: process.env.PATH ?? "/usr/local/bin:/usr/bin:/bin",
      HOME: process.env.HOME ?? "/root",
      HOSTNAME: this.pod.spec?.hostname ?? this.name,
      ...this.#host.apiEnv,
      ...mapping.env,
      POD_IP: this.#ip ?? "",
    };
    const env = await containerEnv(this.pod, c.spec, base, this.#ip ?? "", this.#host.node, this.#host.src);
    const argv = composeArgv(mapping, c.spec, env);
    const mounts: Mount[] = [];
    for (const vm of c.spec.volumeMounts ?? []) {
      const vol = this.#volumes.get(vm.name);
      if (vol === undefined)
        throw new ConfigError("CreateContainerConfigError", `volume "${vm.name}" not found`);
      const sub = vm.subPathExpr !== undefined ? expandVars(vm.subPathExpr, env) : (vm.subPath ?? "");
      let source = vol.hostPath;
      if (sub !== "") {
        source = path.join(vol.hostPath, sub);
        if (!fs.existsSync(source)) {
          if (vol.readOnly)
            throw new ConfigError("CreateContainerConfigError", `subPath ${sub} not in volume ${vm.name}`);
          fs.mkdirSync(source, { recursive: true });
        }
      }
      const isFile = fs.statSync(source).isFile();
      this.#host.mountPoints.ensure(vm.mountPath, isFile);
      mounts.push({ source, target: vm.mountPath, readOnly: vm.readOnly === true || vol.readOnly });
    }
    // As the kubelet: a fresh, empty host file per run, bind-mounted at terminationMessagePath.
    const termPath = c.spec.terminationMessagePath || DEFAULT_TERMINATION_MESSAGE_PATH;
    const termDir = path.join(this.#host.podDir(this.uid), "termination");
    fs.mkdirSync(termDir, { recursive: true });
    c.termFile = path.join(termDir, `${c.spec.name}-${c.restarts}-${Date.now()}`);
    fs.writeFileSync(c.termFile, "", { mode: 0o666 });
    fs.chmodSync(c.termFile, 0o666);
    this.#host.mountPoints.ensure(termPath, true);
    mounts.push({ source: c.termFile, target: termPath, readOnly: false });
    const logFile = this.#host.logPath(this.namespace, this.name, c.spec.name);
    c.logStart = fileSize(logFile);
    const cgroup = this.#host.cgroups.create(`${this.uid}-${c.spec.name}`);
    return ContainerProcess.start(this.#host.tools, {
      argv,
      env,
      cwd: c.spec.workingDir ?? mapping.cwd ?? process.cwd(),
      mounts,
      logFile,
      scriptFile: path.join(this.#host.podDir(this.uid), "run", `${c.spec.name}.sh`),
      cgroup,
    });
  }

  /** `state.terminated.message` of the run that just ended: the file, else (policy) the log tail. */
  #terminationMessage(c: ContainerRun, exitCode: number): string {
    const file = c.termFile === undefined ? "" : readTail(c.termFile, 0, MAX_TERMINATION_MESSAGE_BYTES);
    if (file !== "" || exitCode === 0 || c.spec.terminationMessagePolicy !== "FallbackToLogsOnError") {
      return file;
    }
    const logFile = this.#host.logPath(this.namespace, this.name, c.spec.name);
    const logs = readTail(logFile, c.logStart, MAX_TERMINATION_LOG_BYTES);
    return lastLines(logs, MAX_TERMINATION_LOG_LINES, MAX_TERMINATION_LOG_BYTES);
  }

  /** Runs a (non-sidecar) init container until it succeeds; false when it fails for good. */
  async #runToCompletion(c: ContainerRun): Promise<boolean> {
    for (;;) {
      const exit = await this.#runOnce(c);
      if (exit === undefined || this.#abort.signal.aborted) return false;
      if (exit.code === 0) {
        c.finished = true;
        this.#notify();
        return true;
      }
      if (this.#restartPolicy(c) === "Never") {
        c.finished = true;
        this.#notify();
        return false;
      }
      await this.#backoff(c);
    }
  }

  /** Runs a container and restarts it per policy until it is done or the pod terminates. */
  async #supervise(c: ContainerRun): Promise<void> {
    for (;;) {
      const exit = await this.#runOnce(c);
      // finished: a sidecar stopped because the regular containers are done.
      if (exit === undefined || this.#abort.signal.aborted || c.finished) return;
      const policy = this.#restartPolicy(c);
      if (policy === "Never" || (policy === "OnFailure" && exit.code === 0)) {
        c.finished = true;
        this.#notify();
        return;
      }
      await this.#backoff(c);
      if (c.finished) return;
    }
  }

  async #backoff(c: ContainerRun): Promise<void> {
    const ran =
      c.state.kind === "terminated" ? c.state.finishedAt.getTime() - c.state.startedAt.getTime() : 0;
    if (ran > 60_000) c.backoffN = 0; // a long healthy run starts the backoff over
    const { initial, max } = this.#host.backoff;
    const delay = Math.min(max, initial * 2 ** Math.min(c.backoffN, 20));
    c.backoffN++;
    c.last = c.state;
    c.state = {
      kind: "waiting",
      reason: "CrashLoopBackOff",
      message: `back-off ${Math.round(delay / 1000)}s restarting failed container=${c.spec.name}`,
    };
    this.#notify();
    await sleep(delay, this.#abort.signal);
    if (!this.#abort.signal.aborted) c.restarts++;
  }

  async #probeLoops(c: ContainerRun, proc: ContainerProcess, signal: AbortSignal): Promise<void> {
    const target = {
      podIP: this.#ip ?? "127.0.0.1",
      container: c.spec,
      exec: async (argv: string[], timeoutMs: number) => {
        const mapping = findImage(this.#host.images, c.spec.image ?? "");
        return (await proc.exec(mapCommand(mapping, argv), timeoutMs)).code;
      },
    };
    const loop = async (
      probe: V1Probe,
      onResult: (ok: boolean, successes: number, failures: number) => boolean,
    ): Promise<void> => {
      await sleep((probe.initialDelaySeconds ?? 0) * 1000, signal);
      let successes = 0;
      let failures = 0;
      while (!signal.aborted) {
        const ok = await runProbe(probe, target);
        if (signal.aborted) return;
        if (ok) {
          successes++;
          failures = 0;
        } else {
          failures++;
          successes = 0;
        }
        if (!onResult(ok, successes, failures)) return;
        await sleep((probe.periodSeconds ?? 10) * 1000, signal);
      }
    };
    const killFor = (what: string, probe: V1Probe): void => {
      this.#host.log(`pod ${this.namespace}/${this.name}: ${c.spec.name} failed its ${what} probe, killing`);
      const grace = probe.terminationGracePeriodSeconds ?? this.#grace();
      void proc.stop(Date.now() + grace * 1000);
    };
    const startup = c.spec.startupProbe;
    if (startup !== undefined) {
      let passed = false;
      await loop(startup, (ok, _s, failures) => {
        if (ok) {
          passed = true;
          return false;
        }
        if (failures >= (startup.failureThreshold ?? 3)) {
          killFor("startup", startup);
          return false;
        }
        return true;
      });
      if (!passed || signal.aborted) return;
      c.started = true;
      if (c.spec.readinessProbe === undefined) c.ready = true;
      this.#notify();
    }
    const readiness = c.spec.readinessProbe;
    const liveness = c.spec.livenessProbe;
    const loops: Promise<void>[] = [];
    if (readiness !== undefined) {
      loops.push(
        loop(readiness, (ok, successes, failures) => {
          const was = c.ready;
          if (ok && successes >= (readiness.successThreshold ?? 1)) c.ready = true;
          if (!ok && failures >= (readiness.failureThreshold ?? 3)) c.ready = false;
          if (c.ready !== was) this.#notify();
          return true;
        }),
      );
    }
    if (liveness !== undefined) {
      loops.push(
        loop(liveness, (ok, _s, failures) => {
          if (!ok && failures >= (liveness.failureThreshold ?? 3)) {
            killFor("liveness", liveness);
            return false;
          }
          return true;
        }),
      );
    }
    await Promise.all(loops);
  }

  async #stopSidecars(deadline: number): Promise<void> {
    for (const c of [...this.#inits].reverse()) {
      if (!c.sidecar) continue;
      c.finished = true;
      if (c.proc?.running === true) {
        this.#host.log(`pod ${this.namespace}/${this.name}: stopping sidecar ${c.spec.name}`);
        await c.proc.stop(Math.max(deadline, Date.now() + 2000));
      }
    }
  }

  /**
   * SIGTERM every container (regular ones first, then sidecars in reverse order), SIGKILL at the end
   * of the grace period, report the final status and, for a deletion, delete the pod with grace 0.
   */
  terminate(graceSeconds: number, deleteObject: boolean): Promise<void> {
    const deadline = Date.now() + graceSeconds * 1000;
    if (this.#terminating !== undefined) {
      // A shorter grace period (a second delete, or the object vanished) brings the kill forward.
      if (deadline < this.#deadline) {
        this.#deadline = deadline;
        for (const c of [...this.#inits, ...this.#mains]) if (c.proc?.running) void c.proc.stop(deadline);
      }
      return this.#terminating;
    }
    this.#deadline = deadline;
    this.#terminating = (async () => {
      this.#abort.abort();
      this.#host.log(`pod ${this.namespace}/${this.name}: terminating, grace ${graceSeconds}s`);
      // A container being launched right now still gets its process: wait for it, then stop it too.
      await Promise.allSettled([...this.#launches]);
      const regular = [...this.#inits.filter((c) => !c.sidecar), ...this.#mains];
      await Promise.all(regular.map((c) => (c.proc?.running ? c.proc.stop(this.#deadline) : undefined)));
      for (const c of [...this.#inits].reverse()) {
        if (c.sidecar && c.proc?.running) await c.proc.stop(this.#deadline);
      }
      await Promise.all(
        [...this.#inits, ...this.#mains].map((c) =>
          c.proc?.running ? c.proc.stop(this.#deadline) : undefined,
        ),
      );
      // Let the exit handlers record the terminated states.
      await new Promise((r) => setImmediate(r));
      for (const c of [...this.#inits, ...this.#mains]) {
        c.ready = false;
        c.finished = true;
      }
      if (this.#phase !== "Succeeded" && this.#phase !== "Failed") {
        const ran = this.#mains.filter((c) => c.state.kind === "terminated");
        this.#phase =
          ran.length === this.#mains.length &&
          ran.every((c) => c.state.kind === "terminated" && c.state.exitCode === 0)
            ? "Succeeded"
            : "Failed";
      }
      this.#notify();
      if (deleteObject && !this.#gone) {
        await this.#flushed();
        try {
          await this.#host.deletePod(this.pod);
          this.#host.log(`pod ${this.namespace}/${this.name}: deleted`);
        } catch (err) {
          this.#host.log(`pod ${this.namespace}/${this.name}: delete failed: ${String(err)}`);
        }
      }
      this.#gone = true;
      if (this.#ip !== undefined) this.#host.releaseIP(this.#ip);
      fs.rmSync(this.#host.podDir(this.uid), { recursive: true, force: true });
      this.#resolveDone();
    })();
    return this.#terminating;
  }

  /** Kills every process of the pod synchronously (exit hooks). */
  killSync(): void {
    for (const c of [...this.#inits, ...this.#mains]) c.proc?.killSync();
  }

  // --- status ---

  #markDirty(): void {
    this.#dirty = true;
    if (this.#flushing === undefined) this.#flushing = this.#flushLoop();
  }

  async #flushed(): Promise<void> {
    while (this.#flushing !== undefined) await this.#flushing;
  }

  async #flushLoop(): Promise<void> {
    await new Promise((r) => setTimeout(r, 20));
    while (this.#dirty && !this.#gone) {
      this.#dirty = false;
      try {
        await this.#host.patchStatus(this.pod, this.status());
      } catch (err) {
        if ((err as { code?: number }).code === 404) {
          this.#gone = true;
          break;
        }
        this.#dirty = true;
        await new Promise((r) => setTimeout(r, 500));
      }
    }
    this.#flushing = undefined;
  }

  #condition(type: string, ok: boolean, reason?: string): V1PodCondition {
    const status = ok ? "True" : "False";
    let t = this.#conditionTimes.get(type);
    if (t === undefined || t.status !== status) {
      t = { status, time: new Date().toISOString() };
      this.#conditionTimes.set(type, t);
    }
    const c: Record<string, unknown> = { type, status, lastProbeTime: null, lastTransitionTime: t.time };
    if (!ok && reason !== undefined) c.reason = reason;
    return c as unknown as V1PodCondition;
  }

  #containerStatus(c: ContainerRun): V1ContainerStatus {
    const state = (s: State): Record<string, unknown> => {
      if (s.kind === "waiting")
        return { waiting: { reason: s.reason, ...(s.message ? { message: s.message } : {}) } };
      if (s.kind === "running") return { running: { startedAt: s.startedAt.toISOString() } };
      return {
        terminated: {
          exitCode: s.exitCode,
          ...(s.signal === undefined ? {} : { signal: s.signal }),
          reason: s.reason,
          ...(s.message === undefined ? {} : { message: s.message }),
          startedAt: s.startedAt.toISOString(),
          finishedAt: s.finishedAt.toISOString(),
          containerID: s.containerID,
        },
      };
    };
    const out: Record<string, unknown> = {
      name: c.spec.name,
      image: c.spec.image ?? "",
      imageID: `process://${c.spec.image ?? ""}`,
      ready: c.ready,
      started: c.started,
      restartCount: c.restarts,
      state: state(c.state),
      lastState: c.last === undefined ? {} : state(c.last),
    };
    if (c.proc !== undefined) out.containerID = `process://${c.proc.pid}`;
    return out as unknown as V1ContainerStatus;
  }

  /** The pod status as the kubelet reports it. */
  status(): Record<string, unknown> {
    const terminal = this.#phase === "Succeeded" || this.#phase === "Failed";
    if (
      !terminal &&
      this.#initialized &&
      this.#mains.some((c) => c.state.kind !== "waiting" || c.restarts > 0)
    ) {
      this.#phase = "Running";
    }
    const sidecars = this.#inits.filter((c) => c.sidecar);
    const containersReady = !terminal && [...this.#mains, ...sidecars].every((c) => c.ready);
    const gates = (this.pod.spec?.readinessGates ?? []).every((g) =>
      (this.pod.status?.conditions ?? []).some((pc) => pc.type === g.conditionType && pc.status === "True"),
    );
    const notReady = terminal ? "PodCompleted" : "ContainersNotReady";
    const mine = [
      this.#condition("PodReadyToStartContainers", this.#ip !== undefined && !terminal),
      this.#condition(
        "Initialized",
        this.#initialized || this.#inits.length === 0,
        "ContainersNotInitialized",
      ),
      this.#condition("Ready", containersReady && gates, notReady),
      this.#condition("ContainersReady", containersReady, notReady),
      this.#condition("PodScheduled", true),
    ];
    const types = new Set(mine.map((c) => c.type));
    const others = (this.pod.status?.conditions ?? []).filter((c) => !types.has(c.type));
    const ip = this.#ip;
    return {
      phase: this.#phase,
      hostIP: this.#host.node.hostIP,
      hostIPs: [{ ip: this.#host.node.hostIP }],
      ...(ip === undefined ? {} : { podIP: ip, podIPs: [{ ip }] }),
      startTime: this.#startTime.toISOString(),
      conditions: [...mine, ...others],
      initContainerStatuses: this.#inits.map((c) => this.#containerStatus(c)),
      containerStatuses: this.#mains.map((c) => this.#containerStatus(c)),
    };
  }
}
