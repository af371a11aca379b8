/**
 * `kubectl walship wait NAME`: waits until every commit made before it started is on every
 * destination. For each pod, through the API server's pod proxy, it reads the sidecar's /status once
 * and keeps that document's `time` (the sidecar's own clock), then reads it again until each database
 * has a `walReadAt` later than that time and no destination with a transaction pending: the rule
 * docs/metrics.md gives ("Is everything committed up to now on the destinations?").
 */
import { describeError, ErrorCodes, WalshipError } from "../shared/errors.ts";
import type { ReplicatorStatus } from "../shared/protocol.ts";
import { pickDatabase } from "./args.ts";
import { type PluginKube, runsReplicator } from "./kube.ts";

/**
 * What keeps `doc` from showing every commit made before `since` (an ISO time from the same sidecar)
 * on every destination of its databases (of the one at `dbPath` when given). Empty when nothing does.
 */
export function outstanding(doc: ReplicatorStatus, since: string, dbPath?: string): string[] {
  const dbs = dbPath === undefined ? doc.databases : doc.databases.filter((d) => d.path === dbPath);
  if (dbs.length === 0) {
    return [
      dbPath === undefined ? "the sidecar reports no database" : `the sidecar does not replicate ${dbPath}`,
    ];
  }
  const out: string[] = [];
  const many = doc.databases.length > 1;
  for (const db of dbs) {
    const where = (what: string) => (many ? `${db.path}: ${what}` : what);
    if (db.walReadAt === undefined || Date.parse(db.walReadAt) <= Date.parse(since)) {
      const why = db.lastError ? `: ${db.lastError.message}` : "";
      out.push(where(`the WAL has not been read since ${since}${why}`));
    }
    for (const r of db.replicas) {
      if (r.pendingTransactions === 0) continue;
      const why = r.lastError ? ` (${r.lastError.message})` : "";
      out.push(where(`${r.name}: ${r.pendingTransactions} transaction(s) pending${why}`));
    }
  }
  return out;
}

export interface PodWait {
  pod: string;
  /** The sidecar's time when first read: every commit made before it is what is waited for. */
  since?: string;
  /** What was still outstanding at the last reading (or why the sidecar could not be read). */
  outstanding: string[];
  done: boolean;
}

/**
 * Waits for every running pod of SqliteReplica `name` (or only `pod`) until its sidecar shows every
 * commit made before the first reading on every destination. `progress` gets a line each time a pod
 * is done. Resolves with each pod's result; throws ABORTED with what is outstanding when
 * `timeoutMs` (0: never) passes or the signal aborts.
 */
export async function waitReplicated(
  kube: PluginKube,
  name: string,
  opts: {
    pod?: string;
    /** `--database`: only this database, by its name in spec.databases. */
    database?: string;
    timeoutMs: number;
    signal?: AbortSignal;
    pollMs?: number;
    progress?: (line: string) => void;
  },
): Promise<PodWait[]> {
  const replica = await kube.getReplica(name);
  const port = replica.spec?.sidecar?.metricsPort ?? 9090;
  const dbPath =
    opts.database !== undefined && replica.spec
      ? pickDatabase(replica.spec, name, opts.database).path
      : undefined;
  const workload = await kube.readWorkload(replica);
  let pods = workload.pods.filter(runsReplicator);
  if (opts.pod !== undefined) {
    pods = pods.filter((p) => p.metadata?.name === opts.pod);
    if (pods.length === 0) {
      throw new WalshipError(
        ErrorCodes.NOT_FOUND,
        `wait ${name}: pod ${opts.pod} is not one of its pods running the replicator`,
      );
    }
  }
  if (pods.length === 0) {
    throw new WalshipError(
      ErrorCodes.NOT_FOUND,
      `wait ${name}: no pod runs the replicator (is the workload scaled to 0, or paused?)`,
    );
  }
  const waits: PodWait[] = pods.map((p) => ({
    pod: p.metadata?.name ?? "",
    outstanding: ["not read yet"],
    done: false,
  }));
  const deadline = opts.timeoutMs > 0 ? Date.now() + opts.timeoutMs : Number.POSITIVE_INFINITY;
  for (;;) {
    await Promise.all(
      waits
        .filter((w) => !w.done)
        .map(async (w) => {
          let doc: ReplicatorStatus;
          try {
            doc = await kube.sidecarStatus(w.pod, port);
          } catch (err) {
            w.outstanding = [`its sidecar cannot be read: ${describeError(err)}`];
            return;
          }
          // The first reading only fixes the time: a commit made just before it may not be read yet.
          if (w.since === undefined) {
            w.since = doc.time;
            w.outstanding = ["not read again yet"];
            return;
          }
          w.outstanding = outstanding(doc, w.since, dbPath);
          if (w.outstanding.length === 0) {
            w.done = true;
            opts.progress?.(`${w.pod}: every commit made before ${w.since} is on every destination`);
          }
        }),
    );
    if (waits.every((w) => w.done)) return waits;
    if (opts.signal?.aborted || Date.now() > deadline) {
      const left = waits
        .filter((w) => !w.done)
        .map((w) => `${w.pod}: ${w.outstanding.join("; ")}`)
        .join("; ");
      throw new WalshipError(
        ErrorCodes.ABORTED,
        `wait ${name}: ${opts.signal?.aborted ? "interrupted" : "not replicated in time"}: ${left}`,
      );
    }
    await new Promise((r) => setTimeout(r, opts.pollMs ?? 500));
  }
}
