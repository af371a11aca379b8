/**
 * The guardrail conditions (operator/replica/guardrails.ts) from literal sidecar documents, and the
 * pure space check a snapshot passes before it starts (replicator/guardrails.ts).
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, statfsSync, statSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { describe, it } from "node:test";
import type { PodReplicationStatus } from "../../src/api/v1alpha1/index.ts";
import {
  type Cond,
  deriveReady,
  injectedStatus,
  pausedStatus,
} from "../../src/operator/replica/conditions.ts";
import {
  checkpointFailingCondition,
  DEFAULT_GUARDRAIL_THRESHOLDS,
  diskPressureCondition,
  guardrailConditions,
  walGrowingCondition,
} from "../../src/operator/replica/guardrails.ts";
import { podFacts } from "../../src/operator/replica/pods.ts";
import {
  lz4Bound,
  SNAPSHOT_RESERVE_BYTES,
  snapshotRefusal,
  spaceNeeds,
} from "../../src/replicator/guardrails.ts";
import { createLz4Encoder } from "../../src/replicator/lz4.ts";
import type { DatabaseStatus, ReplicatorStatus } from "../../src/shared/protocol.ts";

const MiB = 1024 * 1024;

function dbStatus(over: Partial<DatabaseStatus> = {}): DatabaseStatus {
  return {
    path: "/data/app.db",
    ready: true,
    generation: "0123456789abcdef",
    sizeBytes: 4 * MiB,
    walSizeBytes: 1 * MiB,
    walLiveBytes: 512 * 1024,
    replicas: [
      {
        name: "s3",
        type: "s3",
        location: "s3://bucket/app",
        ready: true,
        lagSeconds: 0,
        pendingTransactions: 0,
        pendingBytes: 0,
        window: {},
        syncCount: 3,
        syncErrorCount: 0,
      },
    ],
    volume: { freeBytes: 900 * MiB, totalBytes: 1000 * MiB },
    checkpoint: { consecutiveFailures: 0 },
    ...over,
  };
}

function doc(...databases: DatabaseStatus[]): ReplicatorStatus {
  return {
    apiVersion: "walship.dev/v1alpha1",
    kind: "ReplicatorStatus",
    version: "0.1.0",
    time: "2026-05-01T10:00:00.000Z",
    ready: true,
    databases,
  };
}

/** A pod's facts as pods.ts makes them from its sidecar's document (one database, spec.database). */
function pod(name: string, db: DatabaseStatus): PodReplicationStatus {
  return podFacts(name, doc(db), [{ path: db.path, volumeName: "data" }]);
}

const row = (c: { type: string; status: string; reason: string }) => [c.type, c.status, c.reason];

describe("guardrail facts from a sidecar's /status", () => {
  it("are kept per pod and database, with the snapshot refusal of each destination", () => {
    const base = dbStatus();
    const p = pod(
      "app-0",
      dbStatus({
        checkpoint: {
          consecutiveFailures: 4,
          lastError: { message: "checkpoint /data/app.db (RESTART): database is locked" },
        },
        replicas: [{ ...base.replicas[0]!, snapshotRefused: { message: "snapshot refused: too little" } }],
      }),
    );
    assert.deepEqual(p.guardrails, [
      {
        path: "/data/app.db",
        volumeFreeBytes: 900 * MiB,
        volumeTotalBytes: 1000 * MiB,
        walSizeBytes: 1 * MiB,
        walLiveBytes: 512 * 1024,
        checkpointFailures: 4,
        checkpointError: "checkpoint /data/app.db (RESTART): database is locked",
        snapshotRefused: "destination s3: snapshot refused: too little",
      },
    ]);
  });

  it("are absent for a sidecar that reports none (an older replicator)", () => {
    const { volume: _v, checkpoint: _c, ...old } = dbStatus();
    assert.equal(pod("app-0", old).guardrails, undefined);
    assert.deepEqual(guardrailConditions([pod("app-0", old)]).map(row), [
      ["DiskPressure", "Unknown", "NotReported"],
      ["WALGrowing", "Unknown", "NotReported"],
      ["CheckpointFailing", "Unknown", "NotReported"],
    ]);
  });
});

describe("DiskPressure", () => {
  it("is False with at least 10% free, True below it, naming the pod, database and numbers", () => {
    const ok = pod("app-0", dbStatus({ volume: { freeBytes: 100 * MiB, totalBytes: 1000 * MiB } }));
    assert.deepEqual(row(diskPressureCondition([ok])), ["DiskPressure", "False", "EnoughFreeSpace"]);
    const low = pod("app-1", dbStatus({ volume: { freeBytes: 99 * MiB, totalBytes: 1000 * MiB } }));
    const c = diskPressureCondition([ok, low]);
    assert.deepEqual(row(c), ["DiskPressure", "True", "LowFreeSpace"]);
    assert.equal(c.message, "pod app-1 /data/app.db: 99.0 MiB free of 1000.0 MiB (below 10%)");
  });

  it("is True when a snapshot was refused for space, even with 10% free", () => {
    const base = dbStatus();
    const p = pod(
      "app-0",
      dbStatus({
        replicas: [{ ...base.replicas[0]!, snapshotRefused: { message: "/backup has 10 bytes free" } }],
      }),
    );
    const c = diskPressureCondition([p]);
    assert.deepEqual(row(c), ["DiskPressure", "True", "SnapshotRefused"]);
    assert.match(c.message, /pod app-0 \/data\/app\.db: destination s3: \/backup has 10 bytes free/);
  });

  it("follows the thresholds it is given", () => {
    const p = pod("app-0", dbStatus({ volume: { freeBytes: 150 * MiB, totalBytes: 1000 * MiB } }));
    const t = { ...DEFAULT_GUARDRAIL_THRESHOLDS, minFreeRatio: 0.2 };
    assert.equal(diskPressureCondition([p], t).status, "True");
    assert.equal(diskPressureCondition([p]).status, "False");
  });
});

describe("WALGrowing", () => {
  it("is True once the WAL written since its last restart passes a quarter of the volume", () => {
    const vol = { freeBytes: 50 * MiB, totalBytes: 100 * MiB };
    const at = (live: number, file = 40 * MiB) =>
      walGrowingCondition([pod("a", dbStatus({ walLiveBytes: live, walSizeBytes: file, volume: vol }))]);
    assert.equal(at(25 * MiB).status, "False");
    // A large file alone (its size from an old burst) is not growth.
    assert.equal(at(1 * MiB, 90 * MiB).status, "False");
    const c = at(26 * MiB);
    assert.deepEqual(row(c), ["WALGrowing", "True", "WALTakesVolume"]);
    assert.equal(
      c.message,
      "pod a /data/app.db: 26.0 MiB written to the WAL since it last restarted, more than 25% of " +
        "its 100.0 MiB volume (the -wal file: 40.0 MiB)",
    );
  });
});

describe("CheckpointFailing", () => {
  it("is True after 3 failures in a row, with the last error; a success resets it", () => {
    const failing = (n: number) =>
      pod(
        "app-0",
        dbStatus({
          checkpoint: { consecutiveFailures: n, lastError: { message: "database is locked" } },
        }),
      );
    assert.equal(checkpointFailingCondition([failing(2)]).status, "False");
    const c = checkpointFailingCondition([failing(3)]);
    assert.deepEqual(row(c), ["CheckpointFailing", "True", "CheckpointErrors"]);
    assert.equal(
      c.message,
      "pod app-0 /data/app.db: 3 checkpoints failed in a row, the last: database is locked",
    );
    assert.equal(checkpointFailingCondition([failing(0)]).status, "False");
  });
});

describe("the guardrails beside the other conditions", () => {
  it("do not change Ready or the phase: a replicating pod with a full volume stays Ready", () => {
    const p = pod("app-0", dbStatus({ volume: { freeBytes: 1 * MiB, totalBytes: 1000 * MiB } }));
    const restricted: Cond = { type: "Restricted", status: "True", reason: "Restricted", message: "" };
    const d = injectedStatus("StatefulSet app", [p], restricted);
    assert.equal(d.phase, "Replicating");
    assert.deepEqual(row(d.conditions.find((c) => c.type === "DiskPressure")!), [
      "DiskPressure",
      "True",
      "LowFreeSpace",
    ]);
    const conds = d.conditions.map((c) => ({ ...c, lastTransitionTime: "2026-05-01T10:00:00Z" }));
    assert.equal(deriveReady(conds, 1).status, "True");
  });
});

describe("the guardrails while nothing is injected", () => {
  it("are Unknown with the pause's reason, not left at their last values", () => {
    const d = pausedStatus("StatefulSet app", "walship.dev/paused");
    assert.deepEqual(
      d.conditions
        .filter((c) => ["DiskPressure", "WALGrowing", "CheckpointFailing"].includes(c.type))
        .map(row),
      [
        ["DiskPressure", "Unknown", "Paused"],
        ["WALGrowing", "Unknown", "Paused"],
        ["CheckpointFailing", "Unknown", "Paused"],
      ],
    );
  });
});

describe("snapshot space check", () => {
  it("refuses when a file system would keep less than the reserve, naming it and the numbers", () => {
    const fits = { where: "/data", needBytes: 1000, freeBytes: SNAPSHOT_RESERVE_BYTES + 1000 };
    assert.equal(snapshotRefusal([fits]), undefined);
    const short = { where: "/backup", needBytes: 1001, freeBytes: SNAPSHOT_RESERVE_BYTES + 1000 };
    assert.equal(
      snapshotRefusal([fits, short]),
      `/backup has ${SNAPSHOT_RESERVE_BYTES + 1000} bytes free; the snapshot needs up to 1001 and ` +
        `${SNAPSHOT_RESERVE_BYTES} must stay free`,
    );
  });

  it("counts, per file system, what the snapshot writes there and nothing else", async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), "walship-guard-"));
    try {
      const free = () => statfsSync(dir).bavail * statfsSync(dir).bsize;
      const plan = { dbDir: dir, dbSizeBytes: 10 * MiB, checkpointBytes: 0, localDestination: undefined };
      // A remote destination's first snapshot: no checkpoint, nothing staged, nothing to refuse.
      assert.deepEqual(await spaceNeeds(plan), []);
      const withCheckpoint = await spaceNeeds({ ...plan, checkpointBytes: 4096 });
      assert.equal(withCheckpoint.length, 1);
      assert.equal(withCheckpoint[0]!.where, dir);
      assert.equal(withCheckpoint[0]!.needBytes, 4096);
      assert.ok(Math.abs(withCheckpoint[0]!.freeBytes - free()) < 64 * MiB);
      // A file destination on the same file system (not created yet): one entry, both summed.
      const same = await spaceNeeds({
        ...plan,
        checkpointBytes: 4096,
        localDestination: path.join(dir, "b/c"),
      });
      assert.deepEqual(
        same.map((n) => [n.where, n.needBytes]),
        [[dir, 4096 + lz4Bound(10 * MiB + 4096)]],
      );
      // On another file system: one entry each.
      const other = "/dev/shm";
      if (statSync(other).dev !== statSync(dir).dev) {
        const two = await spaceNeeds({ ...plan, localDestination: other });
        assert.deepEqual(
          two.map((n) => [n.where, n.needBytes]),
          [[other, lz4Bound(10 * MiB)]],
        );
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("bounds our encoder's frame of incompressible data, within 1% of its input", async () => {
    for (const n of [0, 1000, 5 * MiB + 17]) {
      const input = randomBytes(n);
      let size = 0;
      await pipeline(Readable.from([input]), createLz4Encoder(), async (out: AsyncIterable<Buffer>) => {
        for await (const chunk of out) size += chunk.length;
      });
      assert.ok(size <= lz4Bound(n), `${n} bytes: frame ${size} > bound ${lz4Bound(n)}`);
      assert.ok(lz4Bound(n) < n * 1.01 + 1024);
    }
  });
});
