/**
 * kubectl walship without a cluster: argument parsing (kubectl's flag style), the SqliteRestore the
 * restore flags build, the status report and its text from literal inputs, the sidecar listings,
 * and the exit codes of usage errors.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { Destination } from "../../src/api/v1alpha1/index.ts";
import { selectorQuery } from "../../src/operator/kube/selector.ts";
import { GLOBAL_OPTS, oneName, parseArgs } from "../../src/plugin/args.ts";
import { type Io, parseTimeout, run } from "../../src/plugin/cli.ts";
import { ago, bytes, humanDuration, lag, windowAges } from "../../src/plugin/format.ts";
import type { Pod } from "../../src/plugin/kube.ts";
import { formatListing, listingCommand, parseListing } from "../../src/plugin/listing.ts";
import { buildRestore, defaultRestoreName, failureOf, progressLine } from "../../src/plugin/restore.ts";
import { buildReport, destinationType, formatReport, type StatusInput } from "../../src/plugin/status.ts";
import { ErrorCodes, type WalshipError } from "../../src/shared/errors.ts";

const NOW = new Date("2026-05-01T12:00:00Z");

function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    return (err as WalshipError).code;
  }
  return "no error";
}

function io(): Io & { stdout: string; stderr: string } {
  const o = {
    stdout: "",
    stderr: "",
    env: {},
    now: () => NOW,
    out(t: string) {
      o.stdout += t;
    },
    err(t: string) {
      o.stderr += t;
    },
  };
  return o;
}

describe("arguments", () => {
  const specs = [
    ...GLOBAL_OPTS,
    { name: "output", short: "o", type: "string" as const, help: "" },
    { name: "wait", type: "boolean" as const, help: "" },
  ];

  it("takes flags before and after the name, long and short, with = or a space", () => {
    assert.deepEqual(parseArgs("status", specs, ["app", "-n", "demo", "--context=kind", "-ojson"]), {
      values: { namespace: "demo", context: "kind", output: "json" },
      args: ["app"],
    });
    assert.deepEqual(parseArgs("status", specs, ["--namespace", "x", "-o=json", "app", "--wait"]), {
      values: { namespace: "x", output: "json", wait: true },
      args: ["app"],
    });
    assert.deepEqual(parseArgs("status", specs, ["--wait=false", "--", "-app"]).values, { wait: false });
    assert.deepEqual(parseArgs("status", specs, ["--", "-app"]).args, ["-app"]);
  });

  it("refuses an unknown flag, a missing value, a bad boolean; -h asks for help", () => {
    assert.equal(
      codeOf(() => parseArgs("status", specs, ["--nope"])),
      ErrorCodes.USAGE,
    );
    assert.equal(
      codeOf(() => parseArgs("status", specs, ["-x"])),
      ErrorCodes.USAGE,
    );
    assert.equal(
      codeOf(() => parseArgs("status", specs, ["app", "-n"])),
      ErrorCodes.USAGE,
    );
    assert.equal(
      codeOf(() => parseArgs("status", specs, ["--wait=maybe"])),
      ErrorCodes.USAGE,
    );
    try {
      parseArgs("status", specs, ["app", "-h"]);
      assert.fail("no help");
    } catch (err) {
      assert.equal((err as WalshipError).details.help, true);
    }
  });

  it("wants exactly one name", () => {
    assert.equal(oneName("status", ["app"]), "app");
    assert.equal(
      codeOf(() => oneName("status", [])),
      ErrorCodes.USAGE,
    );
    assert.equal(
      codeOf(() => oneName("status", ["a", "b"])),
      ErrorCodes.USAGE,
    );
  });

  it("reads --timeout as a Go duration", () => {
    assert.equal(parseTimeout("90s"), 90_000);
    assert.equal(parseTimeout("1h30m"), 5_400_000);
    assert.equal(parseTimeout("0"), 0);
    assert.equal(
      codeOf(() => parseTimeout("soon")),
      ErrorCodes.USAGE,
    );
  });
});

describe("formatting", () => {
  it("writes durations as kubectl writes ages", () => {
    assert.deepEqual(
      [5, 119, 125, 600, 3 * 3600 + 60, 8 * 3600, 47 * 3600, 50 * 3600, 9 * 86400].map((s) =>
        humanDuration(s * 1000),
      ),
      ["5s", "119s", "2m5s", "10m", "3h1m", "8h", "47h", "2d2h", "9d"],
    );
    assert.equal(humanDuration(-5000), "0s");
    assert.equal(ago("2026-05-01T11:59:48Z", NOW), "12s ago");
    assert.equal(ago(undefined, NOW), "-");
  });

  it("writes lag, bytes and the window", () => {
    assert.deepEqual([0, 0.04, 0.45, 9.96, 75].map(lag), ["0s", "0.0s", "0.5s", "10.0s", "75s"]);
    assert.equal(lag(undefined), "-");
    assert.deepEqual([0, 512, 1536, 10 * 1024 * 1024, 3 * 1024 ** 3].map(bytes), [
      "0B",
      "512B",
      "1.5KiB",
      "10MiB",
      "3GiB",
    ]);
    assert.equal(windowAges("2026-05-01T10:00:00Z", "2026-05-01T11:59:59Z", NOW), "120m..1s ago");
    assert.equal(windowAges(undefined, undefined, NOW), "none");
  });
});

describe("restore flags -> SqliteRestore", () => {
  const base = { replica: "app", namespace: "demo", to: "latest", inPlace: false };

  it("builds an InPlace restore to a time, and a NewClaim restore of the latest state", () => {
    assert.deepEqual(buildRestore({ ...base, inPlace: true, to: "2026-05-01T10:15:00Z", name: "r1" }, NOW), {
      apiVersion: "walship.dev/v1alpha1",
      kind: "SqliteRestore",
      metadata: { name: "r1", namespace: "demo" },
      spec: { sqliteReplicaName: "app", mode: "InPlace", target: { timestamp: "2026-05-01T10:15:00Z" } },
    });
    assert.deepEqual(
      buildRestore(
        {
          ...base,
          newClaim: "copy",
          size: "2Gi",
          storageClass: "fast",
          pod: "app-1",
          destination: "minio",
          verifySql: "SELECT 1",
        },
        NOW,
      ),
      {
        apiVersion: "walship.dev/v1alpha1",
        kind: "SqliteRestore",
        metadata: { name: "app-20260501120000", namespace: "demo" },
        spec: {
          sqliteReplicaName: "app",
          mode: "NewClaim",
          pod: "app-1",
          destination: "minio",
          newClaim: { name: "copy", size: "2Gi", storageClassName: "fast" },
          verify: { sql: "SELECT 1" },
        },
      },
    );
    assert.equal(defaultRestoreName("db", new Date("2026-01-02T03:04:05.678Z")), "db-20260102030405");
  });

  it("refuses what the API would refuse, naming the flag", () => {
    const msg = (f: Parameters<typeof buildRestore>[0]) => {
      try {
        buildRestore(f, NOW);
      } catch (err) {
        assert.equal((err as WalshipError).code, ErrorCodes.USAGE);
        return (err as Error).message;
      }
      return "accepted";
    };
    assert.match(msg(base), /--in-place .* or --new-claim NAME/);
    assert.match(msg({ ...base, inPlace: true, newClaim: "x" }), /--in-place .* or --new-claim/);
    assert.match(
      msg({ ...base, inPlace: true, size: "1Gi" }),
      /--size and --storage-class go with --new-claim/,
    );
    assert.match(msg({ ...base, inPlace: true, to: "yesterday" }), /^--to: "yesterday"/);
    assert.match(msg({ ...base, inPlace: true, to: "2026-05-01 10:00" }), /^--to/);
    assert.match(msg({ ...base, inPlace: true, to: "2027-01-01T00:00:00Z" }), /in the future/);
    assert.match(msg({ ...base, newClaim: "Bad_Name" }), /^--new-claim: /);
    assert.match(msg({ ...base, newClaim: "ok", size: "lots" }), /^--size: /);
    assert.match(msg({ ...base, inPlace: true, destination: "UPPER" }), /^--destination: /);
    assert.match(msg({ ...base, inPlace: true, name: "-x" }), /^--name: /);
  });

  it("writes one progress line per phase, and the failure as WALSHIP_ERR_RESTORE", () => {
    const done = {
      metadata: { name: "r1" },
      status: {
        phase: "Succeeded" as const,
        message: "restored",
        restored: {
          generation: "0123456789abcdef",
          index: 3,
          offset: 4152,
          position: "0123456789abcdef/00000003:4152",
          lastCommitTime: "2026-05-01T10:14:59.123Z",
        },
      },
    };
    assert.equal(
      progressLine(done, NOW),
      "12:00:00 Succeeded   restored (restored to 0123456789abcdef/00000003:4152, last commit 2026-05-01T10:14:59Z)",
    );
    const failed = {
      metadata: { name: "r1" },
      status: {
        phase: "Failed" as const,
        message: "m",
        failure: { phase: "Planning", reason: "TargetBeforeWindow", message: "too old" },
      },
    };
    assert.equal(progressLine(failed, NOW), "12:00:00 Failed      m (TargetBeforeWindow in Planning)");
    const err = failureOf(failed);
    assert.equal(err.code, ErrorCodes.RESTORE);
    assert.match(err.message, /TargetBeforeWindow in phase Planning: too old/);
  });
});

const GEN = "0123456789abcdef";

function statusInput(): StatusInput {
  return {
    replica: {
      metadata: { name: "db", namespace: "demo" },
      spec: {
        statefulSetName: "app",
        database: { path: "/data/app.db", volumeName: "data" },
        destinations: [{ name: "minio", s3: { bucket: "b", credentials: { fromServiceAccount: true } } }],
        syncInterval: "1s",
        retention: "24h",
        restoreOnStart: "IfReplicaExists",
      },
      status: {
        phase: "Replicating",
        generation: GEN,
        lagSeconds: 0.2,
        lastSyncTime: "2026-05-01T11:59:57Z",
        lastSnapshotTime: "2026-05-01T11:00:00Z",
        windowOldest: "2026-05-01T10:00:00Z",
        windowNewest: "2026-05-01T11:59:57Z",
        conditions: [
          {
            type: "Ready",
            status: "True",
            reason: "Replicating",
            message: "1 pod(s) replicating",
            lastTransitionTime: "2026-05-01T11:55:00Z",
          },
        ],
        pods: [
          {
            name: "app-0",
            ready: true,
            generation: GEN,
            lagSeconds: 0.2,
            lastSyncTime: "2026-05-01T11:59:57Z",
            lastSnapshotTime: "2026-05-01T11:00:00Z",
            windowOldest: "2026-05-01T10:00:00Z",
            windowNewest: "2026-05-01T11:59:57Z",
          },
        ],
      },
    },
    workloadFound: true,
    pods: [
      {
        pod: { metadata: { name: "app-0" }, status: { phase: "Running" } } as Pod,
        sidecar: {
          apiVersion: "walship.dev/v1alpha1",
          kind: "ReplicatorStatus",
          version: "v0.1.0",
          time: "2026-05-01T12:00:00Z",
          ready: true,
          databases: [
            {
              path: "/data/app.db",
              ready: true,
              generation: GEN,
              sizeBytes: 8192,
              walSizeBytes: 0,
              replicas: [
                {
                  name: "minio",
                  type: "s3",
                  location: "s3://b/app/app-0",
                  ready: true,
                  generation: GEN,
                  position: { generation: GEN, index: 10, offset: 4152 },
                  lagSeconds: 0.2,
                  pendingTransactions: 1,
                  pendingBytes: 1536,
                  lastSyncAt: "2026-05-01T11:59:57Z",
                  lastSnapshot: { at: "2026-05-01T11:00:00Z", index: 0 },
                  window: { oldest: "2026-05-01T10:00:00Z", newest: "2026-05-01T11:59:57Z" },
                  syncCount: 5,
                  syncErrorCount: 0,
                },
              ],
            },
          ],
        },
      },
      {
        pod: { metadata: { name: "app-1" }, status: { phase: "Running" } } as Pod,
        sidecarError: "GET /api/v1/namespaces/demo/pods/app-1:9090/proxy/status: HTTP 403: forbidden",
      },
    ],
    events: [
      {
        metadata: { name: "e1" },
        involvedObject: {},
        type: "Normal",
        reason: "Replicating",
        message: "1 pod(s) replicating",
        count: 2,
        lastTimestamp: "2026-05-01T11:58:00Z" as unknown as Date,
      },
    ],
    restores: [],
  };
}

describe("status report", () => {
  it("merges the operator's per-pod facts with each sidecar's destinations", () => {
    const rep = buildReport(statusInput());
    assert.equal(rep.phase, "Replicating");
    assert.equal(rep.paused, false);
    assert.deepEqual(rep.destinations, [{ name: "minio", type: "s3" }]);
    for (const t of ["s3", "file", "sftp", "gcs", "abs"] as const) {
      assert.equal(destinationType({ name: "d", [t]: {} } as unknown as Destination), t);
    }
    assert.deepEqual(rep.pods[0]!.destinations, [
      {
        name: "minio",
        type: "s3",
        location: "s3://b/app/app-0",
        ready: true,
        generation: GEN,
        position: `${GEN}/0000000a:4152`,
        lagSeconds: 0.2,
        pendingBytes: 1536,
        pendingTransactions: 1,
        lastSyncTime: "2026-05-01T11:59:57Z",
        lastSnapshotTime: "2026-05-01T11:00:00Z",
        windowOldest: "2026-05-01T10:00:00Z",
        windowNewest: "2026-05-01T11:59:57Z",
      },
    ]);
    assert.equal(rep.pods[1]!.ready, false, "a pod the operator does not report is not ready");
    assert.match(rep.pods[1]!.sidecarError ?? "", /forbidden/);
    assert.deepEqual(rep.events, [
      {
        type: "Normal",
        reason: "Replicating",
        message: "1 pod(s) replicating",
        count: 2,
        lastSeen: "2026-05-01T11:58:00Z",
      },
    ]);
  });

  it("reads at a glance", () => {
    assert.equal(
      formatReport(buildReport(statusInput()), NOW),
      [
        "SqliteReplica: demo/db",
        "Phase:         Replicating (Ready True: Replicating)",
        "StatefulSet:   app, database /data/app.db",
        "Destinations:  minio (s3)",
        "Restorable:    2026-05-01T10:00:00Z .. 2026-05-01T11:59:57Z (every pod)",
        "Replication:   lag 0.2s, last sync 3s ago, last snapshot 60m ago",
        "",
        "Pods:",
        "  POD    PHASE    READY  GENERATION        LAG   LAST SYNC  LAST SNAPSHOT  RESTORABLE    PROBLEM",
        "  app-0  Running  True   0123456789abcdef  0.2s  3s ago     60m ago        120m..3s ago",
        "  app-1  Running  False  -                 -     -          -              none",
        "",
        "Destinations (from each pod's sidecar):",
        "  POD    DESTINATION  READY  POSITION                        LAG   PENDING      LAST SYNC  LAST SNAPSHOT  RESTORABLE    ERROR",
        "  app-0  minio        True   0123456789abcdef/0000000a:4152  0.2s  1.5KiB/1 tx  3s ago     60m ago        120m..3s ago",
        "  app-1: not read: GET /api/v1/namespaces/demo/pods/app-1:9090/proxy/status: HTTP 403: forbidden",
        "",
        "Conditions:",
        "  TYPE   STATUS  REASON       SINCE   MESSAGE",
        "  Ready  True    Replicating  5m ago  1 pod(s) replicating",
        "",
        "Events:",
        "  LAST SEEN  TYPE    REASON            MESSAGE",
        "  2m ago     Normal  Replicating (x2)  1 pod(s) replicating",
      ].join("\n"),
    );
  });

  it("says paused and nothing restorable for a paused SqliteReplica", () => {
    const input = statusInput();
    input.replica.metadata!.annotations = { "walship.dev/paused": "true" };
    input.replica.status = { phase: "Paused" };
    input.pods = [];
    const text = formatReport(buildReport(input), NOW);
    assert.match(text, /^Phase: +Paused, paused$/m);
    assert.match(text, /^Restorable: +nothing yet$/m);
    assert.match(text, /^Pods:\n {2}\(none\)$/m);
  });

  it("shows each destination's last drill when drills ran, and none otherwise", () => {
    const input = statusInput();
    assert.doesNotMatch(formatReport(buildReport(input), NOW), /Drills:/);
    input.replica.status = {
      ...input.replica.status,
      drills: [
        {
          destination: "minio",
          at: "2026-05-01T11:58:00Z",
          outcome: "Passed",
          lastPassedAt: "2026-05-01T11:58:00Z",
          position: "0123456789abcdef/00000003:4152",
          restoreSeconds: 1.25,
          sizeBytes: 81920,
        },
        {
          destination: "disk",
          at: "2026-05-01T11:58:00Z",
          outcome: "Failed",
          message: "restore: -verify-sql returned no row: SELECT 1",
        },
      ],
    };
    const report = buildReport(input);
    assert.equal(report.drills?.length, 2);
    const text = formatReport(report, NOW);
    assert.match(
      text,
      /^Drills:\n +DESTINATION +OUTCOME +WHEN +RESTORED TO +TIME TO RECOVER +SIZE +LAST PASSED +MESSAGE$/m,
    );
    assert.match(text, /^ +minio +Passed +2m ago +0123456789abcdef\/00000003:4152 +1\.25s +80KiB +2m ago$/m);
    assert.match(
      text,
      /^ +disk +Failed +2m ago +- +- +- +- +restore: -verify-sql returned no row: SELECT 1$/m,
    );
  });
});

describe("the workload: a StatefulSet or a Deployment", () => {
  /** statusInput() with its SqliteReplica on the Deployment `web`, whose one pod has a hashed name. */
  function deploymentInput(found = true): StatusInput {
    const input = statusInput();
    const spec = input.replica.spec!;
    delete spec.statefulSetName;
    spec.workloadRef = { kind: "Deployment", name: "web" };
    input.workloadFound = found;
    input.replica.status!.pods![0]!.name = "web-7d4b9c8f6d-x2k4p";
    input.pods = found
      ? [
          {
            ...input.pods[0]!,
            pod: { metadata: { name: "web-7d4b9c8f6d-x2k4p" }, status: { phase: "Running" } } as Pod,
          },
        ]
      : [];
    input.pods[0]?.sidecar?.databases[0]?.replicas.forEach((r) => {
      r.location = "s3://b/app/web";
    });
    return input;
  }

  it("names the workload by kind in the report and its text", () => {
    const sts = buildReport(statusInput());
    assert.deepEqual(sts.workload, { kind: "StatefulSet", name: "app" });
    assert.equal(sts.workloadFound, true);
    const rep = buildReport(deploymentInput());
    assert.deepEqual(rep.workload, { kind: "Deployment", name: "web" });
    assert.equal(rep.workloadFound, true);
    assert.equal(rep.pods[0]!.name, "web-7d4b9c8f6d-x2k4p");
    assert.equal(rep.pods[0]!.ready, true, "the operator's facts of the pod, by its name");
    assert.equal(rep.pods[0]!.destinations[0]!.location, "s3://b/app/web");
    const text = formatReport(rep, NOW);
    assert.match(text, /^Deployment: {4}web, database \/data\/app\.db$/m);
    assert.match(text, /^ {2}web-7d4b9c8f6d-x2k4p +Running +True +0123456789abcdef /m);
    assert.doesNotMatch(text, /StatefulSet/);
    assert.match(
      formatReport(buildReport(deploymentInput(false)), NOW),
      /^Deployment: {4}web \(not found\), database \/data\/app\.db$/m,
    );
  });

  it("finds a workload's pods by its whole selector: matchLabels and matchExpressions", () => {
    assert.equal(selectorQuery({ matchLabels: { app: "web" } }), "app=web");
    assert.equal(
      selectorQuery({
        matchLabels: { app: "web", tier: "db" },
        matchExpressions: [
          { key: "track", operator: "In", values: ["stable", "canary"] },
          { key: "env", operator: "NotIn", values: ["test"] },
          { key: "owner", operator: "Exists" },
          { key: "legacy", operator: "DoesNotExist" },
        ],
      }),
      "app=web,tier=db,track in (stable,canary),env notin (test),owner,!legacy",
    );
    assert.equal(selectorQuery({}), "");
    assert.equal(selectorQuery(undefined), "");
  });
});

describe("snapshots and generations through the sidecar", () => {
  it("runs walship with the pod's config file", () => {
    assert.deepEqual(listingCommand("snapshots", "/data/app.db"), [
      "walship",
      "snapshots",
      "-config",
      "/etc/walship/walship.yml",
      "-json",
      "/data/app.db",
    ]);
    assert.deepEqual(listingCommand("generations", "/data/app.db", "minio").slice(4), [
      "-json",
      "-replica",
      "minio",
      "/data/app.db",
    ]);
  });

  it("tags rows with the pod and lays them out", () => {
    const rows = parseListing(
      "snapshots",
      "app-0",
      JSON.stringify([
        { replica: "minio", generation: GEN, index: 16, size: 8192, created: "2026-05-01T11:00:00Z" },
      ]),
    );
    assert.equal(
      formatListing("snapshots", rows, [{ pod: "app-1", error: "the walship container is not running" }]),
      [
        "POD    DESTINATION  GENERATION        INDEX     SIZE  CREATED",
        "app-0  minio        0123456789abcdef  00000010  8KiB  2026-05-01T11:00:00Z",
        "pod app-1: not read: the walship container is not running",
      ].join("\n"),
    );
    assert.equal(formatListing("generations", [], []), "No generations.");
    assert.equal(
      codeOf(() => parseListing("snapshots", "app-0", "oops")),
      ErrorCodes.KUBE,
    );
  });
});

describe("exit codes", () => {
  it("0 for help and version, 2 for usage errors, 1 for a kubeconfig that is not there", async () => {
    let o = io();
    assert.equal(await run(["status", "-h"], o, "v0"), 0);
    assert.match(o.stdout, /^Usage: kubectl walship status NAME/);
    assert.match(o.stdout, /-n, --namespace NS/);
    o = io();
    assert.equal(await run(["--help"], o, "v0"), 0);
    assert.match(o.stdout, /restore +restore the database/);
    o = io();
    assert.equal(await run(["version"], o, "v9"), 0);
    assert.equal(o.stdout, "kubectl-walship v9\n");
    o = io();
    assert.equal(await run([], o, "v0"), 2);
    o = io();
    assert.equal(await run(["frobnicate"], o, "v0"), 2);
    assert.match(o.stderr, /unknown command "frobnicate" \[WALSHIP_ERR_USAGE\]/);
    o = io();
    assert.equal(await run(["status"], o, "v0"), 2);
    assert.match(
      o.stderr,
      /^kubectl walship status: the SqliteReplica's name is required .*\[WALSHIP_ERR_USAGE\]$/m,
    );
    o = io();
    assert.equal(await run(["restore", "app", "--to", "latest"], o, "v0"), 2);
    o = io();
    assert.equal(await run(["status", "app", "-o", "yaml"], o, "v0"), 2);
    o = io();
    assert.equal(await run(["status", "app", "--kubeconfig", "/nonexistent/kubeconfig"], o, "v0"), 1);
    assert.match(o.stderr, /\[WALSHIP_ERR_CONFIG\]$/m);
  });
});
