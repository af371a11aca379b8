/**
 * Guardrails: the SqliteReplica's DiskPressure, WALGrowing and CheckpointFailing conditions, derived
 * from what each pod's sidecar reports in `/status` (its databases' `volume`, `walLiveBytes`,
 * `checkpoint` and destinations' `snapshotRefused`). Pure: literal inputs in, conditions out
 * (test/unit/operator-guardrails.test.ts). They warn before an outage and do not change Ready: a
 * volume at 95% still replicates (docs/operator.md, "Guardrails").
 *
 * True is the problem for all three (like Degraded). Unknown while no pod reports the facts (no pod
 * yet, or a sidecar older than these fields).
 */
import type { GuardrailFacts, PodReplicationStatus } from "../../api/v1alpha1/index.ts";
import type { DatabaseStatus } from "../../shared/protocol.ts";
import type { Cond } from "./conditions.ts";

/** The guardrail conditions; True means trouble (events.ts sends a Warning then). */
export const GUARDRAIL_CONDITIONS = ["DiskPressure", "WALGrowing", "CheckpointFailing"] as const;

export interface GuardrailThresholds {
  /** DiskPressure when less than this share of the database's volume is free. */
  minFreeRatio: number;
  /**
   * WALGrowing when the WAL written since its last restart (walLiveBytes) is more than this share of
   * its volume.
   */
  maxWalVolumeRatio: number;
  /** CheckpointFailing after this many checkpoints in a row have failed. */
  checkpointFailures: number;
}

/** Fixed defaults (the chart's alerts use the same numbers: monitoring.prometheusRule.thresholds). */
export const DEFAULT_GUARDRAIL_THRESHOLDS: GuardrailThresholds = {
  minFreeRatio: 0.1,
  maxWalVolumeRatio: 0.25,
  checkpointFailures: 3,
};

/** One database's guardrail facts from its entry in a sidecar's `/status`. */
export function guardrailFacts(db: DatabaseStatus): GuardrailFacts {
  const refused = db.replicas
    .filter((r) => r.snapshotRefused)
    .map((r) => `destination ${r.name}: ${r.snapshotRefused?.message}`);
  return {
    path: db.path,
    ...(db.volume ? { volumeFreeBytes: db.volume.freeBytes, volumeTotalBytes: db.volume.totalBytes } : {}),
    walSizeBytes: db.walSizeBytes,
    ...(db.walLiveBytes !== undefined ? { walLiveBytes: db.walLiveBytes } : {}),
    ...(db.checkpoint ? { checkpointFailures: db.checkpoint.consecutiveFailures } : {}),
    ...(db.checkpoint?.lastError ? { checkpointError: db.checkpoint.lastError.message } : {}),
    ...(refused.length > 0 ? { snapshotRefused: refused.join("; ").slice(0, 1024) } : {}),
  };
}

const MiB = 1024 * 1024;
const mib = (n: number) => `${(n / MiB).toFixed(1)} MiB`;
const pct = (r: number) => `${Math.round(r * 100)}%`;

/** Each pod's reported databases, with the pod's name. */
function reported(pods: readonly PodReplicationStatus[]): { pod: string; f: GuardrailFacts }[] {
  return pods.flatMap((p) => (p.guardrails ?? []).map((f) => ({ pod: p.name, f })));
}

function unknown(type: string): Cond {
  return { type, status: "Unknown", reason: "NotReported", message: "no pod reports it yet" };
}

function join(lines: readonly string[]): string {
  return lines.join("; ").slice(0, 2048);
}

export function diskPressureCondition(
  pods: readonly PodReplicationStatus[],
  t: GuardrailThresholds = DEFAULT_GUARDRAIL_THRESHOLDS,
): Cond {
  const all = reported(pods);
  const measured = all.filter(({ f }) => f.volumeTotalBytes !== undefined && f.volumeTotalBytes > 0);
  const low = measured.filter(({ f }) => f.volumeFreeBytes! < t.minFreeRatio * f.volumeTotalBytes!);
  const refused = all.filter(({ f }) => f.snapshotRefused);
  const where = ({ pod, f }: { pod: string; f: GuardrailFacts }) => `pod ${pod} ${f.path}`;
  if (low.length > 0 || refused.length > 0) {
    const lines = [
      ...low.map(
        (x) =>
          `${where(x)}: ${mib(x.f.volumeFreeBytes!)} free of ${mib(x.f.volumeTotalBytes!)} ` +
          `(below ${pct(t.minFreeRatio)})`,
      ),
      ...refused.map((x) => `${where(x)}: ${x.f.snapshotRefused}`),
    ];
    return {
      type: "DiskPressure",
      status: "True",
      reason: low.length > 0 ? "LowFreeSpace" : "SnapshotRefused",
      message: join(lines),
    };
  }
  if (measured.length === 0) return unknown("DiskPressure");
  const least = Math.min(...measured.map(({ f }) => f.volumeFreeBytes! / f.volumeTotalBytes!));
  return {
    type: "DiskPressure",
    status: "False",
    reason: "EnoughFreeSpace",
    message: `every database's volume has at least ${pct(t.minFreeRatio)} free (least: ${pct(least)})`,
  };
}

export function walGrowingCondition(
  pods: readonly PodReplicationStatus[],
  t: GuardrailThresholds = DEFAULT_GUARDRAIL_THRESHOLDS,
): Cond {
  const measured = reported(pods).filter(
    ({ f }) => f.walLiveBytes !== undefined && f.volumeTotalBytes !== undefined && f.volumeTotalBytes > 0,
  );
  if (measured.length === 0) return unknown("WALGrowing");
  const big = measured.filter(({ f }) => f.walLiveBytes! > t.maxWalVolumeRatio * f.volumeTotalBytes!);
  if (big.length > 0) {
    return {
      type: "WALGrowing",
      status: "True",
      reason: "WALTakesVolume",
      message: join(
        big.map(
          ({ pod, f }) =>
            `pod ${pod} ${f.path}: ${mib(f.walLiveBytes!)} written to the WAL since it last ` +
            `restarted, more than ${pct(t.maxWalVolumeRatio)} of its ${mib(f.volumeTotalBytes!)} volume ` +
            `(the -wal file: ${mib(f.walSizeBytes ?? 0)})`,
        ),
      ),
    };
  }
  return {
    type: "WALGrowing",
    status: "False",
    reason: "WALWithinBounds",
    message: `every WAL since its last restart is under ${pct(t.maxWalVolumeRatio)} of its volume`,
  };
}

export function checkpointFailingCondition(
  pods: readonly PodReplicationStatus[],
  t: GuardrailThresholds = DEFAULT_GUARDRAIL_THRESHOLDS,
): Cond {
  const measured = reported(pods).filter(({ f }) => f.checkpointFailures !== undefined);
  if (measured.length === 0) return unknown("CheckpointFailing");
  const failing = measured.filter(({ f }) => f.checkpointFailures! >= t.checkpointFailures);
  if (failing.length > 0) {
    return {
      type: "CheckpointFailing",
      status: "True",
      reason: "CheckpointErrors",
      message: join(
        failing.map(
          ({ pod, f }) =>
            `pod ${pod} ${f.path}: ${f.checkpointFailures} checkpoints failed in a row` +
            (f.checkpointError ? `, the last: ${f.checkpointError}` : ""),
        ),
      ),
    };
  }
  return {
    type: "CheckpointFailing",
    status: "False",
    reason: "CheckpointsSucceed",
    message: `fewer than ${t.checkpointFailures} checkpoints in a row failed anywhere`,
  };
}

/**
 * The three, Unknown for `reason`: while nothing is injected (a blocked step, a pause) no sidecar
 * reports them, and the last values would be stale.
 */
export function guardrailsUnknown(reason: string, message: string): Cond[] {
  return GUARDRAIL_CONDITIONS.map((type) => ({ type, status: "Unknown", reason, message }));
}

/** The three guardrail conditions, in GUARDRAIL_CONDITIONS order. */
export function guardrailConditions(
  pods: readonly PodReplicationStatus[],
  t: GuardrailThresholds = DEFAULT_GUARDRAIL_THRESHOLDS,
): Cond[] {
  return [diskPressureCondition(pods, t), walGrowingCondition(pods, t), checkpointFailingCondition(pods, t)];
}
