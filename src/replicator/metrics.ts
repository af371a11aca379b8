/**
 * Every Prometheus metric of `walship replicate`, declared here and nowhere else (docs/metrics.md
 * lists them). Values are not kept here: at each scrape the server hands over an `Observation` of the
 * live databases and destinations, and each family reads its samples from it.
 *
 * Names and labels follow Litestream v0.3.13 where it has the metric, so existing dashboards and
 * alerts keep working; Litestream's counters carry no `_total` suffix and neither do ours of the same
 * name. What Litestream lacks is named `walship_*`. Node's process and runtime metrics are added
 * (runtime-metrics.ts); the text is written by exposition.ts, without a client library.
 */
import type { CheckpointMode, Db } from "./db.ts";
import { CONTENT_TYPE, type Family, render, type Sample } from "./exposition.ts";
import type { VolumeSpace } from "./guardrails.ts";
import type { ProbeResult } from "./probe.ts";
import type { Replica, ReplicaStatus } from "./replica.ts";
import { RuntimeMetrics } from "./runtime-metrics.ts";
import type { Operation } from "./storage/client.ts";
import type { Pos } from "./types.ts";
import type { Window } from "./window.ts";

/** One destination as seen at a scrape, with the values derived from it. */
export interface ReplicaObservation {
  replica: Replica;
  status: ReplicaStatus;
  /** The position after its last upload (kept across a failed sync), when known. */
  pos: Pos | undefined;
  lagSeconds: number;
  pendingBytes: number;
  window: Window;
  /** The last sync succeeded. */
  up: boolean;
  /** The destination's last self-test, once one has finished. */
  probe?: ProbeResult | undefined;
}

export interface DbObservation {
  db: Db;
  replicas: ReplicaObservation[];
  /** The file system under the database's directory (guardrails.ts); undefined when statfs failed. */
  volume?: VolumeSpace | undefined;
  /** The real WAL's size now (the Db's own figure is from its last successful sync). */
  walSizeBytes?: number;
}

export interface Observation {
  /** Milliseconds since the epoch at which the observation was taken. */
  now: number;
  dbs: DbObservation[];
}

const CHECKPOINT_MODES: readonly CheckpointMode[] = ["PASSIVE", "RESTART", "TRUNCATE"];
/** Litestream's validation outcomes; both series exist from the start, as in v0.3.13. */
const VALIDATION_STATUSES = ["ok", "error"] as const;

export interface ReplicatorMetricsOptions {
  /** The walship version, for `walship_build_info`. */
  version: string;
  /** Add Node's process and runtime metrics (default true). */
  defaultMetrics?: boolean;
}

export class ReplicatorMetrics {
  readonly #families: Family[] = [];
  readonly #runtime: RuntimeMetrics | undefined;
  #obs: Observation = { now: 0, dbs: [] };

  constructor(opts: ReplicatorMetricsOptions) {
    if (opts.defaultMetrics ?? true) this.#runtime = new RuntimeMetrics();
    const dbs = () => this.#obs.dbs;
    const replicas = () => this.#obs.dbs.flatMap((d) => d.replicas.map((r) => ({ d, r })));
    const rl = (d: DbObservation, r: ReplicaObservation) => ({ db: d.db.path, name: r.replica.name });
    const family = (
      name: string,
      help: string,
      type: "counter" | "gauge",
      samples: () => Iterable<Sample>,
    ) => {
      this.#families.push({ name, help, type, samples });
    };

    // Read from the observation at each scrape, so a database or destination that is gone stops
    // being reported; a value that is not known (undefined) is left out.
    const dbGauge = (name: string, help: string, value: (d: DbObservation) => number | undefined) =>
      family(name, help, "gauge", function* () {
        for (const d of dbs()) {
          const v = value(d);
          if (v !== undefined) yield { labels: { db: d.db.path }, value: v };
        }
      });
    const dbCounter = (name: string, help: string, value: (d: DbObservation) => number) =>
      family(name, help, "counter", function* () {
        for (const d of dbs()) yield { labels: { db: d.db.path }, value: value(d) };
      });
    const checkpointCounter = (
      name: string,
      help: string,
      value: (c: { count: number; errors: number; seconds: number }) => number,
    ) =>
      family(name, help, "counter", function* () {
        for (const d of dbs()) {
          for (const mode of CHECKPOINT_MODES) {
            yield { labels: { db: d.db.path, mode }, value: value(d.db.metrics.checkpoints[mode]) };
          }
        }
      });
    const replicaGauge = (
      name: string,
      help: string,
      value: (r: ReplicaObservation, d: DbObservation) => number | undefined,
    ) =>
      family(name, help, "gauge", function* () {
        for (const { d, r } of replicas()) {
          const v = value(r, d);
          if (v !== undefined) yield { labels: rl(d, r), value: v };
        }
      });
    const replicaCounter = (name: string, help: string, value: (r: ReplicaObservation) => number) =>
      family(name, help, "counter", function* () {
        for (const { d, r } of replicas()) yield { labels: rl(d, r), value: value(r) };
      });
    const seconds = (t: Date | undefined) => (t ? t.getTime() / 1000 : undefined);

    // --- Litestream v0.3.13: database level ---------------------------------------------------------
    dbGauge("litestream_db_size", "Size of the database file in bytes.", (d) => d.db.metrics.dbSize);
    dbGauge(
      "litestream_wal_size",
      "Size of the database's real WAL file in bytes.",
      (d) => d.walSizeBytes ?? d.db.metrics.walSize,
    );
    dbGauge(
      "litestream_shadow_wal_index",
      "Index of the current shadow WAL file.",
      (d) => d.db.metrics.shadowIndex,
    );
    dbGauge(
      "litestream_shadow_wal_size",
      "Bytes in all shadow WAL files of the current generation.",
      (d) => d.db.metrics.shadowSize,
    );
    dbCounter(
      "litestream_total_wal_bytes",
      "Bytes copied from the real WAL into the shadow WAL.",
      (d) => d.db.metrics.totalWalBytes,
    );
    dbCounter("litestream_sync_count", "Database syncs run.", (d) => d.db.metrics.syncCount);
    dbCounter(
      "litestream_sync_error_count",
      "Database syncs that failed.",
      (d) => d.db.metrics.syncErrorCount,
    );
    dbCounter("litestream_sync_seconds", "Seconds spent in database syncs.", (d) => d.db.metrics.syncSeconds);
    checkpointCounter("litestream_checkpoint_count", "Checkpoints run, by mode.", (c) => c.count);
    checkpointCounter(
      "litestream_checkpoint_error_count",
      "Checkpoints that failed, by mode.",
      (c) => c.errors,
    );
    checkpointCounter(
      "litestream_checkpoint_seconds",
      "Seconds spent in checkpoints, by mode.",
      (c) => c.seconds,
    );

    // --- Litestream v0.3.13: destination level ------------------------------------------------------
    replicaCounter(
      "litestream_replica_wal_bytes",
      "Uncompressed WAL bytes uploaded to the destination.",
      (r) => r.replica.metrics.walBytes,
    );
    replicaGauge("litestream_replica_wal_index", "Shadow WAL index of the last upload.", (r) => r.pos?.index);
    replicaGauge(
      "litestream_replica_wal_offset",
      "Shadow WAL offset after the last upload.",
      (r) => r.pos?.offset,
    );
    family(
      "litestream_replica_validation_total",
      "Validation runs of the destination, by outcome.",
      "counter",
      function* () {
        // Both series exist from the start, as in Litestream; "error" counts mismatches and
        // validations that could not complete.
        for (const { d, r } of replicas()) {
          const m = r.replica.metrics;
          for (const status of VALIDATION_STATUSES) {
            yield {
              labels: { ...rl(d, r), status },
              value: status === "ok" ? m.validationOk : m.validationError,
            };
          }
        }
      },
    );

    // Backend level, as Litestream labels it: by replica type and operation, summed over destinations.
    const operations = (field: "count" | "bytes", ops: readonly Operation[]) =>
      function* (): Iterable<Sample> {
        const sums = new Map<string, number>();
        for (const { r } of replicas()) {
          const counts = r.replica.client.operations;
          if (!counts) continue;
          for (const op of ops) {
            const k = `${r.replica.client.type}\0${op}`;
            sums.set(k, (sums.get(k) ?? 0) + counts[op][field]);
          }
        }
        for (const [k, v] of sums) {
          const [replica_type, operation] = k.split("\0") as [string, string];
          yield { labels: { replica_type, operation }, value: v };
        }
      };
    family(
      "litestream_replica_operation_total",
      "Requests sent to the storage backend, by operation.",
      "counter",
      operations("count", ["GET", "PUT", "DELETE", "LIST"]),
    );
    family(
      "litestream_replica_operation_bytes",
      "Stored (compressed) bytes moved to and from the storage backend, by operation.",
      "counter",
      operations("bytes", ["GET", "PUT"]),
    );

    // --- Walship -----------------------------------------------------------------------------------
    replicaGauge(
      "walship_replica_lag_seconds",
      "Age of the oldest commit not yet durable on the destination; 0 when none is pending.",
      (r) => r.lagSeconds,
    );
    replicaGauge(
      "walship_replica_pending_transactions",
      "Commits seen in the database and not yet durable on the destination.",
      (r) => r.status.pendingCommits,
    );
    replicaGauge(
      "walship_replica_pending_bytes",
      "Shadow WAL bytes not yet uploaded to the destination.",
      (r) => r.pendingBytes,
    );
    replicaGauge(
      "walship_replica_last_sync_timestamp_seconds",
      "Unix time of the last successful sync to the destination; 0 before the first.",
      (r) => seconds(r.status.lastSyncAt) ?? 0,
    );
    replicaGauge(
      "walship_replica_window_oldest_timestamp_seconds",
      "Unix time of the oldest point a restore can reach on the destination (its oldest snapshot).",
      (r) => seconds(r.window.oldest),
    );
    replicaGauge(
      "walship_replica_window_newest_timestamp_seconds",
      "Unix time of the newest point a restore can reach on the destination (its newest durable commit).",
      (r) => seconds(r.window.newest),
    );
    replicaGauge(
      "walship_replica_snapshot_age_seconds",
      "Seconds since the newest snapshot known on the destination was taken.",
      (r) => {
        const at = r.status.lastSnapshotAt;
        return at ? Math.max(0, (this.#obs.now - at.getTime()) / 1000) : undefined;
      },
    );
    replicaCounter(
      "walship_replica_errors_total",
      "Syncs to the destination that failed.",
      (r) => r.replica.metrics.syncErrorCount,
    );
    replicaGauge("walship_replica_up", "1 when the last sync to the destination succeeded, else 0.", (r) =>
      r.up ? 1 : 0,
    );
    replicaGauge(
      "walship_destination_probe_ok",
      "1 when the destination's last self-test (write, read, list, delete a probe object) passed, 0 when it failed; absent before the first.",
      (r) => (r.probe ? (r.probe.outcome === "ok" ? 1 : 0) : undefined),
    );
    // Guardrails (docs/operator.md, "Guardrails").
    dbGauge(
      "walship_volume_free_bytes",
      "Bytes still free (for an unprivileged process) on the file system holding the database.",
      (d) => d.volume?.freeBytes,
    );
    dbGauge(
      "walship_volume_total_bytes",
      "Size of the file system holding the database, bytes.",
      (d) => d.volume?.totalBytes,
    );
    dbGauge(
      "walship_wal_live_bytes",
      "Bytes written to the WAL since it last restarted (the current shadow WAL's committed size).",
      (d) => d.db.pos()?.offset,
    );
    dbGauge(
      "walship_checkpoint_consecutive_failures",
      "Checkpoints of the database that failed since the last one that succeeded.",
      (d) => d.db.checkpointHealth.consecutiveFailures,
    );
    replicaCounter(
      "walship_replica_snapshots_refused_total",
      "Snapshots not started because what they write on local disk would not fit.",
      (r) => r.replica.metrics.snapshotRefusedCount,
    );
    replicaGauge(
      "walship_replica_fenced",
      "1 while another writer holds the destination's single-writer claim (nothing is written there), else 0.",
      (r) => (r.status.fencedBy ? 1 : 0),
    );
    family("walship_build_info", "Always 1; the walship version is in the label.", "gauge", () => [
      { labels: { version: opts.version }, value: 1 },
    ]);
  }

  get contentType(): string {
    return CONTENT_TYPE;
  }

  /**
   * The Prometheus text for an observation. The event loop's lag is measured first; everything after
   * it runs without an await, so concurrent scrapes cannot mix observations.
   */
  async render(obs: Observation): Promise<string> {
    const lag = this.#runtime ? await RuntimeMetrics.measureLag() : 0;
    this.#obs = obs;
    return render(this.#runtime ? [...this.#families, ...this.#runtime.families(lag)] : this.#families);
  }

  /** Stops the runtime metrics' watchers (the event loop delay monitor, the GC observer). */
  close(): void {
    this.#runtime?.close();
  }
}
