/**
 * SqliteReplica reconcile. `reconcile(key)` is the shell: fetch, deletion and finalizer first, then
 * the `ensure` steps in order, each either passing or stopping with a condition (and an Event from
 * the condition change). Errors are thrown to the worker, which requeues with backoff.
 *
 * A paused SqliteReplica (annotation walship.dev/paused: "true") skips them all: what Walship added to
 * the StatefulSet is removed, as on deletion, and the phase is Paused until the annotation goes.
 *
 *   ensureValidSpec -> ensureStatefulSet -> ensureNoConflict -> ensureTarget
 *   -> [apply: ensureConfigMap -> ensureSecrets -> ensureInjected] -> observePods
 *
 * The SqliteReplica and its StatefulSet come from the informers' caches when the context has them.
 * The apply steps (two server-side applies and the Secret reads) run only when what would be applied
 * differs from what this process last applied successfully, when the StatefulSet's pod template is
 * not the one that apply returned or no longer carries the injection, or when the last apply is
 * older than `applyEveryMs` (the repair of drift nothing here watches: an edited ConfigMap, a
 * deleted Secret). Otherwise a reconcile is only the observation: the pod list (none when the
 * StatefulSet has no pods), each Running pod's sidecar `/status`, and a status write when the status
 * changed.
 */
import { createHash } from "node:crypto";
import type { Logger } from "pino";
import type { z } from "zod";
import {
  API_VERSION,
  describeIssues,
  PAUSED_ANNOTATION,
  type PodReplicationStatus,
  SQLITE_REPLICA_PLURAL,
  SqliteReplicaSpec,
  type SqliteReplicaStatus,
} from "../../api/v1alpha1/index.ts";
import { describeError } from "../../shared/errors.ts";
import { isStatus, type KubeClient } from "../kube/client.ts";
import type { EventRecorder } from "../kube/events.ts";
import { keyOf } from "../kube/informer.ts";
import type { KubeObject, Pod, Secret, StatefulSet } from "../kube/types.ts";
import { buildConfigMap, configHash, type RenderOptions, renderConfig } from "../specs/config.ts";
import { destinationCredentials } from "../specs/credentials.ts";
import {
  CONFIG_HASH_ANNOTATION,
  FIELD_MANAGER,
  FINALIZER,
  SIDECAR_CONTAINER,
  SQLITE_REPLICA_LABEL,
} from "../specs/names.ts";
import {
  type BuildOptions,
  buildApplyPatch,
  isInjected,
  isTargetProblem,
  removalPatch,
  resolveTarget,
  type Target,
} from "../specs/statefulset.ts";
import { type ConditionChange, patchStatusFrom, setCondition, type Transaction } from "../status.ts";
import {
  type Cond,
  degradedCondition,
  injectedPhase,
  replicatingCondition,
  restrictedCondition,
} from "./conditions.ts";
import { restoreFailure, sidecarFailure } from "./failures.ts";
import { aggregate, fetchSidecarStatus, podFacts } from "./pods.ts";

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
  options: BuildOptions & RenderOptions & { pollMs?: number; applyEveryMs?: number };
}

/** What this process last applied for one SqliteReplica, to know when applying again changes nothing. */
interface Applied {
  crUid: string;
  stsUid: string;
  /** The hash of the ConfigMap and StatefulSet apply configurations. */
  hash: string;
  /** The StatefulSet's generation and pod template (hashed) that the apply returned. */
  stsGeneration: number | undefined;
  stsTemplateHash: string;
  at: number;
}

export interface Result {
  requeueAfterMs?: number;
}

/** How often pods' sidecars are polled while all is well, and while not. */
const POLL_READY_MS = 10_000;
const POLL_WAITING_MS = 3_000;
/** How many polls a pod list may serve while nothing changed (see #observePods). */
const POD_LIST_REUSE_POLLS = 6;
/** How long an unchanged apply is trusted before it is repeated anyway. */
const APPLY_EVERY_MS = 300_000;
const RETRY_BLOCKED_MS = 30_000;
/** How long a sidecar that has just started may refuse /status before it counts as unreachable. */
const SIDECAR_START_GRACE_MS = 10_000;

const WARNING_REASONS = new Set([
  "InvalidSpec",
  "StatefulSetNotFound",
  "Conflict",
  "ContainerNotFound",
  "VolumeNotFound",
  "VolumeNotMounted",
  "PathOutsideVolume",
  "NameClash",
  "PortConflict",
  "SecretMissing",
  "FieldConflict",
  "ReplicationError",
  "SidecarUnreachable",
  "RestoreFailed",
  "OutOfMemory",
  "PermissionDenied",
  "SidecarFailing",
  "RunsAsRoot",
  "NotRestricted",
]);

const crPath = (ns: string, name: string) =>
  `/apis/${API_VERSION}/namespaces/${ns}/${SQLITE_REPLICA_PLURAL}/${name}`;
const stsPath = (ns: string, name: string) => `/apis/apps/v1/namespaces/${ns}/statefulsets/${name}`;

function condTx(generation: number | undefined, ...conds: Cond[]): Transaction<SqliteReplicaStatus> {
  return (s) => {
    let list = s.conditions ?? [];
    for (const c of conds) {
      list = setCondition(list, {
        ...c,
        ...(generation === undefined ? {} : { observedGeneration: generation }),
      });
    }
    s.conditions = list;
    if (generation !== undefined) s.observedGeneration = generation;
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

function templateHash(sts: StatefulSet | undefined): string {
  return createHash("sha256")
    .update(JSON.stringify(sts?.spec?.template ?? null))
    .digest("hex");
}

/** The next poll interval while not settled: doubled, at most `maxMs` (never below the first). */
export function nextWait(currentMs: number, maxMs: number): number {
  return Math.max(POLL_WAITING_MS, Math.min(currentMs * 2, maxMs));
}

/** A step that stops reconcile: the Injected=False condition it sets, and when to look again. */
class Blocked {
  readonly reason: string;
  readonly message: string;
  readonly retryMs: number | undefined;
  constructor(reason: string, message: string, retryMs?: number) {
    this.reason = reason;
    this.message = message;
    this.retryMs = retryMs;
  }
}

export class SqliteReplicaReconciler {
  readonly #ctx: ReconcileContext;
  /** Per SqliteReplica key: what was last applied. */
  readonly #applied = new Map<string, Applied>();
  /**
   * Per SqliteReplica key: the object our last write returned, and the resourceVersions it
   * supersedes (a cache still holding one of those has not seen our write yet).
   */
  readonly #written = new Map<string, { object: SqliteReplicaObject; superseded: Set<string> }>();
  /** Per SqliteReplica key: the current poll interval while it is not settled (backoff). */
  readonly #waitMs = new Map<string, number>();
  /** Per SqliteReplica key: the last pod list, while it may be reused (see #observePods). */
  readonly #podLists = new Map<string, { stsResourceVersion: string; at: number; items: Pod[] }>();
  /** Per StatefulSet key: the resourceVersion our last apply returned (its watch event is ours). */
  readonly #ownStsVersions = new Map<string, string>();

  constructor(ctx: ReconcileContext) {
    this.#ctx = ctx;
  }

  /** True when `sts` is exactly the version our own apply wrote: its watch event brings nothing new. */
  isOwnWrite(sts: StatefulSet): boolean {
    const rv = sts.metadata?.resourceVersion;
    return rv !== undefined && this.#ownStsVersions.get(keyOf(sts)) === rv;
  }

  /** True when `cr` is a version this process wrote (or read before writing over it): nothing new. */
  isOwnReplicaWrite(cr: SqliteReplicaObject): boolean {
    const mine = this.#written.get(keyOf(cr));
    const rv = cr.metadata?.resourceVersion;
    if (!mine || rv === undefined || mine.object.metadata?.uid !== cr.metadata?.uid) return false;
    return mine.object.metadata?.resourceVersion === rv || mine.superseded.has(rv);
  }

  /** Forgets a deleted SqliteReplica's bookkeeping. */
  forget(key: string): void {
    this.#applied.delete(key);
    this.#written.delete(key);
    this.#waitMs.delete(key);
    this.#podLists.delete(key);
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
    const mine = this.#written.get(key);
    if (!cached) {
      this.forget(key);
      return undefined;
    }
    if (mine && mine.object.metadata?.uid === cached.metadata?.uid) {
      if (mine.superseded.has(cached.metadata?.resourceVersion ?? "")) return mine.object;
    }
    this.#written.delete(key);
    return cached;
  }

  #remember(key: string, before: SqliteReplicaObject, after: SqliteReplicaObject): void {
    const prev = this.#written.get(key);
    const superseded =
      prev && prev.object.metadata?.uid === after.metadata?.uid ? prev.superseded : new Set<string>();
    const rv = before.metadata?.resourceVersion;
    if (rv) superseded.add(rv);
    this.#written.set(key, { object: after, superseded });
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
      this.#remember(key, cr, patched);
      cr = patched;
    }
    const generation = cr.metadata?.generation;
    if (cr.metadata?.annotations?.[PAUSED_ANNOTATION] === "true")
      return this.#pause(key, cr, path, generation);
    try {
      return await this.#reconcile(cr, path, ns, name, generation);
    } catch (err) {
      if (err instanceof Blocked) {
        this.#applied.delete(key);
        this.#waitMs.delete(key);
        await this.#status(
          key,
          cr,
          path,
          condTx(
            generation,
            { type: "Injected", status: "False", reason: err.reason, message: err.message },
            { type: "Replicating", status: "Unknown", reason: err.reason, message: "not injected" },
          ),
          (s) => {
            s.phase = "Failed";
          },
        );
        return err.retryMs === undefined ? {} : { requeueAfterMs: err.retryMs };
      }
      throw err;
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

    // Ensure the StatefulSet exists.
    const sts = await this.#statefulSet(ns, spec.statefulSetName);
    if (!sts) {
      throw new Blocked(
        "StatefulSetNotFound",
        `spec.statefulSetName: StatefulSet ${ns}/${spec.statefulSetName} not found`,
        RETRY_BLOCKED_MS,
      );
    }

    // Ensure no other SqliteReplica replicates this StatefulSet.
    this.#ensureNoConflict(cr, sts, spec, ns, name);

    // Ensure the StatefulSet has the app container and the database volume.
    const target = resolveTarget(spec, sts);
    if (isTargetProblem(target))
      throw new Blocked(target.reason, `${target.field}: ${target.message}`, RETRY_BLOCKED_MS);

    const configText = renderConfig(spec, this.#ctx.options);
    const cm = buildConfigMap({ name, namespace: ns, uid: cr.metadata?.uid ?? "" }, configText);
    const hash = configHash([configText]);
    const patch = this.#stsPatch(ns, name, spec, target, hash);
    const applyHash = createHash("sha256")
      .update(JSON.stringify([cm, patch]))
      .digest("hex");
    if (this.#mustApply(key, cr, sts, hash, applyHash)) {
      this.#applied.delete(key);
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
        this.#ensureSecrets(spec, ns),
      ]);
      if (applied.status === "rejected") throw applied.reason;
      if (checked.status === "rejected") throw checked.reason;

      // Ensure the StatefulSet's pod template carries the injection (server-side apply).
      const written = await this.#ensureInjected(sts, ns, spec, patch);
      this.#applied.set(key, {
        crUid: cr.metadata?.uid ?? "",
        stsUid: sts.metadata?.uid ?? "",
        hash: applyHash,
        stsGeneration: written?.metadata?.generation,
        stsTemplateHash: templateHash(written),
        at: Date.now(),
      });
      if (written?.metadata?.resourceVersion) {
        this.#ownStsVersions.set(`${ns}/${spec.statefulSetName}`, written.metadata.resourceVersion);
      }
    }

    // Observe the pods' sidecars.
    const pods = await this.#observePods(key, sts, ns, spec, hash);
    const replicating = replicatingCondition(pods);
    const degraded = degradedCondition(pods);
    const sidecar = patch.spec?.template.spec?.initContainers?.find((c) => c.name === SIDECAR_CONTAINER);
    const restricted = restrictedCondition(
      sidecar?.securityContext ?? {},
      target.identity,
      target.appContainer,
      spec.sidecar?.securityContext,
    );
    const facts = aggregate(pods);
    await this.#status(
      key,
      cr,
      path,
      condTx(
        generation,
        {
          type: "Injected",
          status: "True",
          reason: "Injected",
          message: `StatefulSet ${spec.statefulSetName} carries the replicator`,
        },
        replicating,
        degraded,
        restricted,
      ),
      (s) => {
        clearFacts(s);
        Object.assign(s, facts);
        if (pods.length > 0) s.pods = pods;
        s.configHash = hash;
        s.phase = injectedPhase(replicating, degraded);
      },
    );
    const settled = replicating.status === "True" && degraded.status === "False";
    const reporting = pods.length;
    const pollMs = this.#ctx.options.pollMs ?? POLL_READY_MS;
    if (settled) {
      this.#waitMs.delete(key);
      return { requeueAfterMs: pollMs };
    }
    // Not settled: look again soon, then less and less often (pods that are not Running, or not
    // there, change the StatefulSet's status, whose watch event wakes this one anyway).
    const wait = this.#waitMs.get(key) ?? POLL_WAITING_MS;
    this.#waitMs.set(key, nextWait(wait, reporting === 0 ? 3 * pollMs : pollMs));
    return { requeueAfterMs: wait };
  }

  /** The StatefulSet, from the cache when there is one; undefined when it does not exist. */
  async #statefulSet(ns: string, name: string): Promise<StatefulSet | undefined> {
    if (this.#ctx.getStatefulSet) return this.#ctx.getStatefulSet(`${ns}/${name}`);
    try {
      return await this.#ctx.client.get<StatefulSet>(stsPath(ns, name));
    } catch (err) {
      if (isStatus(err, 404)) return undefined;
      throw err;
    }
  }

  /** Whether the apply steps must run (see the file's comment). */
  #mustApply(
    key: string,
    cr: SqliteReplicaObject,
    sts: StatefulSet,
    hash: string,
    applyHash: string,
  ): boolean {
    const last = this.#applied.get(key);
    if (!last) return true;
    if (last.hash !== applyHash || last.crUid !== cr.metadata?.uid || last.stsUid !== sts.metadata?.uid) {
      return true;
    }
    if (Date.now() - last.at >= (this.#ctx.options.applyEveryMs ?? APPLY_EVERY_MS)) return true;
    // A cache that has not seen our apply yet holds an older generation; otherwise the pod template
    // must be the one our apply left (a scale changes the generation, not the template).
    const gen = sts.metadata?.generation;
    if (last.stsGeneration !== undefined && gen !== undefined && gen < last.stsGeneration) return false;
    return templateHash(sts) !== last.stsTemplateHash || !isInjected(sts, hash);
  }

  #ensureNoConflict(
    cr: SqliteReplicaObject,
    sts: StatefulSet,
    spec: SqliteReplicaSpec,
    ns: string,
    name: string,
  ): void {
    const owner = sts.spec?.template?.metadata?.annotations?.[SQLITE_REPLICA_LABEL];
    const created = (o: SqliteReplicaObject) => String(o.metadata?.creationTimestamp ?? "");
    const rivals = this.#ctx
      .listReplicas()
      .filter(
        (o) =>
          o.metadata?.namespace === ns &&
          o.metadata?.name !== name &&
          !o.metadata?.deletionTimestamp &&
          (o.spec as { statefulSetName?: string } | undefined)?.statefulSetName === spec.statefulSetName,
      );
    if (rivals.length === 0) return;
    // The one already injected keeps it; otherwise the oldest (then the first by name) wins.
    let winner = rivals.find((o) => o.metadata?.name === owner);
    if (!winner && owner !== name) {
      winner = [...rivals, cr].sort((a, b) =>
        created(a) === created(b)
          ? String(a.metadata?.name).localeCompare(String(b.metadata?.name))
          : created(a).localeCompare(created(b)),
      )[0];
      if (winner?.metadata?.name === name) winner = undefined;
    }
    if (winner) {
      const db = (winner.spec as { database?: { path?: string } } | undefined)?.database?.path;
      const same = db === spec.database.path ? "the same database" : `database ${db}`;
      throw new Blocked(
        "Conflict",
        `spec.statefulSetName: StatefulSet ${spec.statefulSetName} is already replicated by SqliteReplica ` +
          `${winner.metadata?.name} (${same}); one SqliteReplica per StatefulSet`,
        RETRY_BLOCKED_MS,
      );
    }
  }

  async #ensureSecrets(spec: SqliteReplicaSpec, ns: string): Promise<void> {
    const cache = new Map<string, Secret | null>();
    for (const [i, d] of spec.destinations.entries()) {
      for (const { field, ref } of destinationCredentials(d)) {
        let secret = cache.get(ref.name);
        if (secret === undefined) {
          try {
            secret = await this.#ctx.client.get<Secret>(`/api/v1/namespaces/${ns}/secrets/${ref.name}`);
          } catch (err) {
            if (!isStatus(err, 404)) throw err;
            secret = null;
          }
          cache.set(ref.name, secret);
        }
        const at = `spec.destinations[${i}].${field}`;
        if (secret === null) {
          throw new Blocked("SecretMissing", `${at}: Secret ${ns}/${ref.name} not found`, RETRY_BLOCKED_MS);
        }
        if (secret.data?.[ref.key] === undefined && secret.stringData?.[ref.key] === undefined) {
          throw new Blocked(
            "SecretMissing",
            `${at}: Secret ${ns}/${ref.name} has no key ${ref.key}`,
            RETRY_BLOCKED_MS,
          );
        }
      }
    }
  }

  #stsPatch(ns: string, name: string, spec: SqliteReplicaSpec, target: Target, hash: string): StatefulSet {
    const patch = buildApplyPatch(
      { name: spec.statefulSetName, namespace: ns },
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

  async #ensureInjected(
    sts: StatefulSet,
    ns: string,
    spec: SqliteReplicaSpec,
    patch: StatefulSet,
  ): Promise<StatefulSet | undefined> {
    try {
      return await this.#ctx.client.apply<StatefulSet>(
        stsPath(ns, spec.statefulSetName),
        patch,
        FIELD_MANAGER,
        false,
      );
    } catch (err) {
      if (isStatus(err, 409)) {
        throw new Blocked(
          "FieldConflict",
          `StatefulSet ${sts.metadata?.name}: ${describeError(err)}`,
          RETRY_BLOCKED_MS,
        );
      }
      throw err;
    }
  }

  /**
   * The pods' facts. The pod list is reused while every pod was ready and the StatefulSet has not
   * changed since (pods created, deleted, rolled, turning ready or not all change its status), for at
   * most POD_LIST_REUSE_POLLS polls; a reused list that finds a pod not ready or failing is dropped
   * and the pods are listed again at once.
   */
  async #observePods(
    key: string,
    sts: StatefulSet,
    ns: string,
    spec: SqliteReplicaSpec,
    hash: string,
  ): Promise<PodReplicationStatus[]> {
    const rv = sts.metadata?.resourceVersion ?? "";
    const maxAge = POD_LIST_REUSE_POLLS * (this.#ctx.options.pollMs ?? POLL_READY_MS);
    const kept = this.#podLists.get(key);
    this.#podLists.delete(key);
    if (kept && kept.stsResourceVersion === rv && Date.now() - kept.at < maxAge) {
      const out = await this.#pollPods(kept.items, spec, hash);
      if (out.length > 0 && out.every((p) => p.ready && !p.lastError)) {
        this.#podLists.set(key, kept);
        return out;
      }
    }
    const items = await this.#listPods(sts, ns);
    const out = await this.#pollPods(items, spec, hash);
    if (out.length > 0 && out.every((p) => p.ready && !p.lastError)) {
      this.#podLists.set(key, { stsResourceVersion: rv, at: Date.now(), items });
    }
    return out;
  }

  async #listPods(sts: StatefulSet, ns: string): Promise<Pod[]> {
    const labels = sts.spec?.selector?.matchLabels ?? {};
    const selector = Object.entries(labels)
      .map(([k, v]) => `${k}=${v}`)
      .join(",");
    if (selector === "") return [];
    // Scaled to zero and no pod left: nothing to list (scaling up changes the StatefulSet, whose
    // watch event brings this SqliteReplica back).
    if (sts.spec?.replicas === 0 && (sts.status?.replicas ?? 0) === 0) return [];
    const list = await this.#ctx.client.request<{ items: Pod[] }>("GET", `/api/v1/namespaces/${ns}/pods`, {
      query: { labelSelector: selector },
    });
    return list.items;
  }

  async #pollPods(items: Pod[], spec: SqliteReplicaSpec, hash: string): Promise<PodReplicationStatus[]> {
    const dbPath = spec.database.path;
    const port = spec.sidecar?.metricsPort ?? 9090;
    const byName = (a: { name?: string }, b: { name?: string }) =>
      String(a.name).localeCompare(String(b.name), "en", { numeric: true });
    const injected = items
      .filter((p) => p.metadata?.annotations?.[CONFIG_HASH_ANNOTATION] !== undefined)
      .filter((p) => (p.spec?.initContainers ?? []).some((c) => c.name === SIDECAR_CONTAINER))
      .filter((p) => !p.metadata?.deletionTimestamp);
    // Pods whose restore init container or sidecar failed: reported with the reason, not polled.
    const now = new Date();
    const held: PodReplicationStatus[] = [];
    for (const p of injected) {
      const problem = restoreFailure(p, spec.restoreOnStart) ?? sidecarFailure(p, now);
      if (problem) {
        held.push({
          name: p.metadata?.name ?? "",
          ready: false,
          lastError: problem.message,
          reason: problem.reason,
        });
      }
    }
    const heldNames = new Set(held.map((h) => h.name));
    const pods = injected
      .filter(
        (p) => p.status?.podIP && p.status.phase === "Running" && !heldNames.has(p.metadata?.name ?? ""),
      )
      .sort((a, b) => byName(a.metadata ?? {}, b.metadata ?? {}));
    const polled = await Promise.all(
      pods.map(async (p): Promise<PodReplicationStatus> => {
        const podName = p.metadata?.name ?? "";
        // A sidecar that is not running yet, or just started, is not an error: the pod is not ready.
        const sidecar = (p.status?.initContainerStatuses ?? []).find((c) => c.name === SIDECAR_CONTAINER);
        const startedAt = sidecar?.state?.running?.startedAt;
        if (!startedAt) return { name: podName, ready: false };
        const young = Date.now() - new Date(startedAt).getTime() < SIDECAR_START_GRACE_MS;
        try {
          const doc = await fetchSidecarStatus(`http://${p.status?.podIP}:${port}/status`);
          const facts = podFacts(podName, doc, dbPath);
          if (p.metadata?.annotations?.[CONFIG_HASH_ANNOTATION] !== hash) {
            facts.ready = false;
          }
          return facts;
        } catch (err) {
          if (young) return { name: podName, ready: false };
          return { name: podName, ready: false, lastError: describeError(err), reason: "SidecarUnreachable" };
        }
      }),
    );
    return [...held, ...polled].sort(byName);
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
      ...txs,
    );
    if (written && object.metadata) this.#remember(key, cr, object);
    await this.#recordChanges(object.metadata ? object : cr, changes);
  }

  async #recordChanges(cr: KubeObject, changes: ConditionChange[]): Promise<void> {
    // One Event per change, sent at once (they are independent; a reconcile waits for the slowest).
    const record = async (ch: ConditionChange): Promise<void> => {
      if (ch.type === "Ready" && ch.to.status !== "True") return; // the cause has its own Event
      const bad =
        WARNING_REASONS.has(ch.to.reason) &&
        (ch.to.type === "Degraded" ? ch.to.status === "True" : ch.to.status !== "True");
      if (ch.to.type === "Degraded" && ch.to.status === "False" && !ch.from) return;
      if (ch.to.type === "Replicating" && ch.to.status === "Unknown") return;
      try {
        await this.#ctx.events.record(
          { ...cr, apiVersion: API_VERSION, kind: "SqliteReplica" },
          {
            type: bad ? "Warning" : "Normal",
            reason: ch.to.reason,
            message: ch.to.message || `${ch.to.type} is ${ch.to.status}`,
          },
        );
      } catch (err) {
        this.#ctx.log.warn({ err: describeError(err), reason: ch.to.reason }, "record event failed");
      }
    };
    await Promise.all(changes.map(record));
    for (const ch of changes) {
      this.#ctx.log.info(
        {
          sqlitereplica: `${cr.metadata?.namespace}/${cr.metadata?.name}`,
          condition: ch.type,
          status: ch.to.status,
          reason: ch.to.reason,
        },
        "condition changed",
      );
    }
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
    this.#applied.delete(key);
    this.#waitMs.delete(key);
    this.#podLists.delete(key);
    const stsName = (cr.spec as { statefulSetName?: string } | undefined)?.statefulSetName ?? "";
    await this.#removeInjection(cr);
    const why = `paused by the annotation ${PAUSED_ANNOTATION}`;
    await this.#status(
      key,
      cr,
      path,
      condTx(
        generation,
        {
          type: "Injected",
          status: "False",
          reason: "Paused",
          message: `${why}: the replicator is removed from StatefulSet ${stsName}`,
        },
        { type: "Replicating", status: "False", reason: "Paused", message: `${why}: nothing is replicated` },
        { type: "Degraded", status: "False", reason: "Paused", message: "" },
      ),
      (s) => {
        clearFacts(s);
        s.phase = "Paused";
      },
    );
    return {};
  }

  /** Removes exactly what Walship added to the StatefulSet, if this SqliteReplica added it. */
  async #removeInjection(cr: SqliteReplicaObject): Promise<void> {
    const ns = cr.metadata?.namespace ?? "";
    const name = cr.metadata?.name ?? "";
    const stsName = (cr.spec as { statefulSetName?: string } | undefined)?.statefulSetName;
    if (!stsName) return;
    try {
      const sts = await this.#ctx.client.get<StatefulSet>(stsPath(ns, stsName));
      if (sts.spec?.template?.metadata?.annotations?.[SQLITE_REPLICA_LABEL] !== name) return;
      await this.#ctx.client.apply(
        stsPath(ns, stsName),
        removalPatch({ name: stsName, namespace: ns }),
        FIELD_MANAGER,
        true,
      );
      await this.#ctx.events
        .record(
          { ...cr, apiVersion: API_VERSION, kind: "SqliteReplica" },
          {
            type: "Normal",
            reason: "Removed",
            message: `removed the replicator from StatefulSet ${stsName}`,
          },
        )
        .catch(() => undefined);
    } catch (err) {
      if (!isStatus(err, 404)) throw err;
    }
  }

  /** Deletion: remove exactly what Walship added (if this SqliteReplica added it), then the finalizer. */
  async #finalize(cr: SqliteReplicaObject, path: string): Promise<Result> {
    if (!cr.metadata?.finalizers?.includes(FINALIZER)) return {};
    await this.#removeInjection(cr);
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
