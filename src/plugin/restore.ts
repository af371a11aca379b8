/**
 * `kubectl walship restore NAME --to TIME|latest --in-place|--new-claim CLAIM [--wait]`: creates a
 * SqliteRestore (checked against its schema first, so a bad flag is a usage error naming the flag,
 * not an API server rejection), and with --wait follows it phase by phase until it ends: exit 0 when
 * it Succeeded, 1 when it Failed. Interrupting the wait leaves the restore running: the operator, not
 * this process, carries it out. `buildRestore` and `progressLine` are pure.
 */
import { API_VERSION, SQLITE_RESTORE_KIND, SqliteRestoreSpec } from "../api/v1alpha1/index.ts";
import { ErrorCodes, WalshipError } from "../shared/errors.ts";
import { isoSeconds } from "./format.ts";
import type { PluginKube, RestoreObject } from "./kube.ts";

export interface RestoreFlags {
  replica: string;
  namespace: string;
  /** `latest` or an RFC 3339 time. */
  to: string;
  inPlace: boolean;
  newClaim?: string;
  size?: string;
  storageClass?: string;
  pod?: string;
  destination?: string;
  /** The database, by its name in the SqliteReplica's spec.databases. */
  database?: string;
  /** The SqliteRestore's name; default `<replica>-<UTC time>`. */
  name?: string;
  verifySql?: string;
}

const FLAG_OF: Record<string, string> = {
  sqliteReplicaName: "NAME",
  pod: "--pod",
  destination: "--destination",
  database: "--database",
  "target.timestamp": "--to",
  "newClaim.name": "--new-claim",
  "newClaim.size": "--size",
  "newClaim.storageClassName": "--storage-class",
  "verify.sql": "--verify-sql",
};

function usage(message: string): WalshipError {
  return new WalshipError(ErrorCodes.USAGE, `${message} (see 'kubectl walship restore -h')`);
}

/** The default name: `<replica>-<yyyymmddhhmmss>` (UTC), cut to fit a DNS subdomain. */
export function defaultRestoreName(replica: string, now: Date): string {
  const stamp = now.toISOString().replace(/[-:T]/g, "").slice(0, 14);
  return `${replica.slice(0, 253 - stamp.length - 1)}-${stamp}`;
}

/** The SqliteRestore the flags ask for; a usage error names the flag that is wrong. */
export function buildRestore(f: RestoreFlags, now: Date): RestoreObject {
  if (f.inPlace === (f.newClaim !== undefined)) {
    throw usage("choose where to restore: --in-place (onto the app's volume) or --new-claim NAME");
  }
  if ((f.size !== undefined || f.storageClass !== undefined) && f.newClaim === undefined) {
    throw usage("--size and --storage-class go with --new-claim");
  }
  let target: Record<string, unknown> | undefined;
  if (f.to !== "latest") {
    const t = Date.parse(f.to);
    if (!/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$/.test(f.to) || Number.isNaN(t)) {
      throw usage(`--to: "${f.to}" is neither latest nor an RFC 3339 time such as 2026-05-01T10:15:00Z`);
    }
    if (t > now.getTime()) throw usage(`--to: ${f.to} is in the future`);
    target = { timestamp: f.to };
  }
  const spec: Record<string, unknown> = {
    sqliteReplicaName: f.replica,
    mode: f.inPlace ? "InPlace" : "NewClaim",
    ...(f.pod ? { pod: f.pod } : {}),
    ...(f.destination ? { destination: f.destination } : {}),
    ...(f.database ? { database: f.database } : {}),
    ...(target ? { target } : {}),
    ...(f.newClaim !== undefined
      ? {
          newClaim: {
            name: f.newClaim,
            ...(f.size ? { size: f.size } : {}),
            ...(f.storageClass ? { storageClassName: f.storageClass } : {}),
          },
        }
      : {}),
    ...(f.verifySql ? { verify: { sql: f.verifySql } } : {}),
  };
  const parsed = SqliteRestoreSpec.safeParse(spec);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const at = issue.path.join(".");
    throw usage(`${FLAG_OF[at] ?? at}: ${issue.message}`);
  }
  const name = f.name ?? defaultRestoreName(f.replica, now);
  if (!/^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/.test(name)) {
    throw usage(`--name: "${name}" is not a DNS subdomain name`);
  }
  return {
    apiVersion: API_VERSION,
    kind: SQLITE_RESTORE_KIND,
    metadata: { name, namespace: f.namespace },
    spec,
  } as RestoreObject;
}

/** One line of progress for a phase the restore has entered. */
export function progressLine(obj: RestoreObject, now: Date): string {
  const s = obj.status ?? {};
  const phase = s.phase ?? "Pending";
  const at = now.toISOString().slice(11, 19);
  let text = `${at} ${phase.padEnd(11)} ${s.message ?? ""}`.trimEnd();
  if (phase === "Succeeded" && s.restored) {
    const when = s.restored.lastCommitTime ? `, last commit ${isoSeconds(s.restored.lastCommitTime)}` : "";
    text += ` (restored to ${s.restored.position}${when})`;
  }
  if (phase === "Failed" && s.failure) {
    text += ` (${s.failure.reason} in ${s.failure.phase})`;
  }
  return text;
}

/** The error a Failed restore ends the command with (WALSHIP_ERR_RESTORE). */
export function failureOf(obj: RestoreObject): WalshipError {
  const f = obj.status?.failure;
  const why = f ? `${f.reason} in phase ${f.phase}: ${f.message}` : (obj.status?.message ?? "failed");
  return new WalshipError(ErrorCodes.RESTORE, `SqliteRestore ${obj.metadata?.name} failed: ${why}`, {
    details: { reason: f?.reason },
  });
}

/**
 * Follows a SqliteRestore until Succeeded or Failed, writing one line per phase (and per new message);
 * resolves with the final object. Re-watches when the API server ends the watch; `timeoutMs` 0 waits
 * for ever.
 */
export async function follow(
  kube: PluginKube,
  created: RestoreObject,
  write: (line: string) => void,
  opts: { timeoutMs?: number; signal?: AbortSignal } = {},
): Promise<RestoreObject> {
  const name = created.metadata?.name ?? "";
  const abort = new AbortController();
  const onAbort = () => abort.abort();
  opts.signal?.addEventListener("abort", onAbort, { once: true });
  const timer =
    opts.timeoutMs && opts.timeoutMs > 0 ? setTimeout(() => abort.abort(), opts.timeoutMs) : undefined;
  let last = "";
  const show = (o: RestoreObject) => {
    const key = `${o.status?.phase ?? "Pending"}|${o.status?.message ?? ""}`;
    if (key === last) return;
    last = key;
    write(progressLine(o, new Date()));
  };
  const done = (o: RestoreObject) => o.status?.phase === "Succeeded" || o.status?.phase === "Failed";
  try {
    let current = created;
    show(current);
    while (!done(current)) {
      if (abort.signal.aborted) break;
      // Read it again first: it may have moved on between two watches.
      current = await kube.getRestore(name);
      show(current);
      if (done(current)) break;
      try {
        for await (const ev of kube.watchRestore(
          name,
          current.metadata?.resourceVersion ?? "",
          abort.signal,
        )) {
          if (ev.type === "DELETED") {
            throw new WalshipError(ErrorCodes.NOT_FOUND, `follow SqliteRestore ${name}: it was deleted`);
          }
          if (ev.type !== "ADDED" && ev.type !== "MODIFIED") continue;
          current = ev.object;
          show(current);
          if (done(current)) break;
        }
      } catch (err) {
        if (abort.signal.aborted) break;
        if (err instanceof WalshipError && err.code === ErrorCodes.NOT_FOUND) throw err;
        // A watch that broke (a timeout, a restarted API server): read and watch again.
        await new Promise((r) => setTimeout(r, 1000));
      }
    }
    if (!done(current)) {
      const why = opts.signal?.aborted
        ? "interrupted"
        : `not done after ${Math.round((opts.timeoutMs ?? 0) / 1000)}s`;
      throw new WalshipError(
        ErrorCodes.ABORTED,
        `follow SqliteRestore ${name}: ${why}, in phase ${current.status?.phase ?? "Pending"}; ` +
          "the restore goes on (kubectl walship status, kubectl get sqliterestore)",
      );
    }
    return current;
  } finally {
    if (timer) clearTimeout(timer);
    opts.signal?.removeEventListener("abort", onAbort);
  }
}
