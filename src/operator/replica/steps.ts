/**
 * The ensure steps of a SqliteReplica's reconcile that talk to nothing but their arguments and the
 * API server: each passes, or throws `Blocked` with the reason and message of the Injected=False
 * condition (reconcile.ts writes it).
 */
import {
  databasesOf,
  describeWorkload,
  type SqliteReplicaSpec,
  type WorkloadRef,
  workloadOf,
} from "../../api/v1alpha1/index.ts";
import { describeError } from "../../shared/errors.ts";
import { isStatus, type KubeClient } from "../kube/client.ts";
import type { EventRecorder } from "../kube/events.ts";
import type { KubeObject, Secret } from "../kube/types.ts";
import { destinationCredentials } from "../specs/credentials.ts";
import { FIELD_MANAGER, SQLITE_REPLICA_LABEL } from "../specs/names.ts";
import { removalPatch, specWorkload, workloadField } from "../specs/statefulset.ts";
import { type WorkloadObject, workloadPath } from "../specs/workload.ts";
import { Blocked, RETRY_BLOCKED_MS } from "./blocked.ts";
import { asSqliteReplica } from "./events.ts";

export const stsPath = (ns: string, name: string) => `/apis/apps/v1/namespaces/${ns}/statefulsets/${name}`;

interface ReplicaLike extends KubeObject {
  spec?: unknown;
}

const sameWorkload = (a: WorkloadRef | undefined, b: WorkloadRef) => a?.kind === b.kind && a.name === b.name;

/**
 * Ensures no other SqliteReplica replicates this workload. The one already injected (named by the
 * pod template's annotation) keeps it; otherwise the oldest (then the first by name) wins. Pure.
 */
export function ensureNoConflict(
  cr: ReplicaLike,
  others: readonly ReplicaLike[],
  sts: WorkloadObject,
  spec: SqliteReplicaSpec,
): void {
  const ref = specWorkload(spec);
  const ns = cr.metadata?.namespace;
  const name = cr.metadata?.name;
  const owner = sts.spec?.template?.metadata?.annotations?.[SQLITE_REPLICA_LABEL];
  const created = (o: ReplicaLike) => String(o.metadata?.creationTimestamp ?? "");
  const rivals = others.filter(
    (o) =>
      o.metadata?.namespace === ns &&
      o.metadata?.name !== name &&
      !o.metadata?.deletionTimestamp &&
      sameWorkload(workloadOf(o.spec), ref),
  );
  if (rivals.length === 0) return;
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
    const theirs = rawDatabasePaths(winner.spec);
    const ours = new Set(databasesOf(spec).map((d) => d.path));
    const same = theirs.some((p) => ours.has(p))
      ? "the same database"
      : `database${theirs.length === 1 ? "" : "s"} ${theirs.join(", ")}`;
    throw new Blocked(
      "Conflict",
      `${workloadField(spec)}: ${describeWorkload(ref)} is already replicated by SqliteReplica ` +
        `${winner.metadata?.name} (${same}); one SqliteReplica per ${ref.kind}: list several ` +
        "databases in its spec.databases",
      RETRY_BLOCKED_MS,
    );
  }
}

/** The database paths of a raw (unvalidated) SqliteReplica spec. */
function rawDatabasePaths(spec: unknown): string[] {
  const s = spec as { database?: { path?: unknown }; databases?: Array<{ path?: unknown }> } | undefined;
  const all = Array.isArray(s?.databases) ? s.databases : [s?.database];
  return all.map((d) => d?.path).filter((p): p is string => typeof p === "string");
}

/** Ensures every Secret the destinations reference exists in `ns` with its keys. */
export async function ensureSecrets(client: KubeClient, spec: SqliteReplicaSpec, ns: string): Promise<void> {
  const cache = new Map<string, Secret | null>();
  for (const [i, d] of spec.destinations.entries()) {
    for (const { field, ref } of destinationCredentials(d)) {
      let secret = cache.get(ref.name);
      if (secret === undefined) {
        try {
          secret = await client.get<Secret>(`/api/v1/namespaces/${ns}/secrets/${ref.name}`);
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

/** Ensures the workload's pod template carries the injection (server-side apply of `patch`). */
export async function ensureInjected(
  client: KubeClient,
  sts: WorkloadObject,
  ns: string,
  spec: SqliteReplicaSpec,
  patch: WorkloadObject,
): Promise<WorkloadObject | undefined> {
  const ref = specWorkload(spec);
  try {
    return await client.apply<WorkloadObject>(workloadPath(ns, ref), patch, FIELD_MANAGER, false);
  } catch (err) {
    if (isStatus(err, 409)) {
      throw new Blocked(
        "FieldConflict",
        `${ref.kind} ${sts.metadata?.name}: ${describeError(err)}`,
        RETRY_BLOCKED_MS,
      );
    }
    throw err;
  }
}

/** Removes exactly what Walship added to the workload, if this SqliteReplica added it. */
export async function removeInjection(
  client: KubeClient,
  events: EventRecorder,
  cr: ReplicaLike,
): Promise<void> {
  const ns = cr.metadata?.namespace ?? "";
  const name = cr.metadata?.name ?? "";
  const ref = workloadOf(cr.spec);
  if (!ref) return;
  try {
    const sts = await client.get<WorkloadObject>(workloadPath(ns, ref));
    if (sts.spec?.template?.metadata?.annotations?.[SQLITE_REPLICA_LABEL] !== name) return;
    await client.apply(
      workloadPath(ns, ref),
      removalPatch({ name: ref.name, namespace: ns, kind: ref.kind }),
      FIELD_MANAGER,
      true,
    );
    await events
      .record(asSqliteReplica(cr), {
        type: "Normal",
        reason: "Removed",
        message: `removed the replicator from ${describeWorkload(ref)}`,
      })
      .catch(() => undefined);
  } catch (err) {
    if (!isStatus(err, 404)) throw err;
  }
}
