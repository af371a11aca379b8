/**
 * Restore drills on the operator's side: the drill Job checked against a literal expected object, and
 * the decisions (decideDrill) from literal inputs: when a drill starts (on request, on schedule, a
 * missed slot once), what a finished Job's report becomes in status.drills and DrillsPassing, and a
 * Job that failed without a report or vanished.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { type DrillStatus, SqliteReplicaSpec } from "../../src/api/v1alpha1/index.ts";
import type { StatefulSet } from "../../src/operator/kube/types.ts";
import { drilledPod, drillTargets } from "../../src/operator/replica/drillrunner.ts";
import { type DrillObserved, decideDrill } from "../../src/operator/replica/drills.ts";
import { buildDrillJob, drillJobName, requestKey, slotKey } from "../../src/operator/specs/drilljob.ts";
import { DRILL_REPORT_KIND } from "../../src/shared/drill.ts";

const spec = SqliteReplicaSpec.parse({
  statefulSetName: "app",
  database: { path: "/data/app.db", volumeName: "data" },
  destinations: [
    {
      name: "minio",
      s3: {
        bucket: "backups",
        endpoint: "http://minio:9000",
        credentials: {
          accessKeyId: { name: "s3", key: "id" },
          secretAccessKey: { name: "s3", key: "secret" },
        },
      },
    },
    { name: "local", file: { claimName: "backups", path: "shop" } },
  ],
  drills: {
    schedule: "30 3 * * *",
    pointInTime: true,
    verifyQuery: "SELECT 1 FROM t",
    destinations: ["minio", "local"],
  },
});

const sts: StatefulSet = {
  metadata: { name: "app", namespace: "shop" },
  spec: {
    serviceName: "app",
    selector: { matchLabels: { app: "app" } },
    template: {
      spec: {
        securityContext: { runAsUser: 1000, fsGroup: 1000 },
        serviceAccountName: "app",
        containers: [{ name: "app", image: "app" }],
      },
    },
  },
};

describe("the drill Job", () => {
  it("runs walship drill as the first pod, into an emptyDir, with no volume of the app", () => {
    const job = buildDrillJob(
      {
        name: "db-drill-r1234abcd",
        replica: { name: "db", namespace: "shop", uid: "u-1" },
        spec,
        workload: sts,
        pod: drilledPod({ kind: "StatefulSet", name: "app" }),
        identity: { runAsUser: 1000, fsGroup: 1000 },
        request: "now",
      },
      { image: "walship:test" },
    );
    const labels = {
      "app.kubernetes.io/managed-by": "walship",
      "walship.dev/sqlitereplica": "db",
      "walship.dev/drill": "true",
    };
    assert.deepEqual(job, {
      apiVersion: "batch/v1",
      kind: "Job",
      metadata: {
        name: "db-drill-r1234abcd",
        namespace: "shop",
        labels,
        annotations: { "walship.dev/drill-request": "now" },
        ownerReferences: [
          {
            apiVersion: "walship.dev/v1alpha1",
            kind: "SqliteReplica",
            name: "db",
            uid: "u-1",
            controller: true,
            blockOwnerDeletion: true,
          },
        ],
      },
      spec: {
        activeDeadlineSeconds: 3600,
        backoffLimit: 0,
        ttlSecondsAfterFinished: 3600,
        template: {
          metadata: { labels },
          spec: {
            restartPolicy: "Never",
            securityContext: { runAsUser: 1000, fsGroup: 1000 },
            serviceAccountName: "app",
            containers: [
              {
                name: "walship-drill",
                image: "walship:test",
                command: [
                  "walship",
                  "drill",
                  "-config",
                  "/etc/walship/walship.yml",
                  "-scratch",
                  "/var/lib/walship/drill",
                  "-result-file",
                  "/dev/termination-log",
                  "-log-format",
                  "json",
                  "-point-in-time",
                  "-verify-sql",
                  "SELECT 1 FROM t",
                  "-replicas",
                  "minio,local",
                ],
                env: [{ name: "POD_NAME", value: "app-0" }],
                volumeMounts: [
                  { name: "walship-config", mountPath: "/etc/walship", readOnly: true },
                  { name: "walship-scratch", mountPath: "/var/lib/walship/drill" },
                  {
                    name: "walship-dest-local",
                    mountPath: "/var/lib/walship/destinations/local",
                    readOnly: true,
                  },
                  {
                    name: "walship-creds-minio",
                    mountPath: "/var/run/walship/credentials/minio",
                    readOnly: true,
                  },
                ],
                resources: { requests: { cpu: "100m", memory: "256Mi" }, limits: { memory: "512Mi" } },
                securityContext: {
                  allowPrivilegeEscalation: false,
                  capabilities: { drop: ["ALL"] },
                  readOnlyRootFilesystem: true,
                  runAsNonRoot: true,
                  runAsUser: 1000,
                  seccompProfile: { type: "RuntimeDefault" },
                },
                terminationMessagePolicy: "FallbackToLogsOnError",
              },
            ],
            volumes: [
              { name: "walship-config", configMap: { name: "db-walship" } },
              { name: "walship-scratch", emptyDir: {} },
              { name: "walship-dest-local", persistentVolumeClaim: { claimName: "backups" } },
              {
                name: "walship-creds-minio",
                projected: {
                  sources: [
                    { secret: { name: "s3", items: [{ key: "id", path: "access-key-id" }] } },
                    { secret: { name: "s3", items: [{ key: "secret", path: "secret-access-key" }] } },
                  ],
                },
              },
            ],
          },
        },
      },
    });
  });

  it("scratchSizeLimit bounds the scratch emptyDir; a bad quantity is refused, naming the field", () => {
    const limited = SqliteReplicaSpec.parse({ ...spec, drills: { ...spec.drills, scratchSizeLimit: "2Gi" } });
    const job = buildDrillJob({
      name: "db-drill-x",
      replica: { name: "db", namespace: "shop", uid: "u-1" },
      spec: limited,
      workload: sts,
      pod: "app-0",
      identity: { runAsUser: 1000 },
    });
    const scratch = job.spec.template.spec.volumes.find((v) => v.name === "walship-scratch");
    assert.deepEqual(scratch?.emptyDir, { sizeLimit: "2Gi" });
    const bad = SqliteReplicaSpec.safeParse({ ...spec, drills: { scratchSizeLimit: "two gigs" } });
    assert.equal(bad.success, false);
    assert.deepEqual(bad.error?.issues[0]?.path, ["drills", "scratchSizeLimit"]);
  });

  it("an encrypted destination: the Job mounts its age identities, as the sidecar does", () => {
    const sealed = SqliteReplicaSpec.parse({
      ...spec,
      destinations: [
        {
          name: "sealed",
          file: { claimName: "backups" },
          age: { identities: [{ name: "age", key: "id.key" }], recipients: [{ name: "age", key: "id.pub" }] },
        },
      ],
      drills: {},
    });
    const job = buildDrillJob({
      name: "db-drill-x",
      replica: { name: "db", namespace: "shop", uid: "u-1" },
      spec: sealed,
      workload: sts,
      pod: "app-0",
      identity: { runAsUser: 1000 },
    });
    const pod = job.spec.template.spec;
    const creds = pod.volumes.find((v) => v.name === "walship-creds-sealed");
    assert.deepEqual(
      creds?.projected?.sources?.map((x) => x.secret?.items?.[0]),
      [
        { key: "id.key", path: "age-identity-0" },
        { key: "id.pub", path: "age-recipient-0" },
      ],
    );
    assert.ok(pod.containers[0]?.volumeMounts?.some((m) => m.name === "walship-creds-sealed" && m.readOnly));
    // No options: every destination, latest only.
    assert.deepEqual(pod.containers[0]?.command?.slice(-2), ["-log-format", "json"]);
  });

  it("names: the slot's minute or the request's hash, shortened to 63 characters", () => {
    assert.equal(slotKey(new Date("2026-12-03T03:30:00Z")), "202612030330");
    assert.match(requestKey("2026-12-03T10:00:00Z"), /^r[0-9a-f]{8}$/);
    assert.equal(requestKey("a"), requestKey("a"));
    assert.notEqual(requestKey("a"), requestKey("b"));
    assert.equal(drillJobName("db", "202612030330"), "db-drill-202612030330");
    const long = drillJobName("x".repeat(60), "202612030330");
    assert.ok(long.length <= 63 && long.endsWith("-drill-202612030330"), long);
  });

  it("a Deployment's drill is its fixed name; databases times destinations are the targets", () => {
    assert.equal(drilledPod({ kind: "Deployment", name: "web" }), "web");
    const multi = SqliteReplicaSpec.parse({
      statefulSetName: "app",
      databases: [
        { name: "a", path: "/data/a.db", volumeName: "data" },
        { name: "b", path: "/data/b.db", volumeName: "data" },
      ],
      destinations: [
        { name: "one", file: { claimName: "c" } },
        { name: "two", file: { claimName: "c" } },
      ],
      drills: { destinations: ["two"] },
    });
    assert.deepEqual(drillTargets(multi), [
      { destination: "two", path: "/data/a.db", database: "a" },
      { destination: "two", path: "/data/b.db", database: "b" },
    ]);
  });
});

const NOW = new Date("2026-12-03T10:00:00Z");
function observed(over: Partial<DrillObserved> = {}): DrillObserved {
  return {
    now: NOW,
    name: "db",
    spec: { drills: SqliteReplicaSpec.parse({ ...spec, drills: { schedule: "30 3 * * *" } }).drills },
    annotations: undefined,
    creationTimestamp: "2026-12-03T09:00:00Z",
    drills: undefined,
    run: undefined,
    targets: [{ destination: "minio", path: "/data/app.db" }],
    ...over,
  };
}
const report = (results: unknown[]) => JSON.stringify({ kind: DRILL_REPORT_KIND, results });
const passed = {
  database: "/data/app.db",
  destination: "minio",
  outcome: "Passed",
  at: "2026-12-03T10:00:05Z",
  position: "0123456789abcdef/00000003:4152",
  seconds: 1.25,
  sizeBytes: 81920,
  pointInTime: {
    timestamp: "2026-12-03T09:30:00.000Z",
    position: "0123456789abcdef/00000001:4152",
    seconds: 0.5,
    sizeBytes: 40960,
  },
};

describe("decideDrill", () => {
  it("nothing due: no Job, DrillsPassing Unknown, requeued for the next slot", () => {
    const d = decideDrill(observed());
    assert.equal(d.create, undefined);
    assert.equal(d.run, undefined);
    assert.equal(d.condition?.status, "Unknown");
    assert.equal(d.condition?.reason, "NoDrillYet");
    // Next 03:30 after creation (09:00) is tomorrow's.
    assert.equal(d.requeueAfterMs, Date.parse("2026-12-04T03:30:00Z") - NOW.getTime());
  });

  it("no spec.drills and no request: nothing at all", () => {
    const d = decideDrill(observed({ spec: {} }));
    assert.deepEqual(d, { drills: undefined, run: undefined, events: [] });
  });

  it("a request starts a drill once, with or without spec.drills", () => {
    const annotations = { "walship.dev/drill-requested": "go" };
    const d = decideDrill(observed({ spec: {}, annotations }));
    assert.deepEqual(d.create, { name: `db-drill-${requestKey("go")}`, request: "go" });
    assert.deepEqual(d.run, {
      job: `db-drill-${requestKey("go")}`,
      startedAt: NOW.toISOString(),
      request: "go",
    });
    assert.equal(d.events[0]?.reason, "DrillStarted");
    assert.equal(d.condition?.reason, "DrillRunning");
    // The same value again, once that run completed: nothing new.
    const again = decideDrill(
      observed({ spec: {}, annotations, run: { ...d.run!, completedAt: NOW.toISOString() }, drills: [] }),
    );
    assert.equal(again.create, undefined);
  });

  it("the schedule's slot after the last run has come: a drill starts, a missed slot only once", () => {
    const run = {
      job: "db-drill-202612010330",
      startedAt: "2026-12-01T03:30:00Z",
      completedAt: "2026-12-01T03:31:00Z",
    };
    const d = decideDrill(observed({ run }));
    assert.deepEqual(d.create, { name: "db-drill-202612020330" });
    assert.equal(d.run?.startedAt, NOW.toISOString());
    // Once it ran (started now), the next is tomorrow's slot, not today's missed one.
    const after = decideDrill(observed({ run: { ...d.run!, completedAt: NOW.toISOString() } }));
    assert.equal(after.create, undefined);
    assert.equal(after.requeueAfterMs, Date.parse("2026-12-04T03:30:00Z") - NOW.getTime());
  });

  it("a request answered before a scheduled run is not answered again after it (the annotation stays)", () => {
    const annotations = { "walship.dev/drill-requested": "go" };
    const answered = {
      job: `db-drill-${requestKey("go")}`,
      startedAt: "2026-12-01T03:00:00Z",
      completedAt: "2026-12-01T03:01:00Z",
      request: "go",
    };
    // The slot after it has come: the scheduled run starts and carries the answered value on.
    const d = decideDrill(observed({ annotations, run: answered, drills: [] }));
    assert.deepEqual(d.create, { name: "db-drill-202612010330" });
    assert.deepEqual(d.run, {
      job: "db-drill-202612010330",
      startedAt: NOW.toISOString(),
      answeredRequest: "go",
    });
    // Once the scheduled run completed: nothing new, the same request is not run a second time.
    const after = decideDrill(
      observed({ annotations, run: { ...d.run!, completedAt: NOW.toISOString() }, drills: [] }),
    );
    assert.equal(after.create, undefined);
    assert.equal(after.run?.request, undefined);
    assert.equal(after.requeueAfterMs, Date.parse("2026-12-04T03:30:00Z") - NOW.getTime());
    // A new value is a new request.
    const next = decideDrill(
      observed({
        annotations: { "walship.dev/drill-requested": "again" },
        run: { ...d.run!, completedAt: NOW.toISOString() },
        drills: [],
      }),
    );
    assert.deepEqual(next.create, { name: `db-drill-${requestKey("again")}`, request: "again" });
  });

  it("a finished Job's report becomes status.drills and DrillsPassing True, with an Event", () => {
    const run = { job: "db-drill-rx", startedAt: "2026-12-03T09:59:00Z", request: "go" };
    const d = decideDrill(
      observed({ run, job: { state: "Succeeded", message: `log line\n${report([passed])}\n` } }),
    );
    const want: DrillStatus = {
      destination: "minio",
      at: "2026-12-03T10:00:05Z",
      outcome: "Passed",
      position: "0123456789abcdef/00000003:4152",
      restoreSeconds: 1.25,
      sizeBytes: 81920,
      pointInTime: {
        timestamp: "2026-12-03T09:30:00.000Z",
        position: "0123456789abcdef/00000001:4152",
        restoreSeconds: 0.5,
        sizeBytes: 40960,
      },
      job: "db-drill-rx",
      lastPassedAt: "2026-12-03T10:00:05Z",
    };
    assert.deepEqual(d.drills, [want]);
    assert.equal(d.run?.completedAt, NOW.toISOString());
    assert.equal(d.condition?.status, "True");
    assert.equal(d.condition?.reason, "DrillsPassed");
    assert.deepEqual(d.events, [
      {
        type: "Normal",
        reason: "DrillPassed",
        message: "drill db-drill-rx: minio restored to 0123456789abcdef/00000003:4152 in 1.25s (81920 bytes)",
      },
    ]);
  });

  it("a failed destination: DrillsPassing False with its message, the last pass kept, a Warning", () => {
    const previous: DrillStatus[] = [
      {
        destination: "minio",
        at: "2026-12-02T03:31:00Z",
        outcome: "Passed",
        lastPassedAt: "2026-12-02T03:31:00Z",
      },
    ];
    const failed = {
      ...passed,
      outcome: "Failed",
      message: "restore: -verify-sql returned no row: SELECT 1",
    };
    delete (failed as Record<string, unknown>).position;
    const d = decideDrill(
      observed({
        drills: previous,
        run: { job: "db-drill-x", startedAt: "2026-12-03T09:59:00Z" },
        job: { state: "Failed", message: report([failed]) },
      }),
    );
    assert.equal(d.drills?.[0]?.outcome, "Failed");
    assert.equal(d.drills?.[0]?.lastPassedAt, "2026-12-02T03:31:00Z");
    assert.deepEqual(d.condition, {
      type: "DrillsPassing",
      status: "False",
      reason: "DrillFailed",
      message: "minio: restore: -verify-sql returned no row: SELECT 1",
    });
    assert.equal(d.events[0]?.type, "Warning");
    assert.equal(d.events[0]?.reason, "DrillFailed");
  });

  it("a Job that failed without a report fails every target with the Job's reason", () => {
    const d = decideDrill(
      observed({
        targets: [
          { destination: "minio", path: "/data/app.db" },
          { destination: "local", path: "/data/app.db" },
        ],
        run: { job: "db-drill-x", startedAt: "2026-12-03T09:00:00Z" },
        job: {
          state: "Failed",
          reason: "DeadlineExceeded",
          message: "Job was active longer than specified deadline",
        },
      }),
    );
    assert.deepEqual(
      d.drills?.map((x) => [x.destination, x.outcome, x.message]),
      [
        [
          "local",
          "Failed",
          "the drill Job db-drill-x failed without a report (DeadlineExceeded): Job was active longer than specified deadline",
        ],
        [
          "minio",
          "Failed",
          "the drill Job db-drill-x failed without a report (DeadlineExceeded): Job was active longer than specified deadline",
        ],
      ],
    );
  });

  it("a running Job is looked at again soon; a missing one is created again, then counted lost", () => {
    const run = { job: "db-drill-x", startedAt: "2026-12-03T09:59:50Z" };
    const running = decideDrill(observed({ run, job: { state: "Running" } }));
    assert.equal(running.requeueAfterMs, 3000);
    assert.equal(running.create, undefined);
    const missing = decideDrill(observed({ run, job: { state: "Missing" } }));
    assert.deepEqual(missing.create, { name: "db-drill-x" });
    const lost = decideDrill(
      observed({ run: { ...run, startedAt: "2026-12-03T09:00:00Z" }, job: { state: "Missing" } }),
    );
    assert.equal(lost.create, undefined);
    assert.match(
      lost.drills?.[0]?.message ?? "",
      /the drill Job db-drill-x is gone before its result was read/,
    );
  });

  it("a schedule the pattern admits but no clock has: DrillsPassing False, InvalidSchedule", () => {
    const d = decideDrill(observed({ spec: { drills: { ...spec.drills!, schedule: "61 * * * *" } } }));
    assert.equal(d.create, undefined);
    assert.deepEqual(d.condition, {
      type: "DrillsPassing",
      status: "False",
      reason: "InvalidSchedule",
      message: 'spec.drills.schedule: minute "61" is outside 0-59',
    });
  });
});
