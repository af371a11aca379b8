/**
 * The single-writer claim on a replica path (issue #19): a small JSON object at
 * `<replica root>/walship/claim.json`, beside Litestream's layout (v0.3.13 reads only `generations/`,
 * and `walship restore` reads only the generations it restores), that says which replicator writes
 * there and until when. Pure: the document, the holder's identity, and the judgement of a claim found.
 *
 * Invariants:
 * - A replicator writes nothing to a destination whose claim another holder keeps renewing.
 * - A claim is free for the taking only when it is absent, released, or expired both by its own
 *   stamp and by what this process saw (unchanged for one TTL of local time): two machines' clocks
 *   may disagree, and neither alone may let a second writer in early.
 * - A claim left by this same writer's earlier life (the same pod, restarted; or, outside a cluster,
 *   a dead process on this same machine) is ours to take over at once.
 */
import { z } from "zod";

/** The claim's key relative to the replica root (a Walship side object, under `walship/`). */
export const CLAIM_KEY = "walship/claim.json";
/** A claim lasts this long unless renewed (config `claim-ttl`). */
export const DEFAULT_CLAIM_TTL_MS = 30_000;

const PodSchema = z.object({ namespace: z.string(), name: z.string(), uid: z.string() });

export const ClaimHolderSchema = z.object({
  /** The Kubernetes pod the replicator runs in, when the operator injected it (WALSHIP_POD_*). */
  pod: PodSchema.optional(),
  /** The SqliteReplica (`namespace/name`) that injected it, when known. */
  sqliteReplica: z.string().optional(),
  host: z.string(),
  pid: z.number().int(),
  /** The kernel's boot id: a pid names the same process only on the same machine and boot. */
  bootId: z.string().optional(),
});
export type ClaimHolder = z.output<typeof ClaimHolderSchema>;

export const ClaimDocSchema = z.object({
  v: z.literal(1),
  holder: ClaimHolderSchema,
  /** Random per claiming process: what tells our claim from any other. */
  token: z.string().min(1),
  renewedAt: z.iso.datetime({ offset: true }),
  expiresAt: z.iso.datetime({ offset: true }),
});
export type ClaimDoc = z.output<typeof ClaimDocSchema>;

/** The holder this process is, from the env the operator injects (statefulset.ts) or the host. */
export function holderFromEnv(
  env: NodeJS.ProcessEnv,
  host: string,
  pid: number,
  bootId: string | undefined,
): ClaimHolder {
  const namespace = env.WALSHIP_POD_NAMESPACE;
  const name = env.WALSHIP_POD_NAME;
  const uid = env.WALSHIP_POD_UID;
  const cr = env.WALSHIP_SQLITEREPLICA;
  return {
    ...(namespace && name && uid ? { pod: { namespace, name, uid } } : {}),
    ...(namespace && cr ? { sqliteReplica: `${namespace}/${cr}` } : {}),
    host,
    pid,
    ...(bootId ? { bootId } : {}),
  };
}

/** One line naming a holder, for status, logs, Events: `pod ns/app-0 (uid …) of SqliteReplica ns/app`. */
export function describeHolder(h: ClaimHolder): string {
  if (h.pod) {
    const of = h.sqliteReplica ? ` of SqliteReplica ${h.sqliteReplica}` : "";
    return `pod ${h.pod.namespace}/${h.pod.name} (uid ${h.pod.uid})${of}`;
  }
  return `process ${h.pid} on host ${h.host}`;
}

/** A claim document for `holder`, renewed at `now`, lasting `ttlMs`. */
export function claimDoc(holder: ClaimHolder, token: string, now: number, ttlMs: number): ClaimDoc {
  return {
    v: 1,
    holder,
    token,
    renewedAt: new Date(now).toISOString(),
    expiresAt: new Date(now + ttlMs).toISOString(),
  };
}

/** The claim in `bytes`, or a reason it is not one. */
export function parseClaim(bytes: Uint8Array): { doc: ClaimDoc } | { problem: string } {
  let raw: unknown;
  try {
    raw = JSON.parse(Buffer.from(bytes).toString("utf8"));
  } catch (err) {
    return { problem: `not JSON: ${(err as Error).message}` };
  }
  const parsed = ClaimDocSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    return { problem: `${issue?.path.join(".") || "document"}: ${issue?.message ?? "invalid"}` };
  }
  return { doc: parsed.data };
}

export type Judgement =
  /** Nobody holds it, or the holder is gone: claim it. */
  | { kind: "free"; why: "absent" | "expired" | "restarted" }
  /** Our own claim: renew it. */
  | { kind: "ours" }
  /** Another writer holds it: write nothing. */
  | { kind: "held"; holder: ClaimHolder; expiresAt: Date };

export interface Observed {
  /** The claim found (undefined: none). */
  doc: ClaimDoc | undefined;
  /** How long this process has seen that same claim (token and renewedAt) unchanged, in ms. */
  unchangedMs: number;
}

export interface Me {
  holder: ClaimHolder;
  token: string;
  /** Whether a pid is a live process here (only asked about a holder on this same machine). */
  alive: (pid: number) => boolean;
}

/** What a found claim means for `me`, at local time `now`. */
export function judgeClaim(observed: Observed, me: Me, now: number): Judgement {
  const doc = observed.doc;
  if (!doc) return { kind: "free", why: "absent" };
  if (doc.token === me.token) return { kind: "ours" };
  if (isEarlierSelf(doc.holder, me)) return { kind: "free", why: "restarted" };
  const expiresAt = new Date(doc.expiresAt);
  const ttlMs = Math.max(0, expiresAt.getTime() - new Date(doc.renewedAt).getTime());
  if (now >= expiresAt.getTime() && observed.unchangedMs >= ttlMs) return { kind: "free", why: "expired" };
  return { kind: "held", holder: doc.holder, expiresAt };
}

/**
 * The same writer in an earlier life: the same pod (its sidecar restarted: a pod runs one), or,
 * with no pod on either side, this same machine and boot with the claimant's process gone (or its
 * pid now ours). Two pods of one name (two namespaces, or a replacement with a new uid) are not.
 */
function isEarlierSelf(h: ClaimHolder, me: Me): boolean {
  const mine = me.holder;
  if (h.pod || mine.pod) {
    return h.pod !== undefined && mine.pod !== undefined && h.pod.uid === mine.pod.uid;
  }
  if (h.host !== mine.host || !h.bootId || h.bootId !== mine.bootId) return false;
  return h.pid === mine.pid || !me.alive(h.pid);
}

/**
 * How long this process has seen the same claim version (token and renewedAt) unchanged: the local
 * half of judgeClaim's expiry rule, for each place a claim is kept (the bucket, a Lease).
 */
export class Sightings {
  #seen: { version: string; at: number } | undefined;

  /** Milliseconds `doc` has been seen unchanged; 0 when it just changed. */
  unchanged(doc: ClaimDoc | undefined, now = Date.now()): number {
    const version = doc ? `${doc.token}@${doc.renewedAt}` : "";
    if (this.#seen?.version !== version) this.#seen = { version, at: now };
    return now - this.#seen.at;
  }
}
