/**
 * What the kubelet says about Walship's containers in a pod, as a reason and a message for the pod's
 * entry in the SqliteReplica status (and from there the Degraded condition and its Event). Pure.
 *
 * - The restore init container (`walship-restore`) that failed holds the pod in Init.
 * - The sidecar (`walship`) that is not running after exiting (crash loop), or that was killed out of
 *   memory within the last `RECENT_OOM_MS`.
 * Each names the container, the exit, and what to do: an OOM kill names the memory limit and the
 * spec field that raises it; a permission failure (EACCES/EPERM/EROFS in the container's last log
 * lines, which `terminationMessagePolicy: FallbackToLogsOnError` puts in the termination message)
 * names the path, the operation, and the uid/gid the container runs as.
 */
import type { RestoreOnStart } from "../../api/v1alpha1/index.ts";
import type { Container, Pod } from "../kube/types.ts";
import { RESTORE_CONTAINER, SIDECAR_CONTAINER } from "../specs/names.ts";
import { describeRunAs } from "../specs/security.ts";

/** Why a pod is not replicating, most telling first (the Degraded condition takes the first). */
export const POD_REASONS = [
  "OutOfMemory",
  "PermissionDenied",
  "RestoreFailed",
  "SidecarFailing",
  "SidecarUnreachable",
  "WriterConflict",
  "ReplicationError",
] as const;
export type PodReason = (typeof POD_REASONS)[number];

export interface PodProblem {
  reason: PodReason;
  message: string;
}

/** An OOM kill of a running sidecar counts this long after it happened. */
export const RECENT_OOM_MS = 10 * 60_000;

interface Terminated {
  exitCode?: number;
  reason?: string;
  message?: string;
  finishedAt?: Date | string;
}

function spec(pod: Pod, name: string): Container | undefined {
  return pod.spec?.initContainers?.find((c) => c.name === name);
}

function memoryLimit(pod: Pod, name: string): string {
  const l = spec(pod, name)?.resources?.limits?.memory;
  return l === undefined ? "no limit" : `limit ${String(l)}`;
}

/**
 * A permission failure in a container's last lines: the errno, the operation and the path of the
 * first Node error such as `EACCES: permission denied, mkdir '/data/.app.db-litestream'`.
 */
export function permissionFailure(text: string): { code: string; op: string; path: string } | undefined {
  const m = /\b(EACCES|EPERM|EROFS): [^,'\n]*, (\w+) '([^'\n]+)'/.exec(text);
  return m ? { code: m[1]!, op: m[2]!, path: m[3]! } : undefined;
}

/** The message of a permission failure, naming who the container runs as and what to set. */
export function permissionMessage(
  container: string,
  p: { code: string; op: string; path: string },
  runAs: string,
): string {
  const fix =
    p.code === "EROFS"
      ? "the volume is mounted read-only"
      : "run the replicator as the database's owner (the app's securityContext runAsUser/runAsGroup, " +
        "or spec.sidecar.securityContext), or make the directory writable by its group (fsGroup)";
  return `${container} cannot ${p.op} ${p.path}: ${p.code}, running as ${runAs}; ${fix}`;
}

function runAs(pod: Pod, name: string): string {
  return describeRunAs(spec(pod, name)?.securityContext, pod.spec?.securityContext?.fsGroup ?? undefined);
}

function lastLine(text: string | undefined): string {
  const lines = (text ?? "")
    .trim()
    .split("\n")
    .filter((l) => l.trim() !== "");
  return (lines.at(-1) ?? "").slice(0, 500);
}

/** Why a Walship container stopped, from its terminated state; undefined if that says nothing wrong. */
function classify(
  pod: Pod,
  name: string,
  label: string,
  term: Terminated,
  restarts: number,
  memoryField: string,
): PodProblem | undefined {
  if (term.reason === "OOMKilled") {
    return {
      reason: "OutOfMemory",
      message: `${label} was killed out of memory (${memoryLimit(pod, name)}; restarts ${restarts}); raise ${memoryField}`,
    };
  }
  if (term.exitCode === 0 || term.exitCode === undefined) return undefined;
  const perm = permissionFailure(term.message ?? "");
  if (perm) return { reason: "PermissionDenied", message: permissionMessage(label, perm, runAs(pod, name)) };
  return undefined;
}

/**
 * A pod held before its app by a failing restore init container: the problem to report, naming the
 * container, its exit code and what the policy makes of it. Undefined for any other pod.
 */
export function restoreFailure(pod: Pod, policy: RestoreOnStart): PodProblem | undefined {
  if (pod.status?.phase !== "Pending") return undefined;
  const s = pod.status.initContainerStatuses?.find((c) => c.name === RESTORE_CONTAINER);
  const term = (s?.state?.terminated ?? s?.lastState?.terminated) as Terminated | undefined;
  if (!s || !term) return undefined;
  const label = `init container ${RESTORE_CONTAINER}`;
  const known = classify(
    pod,
    RESTORE_CONTAINER,
    label,
    term,
    s.restartCount,
    "spec.restoreResources.limits.memory",
  );
  if (known) return known;
  if (term.exitCode === 0) return undefined;
  const why =
    policy === "RefuseIfReplicaExists"
      ? "refusing to start: the database is missing while a replica exists (restoreOnStart " +
        "RefuseIfReplicaExists); restore it, or set restoreOnStart IfReplicaExists and delete the pod"
      : "the restore failed; see the container's log";
  const last = lastLine(term.message);
  return {
    reason: "RestoreFailed",
    message: `${label} exited ${term.exitCode} (restarts ${s.restartCount}): ${why}${last ? `: ${last}` : ""}`,
  };
}

/**
 * The sidecar's failure: not running after an exit (a crash loop, including the pod held in Init
 * because the sidecar's startup never passes), or running again after an OOM kill less than
 * RECENT_OOM_MS ago. Undefined while it runs normally (then its /status tells).
 */
export function sidecarFailure(pod: Pod, now: Date): PodProblem | undefined {
  const s = pod.status?.initContainerStatuses?.find((c) => c.name === SIDECAR_CONTAINER);
  if (!s) return undefined;
  const label = `container ${SIDECAR_CONTAINER}`;
  const memoryField = "spec.sidecar.resources.limits.memory";
  if (s.state?.running) {
    const last = s.lastState?.terminated as Terminated | undefined;
    if (last?.reason !== "OOMKilled" || last.finishedAt === undefined) return undefined;
    if (now.getTime() - new Date(last.finishedAt).getTime() > RECENT_OOM_MS) return undefined;
    return classify(pod, SIDECAR_CONTAINER, label, last, s.restartCount, memoryField);
  }
  const term = (s.state?.terminated ?? s.lastState?.terminated) as Terminated | undefined;
  if (!term) return undefined;
  const known = classify(pod, SIDECAR_CONTAINER, label, term, s.restartCount, memoryField);
  if (known) return known;
  if (term.exitCode === 0) return undefined;
  const last = lastLine(term.message);
  return {
    reason: "SidecarFailing",
    message: `${label} exited ${term.exitCode} (restarts ${s.restartCount})${last ? `: ${last}` : ""}`,
  };
}
