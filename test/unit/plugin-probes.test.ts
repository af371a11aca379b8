/**
 * `kubectl walship status` and the destination self-test (src/plugin/probes.ts, status.ts): each
 * destination's probe in `-o json`, the SELF-TEST column and the failure lines with the hint in the
 * text, the operator's reading for a pod whose sidecar cannot be read, and no column for a walship
 * that reports no probe. Literal inputs, as the sidecar's /status and the operator's status hold them.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { Pod } from "../../src/plugin/kube.ts";
import { failedProbes, selfTestCell } from "../../src/plugin/probes.ts";
import { buildReport, formatReport, type StatusInput } from "../../src/plugin/status.ts";
import type { ReplicatorStatus } from "../../src/shared/protocol.ts";

const NOW = new Date("2026-05-01T12:00:00Z");
const HINT =
  'missing bucket: bucket "gone" does not exist at http://minio:9000; create it, or correct the bucket name in the destination';
const MESSAGE = 'put s3://gone/app/walship/probe/app-0-1a2b3c4d: bucket "gone" does not exist (NoSuchBucket)';

type Replica = ReplicatorStatus["databases"][number]["replicas"][number];

function destination(name: string, probe: Replica["probe"]): Replica {
  return {
    name,
    type: "s3",
    location: `s3://${name}/app`,
    ready: probe?.outcome === "ok",
    lagSeconds: 0,
    pendingTransactions: 0,
    pendingBytes: 0,
    window: {},
    syncCount: 0,
    syncErrorCount: 0,
    ...(probe ? { probe } : {}),
  };
}

/** Pod app-0 read through its sidecar (good passes, gone fails at write); app-1 not readable. */
function input(probes = true): StatusInput {
  const sidecar: ReplicatorStatus = {
    apiVersion: "walship.dev/v1alpha1",
    kind: "ReplicatorStatus",
    version: "v0.1.0",
    time: "2026-05-01T12:00:00Z",
    ready: false,
    databases: [
      {
        path: "/data/app.db",
        ready: false,
        sizeBytes: 8192,
        walSizeBytes: 0,
        replicas: [
          destination("good", probes ? { outcome: "ok", at: "2026-05-01T11:59:00Z" } : undefined),
          destination(
            "gone",
            probes
              ? { outcome: "failed", at: "2026-05-01T11:59:00Z", step: "write", message: MESSAGE, hint: HINT }
              : undefined,
          ),
        ],
      },
    ],
  };
  return {
    replica: {
      metadata: { name: "db", namespace: "demo" },
      spec: {
        statefulSetName: "app",
        database: { path: "/data/app.db", volumeName: "data" },
        destinations: [
          { name: "good", s3: { bucket: "good", credentials: { fromServiceAccount: true } } },
          { name: "gone", s3: { bucket: "gone", credentials: { fromServiceAccount: true } } },
        ],
        syncInterval: "1s",
        retention: "24h",
        restoreOnStart: "IfReplicaExists",
      },
      status: {
        phase: "Replicating",
        conditions: [
          {
            type: "DestinationReachable",
            status: "False",
            reason: "DestinationUnreachable",
            message: `pod app-0: destination gone: write failed: ${MESSAGE} (hint: ${HINT})`,
            lastTransitionTime: "2026-05-01T11:59:30Z",
          },
        ],
        pods: [
          { name: "app-0", ready: false },
          {
            name: "app-1",
            ready: false,
            probes: [
              { destination: "good", outcome: "ok" },
              { destination: "gone", outcome: "failed", step: "write", message: MESSAGE, hint: HINT },
            ],
          },
        ],
      },
    },
    workloadFound: true,
    pods: [
      { pod: { metadata: { name: "app-0" }, status: { phase: "Running" } } as Pod, sidecar },
      {
        pod: { metadata: { name: "app-1" }, status: { phase: "Running" } } as Pod,
        sidecarError: "GET /api/v1/namespaces/demo/pods/app-1:9090/proxy/status: HTTP 403: forbidden",
      },
    ],
    events: [],
    restores: [],
  };
}

describe("kubectl walship status: the destination self-test", () => {
  it("-o json: each destination's probe from the sidecar, and the operator's reading per pod", () => {
    const rep = JSON.parse(JSON.stringify(buildReport(input())));
    assert.deepEqual(
      rep.pods[0].destinations.map((d: { name: string; probe?: unknown }) => [d.name, d.probe]),
      [
        ["good", { outcome: "ok", at: "2026-05-01T11:59:00Z" }],
        [
          "gone",
          { outcome: "failed", at: "2026-05-01T11:59:00Z", step: "write", message: MESSAGE, hint: HINT },
        ],
      ],
    );
    assert.equal(rep.pods[0].probes, undefined, "the operator reports none for app-0");
    assert.deepEqual(rep.pods[1].probes, [
      { destination: "good", outcome: "ok" },
      { destination: "gone", outcome: "failed", step: "write", message: MESSAGE, hint: HINT },
    ]);
    assert.deepEqual(
      rep.conditions.map((c: { type: string; status: string; reason: string }) => [
        c.type,
        c.status,
        c.reason,
      ]),
      [["DestinationReachable", "False", "DestinationUnreachable"]],
    );
  });

  it("text: a SELF-TEST column, then each failure with its step, the store's error and the hint", () => {
    const text = formatReport(buildReport(input()), NOW);
    const section = text.slice(
      text.indexOf("Destinations (from each pod's sidecar):"),
      text.indexOf("Conditions:"),
    );
    assert.equal(
      section.trimEnd(),
      [
        "Destinations (from each pod's sidecar):",
        "  POD    DESTINATION  READY  POSITION  LAG  PENDING  LAST SYNC  LAST SNAPSHOT  RESTORABLE  SELF-TEST        ERROR",
        "  app-0  good         True   -         0s   0B/0 tx  -          -              none        ok",
        "  app-0  gone         False  -         0s   0B/0 tx  -          -              none        failed at write",
        "  app-1: not read: GET /api/v1/namespaces/demo/pods/app-1:9090/proxy/status: HTTP 403: forbidden",
        "",
        "Self-test failures (DestinationReachable):",
        `  app-0 gone: write failed: ${MESSAGE}`,
        `    hint: ${HINT}`,
        `  app-1 gone: write failed (as the operator last read it): ${MESSAGE}`,
        `    hint: ${HINT}`,
      ].join("\n"),
    );
    assert.match(
      text,
      /^ {2}DestinationReachable +False +DestinationUnreachable +30s ago +pod app-0: destination gone/m,
    );
  });

  it("all passed: ok in the column and no failure lines; a walship that reports no probe: no column", () => {
    const passed = input();
    const gone = passed.pods[0]!.sidecar!.databases[0]!.replicas[1]!;
    gone.probe = { outcome: "ok", at: "2026-05-01T11:59:40Z" };
    passed.pods = passed.pods.slice(0, 1);
    const text = formatReport(buildReport(passed), NOW);
    assert.match(text, /SELF-TEST/);
    assert.doesNotMatch(text, /failed at|Self-test failures/);

    const old = formatReport(buildReport(input(false)), NOW);
    assert.doesNotMatch(old, /SELF-TEST/);
    assert.match(
      old,
      /^ {2}POD +DESTINATION +READY +POSITION +LAG +PENDING +LAST SYNC +LAST SNAPSHOT +RESTORABLE +ERROR$/m,
    );
    // The operator's reading of the unreadable pod still shows.
    assert.match(old, /^ {2}app-1 gone: write failed \(as the operator last read it\): /m);
  });

  it("selfTestCell and failedProbes", () => {
    assert.equal(selfTestCell(undefined), "-");
    assert.equal(selfTestCell({ outcome: "ok" }), "ok");
    assert.equal(selfTestCell({ outcome: "failed", step: "delete" }), "failed at delete");
    assert.deepEqual(
      failedProbes([
        {
          name: "p",
          destinations: [{ name: "d", database: "main", probe: { outcome: "failed", step: "list" } }],
          probes: [{ destination: "x", outcome: "failed" }],
        },
      ]),
      [
        {
          pod: "p",
          destination: "d",
          database: "main",
          probe: { outcome: "failed", step: "list" },
          seenBy: "sidecar",
        },
      ],
      "a pod read through its sidecar: the sidecar's view only",
    );
  });
});
