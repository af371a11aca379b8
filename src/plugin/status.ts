/**
 * `kubectl walship status NAME`: the SqliteReplica at a glance. The operator's view (phase,
 * conditions, per-pod facts on its status) merged with each pod sidecar's own /status, read through
 * the API server's pod proxy, which breaks the facts down per destination; recent Events and
 * SqliteRestores. `buildReport` and `formatReport` are pure; `collect` does the reading.
 */
import {
  type Destination,
  type DrillStatus,
  databasesOf,
  PAUSED_ANNOTATION,
  type PodReplicationStatus,
  type WorkloadRef,
  workloadOf,
} from "../api/v1alpha1/index.ts";
import { describeError } from "../shared/errors.ts";
import type { ReplicatorStatus } from "../shared/protocol.ts";
import { drillTable } from "./drill.ts";
import { ago, bool, bytes, cell, indentTable, isoSeconds, lag, windowAges } from "./format.ts";
import {
  type Event,
  eventTime,
  type PluginKube,
  type Pod,
  type ReplicaObject,
  type RestoreObject,
  runsReplicator,
} from "./kube.ts";
import { type ProbeReport, probeFailureLines, probeReport, selfTestCell } from "./probes.ts";

/** How many Events and SqliteRestores the report keeps (the newest). */
export const RECENT_EVENTS = 10;
export const RECENT_RESTORES = 5;

export interface DestinationReport {
  /** With spec.databases: the database (its name) this destination entry replicates. */
  database?: string;
  name: string;
  type: string;
  location: string;
  ready: boolean;
  generation?: string;
  /** generation/index(hex8):offset */
  position?: string;
  lagSeconds: number;
  pendingBytes: number;
  pendingTransactions: number;
  lastSyncTime?: string;
  lastSnapshotTime?: string;
  windowOldest?: string;
  windowNewest?: string;
  lastError?: string;
  /** The last destination self-test (probes.ts); absent before the first or without one. */
  probe?: ProbeReport;
}

/** The replication facts the operator reports on its status, per pod and for the whole SqliteReplica. */
const FACT_KEYS = [
  "generation",
  "lagSeconds",
  "lastSyncTime",
  "lastSnapshotTime",
  "windowOldest",
  "windowNewest",
] as const;
type Facts = Partial<Pick<PodReplicationStatus, (typeof FACT_KEYS)[number]>>;

export interface PodReport extends Facts {
  name: string;
  /** The pod's phase (Running, Pending, ...). */
  phase: string;
  /** The operator's verdict: every destination synced, no current error. */
  ready: boolean;
  reason?: string;
  lastError?: string;
  destinations: DestinationReport[];
  /** Why the sidecar's own /status could not be read (the destinations are then unknown). */
  sidecarError?: string;
  /** The self-tests as the operator last read them (DestinationReachable). */
  probes?: PodReplicationStatus["probes"];
}

export interface ConditionReport {
  type: string;
  status: string;
  reason: string;
  message: string;
  lastTransitionTime?: string;
}

export interface EventReport {
  type: string;
  reason: string;
  message: string;
  count: number;
  lastSeen: string;
}

export interface RestoreReport {
  name: string;
  mode: string;
  phase: string;
  target: string;
  restoredTo?: string;
  created: string;
}

/** With spec.databases: one database over all pods, as the operator reports it. */
export interface DatabaseReport extends Facts {
  name: string;
  path: string;
}

/** The `-o json` document. */
export interface StatusReport extends Facts {
  name: string;
  namespace: string;
  phase: string;
  paused: boolean;
  /** The StatefulSet or Deployment whose pods hold the database; absent when the spec names none. */
  workload?: WorkloadRef;
  workloadFound: boolean;
  /** The database's path; with spec.databases, their paths joined by ", " (each in `databases`). */
  database: string;
  databases?: DatabaseReport[];
  destinations: Array<{ name: string; type: string }>;
  pods: PodReport[];
  conditions: ConditionReport[];
  events: EventReport[];
  restores: RestoreReport[];
  /** Each destination's last restore drill (status.drills), when drills ran. */
  drills?: DrillStatus[];
}

/** One pod as read: the pod object, and its sidecar's document or why there is none. */
export interface PodInput {
  pod: Pod;
  sidecar?: ReplicatorStatus;
  sidecarError?: string;
}

export interface StatusInput {
  replica: ReplicaObject;
  workloadFound: boolean;
  pods: PodInput[];
  events: Event[];
  restores: RestoreObject[];
}

function position(p: { generation: string; index: number; offset: number } | undefined): string | undefined {
  return p ? `${p.generation}/${p.index.toString(16).padStart(8, "0")}:${p.offset}` : undefined;
}

function destinationsOf(doc: ReplicatorStatus | undefined, dbPath: string): DestinationReport[] {
  const db = doc?.databases.find((d) => d.path === dbPath);
  return (db?.replicas ?? []).map((r) => ({
    name: r.name,
    type: r.type,
    location: r.location,
    ready: r.ready,
    ...(r.generation ? { generation: r.generation } : {}),
    ...(r.position ? { position: position(r.position) } : {}),
    lagSeconds: r.lagSeconds,
    pendingBytes: r.pendingBytes,
    pendingTransactions: r.pendingTransactions,
    ...(r.lastSyncAt ? { lastSyncTime: r.lastSyncAt } : {}),
    ...(r.lastSnapshot ? { lastSnapshotTime: r.lastSnapshot.at } : {}),
    ...(r.window.oldest ? { windowOldest: r.window.oldest } : {}),
    ...(r.window.newest ? { windowNewest: r.window.newest } : {}),
    ...(r.lastError ? { lastError: r.lastError.message } : {}),
    ...(r.probe ? { probe: probeReport(r.probe) } : {}),
  }));
}

export function buildReport(input: StatusInput): StatusReport {
  const r = input.replica;
  const spec = r.spec;
  const st = r.status ?? {};
  const dbs = spec ? databasesOf(spec) : [];
  const several = spec?.databases !== undefined;
  const workload = workloadOf(spec);
  const byPod = new Map((st.pods ?? []).map((p) => [p.name, p]));
  const pods: PodReport[] = input.pods.map(({ pod, sidecar, sidecarError }) => {
    const name = pod.metadata?.name ?? "";
    const op = byPod.get(name);
    const out: PodReport = {
      name,
      phase: pod.status?.phase ?? "Unknown",
      ready: op?.ready ?? false,
      ...(op ? pick(op, [...FACT_KEYS, "reason", "lastError", "probes"]) : {}),
      destinations: dbs.flatMap((db) =>
        destinationsOf(sidecar, db.path).map((d) => (several ? { database: db.name ?? db.path, ...d } : d)),
      ),
    };
    if (sidecarError) out.sidecarError = sidecarError;
    return out;
  });
  const events = input.events.slice(-RECENT_EVENTS).map((e) => ({
    type: e.type ?? "",
    reason: e.reason ?? "",
    message: e.message ?? "",
    count: e.count ?? 1,
    lastSeen: eventTime(e),
  }));
  const restores = input.restores.slice(-RECENT_RESTORES).map((x) => ({
    name: x.metadata?.name ?? "",
    mode: x.spec?.mode ?? "NewClaim",
    phase: x.status?.phase ?? "Pending",
    target: x.status?.target ?? "latest",
    ...(x.status?.restored?.position ? { restoredTo: x.status.restored.position } : {}),
    created: String(x.metadata?.creationTimestamp ?? ""),
  }));
  return {
    name: r.metadata?.name ?? "",
    namespace: r.metadata?.namespace ?? "",
    phase: st.phase ?? "Pending",
    paused: r.metadata?.annotations?.[PAUSED_ANNOTATION] === "true",
    ...(workload ? { workload } : {}),
    workloadFound: input.workloadFound,
    database: dbs.map((d) => d.path).join(", "),
    ...(several
      ? {
          databases: dbs.map((db) => ({
            name: db.name ?? db.path,
            path: db.path,
            ...factsOf(st.databases?.find((x) => x.name === db.name)),
          })),
        }
      : {}),
    destinations: (spec?.destinations ?? []).map((d) => ({ name: d.name, type: destinationType(d) })),
    ...pick(st, [
      "generation",
      "lagSeconds",
      "lastSyncTime",
      "lastSnapshotTime",
      "windowOldest",
      "windowNewest",
    ]),
    pods,
    conditions: (st.conditions ?? []).map((c) => ({
      type: c.type,
      status: c.status,
      reason: c.reason,
      message: c.message,
      ...(c.lastTransitionTime ? { lastTransitionTime: c.lastTransitionTime } : {}),
    })),
    events,
    restores,
    ...(st.drills?.length ? { drills: st.drills } : {}),
  };
}

const DESTINATION_TYPES = ["s3", "file", "sftp", "gcs", "abs"] as const;

/** Which kind of destination the spec sets: s3, file, sftp, gcs or abs. */
export function destinationType(d: Destination): string {
  return DESTINATION_TYPES.find((t) => d[t] !== undefined) ?? "unknown";
}

function factsOf(d: Facts | undefined): Facts {
  return d ? pick(d, [...FACT_KEYS]) : {};
}

function pick<T extends object, K extends keyof T>(o: T, keys: K[]): Partial<Pick<T, K>> {
  const out: Partial<Pick<T, K>> = {};
  for (const k of keys) if (o[k] !== undefined) out[k] = o[k];
  return out;
}

/** The report for people: a header, then pods, destinations, conditions, Events, restores. */
export function formatReport(rep: StatusReport, now: Date): string {
  const ready = rep.conditions.find((c) => c.type === "Ready");
  const out: string[] = [];
  const line = (k: string, v: string) => out.push(`${`${k}:`.padEnd(15)}${v}`);
  line("SqliteReplica", `${rep.namespace}/${rep.name}`);
  line(
    "Phase",
    `${rep.phase}${ready ? ` (Ready ${ready.status}: ${ready.reason})` : ""}${rep.paused ? ", paused" : ""}`,
  );
  line(
    rep.workload?.kind ?? "Workload",
    `${rep.workload?.name ?? "-"}${rep.workloadFound ? "" : " (not found)"}, ` +
      (rep.databases
        ? `databases ${rep.databases.map((d) => `${d.name} (${d.path})`).join(", ")}`
        : `database ${rep.database}`),
  );
  line("Destinations", rep.destinations.map((d) => `${d.name} (${d.type})`).join(", ") || "-");
  line(
    "Restorable",
    rep.windowOldest && rep.windowNewest
      ? `${isoSeconds(rep.windowOldest)} .. ${isoSeconds(rep.windowNewest)} (every pod)`
      : "nothing yet",
  );
  line(
    "Replication",
    `lag ${lag(rep.lagSeconds)}, last sync ${ago(rep.lastSyncTime, now)}, last snapshot ${ago(rep.lastSnapshotTime, now)}`,
  );
  if (rep.databases) {
    out.push("", "Databases (every pod):");
    out.push(
      indentTable(
        ["DATABASE", "PATH", "GENERATION", "LAG", "LAST SYNC", "LAST SNAPSHOT", "RESTORABLE"],
        rep.databases.map((d) => [
          d.name,
          d.path,
          d.generation ?? "-",
          lag(d.lagSeconds),
          ago(d.lastSyncTime, now),
          ago(d.lastSnapshotTime, now),
          windowAges(d.windowOldest, d.windowNewest, now),
        ]),
      ),
    );
  }
  out.push("", "Pods:");
  if (rep.pods.length === 0) out.push("  (none)");
  else {
    out.push(
      indentTable(
        ["POD", "PHASE", "READY", "GENERATION", "LAG", "LAST SYNC", "LAST SNAPSHOT", "RESTORABLE", "PROBLEM"],
        rep.pods.map((p) => [
          p.name,
          p.phase,
          bool(p.ready),
          p.generation ?? "-",
          lag(p.lagSeconds),
          ago(p.lastSyncTime, now),
          ago(p.lastSnapshotTime, now),
          windowAges(p.windowOldest, p.windowNewest, now),
          cell(p.lastError ? `${p.reason ?? "Error"}: ${p.lastError}` : "", 60),
        ]),
      ),
    );
  }
  const dests = rep.pods.flatMap((p) => p.destinations.map((d) => [p.name, d] as const));
  const unread = rep.pods.filter((p) => p.sidecarError);
  const probed = dests.some(([, d]) => d.probe !== undefined);
  out.push("", "Destinations (from each pod's sidecar):");
  if (dests.length > 0) {
    out.push(
      indentTable(
        [
          "POD",
          ...(rep.databases ? ["DATABASE"] : []),
          "DESTINATION",
          "READY",
          "POSITION",
          "LAG",
          "PENDING",
          "LAST SYNC",
          "LAST SNAPSHOT",
          "RESTORABLE",
          ...(probed ? ["SELF-TEST"] : []),
          "ERROR",
        ],
        dests.map(([pod, d]) => [
          pod,
          ...(rep.databases ? [d.database ?? "-"] : []),
          d.name,
          bool(d.ready),
          d.position ?? "-",
          lag(d.lagSeconds),
          `${bytes(d.pendingBytes)}/${d.pendingTransactions} tx`,
          ago(d.lastSyncTime, now),
          ago(d.lastSnapshotTime, now),
          windowAges(d.windowOldest, d.windowNewest, now),
          ...(probed ? [selfTestCell(d.probe)] : []),
          cell(d.lastError, 60),
        ]),
      ),
    );
  } else if (unread.length === 0) out.push("  (no pod runs the sidecar)");
  for (const p of unread) out.push(`  ${p.name}: not read: ${cell(p.sidecarError, 100)}`);
  out.push(...probeFailureLines(rep.pods));
  out.push("", "Conditions:");
  out.push(
    rep.conditions.length === 0
      ? "  (none yet)"
      : indentTable(
          ["TYPE", "STATUS", "REASON", "SINCE", "MESSAGE"],
          rep.conditions.map((c) => [
            c.type,
            c.status,
            c.reason,
            ago(c.lastTransitionTime, now),
            cell(c.message, 90),
          ]),
        ),
  );
  out.push("", "Events:");
  out.push(
    rep.events.length === 0
      ? "  (none)"
      : indentTable(
          ["LAST SEEN", "TYPE", "REASON", "MESSAGE"],
          rep.events.map((e) => [
            ago(e.lastSeen, now),
            e.type,
            e.count > 1 ? `${e.reason} (x${e.count})` : e.reason,
            cell(e.message, 90),
          ]),
        ),
  );
  if (rep.drills) out.push("", "Drills:", drillTable(rep.drills, now));
  if (rep.restores.length > 0) {
    out.push("", "Restores:");
    out.push(
      indentTable(
        ["NAME", "MODE", "PHASE", "TARGET", "RESTORED TO", "AGE"],
        rep.restores.map((x) => [
          x.name,
          x.mode,
          x.phase,
          x.target,
          x.restoredTo ?? "-",
          ago(x.created, now).replace(/ ago$/, ""),
        ]),
      ),
    );
  }
  return out.join("\n");
}

/** Reads everything the report needs; a sidecar that cannot be read is noted, not fatal. */
export async function collect(kube: PluginKube, name: string): Promise<StatusInput> {
  const replica = await kube.getReplica(name);
  const port = replica.spec?.sidecar?.metricsPort ?? 9090;
  const [workload, events, restores] = await Promise.all([
    kube.readWorkload(replica),
    kube.events("SqliteReplica", name),
    kube.restoresOf(name),
  ]);
  const inputs = await Promise.all(
    workload.pods.map(async (pod): Promise<PodInput> => {
      if (!runsReplicator(pod)) return { pod };
      if (pod.status?.phase !== "Running")
        return { pod, sidecarError: `pod is ${pod.status?.phase ?? "Unknown"}` };
      try {
        return { pod, sidecar: await kube.sidecarStatus(pod.metadata?.name ?? "", port) };
      } catch (err) {
        return { pod, sidecarError: describeError(err) };
      }
    }),
  );
  return { replica, workloadFound: workload.found, pods: inputs, events, restores };
}
