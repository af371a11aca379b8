/**
 * The I/O around drills.ts: reads the running drill's Job (and its pod's termination message, the
 * `walship drill` report), asks decideDrill, and after the reconcile wrote the status, creates the
 * Job and records the Events. Reads only what a drill needs: nothing while no drill runs.
 */
import {
  databasesOf,
  describeWorkload,
  type SqliteReplicaSpec,
  type SqliteReplicaStatus,
  type WorkloadRef,
} from "../../api/v1alpha1/index.ts";
import { describeError } from "../../shared/errors.ts";
import type { Logger } from "../../shared/log.ts";
import { isStatus, type KubeClient } from "../kube/client.ts";
import type { EventRecorder } from "../kube/events.ts";
import type { KubeObject, Pod } from "../kube/types.ts";
import type { BuildOptions } from "../specs/common.ts";
import { buildDrillJob, DRILL_CONTAINER } from "../specs/drilljob.ts";
import type { AppIdentity } from "../specs/security.ts";
import { fixedReplicaName, type WorkloadObject } from "../specs/workload.ts";
import type { Transaction } from "../status.ts";
import { type DrillDecision, type DrillJobState, type DrillTarget, decideDrill } from "./drills.ts";
import { asSqliteReplica } from "./events.ts";

interface JobObject extends KubeObject {
  status?: { conditions?: Array<{ type: string; status: string; reason?: string; message?: string }> };
}

/** Each database of the spec times each destination drilled (spec.drills.destinations, or all). */
export function drillTargets(spec: SqliteReplicaSpec): DrillTarget[] {
  const only = spec.drills?.destinations;
  const dests = spec.destinations.map((d) => d.name).filter((n) => !only || only.includes(n));
  return databasesOf(spec).flatMap((db) =>
    dests.map((destination) => ({ destination, path: db.path, ...(db.name ? { database: db.name } : {}) })),
  );
}

/** The pod whose replica a drill restores: a Deployment's fixed name, else the StatefulSet's first pod. */
export function drilledPod(ref: WorkloadRef): string {
  return fixedReplicaName(ref) ?? `${ref.name}-0`;
}

/** The status transaction of a decision. */
export function drillTx(d: DrillDecision): Transaction<SqliteReplicaStatus> {
  return (s) => {
    if (d.drills) s.drills = d.drills;
    else delete s.drills;
    if (d.run) s.drillRun = d.run;
    else delete s.drillRun;
  };
}

export class DrillRunner {
  readonly #client: KubeClient;
  readonly #events: EventRecorder;
  readonly #log: Logger;
  readonly #options: BuildOptions;

  constructor(client: KubeClient, events: EventRecorder, log: Logger, options: BuildOptions) {
    this.#client = client;
    this.#events = events;
    this.#log = log;
    this.#options = options;
  }

  /** The decision for `cr` now (reads the run's Job when one runs). */
  async decide(
    cr: KubeObject & { status?: SqliteReplicaStatus },
    spec: SqliteReplicaSpec,
  ): Promise<DrillDecision> {
    const run = cr.status?.drillRun;
    const ns = cr.metadata?.namespace ?? "";
    const job = run && !run.completedAt ? await this.#jobState(ns, run.job) : undefined;
    return decideDrill({
      now: new Date(),
      name: cr.metadata?.name ?? "",
      spec,
      annotations: cr.metadata?.annotations,
      creationTimestamp: cr.metadata?.creationTimestamp ? String(cr.metadata.creationTimestamp) : undefined,
      drills: cr.status?.drills,
      run,
      ...(job ? { job } : {}),
      targets: drillTargets(spec),
    });
  }

  /** After the status is written: create the Job the decision asks for, and record its Events. */
  async act(
    d: DrillDecision,
    cr: KubeObject,
    spec: SqliteReplicaSpec,
    workload: WorkloadObject,
    ref: WorkloadRef,
    identity: AppIdentity,
  ): Promise<void> {
    const ns = cr.metadata?.namespace ?? "";
    if (d.create) {
      const job = buildDrillJob(
        {
          name: d.create.name,
          replica: { name: cr.metadata?.name ?? "", namespace: ns, uid: cr.metadata?.uid ?? "" },
          spec,
          workload,
          pod: drilledPod(ref),
          identity,
          ...(d.create.request ? { request: d.create.request } : {}),
        },
        this.#options,
      );
      try {
        await this.#client.request("POST", `/apis/batch/v1/namespaces/${ns}/jobs`, { body: job });
        this.#log.info(
          { sqlitereplica: `${ns}/${cr.metadata?.name}`, job: d.create.name, of: describeWorkload(ref) },
          "drill started",
        );
      } catch (err) {
        if (!isStatus(err, 409)) throw err;
      }
    }
    for (const ev of d.events) {
      await this.#events.record(asSqliteReplica(cr), ev).catch((err: unknown) => {
        this.#log.warn({ err: describeError(err), reason: ev.reason }, "record event failed");
      });
    }
  }

  async #jobState(ns: string, name: string): Promise<DrillJobState> {
    let job: JobObject;
    try {
      job = await this.#client.get<JobObject>(`/apis/batch/v1/namespaces/${ns}/jobs/${name}`);
    } catch (err) {
      if (isStatus(err, 404)) return { state: "Missing" };
      throw err;
    }
    const cond = (t: string) => job.status?.conditions?.find((c) => c.type === t && c.status === "True");
    const state = cond("Complete") ? "Succeeded" : cond("Failed") ? "Failed" : "Running";
    if (state === "Running") return { state };
    const pods = await this.#client.request<{ items: Pod[] }>("GET", `/api/v1/namespaces/${ns}/pods`, {
      query: { labelSelector: `job-name=${name}` },
    });
    const term = pods.items
      .map((p) => p.status?.containerStatuses?.find((c) => c.name === DRILL_CONTAINER)?.state?.terminated)
      .find((t) => t !== undefined);
    const failed = cond("Failed");
    const message = term?.message ?? failed?.message;
    const reason = term?.reason === "OOMKilled" ? "OOMKilled" : failed?.reason;
    return { state, ...(message ? { message } : {}), ...(reason ? { reason } : {}) };
  }
}
