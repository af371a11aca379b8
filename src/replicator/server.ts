/**
 * The HTTP endpoint of `walship replicate` (config key `addr`), on node:http:
 *
 *   GET /metrics  Prometheus text (metrics.ts; docs/metrics.md)
 *   GET /healthz  200 "ok" while the process serves requests
 *   GET /readyz   200 once every database has a generation and every destination has synced with
 *                 no current error; else 503 naming what is not ready and why
 *   GET /status   the ReplicatorStatus JSON document (src/shared/protocol.ts) the operator reads
 *
 * Everything is computed per request from the live Db and Replica objects; only the destination
 * listing behind the recoverability window is cached (window.ts).
 */
import { stat } from "node:fs/promises";
import path from "node:path";
import { describeError, ErrorCodes, WalshipError } from "../shared/errors.ts";
import {
  type HttpServer,
  healthz,
  JSON_TYPE,
  type Route,
  send,
  serveHttp,
  splitListenAddr,
} from "../shared/http.ts";
import type { Logger } from "../shared/log.ts";
import type {
  CheckpointStatus,
  DatabaseStatus,
  DestinationStatus,
  Probe,
  Readiness,
  ReplicatorStatus,
  RunAs,
} from "../shared/protocol.ts";
import { STATUS_API_VERSION, STATUS_KIND } from "../shared/status-kind.ts";
import { accessProblem } from "./access.ts";
import { describeHolder } from "./claim.ts";
import type { Db } from "./db.ts";
import { volumeSpace } from "./guardrails.ts";
import {
  type DbObservation,
  type Observation,
  type ReplicaObservation,
  ReplicatorMetrics,
} from "./metrics.ts";
import type { ProbeResult } from "./probe.ts";
import type { Replica } from "./replica.ts";
import type { Replication } from "./run.ts";
import type { Pos } from "./types.ts";
import { RecoverabilityWindows } from "./window.ts";

export interface ServerOptions {
  log: Logger;
  /** The walship version, reported in /status and `walship_build_info`. */
  version: string;
  /** Re-list a destination for the recoverability window at most this often. Default 30 s. */
  windowRefreshMs?: number;
  /** How long a request waits for a destination listing before answering from the cache. Default 1 s. */
  windowWaitMs?: number;
}

export type ReplicatorServer = HttpServer;

/** Splits `:9090`, `host:9090` or `[::1]:9090`. An empty host means every interface. */
export function parseListenAddr(addr: string): { host: string | undefined; port: number } {
  const where = splitListenAddr(addr);
  if (!where) {
    throw new WalshipError(
      ErrorCodes.CONFIG,
      `parse listen address: ${JSON.stringify(addr)} is not host:port or :port (e.g. ":9090")`,
      { details: { path: "addr" } },
    );
  }
  return where;
}

export async function startServer(
  addr: string,
  replication: Replication,
  opts: ServerOptions,
): Promise<ReplicatorServer> {
  const where = parseListenAddr(addr);
  const log = opts.log.child({ component: "http" });
  const metrics = new ReplicatorMetrics({ version: opts.version });
  const windows = new RecoverabilityWindows({
    ...(opts.windowRefreshMs !== undefined ? { refreshMs: opts.windowRefreshMs } : {}),
    ...(opts.windowWaitMs !== undefined ? { waitMs: opts.windowWaitMs } : {}),
    log,
  });
  const positions = new PositionMemory();

  const routes: Record<string, Route> = {
    "/healthz": healthz,
    "/readyz": async (res) => {
      const body = readiness(replication, positions);
      send(res, body.ready ? 200 : 503, JSON_TYPE, `${JSON.stringify(body)}\n`);
    },
    "/status": async (res) => {
      const obs = await observe(replication, windows, positions);
      const doc = statusDocument(obs, readiness(replication, positions), opts.version);
      await addAccessProblems(doc, replication);
      send(res, 200, JSON_TYPE, `${JSON.stringify(doc, null, 2)}\n`);
    },
    "/metrics": async (res) => {
      const obs = await observe(replication, windows, positions);
      send(res, 200, metrics.contentType, await metrics.render(obs));
    },
  };

  let server: HttpServer;
  try {
    server = await serveHttp(where, routes, log);
  } catch (err) {
    throw new WalshipError(ErrorCodes.CONFIG, `listen ${addr}: ${describeError(err)}`, {
      cause: err,
      details: { path: "addr" },
    });
  }
  log.info({ addr, url: server.url }, "http server listening");
  return {
    url: server.url,
    close: async () => {
      windows.close();
      metrics.close();
      await server.close();
    },
  };
}

/**
 * The last position each destination reported. A failed sync makes a Replica forget its position
 * until it rebuilds it from the destination; the metrics and the status keep showing the last one.
 */
class PositionMemory {
  #last = new WeakMap<Replica, Pos>();

  get(replica: Replica): Pos | undefined {
    const pos = replica.pos;
    if (pos) this.#last.set(replica, { ...pos });
    return pos ?? this.#last.get(replica);
  }
}

/** Takes one consistent look at every database and destination, with the derived values. */
async function observe(
  replication: Replication,
  windows: RecoverabilityWindows,
  positions: PositionMemory,
): Promise<Observation> {
  const now = Date.now();
  const dbs: DbObservation[] = await Promise.all(
    replication.dbs.map(async (db) => ({
      db,
      volume: await volumeSpace(path.dirname(db.path)),
      walSizeBytes: await fileSize(db.walPath),
      replicas: await Promise.all(
        replication.replicas
          .filter((r) => r.db === db)
          .map(async (replica): Promise<ReplicaObservation> => {
            const status = replica.status();
            const pos = positions.get(replica);
            const oldestPending = status.oldestPendingAt?.getTime();
            return {
              replica,
              status,
              pos,
              lagSeconds: oldestPending === undefined ? 0 : Math.max(0, now - oldestPending) / 1000,
              pendingBytes: await pendingBytes(db, pos),
              window: await windows.get(replica, now),
              up: status.lastSyncAt !== undefined && status.lastError === undefined,
              probe: replication.probes.find((p) => p.db === db.path && p.name === replica.name)?.result,
            };
          }),
      ),
    })),
  );
  return { now, dbs };
}

/**
 * Shadow WAL bytes between a destination's position and the database's committed end. With no
 * position in the current generation, every shadow byte of the generation still on disk counts (an
 * upper bound until the destination has rebuilt its position).
 */
export async function pendingBytes(db: Db, pos: Pos | undefined): Promise<number> {
  const end = db.pos();
  if (!end) return 0;
  let from: { index: number; offset: number };
  if (pos && pos.generation === end.generation) {
    from = pos;
  } else {
    const first = (await db.shadowIndexes(end.generation))[0];
    from = { index: first ?? end.index, offset: 0 };
  }
  let total = 0;
  for (let index = from.index; index <= end.index; index++) {
    const size = index === end.index ? end.offset : await fileSize(db.shadowWalPath(end.generation, index));
    total += Math.max(0, size - (index === from.index ? from.offset : 0));
  }
  return total;
}

function fileSize(file: string): Promise<number> {
  return stat(file).then(
    (s) => s.size,
    () => 0,
  );
}

/** Ready once every database has a generation and every destination has synced with no current error. */
function readiness(replication: Replication, positions: PositionMemory): Readiness {
  const notReady: Readiness["notReady"] = [];
  for (const db of replication.dbs) {
    if (!db.generation) {
      notReady.push({
        db: db.path,
        reason: db.lastError ? `no generation yet: ${db.lastError}` : "no generation yet",
      });
    }
  }
  for (const replica of replication.replicas) {
    const status = replica.status();
    // Ready once synced at least once. A later failure shows in /status and the metrics but does not
    // flip readiness: as the pod's native sidecar, a storage blip would otherwise take the app out of
    // its Service.
    let reason: string | undefined;
    if (!status.lastSyncAt || !positions.get(replica)) {
      reason = status.lastError ? `not synced yet: ${status.lastError}` : "not synced yet";
    }
    if (status.fencedBy)
      reason = `fenced: another writer holds it: ${describeHolder(status.fencedBy.holder)}`;
    if (reason) notReady.push({ db: replica.db.path, replica: replica.name, reason });
  }
  return { ready: notReady.length === 0, notReady };
}

function statusDocument(obs: Observation, ready: Readiness, version: string): ReplicatorStatus {
  const iso = (d: Date | undefined) => d?.toISOString();
  const databases = obs.dbs.map(({ db, replicas, volume, walSizeBytes }): DatabaseStatus => {
    const pos = db.pos();
    return {
      path: db.path,
      ready: db.generation !== undefined,
      ...(db.generation ? { generation: db.generation } : {}),
      ...(pos ? { position: pos } : {}),
      ...(db.walReadAt ? { walReadAt: db.walReadAt.toISOString() } : {}),
      ...(db.pageSize > 0 ? { pageSize: db.pageSize } : {}),
      sizeBytes: db.metrics.dbSize,
      walSizeBytes: walSizeBytes ?? db.metrics.walSize,
      ...(db.lastError ? { lastError: { message: db.lastError } } : {}),
      ...(pos ? { walLiveBytes: pos.offset } : {}),
      ...(volume ? { volume: { freeBytes: volume.freeBytes, totalBytes: volume.totalBytes } } : {}),
      checkpoint: checkpointStatus(db),
      replicas: replicas.map((r): DestinationStatus => {
        const s = r.status;
        const notReady = ready.notReady.some((n) => n.db === db.path && n.replica === s.name);
        return {
          name: s.name,
          type: s.type,
          location: s.location,
          ready: !notReady,
          ...(r.pos ? { generation: r.pos.generation, position: r.pos } : {}),
          lagSeconds: r.lagSeconds,
          pendingTransactions: s.pendingCommits,
          pendingBytes: r.pendingBytes,
          ...(s.lastSyncAt ? { lastSyncAt: iso(s.lastSyncAt) } : {}),
          ...(s.lastSnapshotAt
            ? {
                lastSnapshot: {
                  at: s.lastSnapshotAt.toISOString(),
                  ...(s.lastSnapshotIndex !== undefined ? { index: s.lastSnapshotIndex } : {}),
                },
              }
            : {}),
          window: {
            ...(r.window.oldest ? { oldest: iso(r.window.oldest) } : {}),
            ...(r.window.newest ? { newest: iso(r.window.newest) } : {}),
          },
          syncCount: r.replica.metrics.syncCount,
          syncErrorCount: r.replica.metrics.syncErrorCount,
          ...(s.lastError
            ? { lastError: { message: s.lastError, ...(s.lastErrorAt ? { at: iso(s.lastErrorAt) } : {}) } }
            : {}),
          ...(s.lastValidation
            ? {
                validation: {
                  outcome: s.lastValidation.outcome,
                  at: s.lastValidation.at.toISOString(),
                  ...(s.lastValidation.pos ? { position: s.lastValidation.pos } : {}),
                  ...(s.lastValidation.message ? { message: s.lastValidation.message } : {}),
                  okCount: r.replica.metrics.validationOk,
                  errorCount: r.replica.metrics.validationError,
                },
              }
            : {}),
          ...(r.probe ? { probe: probeStatus(r.probe) } : {}),
          ...(s.snapshotRefused
            ? { snapshotRefused: { message: s.snapshotRefused.message, at: iso(s.snapshotRefused.at) } }
            : {}),
          ...(s.fencedBy
            ? {
                fenced: {
                  holder: describeHolder(s.fencedBy.holder),
                  ...(s.fencedBy.holder.pod ? { pod: s.fencedBy.holder.pod } : {}),
                  ...(s.fencedBy.holder.sqliteReplica
                    ? { sqliteReplica: s.fencedBy.holder.sqliteReplica }
                    : {}),
                  expiresAt: s.fencedBy.expiresAt.toISOString(),
                  since: s.fencedBy.since.toISOString(),
                  ...(s.fencedBy.lease ? { lease: s.fencedBy.lease } : {}),
                },
              }
            : {}),
          ...(s.lease
            ? {
                lease: {
                  name: s.lease.ref,
                  held: s.lease.held,
                  ...(s.lease.error ? { error: s.lease.error } : {}),
                },
              }
            : {}),
        };
      }),
    };
  });
  return {
    apiVersion: STATUS_API_VERSION,
    kind: STATUS_KIND,
    version,
    time: new Date(obs.now).toISOString(),
    ready: ready.ready,
    databases,
  };
}

function probeStatus(p: ProbeResult): Probe {
  return {
    outcome: p.outcome,
    at: p.at.toISOString(),
    ...(p.step ? { step: p.step } : {}),
    ...(p.message ? { message: p.message } : {}),
    ...(p.hint ? { hint: p.hint } : {}),
  };
}

/** The checkpoints' health for /status: the failure streak, its newest error, the last success. */
function checkpointStatus(db: Db): CheckpointStatus {
  const h = db.checkpointHealth;
  return {
    consecutiveFailures: h.consecutiveFailures,
    ...(h.lastError
      ? { lastError: { message: h.lastError, ...(h.lastErrorAt ? { at: h.lastErrorAt.toISOString() } : {}) } }
      : {}),
    ...(h.lastSuccessAt ? { lastSuccessAt: h.lastSuccessAt.toISOString() } : {}),
  };
}

/** The process's uid, gid and groups, where the platform has them. */
export function runAs(): RunAs | undefined {
  if (!process.getuid || !process.getgid) return undefined;
  return { uid: process.getuid(), gid: process.getgid(), groups: process.getgroups?.() ?? [] };
}

/** Adds `runAs`, and `access` to each database that is failing or has no generation yet. */
async function addAccessProblems(doc: ReplicatorStatus, replication: Replication): Promise<void> {
  const who = runAs();
  if (who) doc.runAs = who;
  await Promise.all(
    doc.databases.map(async (d) => {
      if (d.ready && !d.lastError) return;
      const db = replication.dbs.find((x) => x.path === d.path);
      const problem = db ? accessProblem(db.path, db.metaPath) : undefined;
      if (problem) d.access = problem;
    }),
  );
}
