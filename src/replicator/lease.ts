/**
 * The single-writer claim's in-cluster half (issue #19): a coordination.k8s.io/v1 Lease per
 * destination, in the pod's namespace, held beside the claim object in the bucket (claim.ts).
 *
 * Why both: the claim object is seen by every writer of a path, in any cluster or none, but it is
 * last-writer-wins with a read-back, so two claimers racing can overlap for one renewal period. A
 * Lease is written with its resourceVersion, so the API server lets exactly one of two racing
 * claimers win: within a namespace, two writers never overlap at all, and `kubectl get lease` names
 * the holder.
 *
 * The Lease carries the same claim document as the bucket (annotation `walship.dev/claim`) and is
 * judged by the same rules (judgeClaim: expired by its stamp and unchanged for one TTL here, or an
 * earlier life of this same pod). An API server that cannot be reached, or RBAC that refuses, does
 * not stop replication: the bucket claim still fences, and the error is reported (`/status`, log).
 *
 * The sidecar reaches the API server with the pod's service account token, projected by the
 * operator into the sidecar alone (`WALSHIP_KUBE_DIR`: `token`, `ca.crt`), at the address the
 * kubelet gives every container (KUBERNETES_SERVICE_HOST/PORT). Plain node:https: the replicator
 * loads no Kubernetes client library, and loads node:https only once a lease is used (with the
 * restore's modules, which validation loads the same way, 3.6 MiB of an idle sidecar that does
 * neither: docs/benchmarks.md, "The sidecar's floor").
 */
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import type * as Https from "node:https";
import { describeError, ErrorCodes, WalshipError } from "../shared/errors.ts";
import { microTime, type RawLease } from "../shared/lease-object.ts";
import {
  type ClaimDoc,
  type ClaimHolder,
  claimDoc,
  judgeClaim,
  type Me,
  parseClaim,
  Sightings,
} from "./claim.ts";
import type { CallOptions } from "./storage/client.ts";

/** The annotation that holds the claim document (claim.ts) on a Walship Lease. */
export const LEASE_CLAIM_ANNOTATION = "walship.dev/claim";
/** The annotation that names the replica path a Lease guards (no credentials: a location). */
export const LEASE_PATH_ANNOTATION = "walship.dev/replica-path";
/** The label that names the SqliteReplica whose sidecar made the Lease. */
export const LEASE_SQLITEREPLICA_LABEL = "walship.dev/sqlitereplica";

/** How the sidecar reaches the API server: its URL and the directory with `token` and `ca.crt`. */
export interface KubeAccess {
  server: string;
  dir: string;
  namespace: string;
  /** The SqliteReplica that injected the sidecar: the Leases' owner, so they go with it. */
  owner?: { name: string; uid: string };
}

/**
 * The access the operator gives the sidecar (WALSHIP_KUBE_DIR, WALSHIP_POD_NAMESPACE and the
 * kubelet's KUBERNETES_SERVICE_HOST/PORT), or undefined outside a cluster or without it.
 */
export function kubeAccessFromEnv(env: NodeJS.ProcessEnv): KubeAccess | undefined {
  const dir = env.WALSHIP_KUBE_DIR;
  const namespace = env.WALSHIP_POD_NAMESPACE;
  const host = env.KUBERNETES_SERVICE_HOST;
  if (!dir || !namespace || !host) return undefined;
  const port = env.KUBERNETES_SERVICE_PORT || "443";
  const server = `https://${host.includes(":") ? `[${host}]` : host}:${port}`;
  const name = env.WALSHIP_SQLITEREPLICA;
  const uid = env.WALSHIP_SQLITEREPLICA_UID;
  return { server, dir, namespace, ...(name && uid ? { owner: { name, uid } } : {}) };
}

/** The Lease of a replica path: `walship-` and 20 hex digits of its location's SHA-256. */
export function leaseName(location: string): string {
  return `walship-${createHash("sha256").update(location).digest("hex").slice(0, 20)}`;
}

/** An answer of the API server that is not a success. */
class ApiAnswer extends Error {
  readonly status: number;
  constructor(status: number, message: string) {
    super(message);
    this.status = status;
  }
}

/** The Lease API of one namespace, over node:https with the projected token (re-read per request). */
export class LeaseApi {
  readonly #access: KubeAccess;
  readonly #https = process.getBuiltinModule("node:https") as typeof Https;
  readonly #agent: Https.Agent;

  constructor(access: KubeAccess) {
    this.#access = access;
    this.#agent = new this.#https.Agent({ keepAlive: true, maxSockets: 2 });
  }

  get namespace(): string {
    return this.#access.namespace;
  }
  get owner(): KubeAccess["owner"] {
    return this.#access.owner;
  }

  #path(name?: string): string {
    const base = `/apis/coordination.k8s.io/v1/namespaces/${this.#access.namespace}/leases`;
    return name ? `${base}/${name}` : base;
  }

  get(name: string, opts: CallOptions = {}): Promise<RawLease | undefined> {
    return this.#call("GET", this.#path(name), undefined, opts).catch((err) => {
      if (err instanceof ApiAnswer && err.status === 404) return undefined;
      throw err;
    });
  }
  create(lease: RawLease, opts: CallOptions = {}): Promise<RawLease> {
    return this.#call("POST", this.#path(), lease, opts);
  }
  update(lease: RawLease, opts: CallOptions = {}): Promise<RawLease> {
    return this.#call("PUT", this.#path(lease.metadata.name), lease, opts);
  }

  close(): void {
    this.#agent.destroy();
  }

  #call(method: string, path: string, body: unknown, opts: CallOptions): Promise<RawLease> {
    let token: string;
    let ca: Buffer;
    try {
      token = readFileSync(`${this.#access.dir}/token`, "utf8").trim();
      ca = readFileSync(`${this.#access.dir}/ca.crt`);
    } catch (err) {
      return Promise.reject(new Error(`the service account token: ${describeError(err)}`));
    }
    const url = new URL(path, this.#access.server);
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    return new Promise((resolve, reject) => {
      const req = this.#https.request(
        url,
        {
          method,
          agent: this.#agent,
          ca,
          timeout: 10_000,
          headers: {
            Authorization: `Bearer ${token}`,
            Accept: "application/json",
            ...(payload ? { "Content-Type": "application/json", "Content-Length": payload.length } : {}),
          },
          ...(opts.signal ? { signal: opts.signal } : {}),
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on("data", (c: Buffer) => chunks.push(c));
          res.on("error", reject);
          res.on("end", () => {
            const text = Buffer.concat(chunks).toString("utf8");
            const status = res.statusCode ?? 0;
            if (status >= 200 && status < 300) {
              try {
                resolve(JSON.parse(text) as RawLease);
              } catch {
                reject(new Error(`${method} ${url.pathname}: the API server's answer is not JSON`));
              }
              return;
            }
            // The Status object's message names what was refused (never the token).
            let message = `HTTP ${status}`;
            try {
              const s = JSON.parse(text) as { message?: string };
              if (s.message) message = `${message}: ${s.message}`;
            } catch {
              // not a Status object
            }
            reject(new ApiAnswer(status, message));
          });
        },
      );
      req.on("timeout", () => req.destroy(new Error(`${method} ${url.pathname}: no answer in 10 s`)));
      req.on("error", reject);
      req.end(payload);
    });
  }
}

/** What a look at the Lease found: ours now, or another writer's. */
export type LeaseTurn = { kind: "ours" } | { kind: "held"; holder: ClaimHolder; expiresAt: Date };

/**
 * One destination's Lease. `step` takes, renews or stands back, as Fence does with the bucket claim;
 * errors (the API server, RBAC) are thrown as WALSHIP_ERR_KUBE for the Fence to report.
 */
export class LeaseClaim {
  readonly name: string;
  readonly #api: LeaseApi;
  readonly #location: string;
  readonly #ttlMs: number;
  readonly #sightings = new Sightings();
  /** Whether our last write of the Lease succeeded: only then does a release look at it. */
  #mine = false;

  constructor(api: LeaseApi, location: string, ttlMs: number) {
    this.#api = api;
    this.#location = location;
    this.#ttlMs = ttlMs;
    this.name = leaseName(location);
  }

  /** `namespace/name`, for status and messages. */
  get ref(): string {
    return `${this.#api.namespace}/${this.name}`;
  }

  async step(me: Me, opts: CallOptions = {}): Promise<LeaseTurn> {
    try {
      return await this.#step(me, opts);
    } catch (err) {
      if (opts.signal?.aborted) throw err;
      this.#mine = false;
      throw new WalshipError(ErrorCodes.KUBE, `Lease ${this.ref}: ${describeError(err)}`, {
        details: { lease: this.ref },
      });
    }
  }

  async #step(me: Me, opts: CallOptions): Promise<LeaseTurn> {
    const found = await this.#api.get(this.name, opts);
    const doc = found ? docOf(found) : undefined;
    const judged = judgeClaim({ doc, unchangedMs: this.#sightings.unchanged(doc) }, me, Date.now());
    if (judged.kind === "held") {
      this.#mine = false;
      return { kind: "held", holder: judged.holder, expiresAt: judged.expiresAt };
    }
    const now = Date.now();
    const next = this.#lease(
      found,
      claimDoc(me.holder, me.token, now, this.#ttlMs),
      now,
      judged.kind === "ours",
    );
    try {
      await (found ? this.#api.update(next, opts) : this.#api.create(next, opts));
    } catch (err) {
      // 409: another claimer wrote first (a create, or an update on an older resourceVersion).
      if (!(err instanceof ApiAnswer) || err.status !== 409) throw err;
      const winner = await this.#api.get(this.name, opts);
      const other = winner ? docOf(winner) : undefined;
      this.#mine = false;
      if (other && other.token !== me.token) {
        return { kind: "held", holder: other.holder, expiresAt: new Date(other.expiresAt) };
      }
      throw new Error("another claimer wrote it at the same moment; looking again");
    }
    this.#mine = true;
    return { kind: "ours" };
  }

  #lease(found: RawLease | undefined, doc: ClaimDoc, now: number, renewal: boolean): RawLease {
    const owner = this.#api.owner;
    const who = doc.holder.pod ? doc.holder.pod.name : `${doc.holder.host}.${doc.holder.pid}`;
    const spec = found?.spec ?? {};
    return {
      apiVersion: "coordination.k8s.io/v1",
      kind: "Lease",
      metadata: {
        ...(found?.metadata ?? {}),
        name: this.name,
        namespace: this.#api.namespace,
        labels: {
          ...(found?.metadata.labels ?? {}),
          "app.kubernetes.io/managed-by": "walship",
          ...(owner ? { [LEASE_SQLITEREPLICA_LABEL]: owner.name } : {}),
        },
        annotations: {
          ...(found?.metadata.annotations ?? {}),
          [LEASE_PATH_ANNOTATION]: this.#location,
          [LEASE_CLAIM_ANNOTATION]: JSON.stringify(doc),
        },
        // Owned by the holder's SqliteReplica: set when created or taken over (a Lease left by
        // another SqliteReplica must not go with that one while we hold it).
        ...(owner && !renewal
          ? {
              ownerReferences: [
                {
                  apiVersion: "walship.dev/v1alpha1",
                  kind: "SqliteReplica",
                  name: owner.name,
                  uid: owner.uid,
                },
              ],
            }
          : {}),
      },
      spec: {
        holderIdentity: `${who}_${doc.token.slice(0, 12)}`,
        leaseDurationSeconds: Math.max(1, Math.ceil(this.#ttlMs / 1000)),
        renewTime: microTime(now),
        acquireTime: renewal && spec.acquireTime ? spec.acquireTime : microTime(now),
        leaseTransitions: (spec.leaseTransitions ?? 0) + (renewal || !found ? 0 : 1),
      },
    };
  }

  /** Gives the Lease up at a clean stop (when it is still ours), so a successor need not wait. */
  async release(token: string, opts: CallOptions = {}): Promise<void> {
    if (!this.#mine) return;
    this.#mine = false;
    const found = await this.#api.get(this.name, opts);
    if (!found || docOf(found)?.token !== token) return;
    const annotations = { ...(found.metadata.annotations ?? {}) };
    delete annotations[LEASE_CLAIM_ANNOTATION];
    await this.#api.update(
      {
        ...found,
        metadata: { ...found.metadata, annotations },
        spec: { ...found.spec, holderIdentity: null },
      },
      opts,
    );
  }

  close(): void {
    this.#api.close();
  }
}

/** The claim document a Lease carries; undefined when it carries none (released, or not ours). */
function docOf(lease: RawLease): ClaimDoc | undefined {
  const raw = lease.metadata.annotations?.[LEASE_CLAIM_ANNOTATION];
  if (!raw || !lease.spec?.holderIdentity) return undefined;
  const parsed = parseClaim(Buffer.from(raw, "utf8"));
  return "doc" in parsed ? parsed.doc : undefined;
}
