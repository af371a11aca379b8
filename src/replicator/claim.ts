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
/** The claim's key relative to the replica root (a Walship side object, under `walship/`). */
export const CLAIM_KEY = "walship/claim.json";
/** A claim lasts this long unless renewed (config `claim-ttl`). */
export const DEFAULT_CLAIM_TTL_MS = 30_000;

export interface ClaimHolder {
  /** The Kubernetes pod the replicator runs in, when the operator injected it (WALSHIP_POD_*). */
  pod?: { namespace: string; name: string; uid: string };
  /** The SqliteReplica (`namespace/name`) that injected it, when known. */
  sqliteReplica?: string;
  host: string;
  pid: number;
  /** The kernel's boot id: a pid names the same process only on the same machine and boot. */
  bootId?: string;
}

export interface ClaimDoc {
  v: 1;
  holder: ClaimHolder;
  /** Random per claiming process: what tells our claim from any other. */
  token: string;
  /** RFC 3339 with seconds and `Z` or an offset, as toISOString writes it. */
  renewedAt: string;
  expiresAt: string;
}

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

/** The claim in `bytes`, or a reason it is not one (`<key path>: <what was expected>`). */
export function parseClaim(bytes: Uint8Array): { doc: ClaimDoc } | { problem: string } {
  let raw: unknown;
  try {
    raw = JSON.parse(Buffer.from(bytes).toString("utf8"));
  } catch (err) {
    return { problem: `not JSON: ${(err as Error).message}` };
  }
  try {
    return { doc: claimDocOf(raw) };
  } catch (err) {
    if (err instanceof ClaimProblem) return { problem: err.message };
    throw err;
  }
}

/*
 * The claim's shape, written out: zod cost every sidecar about 5 MiB of memory and its load time
 * for this one small document (docs/benchmarks.md). test/unit/claim-schema.test.ts holds it to
 * the zod schema it replaced on generated documents. Checked in the document's key order, depth
 * first; the first problem is reported; keys not named here are dropped.
 */

class ClaimProblem extends Error {}

function problem(at: string, expected: string): never {
  throw new ClaimProblem(`${at}: expected ${expected}`);
}

function objectAt(v: unknown, at: string): Record<string, unknown> {
  if (typeof v !== "object" || v === null || Array.isArray(v)) problem(at, "an object");
  return v as Record<string, unknown>;
}

function stringAt(v: unknown, at: string): string {
  if (typeof v !== "string") problem(at, "a string");
  return v;
}

function claimDocOf(raw: unknown): ClaimDoc {
  const o = objectAt(raw, "document");
  if (o.v !== 1) problem("v", "1");
  const holder = holderOf(o.holder);
  const token = stringAt(o.token, "token");
  if (token.length === 0) problem("token", "a non-empty string");
  return {
    v: 1,
    holder,
    token,
    renewedAt: timeAt(o.renewedAt, "renewedAt"),
    expiresAt: timeAt(o.expiresAt, "expiresAt"),
  };
}

function holderOf(raw: unknown): ClaimHolder {
  const o = objectAt(raw, "holder");
  let pod: ClaimHolder["pod"];
  if (o.pod !== undefined) {
    const p = objectAt(o.pod, "holder.pod");
    pod = {
      namespace: stringAt(p.namespace, "holder.pod.namespace"),
      name: stringAt(p.name, "holder.pod.name"),
      uid: stringAt(p.uid, "holder.pod.uid"),
    };
  }
  const sqliteReplica =
    o.sqliteReplica === undefined ? undefined : stringAt(o.sqliteReplica, "holder.sqliteReplica");
  const host = stringAt(o.host, "holder.host");
  if (typeof o.pid !== "number" || !Number.isSafeInteger(o.pid)) problem("holder.pid", "an integer");
  const bootId = o.bootId === undefined ? undefined : stringAt(o.bootId, "holder.bootId");
  return {
    ...(pod ? { pod } : {}),
    ...(sqliteReplica !== undefined ? { sqliteReplica } : {}),
    host,
    pid: o.pid,
    ...(bootId !== undefined ? { bootId } : {}),
  };
}

/** RFC 3339 date and time, seconds required, `Z` or `±hh:mm`; the date must exist. */
const RFC3339 = /^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.\d+)?(?:Z|[+-](\d\d):(\d\d))$/;

function timeAt(v: unknown, at: string): string {
  const s = stringAt(v, at);
  const m = RFC3339.exec(s);
  const n = (i: number) => Number(m?.[i] ?? 0);
  if (
    !m ||
    n(2) < 1 ||
    n(2) > 12 ||
    n(3) < 1 ||
    n(3) > daysIn(n(1), n(2)) ||
    n(4) > 23 ||
    n(5) > 59 ||
    n(6) > 59 ||
    n(7) > 23 ||
    n(8) > 59
  ) {
    problem(at, "an RFC 3339 time with seconds and Z or an offset (2026-01-02T03:04:05.678Z)");
  }
  return s;
}

function daysIn(year: number, month: number): number {
  if (month === 2) return year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0) ? 29 : 28;
  return month === 4 || month === 6 || month === 9 || month === 11 ? 30 : 31;
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
