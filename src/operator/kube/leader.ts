/**
 * Leader election on a coordination.k8s.io/v1 Lease. One identity holds the Lease and renews it every
 * `renewMs`; another takes it over once `leaseDurationSeconds` have passed since the last renewal.
 * Writes carry the resourceVersion, so two candidates cannot both win a takeover. A leader that
 * cannot renew before its lease would expire gives up (`onLost`), as client-go does.
 */
import { setTimeout as sleep } from "node:timers/promises";
import { microTime, type RawLease } from "../../shared/lease-object.ts";
import { isStatus, type KubeClient } from "./client.ts";

export interface LeaderOptions {
  namespace: string;
  name: string;
  identity: string;
  leaseDurationSeconds?: number;
  renewMs?: number;
  retryMs?: number;
}

export class LeaderElector {
  readonly #client: KubeClient;
  readonly #o: Required<LeaderOptions>;
  #leader = false;

  constructor(client: KubeClient, opts: LeaderOptions) {
    this.#client = client;
    this.#o = { leaseDurationSeconds: 15, renewMs: 5_000, retryMs: 2_000, ...opts };
  }

  get isLeader(): boolean {
    return this.#leader;
  }

  get #path(): string {
    return `/apis/coordination.k8s.io/v1/namespaces/${this.#o.namespace}/leases/${this.#o.name}`;
  }

  /** Tries once to acquire or renew; true when we hold the Lease afterwards. */
  async tryAcquireOrRenew(now = new Date()): Promise<boolean> {
    let lease: RawLease | undefined;
    try {
      lease = await this.#client.get<RawLease>(this.#path);
    } catch (err) {
      if (!isStatus(err, 404)) throw err;
    }
    const spec = {
      holderIdentity: this.#o.identity,
      leaseDurationSeconds: this.#o.leaseDurationSeconds,
      renewTime: microTime(now),
    };
    if (!lease) {
      const body: RawLease = {
        apiVersion: "coordination.k8s.io/v1",
        kind: "Lease",
        metadata: { name: this.#o.name, namespace: this.#o.namespace },
        spec: { ...spec, acquireTime: microTime(now), leaseTransitions: 0 },
      };
      try {
        await this.#client.request(
          "POST",
          `/apis/coordination.k8s.io/v1/namespaces/${this.#o.namespace}/leases`,
          {
            body,
          },
        );
        return true;
      } catch (err) {
        if (isStatus(err, 409)) return false;
        throw err;
      }
    }
    const held = lease.spec?.holderIdentity;
    const renewed = lease.spec?.renewTime ? Date.parse(lease.spec.renewTime) : 0;
    const duration = (lease.spec?.leaseDurationSeconds ?? this.#o.leaseDurationSeconds) * 1000;
    const mine = held === this.#o.identity;
    if (!mine && held && renewed + duration > now.getTime()) return false;
    const next: RawLease = {
      ...lease,
      spec: {
        ...lease.spec,
        ...spec,
        ...(mine
          ? {}
          : { acquireTime: microTime(now), leaseTransitions: (lease.spec?.leaseTransitions ?? 0) + 1 }),
      },
    };
    try {
      await this.#client.request("PUT", this.#path, { body: next });
      return true;
    } catch (err) {
      if (isStatus(err, 409)) return false;
      throw err;
    }
  }

  /**
   * Waits until this identity leads (resolves true), or the signal aborts (false). After that, keeps
   * renewing in the background and calls `onLost` if the Lease is lost.
   */
  async acquire(signal: AbortSignal, onLost: () => void, onError?: (err: unknown) => void): Promise<boolean> {
    while (!signal.aborted) {
      try {
        if (await this.tryAcquireOrRenew()) break;
      } catch (err) {
        onError?.(err);
      }
      await sleep(this.#o.retryMs, undefined, { signal }).catch(() => undefined);
    }
    if (signal.aborted) return false;
    this.#leader = true;
    void this.#renewLoop(signal, onLost, onError);
    return true;
  }

  async #renewLoop(signal: AbortSignal, onLost: () => void, onError?: (err: unknown) => void): Promise<void> {
    let lastRenew = Date.now();
    while (!signal.aborted && this.#leader) {
      await sleep(this.#o.renewMs, undefined, { signal }).catch(() => undefined);
      if (signal.aborted) break;
      try {
        if (await this.tryAcquireOrRenew()) {
          lastRenew = Date.now();
          continue;
        }
        this.#leader = false;
      } catch (err) {
        onError?.(err);
        if (Date.now() - lastRenew < this.#o.leaseDurationSeconds * 1000 - this.#o.renewMs) continue;
        this.#leader = false;
      }
    }
    if (!this.#leader && !signal.aborted) onLost();
  }

  /** Gives the Lease up (on shutdown), so the next leader need not wait for it to expire. */
  async release(): Promise<void> {
    if (!this.#leader) return;
    this.#leader = false;
    try {
      const lease = await this.#client.get<RawLease>(this.#path);
      if (lease.spec?.holderIdentity !== this.#o.identity) return;
      await this.#client.request("PUT", this.#path, {
        body: { ...lease, spec: { ...lease.spec, holderIdentity: null, leaseDurationSeconds: 1 } },
      });
    } catch {
      // best effort: the Lease expires anyway
    }
  }
}
