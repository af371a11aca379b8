/**
 * Several databases per SqliteReplica (`spec.databases`): the schema and its CEL rules (a real
 * kube-apiserver too), the config (one replica path per database), the injection (every volume
 * mounted, every database restored on start), the status per database, SqliteRestore naming one,
 * and the plugin's report and flags.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { parse } from "yaml";
import {
  databasesOf,
  SqliteReplicaSpec,
  SqliteRestoreStatus,
  selectDatabase,
} from "../../src/api/v1alpha1/index.ts";
import type { Pod, StatefulSet } from "../../src/operator/kube/types.ts";
import { aggregate, podFacts } from "../../src/operator/replica/pods.ts";
import { decide } from "../../src/operator/restore/machine.ts";
import type { Observed } from "../../src/operator/restore/types.ts";
import { renderConfig } from "../../src/operator/specs/config.ts";
import {
  buildApplyPatch,
  isTargetProblem,
  resolveTarget,
  type Target,
} from "../../src/operator/specs/statefulset.ts";
import { buildRestore } from "../../src/plugin/restore.ts";
import { buildReport, formatReport } from "../../src/plugin/status.ts";
import type { ReplicatorStatus } from "../../src/shared/protocol.ts";
import { specAdmission } from "../helpers/admission.ts";

const base = {
  statefulSetName: "app",
  destinations: [
    { name: "minio", s3: { bucket: "bkt", path: "shop", credentials: { fromServiceAccount: true } } },
    { name: "local", file: { claimName: "backups" } },
  ],
};
const two = [
  { name: "main", path: "/data/app.db", volumeName: "data" },
  { name: "logs", path: "/logs/events.db", volumeName: "logs" },
];
const spec = SqliteReplicaSpec.parse({ ...base, databases: two });
/** The replicator expands it per pod: the config holds it as written. */
const POD = `${"$"}{POD_NAME}`;

function sts(
  mounts = [
    { name: "data", mountPath: "/data" },
    { name: "logs", mountPath: "/logs" },
  ],
): StatefulSet {
  return {
    metadata: { name: "app", namespace: "shop" },
    spec: {
      selector: { matchLabels: { app: "app" } },
      serviceName: "app",
      template: {
        metadata: { labels: { app: "app" } },
        spec: { containers: [{ name: "app", image: "app:1", volumeMounts: mounts }] },
      },
      volumeClaimTemplates: [{ metadata: { name: "data" } }, { metadata: { name: "logs" } }],
    },
  };
}

describe("spec.databases: schema", () => {
  it("takes database or databases, exactly one, with unique names and paths", () => {
    assert.deepEqual(
      databasesOf(spec).map((d) => d.name),
      ["main", "logs"],
    );
    const issue = (input: unknown) => {
      const r = SqliteReplicaSpec.safeParse(input);
      assert.equal(r.success, false, `accepted: ${JSON.stringify(input)}`);
      return r.error?.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ") ?? "";
    };
    assert.match(issue(base), /set exactly one of database or databases/);
    assert.match(
      issue({ ...base, database: { path: "/data/app.db", volumeName: "data" }, databases: two }),
      /set exactly one of database or databases/,
    );
    assert.match(
      issue({ ...base, databases: [two[0], { ...two[1], name: "main" }] }),
      /databases: database names must be unique/,
    );
    assert.match(
      issue({ ...base, databases: [two[0], { ...two[1], path: "/data/app.db" }] }),
      /databases: database paths must be unique/,
    );
    assert.match(issue({ ...base, databases: [] }), /databases/);
    assert.match(issue({ ...base, databases: [{ ...two[0], name: "Main" }] }), /databases\.0\.name/);
    assert.match(
      issue({ ...base, databases: [{ ...two[0], path: "/data/../etc/x.db" }] }),
      /databases\.0\.path: path must not contain '\.' or '\.\.' segments/,
    );
  });
});

describe("spec.databases: the config, the injection", () => {
  it("renders one dbs entry per database, each under <path>/<pod>/<name> on every destination", () => {
    const cfg = parse(renderConfig(spec)) as {
      dbs: Array<{ path: string; replicas: Array<{ name: string; path: string }> }>;
    };
    assert.deepEqual(
      cfg.dbs.map((d) => [d.path, d.replicas.map((r) => `${r.name}=${r.path}`)]),
      [
        ["/data/app.db", [`minio=shop/${POD}/main`, `local=/var/lib/walship/destinations/local/${POD}/main`]],
        [
          "/logs/events.db",
          [`minio=shop/${POD}/logs`, `local=/var/lib/walship/destinations/local/${POD}/logs`],
        ],
      ],
    );
    // One database keeps the layout it always had.
    const one = SqliteReplicaSpec.parse({ ...base, database: { path: "/data/app.db", volumeName: "data" } });
    const cfg1 = parse(renderConfig(one)) as { dbs: Array<{ replicas: Array<{ path: string }> }> };
    assert.equal(cfg1.dbs[0]?.replicas[0]?.path, `shop/${POD}`);
  });

  it("mounts every database's volume once, and restores every database before the app starts", () => {
    const t = resolveTarget(spec, sts()) as Target;
    assert.equal(isTargetProblem(t), false, JSON.stringify(t));
    const patch = buildApplyPatch({ name: "app", namespace: "shop" }, "db", spec, t, "h");
    const init = patch.spec?.template.spec?.initContainers ?? [];
    assert.deepEqual(
      init.map((c) => c.name),
      ["walship-restore", "walship"],
    );
    assert.deepEqual(init[0]?.command?.slice(-2), ["/data/app.db", "/logs/events.db"]);
    for (const c of init) {
      assert.deepEqual(
        (c.volumeMounts ?? []).filter((m) => m.name === "data" || m.name === "logs"),
        [
          { name: "data", mountPath: "/data" },
          { name: "logs", mountPath: "/logs" },
        ],
        c.name,
      );
    }
    // Two databases on one volume share its mount.
    const same = SqliteReplicaSpec.parse({
      ...base,
      databases: [two[0], { name: "cache", path: "/data/cache.db", volumeName: "data" }],
    });
    const ts = resolveTarget(same, sts()) as Target;
    const side = buildApplyPatch({ name: "app", namespace: "shop" }, "db", same, ts, "h").spec?.template.spec
      ?.initContainers?.[1];
    assert.deepEqual(
      (side?.volumeMounts ?? []).filter((m) => m.name === "data"),
      [{ name: "data", mountPath: "/data" }],
    );
  });

  it("names the database's own field when one of them cannot be found", () => {
    assert.deepEqual(resolveTarget(spec, sts([{ name: "data", mountPath: "/data" }])), {
      reason: "VolumeNotMounted",
      field: "spec.databases[1].volumeName",
      message: "container app does not mount volume logs (without subPathExpr)",
    });
    const outside = SqliteReplicaSpec.parse({
      ...base,
      databases: [two[0], { ...two[1], path: "/data2/events.db" }],
    });
    assert.deepEqual(resolveTarget(outside, sts()), {
      reason: "PathOutsideVolume",
      field: "spec.databases[1].path",
      message: "/data2/events.db is not under /logs, where container app mounts logs",
    });
  });
});

/** The sidecar's document: one entry per path, each with one destination. */
function sidecarDoc(dbs: Array<{ path: string; gen: string; lag: number; sync: string; error?: string }>) {
  return {
    apiVersion: "walship.dev/v1alpha1",
    kind: "ReplicatorStatus",
    version: "0",
    time: "2026-01-01T00:00:10Z",
    ready: true,
    databases: dbs.map((d) => ({
      path: d.path,
      ready: d.error === undefined,
      generation: d.gen,
      sizeBytes: 1,
      walSizeBytes: 0,
      replicas: [
        {
          name: "minio",
          type: "s3",
          location: "s3://b/p",
          ready: d.error === undefined,
          lagSeconds: d.lag,
          pendingTransactions: 0,
          pendingBytes: 0,
          lastSyncAt: d.sync,
          window: { oldest: "2026-01-01T00:00:00Z", newest: d.sync },
          syncCount: 3,
          syncErrorCount: 0,
          ...(d.error ? { lastError: { message: d.error } } : {}),
        },
      ],
    })),
  } as ReplicatorStatus;
}

describe("spec.databases: status per database", () => {
  it("reports each database per pod and over the pods; the pod's own fields cover them all", () => {
    const a = podFacts(
      "app-0",
      sidecarDoc([
        { path: "/data/app.db", gen: "aaaaaaaaaaaaaaaa", lag: 0.5, sync: "2026-01-01T00:00:09Z" },
        { path: "/logs/events.db", gen: "bbbbbbbbbbbbbbbb", lag: 2, sync: "2026-01-01T00:00:07Z" },
      ]),
      databasesOf(spec),
    );
    assert.deepEqual(a, {
      name: "app-0",
      ready: true,
      lagSeconds: 2,
      lastSyncTime: "2026-01-01T00:00:07Z",
      windowOldest: "2026-01-01T00:00:00Z",
      windowNewest: "2026-01-01T00:00:07Z",
      databases: [
        {
          name: "main",
          ready: true,
          generation: "aaaaaaaaaaaaaaaa",
          lagSeconds: 0.5,
          lastSyncTime: "2026-01-01T00:00:09Z",
          windowOldest: "2026-01-01T00:00:00Z",
          windowNewest: "2026-01-01T00:00:09Z",
        },
        {
          name: "logs",
          ready: true,
          generation: "bbbbbbbbbbbbbbbb",
          lagSeconds: 2,
          lastSyncTime: "2026-01-01T00:00:07Z",
          windowOldest: "2026-01-01T00:00:00Z",
          windowNewest: "2026-01-01T00:00:07Z",
        },
      ],
    });
    // A database the sidecar does not report, and one with an error: named in the pod's error.
    const b = podFacts(
      "app-1",
      sidecarDoc([
        {
          path: "/data/app.db",
          gen: "cccccccccccccccc",
          lag: 4,
          sync: "2026-01-01T00:00:05Z",
          error: "NoSuchBucket",
        },
      ]),
      databasesOf(spec),
    );
    assert.equal(b.ready, false);
    assert.equal(b.reason, "ReplicationError");
    assert.equal(
      b.lastError,
      "database main: destination minio: NoSuchBucket; database logs: the sidecar reports no such database",
    );
    const top = aggregate([a, b]);
    assert.equal(top.generation, undefined, "no one generation stands for several databases");
    assert.equal(top.lagSeconds, 4);
    assert.deepEqual(top.databases, [
      {
        name: "main",
        generation: "aaaaaaaaaaaaaaaa",
        lagSeconds: 4,
        lastSyncTime: "2026-01-01T00:00:05Z",
        windowOldest: "2026-01-01T00:00:00Z",
        windowNewest: "2026-01-01T00:00:05Z",
      },
      { name: "logs", generation: "bbbbbbbbbbbbbbbb", lagSeconds: 2 },
    ]);
  });
});

describe("spec.databases: SqliteRestore names the database", () => {
  const obs = (spec: Record<string, unknown>): Observed => ({
    now: new Date("2026-11-22T04:00:00.000Z"),
    name: "r1",
    creationTimestamp: "2026-11-22T03:58:00Z",
    generation: 1,
    spec: { sqliteReplicaName: "db", mode: "InPlace", ...spec },
    status: {},
    replica: { ...base, databases: two },
    workload: sts(),
    podsRemaining: 1,
    jobs: {},
    others: [],
  });

  it("restores the named database: its claim, its backup path", () => {
    const d = decide(obs({ database: "logs" }));
    SqliteRestoreStatus.parse(d.status);
    assert.equal(d.status.phase, "Planning", d.status.message);
    assert.equal(d.status.claimName, "logs-app-0");
    assert.equal(d.status.backupPath, "/logs/events.db.pre-restore-r1");
  });

  it("fails with the field and the names when none or an unknown one is named", () => {
    const none = decide(obs({}));
    assert.equal(none.status.phase, "Failed");
    assert.equal(none.status.conditions?.find((c) => c.type === "Complete")?.reason, "DatabaseNotFound");
    assert.equal(
      none.status.message,
      "spec.database: SqliteReplica db lists several databases (main, logs); name one of them",
    );
    const unknown = decide(obs({ database: "cache" }));
    assert.equal(
      unknown.status.message,
      "spec.database: SqliteReplica db has no database cache (it has main, logs)",
    );
    const single = selectDatabase(
      SqliteReplicaSpec.parse({ ...base, database: { path: "/data/app.db", volumeName: "data" } }),
      "main",
      "db",
    );
    assert.deepEqual(single, {
      problem:
        "spec.database: SqliteReplica db replicates one database (spec.database); leave spec.database unset",
    });
  });
});

describe("spec.databases: the kubectl plugin", () => {
  it("restore --database sets spec.database", () => {
    const r = buildRestore(
      { replica: "db", namespace: "shop", to: "latest", inPlace: true, database: "logs", name: "r" },
      new Date(),
    );
    assert.equal((r.spec as { database?: string }).database, "logs");
  });

  it("status shows each database over the pods, and which database each destination entry is", () => {
    const status = aggregate([
      podFacts(
        "app-0",
        sidecarDoc([
          { path: "/data/app.db", gen: "aaaaaaaaaaaaaaaa", lag: 0.5, sync: "2026-01-01T00:00:09Z" },
          { path: "/logs/events.db", gen: "bbbbbbbbbbbbbbbb", lag: 2, sync: "2026-01-01T00:00:07Z" },
        ]),
        databasesOf(spec),
      ),
    ]);
    const rep = buildReport({
      replica: {
        metadata: { name: "db", namespace: "shop" },
        spec,
        status: { phase: "Replicating", ...status },
      },
      workloadFound: true,
      pods: [
        {
          pod: { metadata: { name: "app-0" }, status: { phase: "Running" } } as Pod,
          sidecar: sidecarDoc([
            { path: "/data/app.db", gen: "aaaaaaaaaaaaaaaa", lag: 0.5, sync: "2026-01-01T00:00:09Z" },
            { path: "/logs/events.db", gen: "bbbbbbbbbbbbbbbb", lag: 2, sync: "2026-01-01T00:00:07Z" },
          ]),
        },
      ],
      events: [],
      restores: [],
    });
    assert.equal(rep.database, "/data/app.db, /logs/events.db");
    assert.deepEqual(
      rep.databases?.map((d) => [d.name, d.path, d.generation, d.lagSeconds]),
      [
        ["main", "/data/app.db", "aaaaaaaaaaaaaaaa", 0.5],
        ["logs", "/logs/events.db", "bbbbbbbbbbbbbbbb", 2],
      ],
    );
    assert.deepEqual(
      rep.pods[0]?.destinations.map((d) => `${d.database}/${d.name}`),
      ["main/minio", "logs/minio"],
    );
    const text = formatReport(rep, new Date("2026-01-01T00:00:10Z"));
    assert.match(text, /StatefulSet:\s+app, databases main \(\/data\/app\.db\), logs \(\/logs\/events\.db\)/);
    assert.match(text, /Databases \(every pod\):\n\s+DATABASE\s+PATH\s+GENERATION/);
    assert.match(text, /\n\s+logs\s+\/logs\/events\.db\s+bbbbbbbbbbbbbbbb\s+2/);
  });
});

describe("spec.databases at admission (real kube-apiserver, the CRD's CEL rules)", {
  timeout: 240_000,
}, () => {
  const admit = specAdmission();

  it("admits databases; refuses both or neither, repeated names and repeated paths", async () => {
    const ok = await admit({ ...base, databases: two });
    assert.equal(ok.code, 0, ok.stderr);
    const cases: Array<[unknown, RegExp]> = [
      [base, /set exactly one of database or databases/],
      [
        { ...base, database: { path: "/data/app.db", volumeName: "data" }, databases: two },
        /set exactly one of database or databases/,
      ],
      [
        { ...base, databases: [two[0], { ...two[1], path: "/data/app.db" }] },
        /database paths must be unique/,
      ],
      [{ ...base, databases: [two[0], { ...two[1], name: "main" }] }, /Duplicate value/],
    ];
    for (const [bad, want] of cases) {
      const r = await admit(bad);
      assert.notEqual(r.code, 0, `admitted: ${JSON.stringify(bad)}`);
      assert.match(r.stderr, want);
    }
  });
});
