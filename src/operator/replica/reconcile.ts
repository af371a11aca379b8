/**
 * SqliteReplica reconcile. `reconcile(key)` is the shell: fetch, deletion and finalizer first, then
 * the `ensure` steps in order, each either passing or stopping with a condition (and an Event from
 * the condition change). Errors are thrown to the worker, which requeues with backoff.
 *
 * A paused SqliteReplica (annotation walship.dev/paused: "true") skips them all: what Walship added to
 * the StatefulSet is removed, as on deletion, and the phase is Paused until the annotation goes.
 *
 *   ensureValidSpec -> ensureStatefulSet -> ensureNoConflict -> ensureTarget
 *   -> [apply: ensureConfigMap -> ensureSecrets -> ensureInjected] -> observePods -> drills
 *
 * The steps are in steps.ts, the pods' observation in observe.ts and pods.ts, the conditions and
 * phase they lead to in conditions.ts (pure), the Events in events.ts.
 *
 * The SqliteReplica and its StatefulSet come from the informers' caches when the context has them.
 * The apply steps (two server-side applies and the Secret reads) run only when what would be applied
 * differs from what this process last applied successfully, when the StatefulSet's pod template is
 * not the one that apply returned or no longer carries the injection, or when the last apply is
 * older than `applyEveryMs` (the repair of drift nothing here watches: an edited ConfigMap, a
 * deleted Secret); see memory.ts. Otherwise a reconcile is only the observation: the pod list (none
 * when the StatefulSet has no pods), each Running pod's sidecar `/status`, and a status write when
 * the status changed.
 */
import { createHash } from "node:crypto";
import type { z } from "zod";
import {
  API_VERSION,
  describeIssues,
  describeWorkload,
  PAUSED_ANNOTATION,
  SQLITE_REPLICA_PLURAL,
  SqliteReplicaSpec,
  type SqliteReplicaStatus,
  type WorkloadRef,
  workloadOf,
} from "../../api/v1alpha1/index.ts";
import { describeError } from "../../shared/errors.ts";
import type { Logger } from "../../shared/log.ts";
import { isStatus, type KubeClient } from "../kube/client.ts";
import type { EventRecorder } from "../kube/events.ts";
import type { Deployment, KubeObject, StatefulSet } from "../kube/types.ts";
import type { BuildOptions } from "../specs/common.ts";
import { buildConfigMap, configHash, renderConfig } from "../specs/config.ts";
import { deploymentProblem } from "../specs/deployment.ts";
import { buildLeaseRoleBinding, podServiceAccount, withLeaseAccess } from "../specs/lease.ts";
import { FIELD_MANAGER, FINALIZER, SIDECAR_CONTAINER, SQLITE_REPLICA_LABEL } from "../specs/names.ts";
import {
  buildApplyPatch,
  isTargetProblem,
  resolveTarget,
  specWorkload,
  type Target,
  type TargetProblem,
  workloadField,
} from "../specs/statefulset.ts";
import { type WorkloadObject, workloadPath } from "../specs/workload.ts";
import { patchStatusFrom, setCondition, type Transaction } from "../status.ts";
import { Blocked, RETRY_BLOCKED_MS } from "./blocked.ts";
import {
  blockedStatus,
  type DerivedStatus,
  injectedStatus,
  KEPT_OUT,
  pausedStatus,
  restrictedCondition,
  withReady,
} from "./conditions.ts";
import { DrillRunner, drillTx } from "./drillrunner.ts";
import { asSqliteReplica, recordChanges } from "./events.ts";
import { AppliedMemory, OwnWrites } from "./memory.ts";
import { PodObserver } from "./observe.ts";
import { aggregate } from "./pods.ts";
import { destinationReachableCondition } from "./reachable.ts";
import { ensureInjected, ensureNoConflict, ensureSecrets, removeInjection } from "./steps.ts";

export interface SqliteReplicaObject extends KubeObject {
  spec?: unknown;
  status?: SqliteReplicaStatus;
}

export interface ReconcileContext {
  client: KubeClient;
  events: EventRecorder;
  log: Logger;
  /** The cached SqliteReplicas (for the conflict check). */
  listReplicas(): SqliteReplicaObject[];
  /** The cached SqliteReplica `namespace/name`; without it, each reconcile reads it from the API. */
  getReplica?(key: string): SqliteReplicaObject | undefined;
  /** The cached StatefulSet `namespace/name`; without it, each reconcile reads it from the API. */
  getStatefulSet?(key: string): StatefulSet | undefined;
  /** The cached Deployment `namespace/name`; without it, each reconcile reads it from the API. */
  getDeployment?(key: string): Deployment | undefined;
  options: BuildOptions & { pollMs?: number; applyEveryMs?: number };
}

export interface Result {
  requeueAfterMs?: number;
}

/** How often pods' sidecars are polled while all is well, and while not. */
const POLL_READY_MS = 10_000;
const POLL_WAITING_MS = 3_000;
/** How long an unchanged apply is trusted before it is repeated anyway. */
const APPLY_EVERY_MS = 300_000;

const crPath = (ns: string, name: string) =>
  `/apis/${API_VERSION}/namespaces/${ns}/${SQLITE_REPLICA_PLURAL}/${name}`;

/** The transaction that writes derived conditions (observed at `generation`) and the phase. */
function statusTx(generation: number | undefined, derived: DerivedStatus): Transaction<SqliteReplicaStatus> {
  return (s) => {
    let list = s.conditions ?? [];
    for (const c of derived.conditions) {
      list = setCondition(list, {
        ...c,
        ...(generation === undefined ? {} : { observedGeneration: generation }),
      });
    }
    s.conditions = list;
    if (generation !== undefined) s.observedGeneration = generation;
    s.phase = derived.phase;
  };
}

function clearFacts(s: SqliteReplicaStatus): void {
  for (const k of [
    "generation",
    "lagSeconds",
    "lastSyncTime",
    "lastSnapshotTime",
    "windowOldest",
    "windowNewest",
    "pods",
  ] as const) {
    delete s[k];
  }
}

/** The next poll interval while not settled: doubled, at most `maxMs` (never below the first). */
export function nextWait(currentMs: number, maxMs: number): number {
  return Math.max(POLL_WAITING_MS, Math.min(currentMs * 2, maxMs));
}

export class SqliteReplicaReconciler {
  readonly #ctx: ReconcileContext;
  readonly #applied = new AppliedMemory();
  readonly #written = new OwnWrites<SqliteReplicaObject>();
  readonly #pods: PodObserver;
  readonly #drills: DrillRunner;
  /** Per SqliteReplica key: the current poll interval while it is not settled (backoff). */
  readonly #waitMs = new Map<string, number>();

  constructor(ctx: ReconcileContext) {
    this.#ctx = ctx;
    this.#pods = new PodObserver(ctx.client, () => ctx.options.pollMs ?? POLL_READY_MS);
    this.#drills = new DrillRunner(ctx.client, ctx.events, ctx.log, ctx.options);
  }

  /** True when `sts` is exactly the version our own apply wrote: its watch event brings nothing new. */
  isOwnWrite(sts: WorkloadObject): boolean {
    return this.#applied.isOwnWrite(sts);
  }

  /** True when `cr` is a version this process wrote (or read before writing over it): nothing new. */
  isOwnReplicaWrite(cr: SqliteReplicaObject): boolean {
    return this.#written.isOwn(cr);
  }

  /** Forgets a deleted SqliteReplica's bookkeeping. */
  forget(key: string): void {
    this.#applied.forget(key);
    this.#written.forget(key);
    this.#waitMs.delete(key);
    this.#pods.forget(key);
  }

  /** The freshest copy of the SqliteReplica: the cache's, unless our own later write has not reached it. */
  async #current(key: string, path: string): Promise<SqliteReplicaObject | undefined> {
    if (!this.#ctx.getReplica) {
      try {
        return await this.#ctx.client.get<SqliteReplicaObject>(path);
      } catch (err) {
        if (isStatus(err, 404)) return undefined;
        throw err;
      }
    }
    const cached = this.#ctx.getReplica(key);
    if (!cached) {
      this.forget(key);
      return undefined;
    }
    return this.#written.freshest(key, cached);
  }

  /** Reconciles `namespace/name`. */
  async reconcile(key: string): Promise<Result> {
    const [ns = "", name = ""] = key.split("/");
    const path = crPath(ns, name);
    let cr = await this.#current(key, path);
    if (!cr) return {};
    if (cr.metadata?.deletionTimestamp) {
      this.forget(key);
      return this.#finalize(cr, path);
    }
    if (!cr.metadata?.finalizers?.includes(FINALIZER)) {
      const patched = await this.#ctx.client.request<SqliteReplicaObject>("PATCH", path, {
        contentType: "application/merge-patch+json",
        body: {
          metadata: {
            finalizers: [...(cr.metadata?.finalizers ?? []), FINALIZER],
            resourceVersion: cr.metadata?.resourceVersion,
          },
        },
      });
      if (!patched?.metadata?.finalizers?.includes(FINALIZER)) return { requeueAfterMs: 0 };
      this.#written.remember(key, cr, patched);
      cr = patched;
    }
    const generation = cr.metadata?.generation;
    if (cr.metadata?.annotations?.[PAUSED_ANNOTATION] === "true")
      return this.#pause(key, cr, path, generation);
    try {
      return await this.#reconcile(cr, path, ns, name, generation);
    } catch (err) {
      if (!(err instanceof Blocked)) throw err;
      this.#applied.forget(key);
      this.#waitMs.delete(key);
      await this.#status(key, cr, path, statusTx(generation, blockedStatus(err.reason, err.message)));
      return err.retryMs === undefined ? {} : { requeueAfterMs: err.retryMs };
    }
  }

  async #reconcile(
    cr: SqliteReplicaObject,
    path: string,
    ns: string,
    name: string,
    generation: number | undefined,
  ): Promise<Result> {
    const key = `${ns}/${name}`;
    // Ensure the spec is valid (the CRD schema checked it at admission; this is the second check).
    const parsed = SqliteReplicaSpec.safeParse(cr.spec);
    if (!parsed.success) {
      const { field, message } = describeIssues("spec", parsed.error as z.ZodError);
      throw new Blocked("InvalidSpec", `${field}: ${message}`);
    }
    const spec = parsed.data;

    // Ensure the workload (StatefulSet or Deployment) exists.
    const ref = specWorkload(spec);
    const sts = await this.#workload(ns, ref);
    if (!sts) {
      throw new Blocked(
        `${ref.kind}NotFound`,
        `${workloadField(spec)}: ${ref.kind} ${ns}/${ref.name} not found`,
        RETRY_BLOCKED_MS,
      );
    }

    // Ensure no other SqliteReplica replicates this workload.
    ensureNoConflict(cr, this.#ctx.listReplicas(), sts, spec);

    // Ensure a Deployment runs one pod at a time on a claim, and the workload has the app container
    // and the database volume.
    const dep = ref.kind === "Deployment" ? deploymentProblem(sts as Deployment, spec) : undefined;
    const target = dep ?? resolveTarget(spec, sts);
    if (isTargetProblem(target)) return this.#refuse(cr, target, dep !== undefined);

    const configText = renderConfig(spec);
    const cm = buildConfigMap({ name, namespace: ns, uid: cr.metadata?.uid ?? "" }, configText);
    const hash = configHash([configText]);
    const patch = this.#stsPatch(ns, name, spec, target, hash);
    // In-cluster fencing: the sidecar's Lease rights (specs/lease.ts), unless the pods carry no token.
    const leaseRole = this.#ctx.options.leaseRole;
    const account = podServiceAccount(sts);
    const binding =
      leaseRole && account.automount
        ? buildLeaseRoleBinding({ name, namespace: ns, uid: cr.metadata?.uid ?? "" }, account.name, leaseRole)
        : undefined;
    if (binding) withLeaseAccess(patch, cr.metadata?.uid ?? "");
    const applyHash = createHash("sha256")
      .update(JSON.stringify([cm, patch, binding]))
      .digest("hex");
    const applyEveryMs = this.#ctx.options.applyEveryMs ?? APPLY_EVERY_MS;
    if (this.#applied.mustApply(key, cr, sts, hash, applyHash, applyEveryMs)) {
      this.#applied.forget(key);
      this.#waitMs.delete(key);
      // Ensure the owned ConfigMap holds the rendered config, and (at the same time) that every
      // referenced Secret exists with its keys; otherwise inject nothing.
      const [applied, checked] = await Promise.allSettled([
        this.#ctx.client.apply(
          `/api/v1/namespaces/${ns}/configmaps/${cm.metadata?.name}`,
          cm,
          FIELD_MANAGER,
          true,
        ),
        ensureSecrets(this.#ctx.client, spec, ns),
      ]);
      if (applied.status === "rejected") throw applied.reason;
      if (checked.status === "rejected") throw checked.reason;
      if (binding) await this.#ensureLeaseBinding(cr, binding);

      // Ensure the workload's pod template carries the injection (server-side apply).
      const written = await ensureInjected(this.#ctx.client, sts, ns, spec, patch);
      this.#applied.record(key, cr, sts, `${ns}/${ref.name}`, applyHash, written);
    }

    // Observe the pods' sidecars.
    const pods = await this.#pods.observe(key, sts, ns, spec, hash);
    const sidecar = patch.spec?.template.spec?.initContainers?.find((c) => c.name === SIDECAR_CONTAINER);
    const restricted = restrictedCondition(
      sidecar?.securityContext ?? {},
      target.identity,
      target.appContainer,
      spec.sidecar?.securityContext,
    );
    const derived = injectedStatus(describeWorkload(ref), pods, restricted);
    derived.conditions.push(destinationReachableCondition(pods));
    const facts = aggregate(pods);
    // Restore drills (drills.ts): decided now, written with the status, the Job created after it.
    const drill = await this.#drills.decide(cr, spec);
    if (drill.condition) derived.conditions.push(drill.condition);
    await this.#status(
      key,
      cr,
      path,
      statusTx(generation, derived),
      (s) => {
        clearFacts(s);
        Object.assign(s, facts);
        if (pods.length > 0) s.pods = pods;
        s.configHash = hash;
      },
      drillTx(drill),
    );
    await this.#drills.act(drill, cr, spec, sts, ref, target.identity);
    const pollMs = this.#ctx.options.pollMs ?? POLL_READY_MS;
    const drillMs = drill.requeueAfterMs ?? Number.POSITIVE_INFINITY;
    if (derived.settled) {
      this.#waitMs.delete(key);
      return { requeueAfterMs: Math.min(pollMs, drillMs) };
    }
    // Not settled: look again soon, then less and less often (pods that are not Running, or not
    // there, change the StatefulSet's status, whose watch event wakes this one anyway).
    const wait = this.#waitMs.get(key) ?? POLL_WAITING_MS;
    this.#waitMs.set(key, nextWait(wait, pods.length === 0 ? 3 * pollMs : pollMs));
    return { requeueAfterMs: Math.min(wait, drillMs) };
  }

  /** The workload, from the cache when there is one; undefined when it does not exist. */
  async #workload(ns: string, ref: WorkloadRef): Promise<WorkloadObject | undefined> {
    const cached = ref.kind === "Deployment" ? this.#ctx.getDeployment : this.#ctx.getStatefulSet;
    if (cached) return cached(`${ns}/${ref.name}`);
    try {
      return await this.#ctx.client.get<WorkloadObject>(workloadPath(ns, ref));
    } catch (err) {
      if (isStatus(err, 404)) return undefined;
      throw err;
    }
  }

  /**
   * Refuses the target: Blocked with the problem. A Deployment refused for its shape (`shape`: two
   * replicas, a rolling update, no claim) loses the replicator this SqliteReplica injected before,
   * since two pods must never replicate one database to one replica; the message says so.
   */
  async #refuse(cr: SqliteReplicaObject, problem: TargetProblem, shape: boolean): Promise<never> {
    const base = `${problem.field}: ${problem.message}`;
    if (!shape) throw new Blocked(problem.reason, base, RETRY_BLOCKED_MS);
    await removeInjection(this.#ctx.client, this.#ctx.events, cr);
    throw new Blocked(problem.reason, `${base}${KEPT_OUT}`, RETRY_BLOCKED_MS);
  }

  /**
   * Applies the RoleBinding of the sidecar's Lease rights. A refusal does not stop the injection:
   * it is logged and recorded as a Warning Event (LeaseBindingFailed), the sidecar reports that it
   * cannot hold its Lease, and its bucket claim alone fences it.
   */
  async #ensureLeaseBinding(
    cr: SqliteReplicaObject,
    binding: ReturnType<typeof buildLeaseRoleBinding>,
  ): Promise<void> {
    const { namespace, name } = binding.metadata;
    const key = `${namespace}/${cr.metadata?.name}`;
    try {
      await this.#ctx.client.apply(
        `/apis/rbac.authorization.k8s.io/v1/namespaces/${namespace}/rolebindings/${name}`,
        binding,
        FIELD_MANAGER,
        true,
      );
    } catch (err) {
      const why = describeError(err);
      this.#ctx.log.warn(
        { sqliteReplica: key, roleBinding: `${namespace}/${name}`, err: why },
        "could not bind the replicator's Lease role; its pods fence with the claim in the bucket alone",
      );
      const role = `${binding.roleRef.kind} ${binding.roleRef.name}`;
      const account = `${namespace}/${binding.subjects[0]?.name}`;
      await this.#ctx.events
        .record(asSqliteReplica(cr), {
          type: "Warning",
          reason: "LeaseBindingFailed",
          message:
            `could not bind ${role} to ServiceAccount ${account} (RoleBinding ${name}): ${why}; ` +
            "its pods hold no Lease, and the claim in the bucket alone fences their replica paths",
        })
        .catch((e: unknown) => this.#ctx.log.warn({ err: describeError(e) }, "record event failed"));
    }
  }

  #stsPatch(ns: string, name: string, spec: SqliteReplicaSpec, target: Target, hash: string): StatefulSet {
    const ref = specWorkload(spec);
    const patch = buildApplyPatch(
      { name: ref.name, namespace: ns, kind: ref.kind },
      name,
      spec,
      target,
      hash,
      this.#ctx.options,
    );
    const annotations = patch.spec?.template.metadata?.annotations;
    if (annotations) annotations[SQLITE_REPLICA_LABEL] = name;
    return patch;
  }

  async #status(
    key: string,
    cr: SqliteReplicaObject,
    path: string,
    ...txs: Transaction<SqliteReplicaStatus>[]
  ): Promise<void> {
    const { object, changes, written } = await patchStatusFrom<SqliteReplicaStatus>(
      this.#ctx.client,
      path,
      this.#ctx.getReplica ? cr : undefined,
      txs,
      { derive: withReady },
    );
    if (written && object.metadata) this.#written.remember(key, cr, object);
    await recordChanges(this.#ctx.events, this.#ctx.log, object.metadata ? object : cr, changes);
  }

  /**
   * Paused (the PAUSED_ANNOTATION): remove what Walship added to the StatefulSet, as deletion does,
   * keep the finalizer, and say so in the status; nothing is polled until the annotation goes.
   */
  async #pause(
    key: string,
    cr: SqliteReplicaObject,
    path: string,
    generation: number | undefined,
  ): Promise<Result> {
    this.#applied.forget(key);
    this.#waitMs.delete(key);
    this.#pods.forget(key);
    const ref = workloadOf(cr.spec);
    await removeInjection(this.#ctx.client, this.#ctx.events, cr);
    await this.#status(
      key,
      cr,
      path,
      statusTx(generation, pausedStatus(ref ? describeWorkload(ref) : "workload", PAUSED_ANNOTATION)),
      clearFacts,
    );
    return {};
  }

  /** Deletion: remove exactly what Walship added (if this SqliteReplica added it), then the finalizer. */
  async #finalize(cr: SqliteReplicaObject, path: string): Promise<Result> {
    if (!cr.metadata?.finalizers?.includes(FINALIZER)) return {};
    await removeInjection(this.#ctx.client, this.#ctx.events, cr);
    await this.#ctx.client.request("PATCH", path, {
      contentType: "application/merge-patch+json",
      body: {
        metadata: {
          finalizers: cr.metadata.finalizers.filter((f) => f !== FINALIZER),
          resourceVersion: cr.metadata.resourceVersion,
        },
      },
    });
    return {};
  }
}
