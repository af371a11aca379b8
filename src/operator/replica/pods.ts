/**
 * Replication facts per pod, read from each pod's sidecar `GET /status` (schema in
 * shared/protocol.ts), and their aggregation for the SqliteReplica's status. The aggregation is pure.
 */

import type { PodReplicationStatus, SqliteReplicaStatus } from "../../api/v1alpha1/index.ts";
import { type ReplicatorStatus, ReplicatorStatusSchema } from "../../shared/protocol.ts";
import { permissionMessage } from "./failures.ts";

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

/** One pod's facts from its sidecar's document, for the database at `dbPath`. */
export function podFacts(pod: string, doc: ReplicatorStatus, dbPath: string): PodReplicationStatus {
  const db = doc.databases.find((d) => d.path === dbPath) ?? doc.databases[0];
  if (!db) return { name: pod, ready: false, lastError: "the sidecar reports no database" };
  const reps = db.replicas;
  const out: PodReplicationStatus = { name: pod, ready: db.ready && reps.every((r) => r.ready) };
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
  ];
  if (db.access) {
    const who = doc.runAs
      ? `uid ${doc.runAs.uid} gid ${doc.runAs.gid} groups ${doc.runAs.groups.join(",") || "none"}`
      : "an unknown user";
    const op = db.access.need === "read and write" ? "read and write" : "create files in";
    errors.unshift(
      permissionMessage("the replicator", { code: db.access.code, op, path: db.access.path }, who),
    );
    out.reason = "PermissionDenied";
  } else if (errors.length > 0) {
    out.reason = "ReplicationError";
  }
  if (errors.length > 0) out.lastError = errors.join("; ").slice(0, 2048);
  return out;
}

/** The top-level facts: the first pod's generation, the worst lag, the oldest sync, the common window. */
export function aggregate(pods: PodReplicationStatus[]): Partial<SqliteReplicaStatus> {
  const out: Partial<SqliteReplicaStatus> = {};
  const gen = pods.find((p) => p.generation)?.generation;
  if (gen) out.generation = gen;
  const lags = pods.map((p) => p.lagSeconds).filter((x): x is number => x !== undefined);
  if (lags.length > 0) out.lagSeconds = Math.max(...lags);
  const syncs = pods.map((p) => p.lastSyncTime);
  if (pods.length > 0 && !syncs.includes(undefined)) out.lastSyncTime = minIso(syncs);
  const snaps = pods.map((p) => p.lastSnapshotTime);
  if (pods.length > 0 && !snaps.includes(undefined)) out.lastSnapshotTime = minIso(snaps);
  const olds = pods.map((p) => p.windowOldest);
  const news = pods.map((p) => p.windowNewest);
  if (pods.length > 0 && !olds.includes(undefined) && !news.includes(undefined)) {
    const o = maxIso(olds);
    const n = minIso(news);
    if (o && n && o <= n) {
      out.windowOldest = o;
      out.windowNewest = n;
    }
  }
  return out;
}
