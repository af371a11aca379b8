/**
 * `walship operator`'s flags (Go style, as every walship command takes them) and the options they
 * make. Pure: the command line and the environment in, options out.
 */
import os from "node:os";
import { ErrorCodes, WalshipError } from "../shared/errors.ts";
import { type FlagSpec, parseFlags } from "../shared/flags.ts";
import { type LeaseRole, parseLeaseRole } from "./specs/lease.ts";

export interface OperatorOptions {
  kubeconfig?: string;
  /** Watch only these namespaces (an informer per namespace and resource); all when empty or unset. */
  namespaces?: string[];
  leaderElection: boolean;
  leaderElectionNamespace: string;
  leaderElectionId: string;
  identity: string;
  /** host:port for /metrics, /healthz, /readyz; "" = none. */
  addr: string;
  image?: string;
  /** The role bound to replicating pods for their Leases (specs/lease.ts); unset: no Leases. */
  leaseRole?: LeaseRole;
  workers: number;
  resyncMs: number;
  /** How often a healthy SqliteReplica's pods are polled. */
  pollMs: number;
  shutdownTimeoutMs: number;
}

export const OPERATOR_FLAGS: FlagSpec[] = [
  {
    name: "kubeconfig",
    type: "string",
    metavar: "PATH",
    help: "kubeconfig file (default: $KUBECONFIG, ~/.kube/config, in-cluster)",
  },
  {
    name: "namespace",
    type: "string",
    metavar: "NS[,NS...]",
    help: "watch only these namespaces (default: all); needs rights in these only",
  },
  { name: "leader-elect", type: "boolean", default: true, help: "elect one leader with a Lease" },
  {
    name: "leader-election-namespace",
    type: "string",
    metavar: "NS",
    help: "the Lease's namespace (default: $POD_NAMESPACE, else the kubeconfig's)",
  },
  {
    name: "leader-election-id",
    type: "string",
    metavar: "NAME",
    default: "walship-operator",
    help: "the Lease's name",
  },
  {
    name: "addr",
    type: "string",
    metavar: "HOST:PORT",
    default: ":8080",
    help: "/metrics, /healthz, /readyz listener; empty for none",
  },
  {
    name: "image",
    type: "string",
    metavar: "IMAGE",
    help: "the walship image injected when a SqliteReplica names none",
  },
  {
    name: "replicator-lease-role",
    type: "string",
    metavar: "KIND/NAME",
    help: "the ClusterRole/NAME or Role/NAME bound to replicating pods so each holds a Lease per destination (default: none, the claim in the bucket alone fences)",
  },
  { name: "workers", type: "string", metavar: "N", default: "2", help: "concurrent reconciles" },
  {
    name: "resync",
    type: "string",
    metavar: "SECONDS",
    default: "300",
    help: "re-queue every SqliteReplica, and repeat its applies and Secret checks, this often",
  },
  {
    name: "poll",
    type: "string",
    metavar: "SECONDS",
    default: "10",
    help: "poll a healthy SqliteReplica's sidecars this often (from 3 s, backing off, while not settled)",
  },
  { name: "log-format", type: "string", metavar: "FORMAT", default: "json", help: "json or text" },
];

function int(flag: string, v: string | boolean | undefined, min: number): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < min)
    throw new WalshipError(
      ErrorCodes.USAGE,
      `parse flags: -${flag} must be an integer >= ${min}, not "${String(v)}"`,
    );
  return n;
}

/** `-namespace a,b`: DNS labels, de-duplicated, in order. */
export function namespaceList(value: string | undefined): string[] {
  if (value === undefined) return [];
  const out: string[] = [];
  for (const ns of value.split(",").map((x) => x.trim())) {
    if (!/^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/.test(ns)) {
      throw new WalshipError(
        ErrorCodes.USAGE,
        `parse flags: -namespace: ${JSON.stringify(ns)} is not a namespace name (a DNS label)`,
      );
    }
    if (!out.includes(ns)) out.push(ns);
  }
  return out;
}

export function optionsFromFlags(
  argv: string[],
  env: NodeJS.ProcessEnv = process.env,
): OperatorOptions & { logFormat: "json" | "text" } {
  const { values: f, args } = parseFlags("operator", OPERATOR_FLAGS, argv);
  if (args.length > 0)
    throw new WalshipError(ErrorCodes.USAGE, `parse flags: unexpected arguments: ${args.join(" ")}`);
  const logFormat = f["log-format"] === "text" ? "text" : "json";
  const leaseRole = parseLeaseRole(
    typeof f["replicator-lease-role"] === "string" ? f["replicator-lease-role"] : undefined,
  );
  const str = (k: string) => (typeof f[k] === "string" && f[k] !== "" ? (f[k] as string) : undefined);
  return {
    ...(str("kubeconfig") ? { kubeconfig: str("kubeconfig") } : {}),
    namespaces: namespaceList(str("namespace")),
    leaderElection: f["leader-elect"] === true,
    leaderElectionNamespace: str("leader-election-namespace") ?? env.POD_NAMESPACE ?? "",
    leaderElectionId: str("leader-election-id") ?? "walship-operator",
    identity: `${env.POD_NAME ?? os.hostname()}_${process.pid}_${Math.random().toString(16).slice(2, 8)}`,
    addr: typeof f.addr === "string" ? f.addr : ":8080",
    ...(str("image") ? { image: str("image") } : {}),
    ...(leaseRole ? { leaseRole } : {}),
    workers: int("workers", f.workers, 1),
    resyncMs: int("resync", f.resync, 1) * 1000,
    pollMs: int("poll", f.poll, 1) * 1000,
    shutdownTimeoutMs: 10_000,
    logFormat,
  };
}
