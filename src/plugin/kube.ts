/**
 * What the plugin asks of the Kubernetes API, in one place, with the user's kubeconfig. It reuses the
 * operator's client (src/operator/kube/: the one module that imports @kubernetes/client-node), so
 * kubeconfig handling, exec credentials, TLS and errors are the operator's; the plugin imports
 * nothing else from src/operator but the names Walship puts on objects (specs/names.ts) and the pure
 * helpers that say where a workload is and which pods are its own (specs/workload.ts, kube/selector.ts).
 *
 * Every path is built here; a missing SqliteReplica or SqliteRestore is WALSHIP_ERR_NOT_FOUND, any
 * other API failure WALSHIP_ERR_KUBE (with the API server's message: "forbidden: ..." names the
 * missing right).
 */
import {
  API_VERSION,
  SQLITE_REPLICA_PLURAL,
  SQLITE_RESTORE_PLURAL,
  type SqliteReplicaSpec,
  type SqliteReplicaStatus,
  type SqliteRestoreStatus,
  type WorkloadRef,
  workloadOf,
} from "../api/v1alpha1/index.ts";
import { isStatus, type KubeClient, type WatchEvent } from "../operator/kube/client.ts";
import type { ExecResult } from "../operator/kube/exec.ts";
import { selectorQuery } from "../operator/kube/selector.ts";
import type { Deployment, Event, KubeObject, Pod, StatefulSet } from "../operator/kube/types.ts";
import { SIDECAR_CONTAINER } from "../operator/specs/names.ts";
import { type WorkloadObject, workloadPath } from "../operator/specs/workload.ts";
import { ErrorCodes, WalshipError } from "../shared/errors.ts";
import { type ReplicatorStatus, ReplicatorStatusSchema } from "../shared/protocol.ts";

export interface ReplicaObject extends KubeObject {
  spec?: SqliteReplicaSpec;
  status?: SqliteReplicaStatus;
}

export interface RestoreObject extends KubeObject {
  spec?: { sqliteReplicaName?: string; mode?: string; target?: Record<string, unknown> };
  status?: SqliteRestoreStatus;
}

export type { Deployment, Event, Pod, StatefulSet, WorkloadObject };

/** Whether the operator injected the replicator into this pod (its native sidecar). */
export function runsReplicator(pod: Pod): boolean {
  return (pod.spec?.initContainers ?? []).some((c) => c.name === SIDECAR_CONTAINER);
}

/** A SqliteReplica's workload as read: what the spec names (undefined: nothing), and its pods. */
export interface Workload {
  ref: WorkloadRef | undefined;
  found: boolean;
  pods: Pod[];
}

/** How long the plugin waits for one sidecar's /status through the API server's pod proxy. */
const SIDECAR_TIMEOUT_MS = 5_000;

export class PluginKube {
  readonly client: KubeClient;
  readonly namespace: string;

  constructor(client: KubeClient, namespace: string) {
    this.client = client;
    this.namespace = namespace;
  }

  #ns(rest: string): string {
    return `/api/v1/namespaces/${this.namespace}/${rest}`;
  }

  #walship(plural: string, name = ""): string {
    return `/apis/${API_VERSION}/namespaces/${this.namespace}/${plural}${name ? `/${name}` : ""}`;
  }

  async #getNamed<T>(path: string, what: string): Promise<T> {
    try {
      return await this.client.get<T>(path);
    } catch (err) {
      if (isStatus(err, 404)) {
        throw new WalshipError(ErrorCodes.NOT_FOUND, `get ${what}: not found in namespace ${this.namespace}`);
      }
      throw err;
    }
  }

  getReplica(name: string): Promise<ReplicaObject> {
    return this.#getNamed(this.#walship(SQLITE_REPLICA_PLURAL, name), `SqliteReplica ${name}`);
  }

  getRestore(name: string): Promise<RestoreObject> {
    return this.#getNamed(this.#walship(SQLITE_RESTORE_PLURAL, name), `SqliteRestore ${name}`);
  }

  /** The StatefulSet or Deployment a SqliteReplica names, or undefined when it does not exist. */
  async getWorkload(ref: WorkloadRef): Promise<WorkloadObject | undefined> {
    try {
      return await this.client.get<WorkloadObject>(workloadPath(this.namespace, ref));
    } catch (err) {
      if (isStatus(err, 404)) return undefined;
      throw err;
    }
  }

  /**
   * The workload's pods (by its selector), ordered by name (app-0, app-1, ..., app-10; a
   * Deployment's are `<name>-<hash>-<suffix>`, a new name at every start).
   */
  async listPods(workload: WorkloadObject): Promise<Pod[]> {
    const selector = selectorQuery(workload.spec?.selector);
    if (selector === "") return [];
    const list = await this.client.request<{ items: Pod[] }>("GET", this.#ns("pods"), {
      query: { labelSelector: selector },
    });
    return list.items.sort((a, b) =>
      String(a.metadata?.name).localeCompare(String(b.metadata?.name), "en", { numeric: true }),
    );
  }

  /**
   * The workload a SqliteReplica names (`workloadRef`, or the StatefulSet `statefulSetName`), whether
   * it exists, and its pods: none when it names none or does not exist.
   */
  async readWorkload(replica: ReplicaObject): Promise<Workload> {
    const ref = workloadOf(replica.spec);
    const object = ref ? await this.getWorkload(ref) : undefined;
    return { ref, found: object !== undefined, pods: object ? await this.listPods(object) : [] };
  }

  /** A pod sidecar's /status document, through the API server's pod proxy (needs get pods/proxy). */
  async sidecarStatus(pod: string, port: number): Promise<ReplicatorStatus> {
    const doc = await this.client.request<unknown>("GET", this.#ns(`pods/${pod}:${port}/proxy/status`), {
      timeoutMs: SIDECAR_TIMEOUT_MS,
    });
    const parsed = ReplicatorStatusSchema.safeParse(doc);
    if (!parsed.success) {
      throw new WalshipError(ErrorCodes.KUBE, `read pod ${pod}'s sidecar /status: not a ReplicatorStatus`);
    }
    return parsed.data;
  }

  /** The Events about one object, oldest first. */
  async events(kind: string, name: string): Promise<Event[]> {
    const list = await this.client.request<{ items: Event[] }>("GET", this.#ns("events"), {
      query: { fieldSelector: `involvedObject.kind=${kind},involvedObject.name=${name}` },
    });
    return list.items.sort((a, b) => eventTime(a).localeCompare(eventTime(b)));
  }

  /** The SqliteRestores of one SqliteReplica, oldest first. */
  async restoresOf(replica: string): Promise<RestoreObject[]> {
    const list = await this.client.request<{ items: RestoreObject[] }>(
      "GET",
      this.#walship(SQLITE_RESTORE_PLURAL),
    );
    return list.items
      .filter((r) => r.spec?.sqliteReplicaName === replica)
      .sort((a, b) =>
        String(a.metadata?.creationTimestamp ?? "").localeCompare(
          String(b.metadata?.creationTimestamp ?? ""),
        ),
      );
  }

  async createRestore(obj: RestoreObject): Promise<RestoreObject> {
    try {
      return await this.client.request<RestoreObject>("POST", this.#walship(SQLITE_RESTORE_PLURAL), {
        body: obj,
      });
    } catch (err) {
      if (isStatus(err, 409)) {
        throw new WalshipError(
          ErrorCodes.EXISTS,
          `create SqliteRestore ${obj.metadata?.name}: one of that name exists in namespace ${this.namespace}`,
        );
      }
      throw err;
    }
  }

  /** Watch events of one SqliteRestore from `resourceVersion` on, until the signal fires. */
  watchRestore(
    name: string,
    resourceVersion: string,
    signal: AbortSignal,
  ): AsyncGenerator<WatchEvent<RestoreObject>> {
    return this.client.watch<RestoreObject>(
      this.#walship(SQLITE_RESTORE_PLURAL),
      { fieldSelector: `metadata.name=${name}`, resourceVersion, allowWatchBookmarks: false },
      signal,
    );
  }

  /** Sets (a string) or removes (null) annotations of a SqliteReplica with a merge patch. */
  annotateReplica(name: string, annotations: Record<string, string | null>): Promise<ReplicaObject> {
    return this.client
      .request<ReplicaObject>("PATCH", this.#walship(SQLITE_REPLICA_PLURAL, name), {
        contentType: "application/merge-patch+json",
        body: { metadata: { annotations } },
      })
      .catch((err: unknown) => {
        if (isStatus(err, 404)) {
          throw new WalshipError(
            ErrorCodes.NOT_FOUND,
            `annotate SqliteReplica ${name}: not found in namespace ${this.namespace}`,
          );
        }
        throw err;
      });
  }

  exec(pod: string, container: string, command: string[]): Promise<ExecResult> {
    return this.client.exec(this.namespace, pod, container, command, { timeoutMs: 120_000 });
  }
}

/** When an Event last happened: lastTimestamp, else eventTime, else its creation. */
export function eventTime(e: Event): string {
  const t = e.lastTimestamp ?? e.eventTime ?? e.metadata?.creationTimestamp ?? "";
  return t instanceof Date ? t.toISOString() : String(t);
}
