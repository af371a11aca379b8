/**
 * Single-writer fencing's in-cluster half (issue #19) against a real API server: each replicator's
 * Fence holds a coordination.k8s.io Lease per destination (src/replicator/lease.ts) beside the claim
 * in the bucket, with the service account token and RBAC a replicating pod gets from the operator
 * (deploy/rbac/replicator.yaml bound by the operator's own RoleBinding, specs/lease.ts).
 *
 * Shown here: a second writer is fenced by the Lease and names the first; racing claimers never both
 * win (the API server's resourceVersion, where the bucket claim alone may overlap them for one
 * renewal); a released Lease is taken at once, an abandoned one only after it expires; a restarted
 * sidecar of the same pod takes its own back; a refused or unreachable API server leaves the bucket
 * claim alone in charge and is reported without the token. And the operator's RBAC: it may bind the
 * replicator role and no wider one.
 */
import assert from "node:assert/strict";
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { parse as parseYaml } from "yaml";
import { buildLeaseRoleBinding } from "../../src/operator/specs/lease.ts";
import type { ClaimHolder } from "../../src/replicator/claim.ts";
import { Fence } from "../../src/replicator/fence.ts";
import {
  type KubeAccess,
  LEASE_CLAIM_ANNOTATION,
  LeaseApi,
  LeaseClaim,
  leaseName,
} from "../../src/replicator/lease.ts";
import { FileReplicaClient } from "../../src/replicator/storage/file.ts";
import { type ControlPlane, startControlPlane } from "../helpers/controlplane.ts";
import { sleep } from "../helpers/walship.ts";

const NS = "apps";
const TTL_MS = 3000;
const ROOT = path.resolve(import.meta.dirname, "../..");

let cp: ControlPlane;
let tmp: string;
/** The replicating pods' service account's credentials, as the operator projects them. */
let bound: KubeAccess;
/** A service account nothing grants Lease rights. */
let unbound: KubeAccess;

interface LeaseObject {
  metadata: {
    annotations?: Record<string, string>;
    labels?: Record<string, string>;
    ownerReferences?: unknown[];
  };
  spec: { holderIdentity?: string | null; leaseTransitions?: number; leaseDurationSeconds?: number };
}

async function mustApply(obj: unknown): Promise<void> {
  await cp.kubectl(["apply", "--server-side", "-f", "-"], { input: JSON.stringify(obj) });
}

async function accessFor(sa: string): Promise<KubeAccess> {
  const dir = mkdtempSync(path.join(tmp, `${sa}-`));
  writeFileSync(path.join(dir, "token"), await cp.tokenFor(NS, sa));
  copyFileSync(cp.caFile, path.join(dir, "ca.crt"));
  return { server: cp.server, dir, namespace: NS, owner: { name: "db", uid: "0b1c8f2e-cr-uid" } };
}

before(async () => {
  tmp = mkdtempSync(path.join(os.tmpdir(), "walship-lease-"));
  // No controller manager: its garbage collector would delete what is owned by a SqliteReplica that
  // this test never creates.
  cp = await startControlPlane({ controllerManager: false });
  await mustApply({ apiVersion: "v1", kind: "Namespace", metadata: { name: NS } });
  for (const sa of ["app", "other", "operator"]) {
    await mustApply({ apiVersion: "v1", kind: "ServiceAccount", metadata: { name: sa, namespace: NS } });
  }
  // The chart's replicator role, from the file the chart and deploy/ both use.
  await mustApply(parseYaml(readFileSync(path.join(ROOT, "deploy/rbac/replicator.yaml"), "utf8")));
  // The RoleBinding exactly as the operator builds it.
  await mustApply(
    buildLeaseRoleBinding({ name: "db", namespace: NS, uid: "0b1c8f2e-cr-uid" }, "app", {
      kind: "ClusterRole",
      name: "walship-operator-replicator",
    }),
  );
  bound = await accessFor("app");
  unbound = await accessFor("other");
});

after(async () => {
  await cp?.stop();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

const pod = (name: string, uid: string): ClaimHolder => ({
  pod: { namespace: NS, name, uid },
  sqliteReplica: `${NS}/db`,
  host: name,
  pid: 1,
});

let n = 0;
/** A fresh replica path (a file destination), so each test has its own claim and Lease. */
function destination(): string {
  return mkdtempSync(path.join(tmp, `dest-${n++}-`));
}

function fence(root: string, holder: ClaimHolder, access: KubeAccess = bound, settleMs?: number): Fence {
  const client = new FileReplicaClient(root);
  return new Fence(client, {
    name: "d",
    ttlMs: TTL_MS,
    holder,
    lease: new LeaseClaim(new LeaseApi(access), client.location, TTL_MS),
    ...(settleMs !== undefined ? { settleMs } : {}),
  });
}

async function getLease(root: string): Promise<LeaseObject> {
  const name = leaseName(new FileReplicaClient(root).location);
  const r = await cp.request<LeaseObject>(
    "GET",
    `/apis/coordination.k8s.io/v1/namespaces/${NS}/leases/${name}`,
  );
  assert.equal(r.status, 200, `the Lease ${NS}/${name}`);
  return r.body;
}

describe("the replicator's Lease on a real API server", () => {
  it("the first writer holds the Lease; a second is fenced by it and names the first", async () => {
    const root = destination();
    const a = fence(root, pod("app-0", "uid-a"));
    await a.step();
    assert.equal(a.held, true);
    assert.deepEqual(a.lease, {
      ref: `${NS}/${leaseName(new FileReplicaClient(root).location)}`,
      held: true,
    });
    const lease = await getLease(root);
    assert.match(lease.spec.holderIdentity ?? "", /^app-0_[0-9a-f]{12}$/);
    assert.equal(lease.spec.leaseDurationSeconds, 3);
    const doc = JSON.parse(lease.metadata.annotations?.[LEASE_CLAIM_ANNOTATION] ?? "{}");
    assert.deepEqual(doc.holder.pod, { namespace: NS, name: "app-0", uid: "uid-a" });
    assert.equal(lease.metadata.labels?.["walship.dev/sqlitereplica"], "db");
    assert.deepEqual(lease.metadata.ownerReferences, [
      { apiVersion: "walship.dev/v1alpha1", kind: "SqliteReplica", name: "db", uid: "0b1c8f2e-cr-uid" },
    ]);

    const b = fence(root, pod("app-0", "uid-b"));
    await b.step();
    assert.equal(b.held, false);
    assert.equal(b.fencedBy?.holder.pod?.uid, "uid-a");
    assert.equal(b.fencedBy?.lease, a.lease?.ref, "the Lease fenced it, and it is named");
    // The first renews and keeps it.
    await a.step();
    assert.equal(a.held, true);
    await a.release();
    await b.release();
  });

  it("racing claimers never both win: the API server takes one write per resourceVersion", async () => {
    // settleMs 0: the bucket claim's read-back alone could let both through in a race; the Lease
    // must not.
    for (let i = 0; i < 8; i++) {
      const root = destination();
      const a = fence(root, pod("app-0", `race-a-${i}`), bound, 0);
      const b = fence(root, pod("app-0", `race-b-${i}`), bound, 0);
      await Promise.all([a.step(), b.step()]);
      assert.equal(
        [a.held, b.held].filter(Boolean).length,
        1,
        `round ${i}: exactly one holds (a ${a.held}, b ${b.held})`,
      );
      const loser = a.held ? b : a;
      assert.ok(loser.fencedBy, `round ${i}: the other knows who holds it`);
      await a.release();
      await b.release();
    }
  });

  it("a released Lease is taken at once; an abandoned one only after it expires", async () => {
    const root = destination();
    const a = fence(root, pod("app-0", "rel-a"));
    await a.step();
    await a.release();
    const released = await getLease(root);
    assert.equal(released.spec.holderIdentity ?? null, null);
    assert.equal(released.metadata.annotations?.[LEASE_CLAIM_ANNOTATION], undefined);
    const b = fence(root, pod("app-0", "rel-b"));
    await b.step();
    assert.equal(b.held, true, "taken at once after a release");

    // b stops renewing without a release (a crash): c, of another SqliteReplica, waits one TTL,
    // then takes over, and the Lease is then owned by c's SqliteReplica.
    const c = fence(root, pod("app-0", "rel-c"), { ...bound, owner: { name: "db-c", uid: "uid-of-db-c" } });
    const started = Date.now();
    await c.step();
    assert.equal(c.held, false);
    while (!c.held && Date.now() - started < 5 * TTL_MS) {
      await sleep(250);
      await c.step();
    }
    assert.equal(c.held, true, "taken after the abandoned Lease expired");
    assert.ok(Date.now() - started >= TTL_MS, `not before one TTL: ${Date.now() - started} ms`);
    // a -> b (after a's release) and b -> c: two transitions; a's own creation is none.
    const taken = await getLease(root);
    assert.equal(taken.spec.leaseTransitions, 2, "each takeover is a transition");
    assert.deepEqual(taken.metadata.ownerReferences, [
      { apiVersion: "walship.dev/v1alpha1", kind: "SqliteReplica", name: "db-c", uid: "uid-of-db-c" },
    ]);
    assert.equal(taken.metadata.labels?.["walship.dev/sqlitereplica"], "db-c");
    await c.release();
  });

  it("a restarted sidecar of the same pod takes its own Lease back at once", async () => {
    const root = destination();
    const before = fence(root, pod("app-0", "same-uid"));
    await before.step();
    const after = fence(root, pod("app-0", "same-uid"));
    await after.step();
    assert.equal(after.held, true);
    await after.release();
  });

  it("refused by RBAC: reported with the Lease's name and no token; the bucket claim alone fences", async () => {
    const root = destination();
    const a = fence(root, pod("app-0", "rbac-a"), unbound);
    await a.step();
    assert.equal(a.held, true, "the bucket claim still lets the only writer replicate");
    assert.equal(a.lease?.held, false);
    assert.match(a.lease?.error ?? "", /^Lease apps\/walship-[0-9a-f]{20}: HTTP 403: .*forbidden/);
    const token = readFileSync(path.join(unbound.dir, "token"), "utf8");
    assert.ok(!a.lease?.error?.includes(token.slice(-20)), "the token is not echoed");
    // And a second writer is still fenced, by the bucket claim.
    const b = fence(root, pod("app-0", "rbac-b"), unbound);
    await b.step();
    assert.equal(b.held, false);
    assert.equal(b.fencedBy?.holder.pod?.uid, "rbac-a");
    assert.equal(b.fencedBy?.lease, undefined, "fenced by the bucket claim");
    await a.release();
  });

  it("an unreachable API server: reported; the bucket claim alone fences", async () => {
    const root = destination();
    const a = fence(root, pod("app-0", "down-a"), { ...bound, server: "https://127.0.0.1:1" });
    await a.step();
    assert.equal(a.held, true);
    assert.match(a.lease?.error ?? "", /^Lease apps\/walship-[0-9a-f]{20}: .*ECONNREFUSED/);
    await a.release();
  });
});

describe("the operator's RBAC for Leases", () => {
  before(async () => {
    const rules = parseYaml(readFileSync(path.join(ROOT, "deploy/rbac/clusterrole.yaml"), "utf8"));
    await mustApply(rules);
    await mustApply({
      apiVersion: "rbac.authorization.k8s.io/v1",
      kind: "RoleBinding",
      metadata: { name: "operator", namespace: NS },
      roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: "walship-operator" },
      subjects: [{ kind: "ServiceAccount", name: "operator", namespace: NS }],
    });
  });

  it("may bind the replicator role and no wider one", async () => {
    const token = await cp.tokenFor(NS, "operator");
    const create = (role: string, name: string) =>
      cp.request<{ message?: string }>(
        "POST",
        `/apis/rbac.authorization.k8s.io/v1/namespaces/${NS}/rolebindings`,
        buildLeaseRoleBinding({ name, namespace: NS, uid: "0b1c8f2e-cr-uid" }, "app", {
          kind: "ClusterRole",
          name: role,
        }),
        token,
      );
    const ok = await create("walship-operator-replicator", "db2");
    assert.equal(ok.status, 201, JSON.stringify(ok.body));
    // cluster-admin, not admin: with no controller manager, the aggregated admin role has no rules
    // yet, and binding an empty role escalates nothing.
    const wider = await create("cluster-admin", "db3");
    assert.equal(wider.status, 403, "binding cluster-admin is refused");
    assert.match(wider.body.message ?? "", /forbidden/);
  });
});
