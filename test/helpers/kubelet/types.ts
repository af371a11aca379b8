/** Public types of the process kubelet. */

/**
 * How an image runs on this machine. `command` plays the image's ENTRYPOINT and `args` its CMD:
 * a container without `command` runs `command + (container.args ?? args)`; a container with
 * `command` runs `command + (container.args ?? [])`, its first word looked up in `commandMap`.
 */
export interface ImageMapping {
  /** The image ENTRYPOINT as a local argv, e.g. `[process.execPath, "test/fixtures/apps/app.ts"]`. */
  command: string[];
  /** The image CMD, used when the container sets neither `command` nor `args`. */
  args?: string[];
  /** The image's ENV: the lowest-priority environment, under the pod's env and envFrom. */
  env?: Record<string, string>;
  /** The image's WORKDIR; default the test process's working directory. */
  cwd?: string;
  /**
   * Local argv prefixes for executables a pod spec names in `command` (or an exec probe), keyed by
   * the name as written or its basename, e.g. `{ walship: [process.execPath, "src/cli.ts"] }`.
   * Names not in the map run as written (from PATH).
   */
  commandMap?: Record<string, string[]>;
}

export interface KubeletOptions {
  /** Path of a kubeconfig whose identity may create nodes, bind pods and update pod status. */
  kubeconfig: string;
  /** The Node name; default `process-kubelet-<random>`. */
  nodeName?: string;
  /** Extra Node labels (nodeSelectors of unscheduled pods are matched against them). */
  nodeLabels?: Record<string, string>;
  /** Image name (with or without tag) to local command. */
  images: Record<string, ImageMapping>;
  /**
   * Where logs, PVC directories and per-pod state live. Given: `pvc/` and `logs/` survive `stop()`.
   * Not given: a temporary directory that `stop()` removes entirely.
   */
  dataDir?: string;
  /**
   * Pod addresses: `loopback` (default) hands out 127.100.x.y and changes nothing on the host, but
   * EndpointSlices reject loopback addresses; `lo-alias` adds 10.213.x.y/32 to `lo` for each pod
   * (removed on release), which Services' EndpointSlices accept.
   */
  podNetwork?: "loopback" | "lo-alias";
  /** Bind pods that have no `spec.nodeName` to this node (act as the scheduler); default true. */
  schedule?: boolean;
  /** First and maximum delay between container restarts; default 1 s doubling up to 20 s (Kubernetes: 10 s to 300 s). */
  restartBackoffMs?: { initial: number; max: number };
  /** How often every known pod is reconciled again, besides watch events; default 2000 ms. */
  resyncMs?: number;
  /** Called with one line per notable event (binding, start, exit, kill); default: silent. */
  log?: (line: string) => void;
}

export interface ExecResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export interface Kubelet {
  readonly nodeName: string;
  readonly dataDir: string;
  /** The directory backing a PersistentVolumeClaim (created on first use). */
  pvcDir(namespace: string, claimName: string): string;
  /** Everything a container wrote to stdout and stderr, across restarts ("" when nothing yet). */
  logs(namespace: string, pod: string, container: string): Promise<string>;
  /** The log file path of a container. */
  logPath(namespace: string, pod: string, container: string): string;
  /** Runs argv inside the container's mount namespace (as an exec probe would), with its env. */
  exec(
    namespace: string,
    pod: string,
    container: string,
    argv: string[],
    timeoutMs?: number,
  ): Promise<ExecResult>;
  /** Kills every process, stops the watch and heartbeats, deletes the Node, removes temporary state. */
  stop(opts?: { removeVolumes?: boolean }): Promise<void>;
}
