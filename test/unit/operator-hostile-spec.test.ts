// biome-ignore-all lint/suspicious/noTemplateCurlyInString: ${HOME} is a hostile value, not a template
/**
 * Hostile values in every kind of SqliteReplica and SqliteRestore field (issue 13): huge strings,
 * control characters, names that are not DNS labels, negative durations and sizes, unknown enum
 * values. Each gets a field error naming its field, at admission (the CRD schema, against the real
 * kube-apiserver with a server-side dry run) and at reconcile (zod), and nothing is injected or
 * changed: a SqliteReplica that admission lets through but zod refuses is reconciled to
 * Injected=False InvalidSpec with no apply, and a hostile SqliteRestore fails with no action.
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { after, before, describe, it } from "node:test";
import { stringify } from "yaml";
import { describeIssues, SqliteReplicaSpec, SqliteRestoreSpec } from "../../src/api/v1alpha1/index.ts";
import { KubeClient, observeRequests } from "../../src/operator/kube/client.ts";
import { EventRecorder } from "../../src/operator/kube/events.ts";
import type { StatefulSet } from "../../src/operator/kube/types.ts";
import { type SqliteReplicaObject, SqliteReplicaReconciler } from "../../src/operator/replica/reconcile.ts";
import { decide } from "../../src/operator/restore/machine.ts";
import { nullLogger } from "../../src/shared/log.ts";
import { type ControlPlane, startControlPlane } from "../helpers/controlplane.ts";
import { appStatefulSet } from "../helpers/e2e.ts";

const ROOT = path.resolve(import.meta.dirname, "../..");
const NS = "hostile";

const replica = () => ({
  statefulSetName: "app",
  database: { path: "/data/app.db", volumeName: "data" },
  destinations: [
    {
      name: "minio",
      s3: {
        bucket: "backups",
        path: "shop",
        endpoint: "http://minio:9000",
        region: "us-east-1",
        credentials: {
          accessKeyId: { name: "s3", key: "id" },
          secretAccessKey: { name: "s3", key: "secret" },
        },
      },
    },
  ],
  sidecar: { image: "walship:1", resources: { limits: { memory: "384Mi" } } },
});
type Spec = ReturnType<typeof replica> & Record<string, unknown>;
type S3 = Spec["destinations"][0]["s3"] & Record<string, unknown>;

/** [what, change, the field named, whether admission (the CRD schema) refuses it too]. */
const REPLICA_CASES: Array<[string, (s: Spec) => void, string, boolean]> = [
  [
    "a huge name",
    (s) => {
      s.statefulSetName = "a".repeat(300);
    },
    "spec.statefulSetName",
    true,
  ],
  [
    "a bell in the path",
    (s) => {
      s.database.path = "/data/app\u0007.db";
    },
    "spec.database.path",
    true,
  ],
  [
    "a newline in a prefix",
    (s) => {
      (s.destinations[0]!.s3 as S3).path = "a\nexec: x";
    },
    "spec.destinations[0].s3.path",
    true,
  ],
  [
    "'..' in the path",
    (s) => {
      s.database.path = "/data/../etc/shadow";
    },
    "spec.database.path",
    true,
  ],
  [
    "a name that is no DNS label",
    (s) => {
      s.destinations[0]!.name = "My_Dest";
    },
    "spec.destinations[0].name",
    true,
  ],
  [
    "a container that is no DNS label",
    (s) => {
      s.appContainer = "App Container";
    },
    "spec.appContainer",
    true,
  ],
  [
    "a negative duration",
    (s) => {
      s.syncInterval = "-1s";
    },
    "spec.syncInterval",
    true,
  ],
  [
    "a duration out of range",
    (s) => {
      s.retention = "9999999999999h";
    },
    "spec.retention",
    false,
  ],
  [
    "a negative memory limit",
    (s) => {
      s.sidecar.resources.limits.memory = "-1Gi";
    },
    "spec.sidecar.resources.limits.memory",
    true,
  ],
  [
    "text as a quantity",
    (s) => {
      s.restoreResources = { requests: { memory: "1Gi; rm -rf /" } };
    },
    "spec.restoreResources.requests.memory",
    true,
  ],
  [
    "an unknown policy",
    (s) => {
      s.restoreOnStart = "Always";
    },
    "spec.restoreOnStart",
    true,
  ],
  [
    "an unknown pull policy",
    (s) => {
      (s.sidecar as Record<string, unknown>).imagePullPolicy = "Sometimes";
    },
    "spec.sidecar.imagePullPolicy",
    true,
  ],
  [
    "an image with a newline",
    (s) => {
      s.sidecar.image = "evil\nimage:1";
    },
    "spec.sidecar.image",
    true,
  ],
  [
    "a port out of range",
    (s) => {
      (s.sidecar as Record<string, unknown>).metricsPort = 70000;
    },
    "spec.sidecar.metricsPort",
    true,
  ],
  [
    "a negative uid",
    (s) => {
      (s.sidecar as Record<string, unknown>).securityContext = { runAsUser: -1 };
    },
    "spec.sidecar.securityContext.runAsUser",
    true,
  ],
  [
    "a capability that is not one",
    (s) => {
      (s.sidecar as Record<string, unknown>).securityContext = { capabilities: { add: ["sys_admin; id"] } };
    },
    "spec.sidecar.securityContext.capabilities.add[0]",
    true,
  ],
  [
    "a Secret key with a path",
    (s) => {
      (s.destinations[0]!.s3 as S3).credentials.accessKeyId.key = "../token";
    },
    "spec.destinations[0].s3.credentials.accessKeyId.key",
    true,
  ],
  [
    "'$' in an endpoint",
    (s) => {
      (s.destinations[0]!.s3 as S3).endpoint = "http://x/${HOME}";
    },
    "spec.destinations[0].s3.endpoint",
    true,
  ],
  [
    "a huge region",
    (s) => {
      (s.destinations[0]!.s3 as S3).region = "r".repeat(200);
    },
    "spec.destinations[0].s3.region",
    true,
  ],
  [
    "two destinations of one name",
    (s) => {
      s.destinations.push(structuredClone(s.destinations[0]!));
    },
    "spec.destinations",
    true,
  ],
];

const RESTORE_CASES: Array<[string, Record<string, unknown>, string]> = [
  ["a pod that is no name", { pod: "app-0; rm -rf /" }, "spec.pod"],
  ["a time that is no time", { target: { timestamp: "yesterday" } }, "spec.target.timestamp"],
  ["a generation that is no generation", { target: { generation: "XYZ" } }, "spec.target.generation"],
  ["a negative index", { target: { generation: "0123456789abcdef", index: -1 } }, "spec.target.index"],
  ["an unknown mode", { mode: "Sideways" }, "spec.mode"],
  ["a negative timeout", { timeout: "-5m" }, "spec.timeout"],
  [
    "a negative claim size",
    { mode: "NewClaim", newClaim: { name: "r", size: "-1Gi" } },
    "spec.newClaim.size",
  ],
  [
    "a class that is no name",
    { mode: "NewClaim", newClaim: { name: "r", storageClassName: "Fast Disk" } },
    "spec.newClaim.storageClassName",
  ],
  ["a NUL in the SQL", { verify: { sql: "SELECT 1\u0000; DROP TABLE t" } }, "spec.verify.sql"],
  ["an unknown policy", { previousDatabase: "Shred" }, "spec.previousDatabase"],
  [
    "a memory limit that is no quantity",
    { resources: { limits: { memory: "lots" } } },
    "spec.resources.limits.memory",
  ],
];

function hostileReplica(change: (s: Spec) => void): Spec {
  const s = replica() as Spec;
  change(s);
  return s;
}

describe("hostile values: the field is named (zod, as reconcile checks)", () => {
  it("every SqliteReplica case", () => {
    assert.ok(SqliteReplicaSpec.safeParse(replica()).success, "the base spec is valid");
    for (const [what, change, field] of REPLICA_CASES) {
      const r = SqliteReplicaSpec.safeParse(hostileReplica(change));
      assert.equal(r.success, false, what);
      assert.equal(describeIssues("spec", r.error!).field, field, what);
    }
  });

  it("every SqliteRestore case fails the restore at once, with no action", () => {
    for (const [what, over, field] of RESTORE_CASES) {
      const spec = { sqliteReplicaName: "db", mode: "InPlace", ...over };
      const r = SqliteRestoreSpec.safeParse(spec);
      assert.equal(r.success, false, what);
      assert.equal(describeIssues("spec", r.error!).field, field, what);
      const d = decide({
        now: new Date("2026-01-01T00:00:00Z"),
        name: "r",
        creationTimestamp: "2026-01-01T00:00:00Z",
        spec,
        status: {},
        replica: replica(),
        podsRemaining: 1,
        jobs: {},
        others: [],
      });
      assert.equal(d.status.phase, "Failed", what);
      assert.deepEqual(d.actions, [], what);
      const c = d.status.conditions?.find((x) => x.type === "Complete");
      assert.equal(c?.reason, "InvalidSpec", what);
      assert.ok(c?.message.startsWith(`${field}: `), `${what}: ${c?.message}`);
    }
  });
});

describe("hostile values at admission and reconcile (real kube-apiserver)", { timeout: 240_000 }, () => {
  let cp: ControlPlane;
  let client: KubeClient;
  const file = (obj: unknown) => {
    const p = path.join(cp.dir, `obj-${Math.random().toString(16).slice(2)}.yaml`);
    fs.writeFileSync(p, stringify(obj));
    return p;
  };
  const object = (kind: string, name: string, spec: unknown) => ({
    apiVersion: "walship.dev/v1alpha1",
    kind,
    metadata: { name, namespace: NS },
    spec,
  });

  before(async () => {
    cp = await startControlPlane({ controllerManager: false });
    await cp.kubectl(["apply", "-f", path.join(ROOT, "crds")]);
    await cp.kubectl(["wait", "--for=condition=Established", "crd", "--all", "--timeout=60s"]);
    await cp.kubectl(["create", "namespace", NS]);
    await cp.kubectl([
      "-n",
      NS,
      "create",
      "secret",
      "generic",
      "s3",
      "--from-literal=id=a",
      "--from-literal=secret=b",
    ]);
    await cp.kubectl(["apply", "-f", file(appStatefulSet(NS, "/data"))]);
    client = KubeClient.load(cp.kubeconfig);
  });
  after(async () => {
    await cp?.stop();
  });

  it("the CRD schema refuses each SqliteReplica case, naming the field", async () => {
    const ok = await cp.kubectl([
      "apply",
      "--dry-run=server",
      "-f",
      file(object("SqliteReplica", "ok", replica())),
    ]);
    assert.match(ok.stdout, /created \(server dry run\)/);
    for (const [what, change, field, atAdmission] of REPLICA_CASES) {
      if (!atAdmission) continue;
      const r = await cp.kubectl(
        ["apply", "--dry-run=server", "-f", file(object("SqliteReplica", "h", hostileReplica(change)))],
        { allowFailure: true },
      );
      assert.notEqual(r.code, 0, `${what} was admitted`);
      assert.ok(r.stderr.includes(field), `${what}: ${r.stderr}`);
    }
  });

  it("the CRD schema refuses each SqliteRestore case, naming the field", async () => {
    for (const [what, over, field] of RESTORE_CASES) {
      const spec = { sqliteReplicaName: "db", mode: "InPlace", ...over };
      const r = await cp.kubectl(
        ["apply", "--dry-run=server", "-f", file(object("SqliteRestore", "h", spec))],
        {
          allowFailure: true,
        },
      );
      assert.notEqual(r.code, 0, `${what} was admitted`);
      assert.ok(r.stderr.includes(field), `${what}: ${r.stderr}`);
    }
  });

  it("a spec admission lets through but zod refuses is not injected: InvalidSpec, no apply", async () => {
    const [, change, field] = REPLICA_CASES.find(([, , , admitted]) => !admitted)!;
    await cp.kubectl(["apply", "-f", file(object("SqliteReplica", "db", hostileReplica(change)))]);
    const requests: string[] = [];
    const stop = observeRequests((verb, resource) => requests.push(`${verb} ${resource}`));
    const reconciler = new SqliteReplicaReconciler({
      client,
      events: new EventRecorder(client, "hostile-test"),
      log: nullLogger(),
      listReplicas: () => [],
      options: { image: "walship-test/walship:dev" },
    });
    try {
      await reconciler.reconcile(`${NS}/db`);
    } finally {
      stop();
    }
    assert.deepEqual(
      requests.filter((r) => !r.startsWith("get ") && r !== "create events"),
      ["patch sqlitereplicas", "update sqlitereplicas/status"],
      "the finalizer and the status, nothing applied",
    );
    const cr = await client.get<SqliteReplicaObject>(
      `/apis/walship.dev/v1alpha1/namespaces/${NS}/sqlitereplicas/db`,
    );
    const injected = cr.status?.conditions?.find((c) => c.type === "Injected");
    assert.equal(injected?.reason, "InvalidSpec");
    assert.ok(injected?.message.startsWith(`${field}: `), injected?.message);
    const sts = await client.get<StatefulSet>(`/apis/apps/v1/namespaces/${NS}/statefulsets/app`);
    assert.equal(sts.spec?.template.spec?.initContainers, undefined, "the StatefulSet is unchanged");
    const cms = await client.get<{ items: unknown[] }>(
      `/api/v1/namespaces/${NS}/configmaps?labelSelector=walship.dev/sqlitereplica`,
    );
    assert.equal(cms.items.length, 0, "no ConfigMap");
  });
});
