/**
 * Replication facts per pod, read from each pod's sidecar `GET /status` (schema in
 * shared/protocol.ts), and their aggregation for the SqliteReplica's status. The aggregation is pure.
 */

import {
  type DatabaseEntry,
  type DatabaseReplicationStatus,
  databasesOf,
  metricsPort,
  type PodReplicationStatus,
  type SqliteReplicaSpec,
  type SqliteReplicaStatus,
} from "../../api/v1alpha1/index.ts";
import { describeError } from "../../shared/errors.ts";
import { type ReplicatorStatus, ReplicatorStatusSchema } from "../../shared/protocol.ts";
import type { KubeClient } from "../kube/client.ts";
import { selectorQuery } from "../kube/selector.ts";
import type { Pod } from "../kube/types.ts";
import { CONFIG_HASH_ANNOTATION, SIDECAR_CONTAINER } from "../specs/names.ts";
import type { WorkloadObject } from "../specs/workload.ts";
import { permissionMessage, restoreFailure, sidecarFailure } from "./failures.ts";
import { fencedMessage } from "./fencing.ts";
import { guardrailFacts } from "./guardrails.ts";
import { probesOf } from "./reachable.ts";

/** How long a sidecar that has just started may refuse /status before it counts as unreachable. */
const SIDECAR_START_GRACE_MS = 10_000;

/** The workload's pods (by its selector); none when it has no selector or is scaled to 0 with none left. */
export async function listPods(client: KubeClient, sts: WorkloadObject, ns: string): Promise<Pod[]> {
  const selector = selectorQuery(sts.spec?.selector);
  if (selector === "") return [];
  // Scaled to zero and no pod left: nothing to list (scaling up changes the StatefulSet, whose
  // watch event brings this SqliteReplica back).
  if (sts.spec?.replicas === 0 && (sts.status?.replicas ?? 0) === 0) return [];
  const list = await client.request<{ items: Pod[] }>("GET", `/api/v1/namespaces/${ns}/pods`, {
    query: { labelSelector: selector },
  });
  return list.items;
}

/**
 * Each injected pod's facts, sorted by name: a pod whose restore init container or sidecar failed is
 * reported with the reason and not polled; each Running one's sidecar is asked for `/status`. A pod
 * of an older config (`hash`) is not ready yet.
 */
export async function pollPods(
  items: readonly Pod[],
  spec: SqliteReplicaSpec,
  hash: string,
): Promise<PodReplicationStatus[]> {
  const dbs = databasesOf(spec);
  const port = metricsPort(spec);
  const byName = (a: { name?: string }, b: { name?: string }) =>
    String(a.name).localeCompare(String(b.name), "en", { numeric: true });
  const injected = items
    .filter((p) => p.metadata?.annotations?.[CONFIG_HASH_ANNOTATION] !== undefined)
    .filter((p) => (p.spec?.initContainers ?? []).some((c) => c.name === SIDECAR_CONTAINER))
    .filter((p) => !p.metadata?.deletionTimestamp);
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
    .filter((p) => p.status?.podIP && p.status.phase === "Running" && !heldNames.has(p.metadata?.name ?? ""))
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
        const facts = podFacts(podName, doc, dbs);
        const probes = probesOf(doc, dbs);
        if (probes) facts.probes = probes;
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

/** Fetches and parses one sidecar's /status. Throws with the URL on any failure. */
export async function fetchSidecarStatus(url: string, timeoutMs = 3000): Promise<ReplicatorStatus> {
  let res: Response;
  try {
    res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
  } catch (err) {
    throw new Error(
      `get ${url}: ${(err as Error).cause ? String((err as Error).cause) : (err as Error).message}`,
    );
  }
  if (!res.ok) throw new Error(`get ${url}: HTTP ${res.status}`);
  const parsed = ReplicatorStatusSchema.safeParse(await res.json());
  if (!parsed.success) throw new Error(`parse ${url}: ${parsed.error.issues[0]?.message ?? "invalid"}`);
  return parsed.data;
}

const minIso = (xs: Array<string | undefined>): string | undefined =>
  xs.filter((x): x is string => x !== undefined).sort()[0];
const maxIso = (xs: Array<string | undefined>): string | undefined =>
  xs
    .filter((x): x is string => x !== undefined)
    .sort()
    .at(-1);

/**
 * One pod's facts from its sidecar's document: those of its one database (`spec.database`), or, with
 * `spec.databases`, each database's under `databases` and over all of them in the pod's own fields
 * (every one ready, the worst lag, the oldest sync, the window they all reach, every error).
 */
export function podFacts(
  pod: string,
  doc: ReplicatorStatus,
  dbs: readonly DatabaseEntry[],
): PodReplicationStatus {
  const only = dbs[0];
  if (dbs.length <= 1 && only?.name === undefined) {
    // A lone database is matched by path, or is the sidecar's only one (an older config's path).
    const db = doc.databases.find((d) => d.path === only?.path) ?? doc.databases[0];
    return withGuardrails({ name: pod, ...databaseFacts(doc, db) }, db ? [db] : []);
  }
  const each = dbs.map((entry) => {
    const { reason, fencedBy, ...facts } = databaseFacts(
      doc,
      doc.databases.find((d) => d.path === entry.path),
    );
    const name = entry.name ?? entry.path;
    return {
      reason,
      fencedBy: fencedBy && `database ${name}: ${fencedBy}`,
      facts: { name, ...facts } as DatabaseReplicationStatus,
    };
  });
  const databases = each.map((e) => e.facts);
  const { generation: _one, ...overAll } = combine(databases);
  const out: PodReplicationStatus = {
    name: pod,
    ready: databases.every((d) => d.ready === true),
    ...overAll,
    databases,
  };
  const errors = databases.filter((d) => d.lastError).map((d) => `database ${d.name}: ${d.lastError}`);
  if (errors.length > 0) out.lastError = errors.join("; ").slice(0, 2048);
  const fenced = each.flatMap((e) => (e.fencedBy ? [e.fencedBy] : []));
  if (fenced.length > 0) out.fencedBy = fenced.join("; ");
  if (each.some((e) => e.reason === "PermissionDenied")) out.reason = "PermissionDenied";
  else if (fenced.length > 0) out.reason = "WriterConflict";
  else if (errors.length > 0) out.reason = "ReplicationError";
  const paths = new Set(dbs.map((d) => d.path));
  return withGuardrails(
    out,
    doc.databases.filter((d) => paths.has(d.path)),
  );
}

/** Adds the databases' guardrail facts (guardrails.ts), when the sidecar reports them. */
function withGuardrails(
  out: PodReplicationStatus,
  dbs: readonly ReplicatorStatus["databases"][number][],
): PodReplicationStatus {
  const facts = dbs.filter((d) => d.volume || d.checkpoint).map(guardrailFacts);
  if (facts.length > 0) out.guardrails = facts;
  return out;
}

/** One database's facts from the sidecar's document (`db`: its entry there, if any). */
function databaseFacts(
  doc: ReplicatorStatus,
  db: ReplicatorStatus["databases"][number] | undefined,
): Omit<PodReplicationStatus, "name"> {
  if (!db) return { ready: false, lastError: "the sidecar reports no such database" };
  const reps = db.replicas;
  const out: Omit<PodReplicationStatus, "name"> = { ready: db.ready && reps.every((r) => r.ready) };
  if (db.generation) out.generation = db.generation;
  if (reps.length > 0) out.lagSeconds = Math.max(...reps.map((r) => r.lagSeconds));
  // Synced everywhere only when every destination has synced once.
  const syncs = reps.map((r) => r.lastSyncAt);
  const lastSync = syncs.includes(undefined) ? undefined : minIso(syncs);
  if (lastSync) out.lastSyncTime = lastSync;
  const snap = maxIso(reps.map((r) => r.lastSnapshot?.at));
  if (snap) out.lastSnapshotTime = snap;
  const oldest = minIso(reps.map((r) => r.window.oldest));
  const newest = maxIso(reps.map((r) => r.window.newest));
  if (oldest) out.windowOldest = oldest;
  if (newest) out.windowNewest = newest;
  const errors = [
    ...(db.lastError ? [`database: ${db.lastError.message}`] : []),
    ...reps.filter((r) => r.lastError).map((r) => `destination ${r.name}: ${r.lastError?.message}`),
    ...reps.flatMap((r) =>
      r.fenced ? [fencedMessage(r.name, r.location, r.fenced.holder, r.fenced.lease)] : [],
    ),
  ];
  const fenced = reps.flatMap((r) =>
    r.fenced
      ? [`destination ${r.name}: ${r.fenced.holder}${r.fenced.lease ? ` (Lease ${r.fenced.lease})` : ""}`]
      : [],
  );
  if (fenced.length > 0) out.fencedBy = fenced.join("; ");
  if (db.access) {
    const who = doc.runAs
      ? `uid ${doc.runAs.uid} gid ${doc.runAs.gid} groups ${doc.runAs.groups.join(",") || "none"}`
      : "an unknown user";
    const op = db.access.need === "read and write" ? "read and write" : "create files in";
    errors.unshift(
      permissionMessage("the replicator", { code: db.access.code, op, path: db.access.path }, who),
    );
    out.reason = "PermissionDenied";
  } else if (fenced.length > 0) {
    out.reason = "WriterConflict";
  } else if (errors.length > 0) {
    out.reason = "ReplicationError";
  }
  if (errors.length > 0) out.lastError = errors.join("; ").slice(0, 2048);
  return out;
}

/** The facts that combine over pods or databases. */
type Facts = Pick<
  PodReplicationStatus,
  "generation" | "lagSeconds" | "lastSyncTime" | "lastSnapshotTime" | "windowOldest" | "windowNewest"
>;

/**
 * Facts over several pods (or one pod's databases): the first generation, the worst lag, the oldest
 * sync and newest snapshot (each only when every one has one), and the window all of them reach.
 */
function combine(items: readonly Facts[]): Facts {
  const out: Facts = {};
  const gen = items.find((p) => p.generation)?.generation;
  if (gen) out.generation = gen;
  const lags = items.map((p) => p.lagSeconds).filter((x): x is number => x !== undefined);
  if (lags.length > 0) out.lagSeconds = Math.max(...lags);
  const syncs = items.map((p) => p.lastSyncTime);
  if (items.length > 0 && !syncs.includes(undefined)) out.lastSyncTime = minIso(syncs);
  const snaps = items.map((p) => p.lastSnapshotTime);
  if (items.length > 0 && !snaps.includes(undefined)) out.lastSnapshotTime = minIso(snaps);
  const olds = items.map((p) => p.windowOldest);
  const news = items.map((p) => p.windowNewest);
  if (items.length > 0 && !olds.includes(undefined) && !news.includes(undefined)) {
    const o = maxIso(olds);
    const n = minIso(news);
    if (o && n && o <= n) {
      out.windowOldest = o;
      out.windowNewest = n;
    }
  }
  return out;
}

/**
 * The top-level facts over the pods (combine), and with `spec.databases` each database's over the
 * pods that report it.
 */
export function aggregate(pods: PodReplicationStatus[]): Partial<SqliteReplicaStatus> {
  const out: Partial<SqliteReplicaStatus> = combine(pods);
  const names = [...new Set(pods.flatMap((p) => (p.databases ?? []).map((d) => d.name)))];
  if (names.length > 0) {
    out.databases = names.map((name) => ({
      name,
      ...combine(pods.map((p) => p.databases?.find((d) => d.name === name) ?? {})),
    }));
  }
  return out;
}
