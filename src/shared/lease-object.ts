/**
 * A coordination.k8s.io/v1 Lease as Walship reads and writes it: the operator's leader election
 * (src/operator/kube/leader.ts) and the replicator's single-writer Leases (src/replicator/lease.ts).
 * Types and the time format only: no client.
 */

export interface RawLease {
  apiVersion?: string;
  kind?: string;
  metadata: {
    name: string;
    namespace: string;
    resourceVersion?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    ownerReferences?: unknown[];
  };
  spec?: {
    holderIdentity?: string | null;
    leaseDurationSeconds?: number;
    acquireTime?: string;
    renewTime?: string;
    leaseTransitions?: number;
  };
}

/** Kubernetes' MicroTime: RFC 3339 with microseconds. */
export function microTime(d: Date | number = new Date()): string {
  return new Date(d).toISOString().replace(/\.(\d{3})Z$/, ".$1000Z");
}
