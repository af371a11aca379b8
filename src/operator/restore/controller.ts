/**
 * The SqliteRestore controller: reads what the API server holds (the SqliteRestore, its SqliteReplica,
 * the StatefulSet and its pods, the restore's Jobs and their pods' termination messages), asks the
 * pure machine (machine.ts) for the next step, writes the status FIRST (so a restarted operator
 * resumes from the recorded phase and never re-records the replica count after scaling to 0), then
 * takes the actions (all idempotent: a Job or claim that exists is left alone; scaling sets a number)
 * and records one Event per phase.
 */
import {
  API_VERSION,
  type SingleDatabaseSpec,
  SQLITE_REPLICA_PLURAL,
  SQLITE_RESTORE_PLURAL,
  SqliteReplicaSpec,
  SqliteRestoreSpec,
  type SqliteRestoreStatus,
  selectDatabase,
  type WorkloadRef,
  withDatabase,
  workloadOf,
} from "../../api/v1alpha1/index.ts";
import type { Logger } from "../../shared/log.ts";
import { isStatus, type KubeClient } from "../kube/client.ts";
import type { EventRecorder } from "../kube/events.ts";
import { selectorQuery } from "../kube/selector.ts";
import type { KubeObject, Pod } from "../kube/types.ts";
import type { BuildOptions } from "../specs/common.ts";
import {
  buildNewClaim,
  buildRestoreJob,
  type ClaimShape,
  type JobStep,
  RESTORE_JOB_CONTAINER,
  restoreJobName,
  SQLITE_RESTORE_UID_ANNOTATION,
} from "../specs/restorejob.ts";
import { appIdentity } from "../specs/security.ts";
import { isTargetProblem, resolveTarget } from "../specs/statefulset.ts";
import { fixedReplicaName, type WorkloadObject, workloadPath } from "../specs/workload.ts";
import { patchStatusFrom } from "../status.ts";
import { decide } from "./machine.ts";
import { type Action, FINAL_PHASES, type JobState, type OtherRestore } from "./types.ts";

export interface SqliteRestoreObject extends KubeObject {
  spec?: unknown;
  status?: SqliteRestoreStatus;
}

interface JobObject extends KubeObject {
  status?: {
    conditions?: Array<{ type: string; status: string; reason?: string; message?: string }>;
    succeeded?: number;
    failed?: number;
  };
}

export interface RestoreReconcilerDeps {
  client: KubeClient;
  events: EventRecorder;
  log: Logger;
  /** The SqliteRestores the informer holds (for the one-at-a-time rule). */
  listRestores: () => SqliteRestoreObject[];
  options: BuildOptions;
}

const STEPS: JobStep[] = ["plan", "restore", "swap", "rollback"];

function crPath(ns: string, plural: string, name: string): string {
  return `/apis/${API_VERSION}/namespaces/${ns}/${plural}/${name}`;
}

async function getOrUndefined<T>(client: KubeClient, path: string): Promise<T | undefined> {
  try {
    return await client.get<T>(path);
  } catch (err) {
    if (isStatus(err, 404)) return undefined;
    throw err;
  }
}

/** Makes `s` (a copy of the status read) the status the machine decided. */
function replaceStatus(s: SqliteRestoreStatus, next: SqliteRestoreStatus): void {
  for (const k of Object.keys(s) as (keyof SqliteRestoreStatus)[]) delete s[k];
  Object.assign(s, structuredClone(next));
}

/** A Job pod's restore container killed out of memory, with its memory limit; undefined otherwise. */
export function oomKill(pods: Pod[]): { limit?: string } | undefined {
  for (const p of pods) {
    const st = p.status?.containerStatuses?.find((c) => c.name === RESTORE_JOB_CONTAINER);
    if (st?.state?.terminated?.reason !== "OOMKilled" && st?.lastState?.terminated?.reason !== "OOMKilled")
      continue;
    const limit = p.spec?.containers?.find((c) => c.name === RESTORE_JOB_CONTAINER)?.resources?.limits
      ?.memory;
    return limit === undefined ? {} : { limit: String(limit) };
  }
  return undefined;
}

export class SqliteRestoreReconciler {
  readonly #d: RestoreReconcilerDeps;

  constructor(deps: RestoreReconcilerDeps) {
    this.#d = deps;
  }

  /** One reconcile of `namespace/name`; returns when to look again. */
  async reconcile(key: string): Promise<{ requeueAfterMs?: number }> {
    const [ns = "", name = ""] = key.split("/");
    const { client } = this.#d;
    const path = crPath(ns, SQLITE_RESTORE_PLURAL, name);
    const obj = await getOrUndefined<SqliteRestoreObject>(client, path);
    if (!obj) return {};
    const status = obj.status ?? {};
    if (FINAL_PHASES.has(status.phase ?? "Pending")) return {};
    const parsed = SqliteRestoreSpec.safeParse(obj.spec);
    const replicaName = parsed.success ? parsed.data.sqliteReplicaName : undefined;
    const replicaObj = replicaName
      ? await getOrUndefined<{ spec?: unknown }>(client, crPath(ns, SQLITE_REPLICA_PLURAL, replicaName))
      : undefined;
    const rep = SqliteReplicaSpec.safeParse(replicaObj?.spec);
    // The workload recorded at admission (statefulSetName alone: recorded by an older operator).
    const ref: WorkloadRef | undefined =
      status.workloadRef ??
      (status.statefulSetName
        ? { kind: "StatefulSet", name: status.statefulSetName }
        : rep.success
          ? workloadOf(rep.data)
          : undefined);
    const sts = ref ? await getOrUndefined<WorkloadObject>(client, workloadPath(ns, ref)) : undefined;
    const podsRemaining = sts && ref ? await this.#countPods(ns, sts, ref) : 0;
    const jobs: Partial<Record<JobStep, JobState>> = {};
    for (const step of STEPS) {
      const j = await this.#jobState(ns, restoreJobName(name, step), obj.metadata?.uid);
      if (j) jobs[step] = j;
    }
    const others: OtherRestore[] = this.#d
      .listRestores()
      .filter(
        (o) =>
          o.metadata?.namespace === ns &&
          o.metadata?.name !== name &&
          (o.spec as { sqliteReplicaName?: string } | undefined)?.sqliteReplicaName === replicaName,
      )
      .map((o) => ({
        name: o.metadata?.name ?? "",
        ...(o.status?.phase ? { phase: o.status.phase } : {}),
        creationTimestamp: String(o.metadata?.creationTimestamp ?? ""),
      }));

    let newClaim: "missing" | "ours" | "foreign" | undefined;
    const claimName =
      parsed.success && parsed.data.mode === "NewClaim" ? parsed.data.newClaim?.name : undefined;
    if (claimName) {
      const pvc = await getOrUndefined<KubeObject>(
        client,
        `/api/v1/namespaces/${ns}/persistentvolumeclaims/${claimName}`,
      );
      const uid = obj.metadata?.uid;
      newClaim = !pvc
        ? "missing"
        : uid && pvc.metadata?.annotations?.[SQLITE_RESTORE_UID_ANNOTATION] === uid
          ? "ours"
          : "foreign";
    }

    const decision = decide({
      now: new Date(),
      name,
      creationTimestamp: String(obj.metadata?.creationTimestamp ?? ""),
      ...(obj.metadata?.generation === undefined ? {} : { generation: obj.metadata.generation }),
      spec: obj.spec,
      status,
      ...(replicaObj ? { replica: replicaObj.spec } : {}),
      ...(sts ? { workload: sts } : {}),
      podsRemaining,
      jobs,
      others,
      ...(newClaim ? { newClaim } : {}),
    });

    // Status first: the recorded phase is what a restarted operator resumes from. The decision was
    // made from `obj`: a conflict (someone wrote it since) is thrown, and the next look decides again.
    const { object: written } = await patchStatusFrom<SqliteRestoreStatus>(
      client,
      path,
      obj,
      [(s) => replaceStatus(s, decision.status)],
      { conflictRetries: 0 },
    );
    for (const a of decision.actions) await this.#act(a, written, ns, name, sts, ref);
    for (const ev of decision.events) {
      await this.#d.events.record(written, ev).catch((err: unknown) => {
        this.#d.log.warn({ key, err: String(err) }, "record event failed");
      });
    }
    if (decision.events.length > 0) {
      this.#d.log.info(
        { key, phase: decision.status.phase, message: decision.status.message },
        "sqliterestore phase",
      );
    }
    return decision.requeueAfterMs === undefined ? {} : { requeueAfterMs: decision.requeueAfterMs };
  }

  /**
   * The claim the database is on when it is a pod volume's (a Deployment's), for the new claim to
   * copy its size, class and access modes; undefined for a volumeClaimTemplate or a missing claim.
   */
  async #sourceClaim(ns: string, sts: WorkloadObject, replica: SingleDatabaseSpec) {
    const vol = (sts.spec?.template?.spec?.volumes ?? []).find((v) => v.name === replica.database.volumeName);
    const claim = vol?.persistentVolumeClaim?.claimName;
    if (!claim) return undefined;
    return getOrUndefined<ClaimShape>(
      this.#d.client,
      `/api/v1/namespaces/${ns}/persistentvolumeclaims/${claim}`,
    );
  }

  /**
   * The workload's pods that still exist: a StatefulSet's own, or a Deployment's (owned by its
   * ReplicaSets, named `<Deployment>-<hash>`).
   */
  async #countPods(ns: string, sts: WorkloadObject, ref: WorkloadRef): Promise<number> {
    const selector = selectorQuery(sts.spec?.selector);
    const list = await this.#d.client.request<{ items: Pod[] }>("GET", `/api/v1/namespaces/${ns}/pods`, {
      query: { labelSelector: selector },
    });
    const ownedBy = (o: { kind: string; name: string }) =>
      ref.kind === "StatefulSet"
        ? o.kind === "StatefulSet" && o.name === ref.name
        : o.kind === "ReplicaSet" &&
          o.name.startsWith(`${ref.name}-`) &&
          !o.name.slice(ref.name.length + 1).includes("-");
    return list.items.filter((p) => (p.metadata?.ownerReferences ?? []).some(ownedBy)).length;
  }

  async #jobState(
    ns: string,
    jobName: string,
    restoreUid: string | undefined,
  ): Promise<JobState | undefined> {
    const { client } = this.#d;
    const job = await getOrUndefined<JobObject>(client, `/apis/batch/v1/namespaces/${ns}/jobs/${jobName}`);
    if (!job) return undefined;
    const ours = (job.metadata?.ownerReferences ?? []).some(
      (o) => o.controller === true && o.uid === restoreUid,
    );
    if (!ours || restoreUid === undefined) return { state: "Running", foreign: true };
    const cond = (t: string) => job.status?.conditions?.find((c) => c.type === t && c.status === "True");
    const state: JobState["state"] = cond("Complete") ? "Succeeded" : cond("Failed") ? "Failed" : "Running";
    if (state === "Running") return { state };
    const pods = await client.request<{ items: Pod[] }>("GET", `/api/v1/namespaces/${ns}/pods`, {
      query: { labelSelector: `job-name=${jobName}` },
    });
    const want = state === "Succeeded" ? "Succeeded" : "Failed";
    const pod = pods.items
      .filter((p) => p.status?.phase === want)
      .sort((a, b) =>
        String(b.metadata?.creationTimestamp).localeCompare(String(a.metadata?.creationTimestamp)),
      )[0];
    const term = pod?.status?.containerStatuses?.find((c) => c.name === RESTORE_JOB_CONTAINER)?.state
      ?.terminated;
    // The CLI's last lines when the runtime reports them; else why the Job controller failed it.
    const message = term?.message ?? (state === "Failed" ? cond("Failed")?.message : undefined);
    const reason = state === "Failed" ? cond("Failed")?.reason : undefined;
    const oomKilled = state === "Failed" ? oomKill(pods.items) : undefined;
    return {
      state,
      ...(message ? { message } : {}),
      ...(reason ? { reason } : {}),
      ...(oomKilled ? { oomKilled } : {}),
    };
  }

  async #act(
    a: Action,
    obj: SqliteRestoreObject,
    ns: string,
    name: string,
    sts: WorkloadObject | undefined,
    ref: WorkloadRef | undefined,
  ) {
    const { client } = this.#d;
    const status = obj.status ?? {};
    if (a.kind === "scale") {
      if (!ref) return;
      await client.request("PATCH", `${workloadPath(ns, ref)}/scale`, {
        body: { spec: { replicas: a.replicas } },
        contentType: "application/merge-patch+json",
      });
      return;
    }
    const spec = SqliteRestoreSpec.parse(obj.spec);
    const replicaObj = await client.get<{ spec?: unknown }>(
      crPath(ns, SQLITE_REPLICA_PLURAL, spec.sqliteReplicaName),
    );
    const all = SqliteReplicaSpec.parse(replicaObj.spec);
    const db = selectDatabase(all, spec.database, spec.sqliteReplicaName);
    // Admission checked the database; one removed from the SqliteReplica since fails its next look.
    if (!sts || "problem" in db) return;
    const replica = withDatabase(all, db);
    const restore = { name, namespace: ns, uid: obj.metadata?.uid ?? "" };
    const create = async (path: string, body: unknown) => {
      try {
        await client.request("POST", path, { body });
      } catch (err) {
        if (!isStatus(err, 409)) throw err;
      }
    };
    if (a.kind === "createClaim") {
      // A claim of that name that appeared meanwhile (409) is left alone: the next look finds it
      // is not this restore's and fails the restore before anything is written.
      await create(
        `/api/v1/namespaces/${ns}/persistentvolumeclaims`,
        buildNewClaim({
          restore,
          spec,
          replica,
          sts,
          sourceClaim: await this.#sourceClaim(ns, sts, replica),
        }),
      );
      return;
    }
    const target = resolveTarget(replica, sts);
    const found = isTargetProblem(target) ? undefined : target.mounts[0];
    const mount = found
      ? { mountPath: found.mountPath, ...(found.subPath ? { subPath: found.subPath } : {}) }
      : { mountPath: replica.database.path.replace(/\/[^/]*$/, "") };
    const podSpec = sts.spec?.template?.spec;
    const identity = isTargetProblem(target)
      ? appIdentity(podSpec, replica.appContainer ?? podSpec?.containers?.[0]?.name ?? "")
      : target.identity;
    const job = buildRestoreJob(
      {
        step: a.step,
        restore,
        spec,
        replica,
        sts,
        pod: status.pod ?? (ref && fixedReplicaName(ref)) ?? `${sts.metadata?.name}-0`,
        claimName: status.claimName ?? "",
        mount,
        identity,
      },
      this.#d.options,
    );
    await create(`/apis/batch/v1/namespaces/${ns}/jobs`, job);
  }
}
