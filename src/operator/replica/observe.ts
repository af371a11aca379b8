/**
 * The pods' facts for one SqliteReplica's reconcile (pods.ts lists and polls them). The pod list is
 * reused while every pod was ready and the StatefulSet has not changed since (pods created, deleted,
 * rolled, turning ready or not all change its status), for at most POD_LIST_REUSE_POLLS polls; a
 * reused list that finds a pod not ready or failing is dropped and the pods are listed again at once.
 */
import type { PodReplicationStatus, SqliteReplicaSpec } from "../../api/v1alpha1/index.ts";
import type { KubeClient } from "../kube/client.ts";
import type { Pod } from "../kube/types.ts";
import type { WorkloadObject } from "../specs/workload.ts";
import { listPods, pollPods } from "./pods.ts";

/** How many polls a pod list may serve while nothing changed. */
const POD_LIST_REUSE_POLLS = 6;

export class PodObserver {
  readonly #client: KubeClient;
  readonly #pollMs: () => number;
  /** Per SqliteReplica key: the last pod list, while it may be reused. */
  readonly #lists = new Map<string, { stsResourceVersion: string; at: number; items: Pod[] }>();

  /** `pollMs()`: the poll interval of a healthy SqliteReplica (the reuse lasts a few of them). */
  constructor(client: KubeClient, pollMs: () => number) {
    this.#client = client;
    this.#pollMs = pollMs;
  }

  forget(key: string): void {
    this.#lists.delete(key);
  }

  async observe(
    key: string,
    sts: WorkloadObject,
    ns: string,
    spec: SqliteReplicaSpec,
    hash: string,
  ): Promise<PodReplicationStatus[]> {
    const rv = sts.metadata?.resourceVersion ?? "";
    const maxAge = POD_LIST_REUSE_POLLS * this.#pollMs();
    const kept = this.#lists.get(key);
    this.#lists.delete(key);
    if (kept && kept.stsResourceVersion === rv && Date.now() - kept.at < maxAge) {
      const out = await pollPods(kept.items, spec, hash);
      if (allWell(out)) {
        this.#lists.set(key, kept);
        return out;
      }
    }
    const items = await listPods(this.#client, sts, ns);
    const out = await pollPods(items, spec, hash);
    if (allWell(out)) this.#lists.set(key, { stsResourceVersion: rv, at: Date.now(), items });
    return out;
  }
}

function allWell(pods: readonly PodReplicationStatus[]): boolean {
  return pods.length > 0 && pods.every((p) => p.ready && !p.lastError);
}
