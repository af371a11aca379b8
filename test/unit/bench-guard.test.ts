/**
 * A bench phase that fails does not end the run (bench/guard.ts): its failure is returned after
 * the clean-up ran, the next phase still runs, and the report names every failed phase by pass.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  type Clocks,
  clockJumpReport,
  failureReport,
  guardPhase,
  pointInTimeTarget,
} from "../../bench/guard.ts";

describe("bench phases", () => {
  it("returns a failed phase's error after its clean-up, and nothing for one that finished", async () => {
    const ran: string[] = [];
    const cleaned: string[] = [];
    const cleanUp = async (err: unknown): Promise<void> => {
      cleaned.push((err as Error).message);
    };
    const lag = await guardPhase(
      "lag",
      async () => {
        ran.push("lag");
        throw new Error("writer: database is locked");
      },
      cleanUp,
    );
    const ramp = await guardPhase(
      "ramp",
      async () => {
        ran.push("ramp");
      },
      cleanUp,
    );
    assert.deepEqual(lag, { failure: { phase: "lag", error: "writer: database is locked" } });
    assert.deepEqual(ramp, {});
    assert.deepEqual(ran, ["lag", "ramp"], "the phase after the failed one ran");
    assert.deepEqual(cleaned, ["writer: database is locked"], "clean-up only after the failure");
  });

  it("reports every failure by pass and phase, and nothing when all finished", () => {
    assert.equal(failureReport([{ index: 1 }, { index: 2, failures: [] }]), undefined);
    const report = failureReport([
      { index: 1, failures: [{ phase: "restore", error: "walship exited 1" }] },
      { index: 2 },
      { index: 3, failures: [{ phase: "lag", error: "timeout" }] },
    ]);
    assert.ok(report?.startsWith("2 phase(s) failed"), report);
    assert.match(report ?? "", /pass 1 restore: walship exited 1\n {2}pass 3 lag: timeout$/);
  });

  it("names a phase during which the wall clock jumped against the monotonic one, and only that one", async () => {
    // Both clocks advance 1 s per phase; during "lag" the machine is paused 23 s, which the wall
    // clock counts and the monotonic clock does not.
    let wall = 1_000_000;
    let mono = 0;
    const clocks: Clocks = { wall: () => wall, monotonic: () => mono };
    const step = (pausedMs: number) => async (): Promise<void> => {
      wall += 1000 + pausedMs;
      mono += 1000;
    };
    const none = async (): Promise<void> => undefined;
    const paused = await guardPhase("lag", step(23_000), none, clocks);
    const quiet = await guardPhase("ramp", step(0), none, clocks);
    const drift = await guardPhase("heavy", step(200), none, clocks);
    assert.deepEqual(paused, { clockJumpMs: 23_000 });
    assert.deepEqual(quiet, {}, "no jump");
    assert.deepEqual(drift, {}, "200 ms is under CLOCK_JUMP_MS");
    assert.equal(clockJumpReport([{ index: 1 }]), undefined);
    assert.equal(
      clockJumpReport([{ index: 3, clockJumps: [{ phase: "lag", ms: 23_000 }] }]),
      "the wall clock jumped during pass 3 lag (23000 ms): those passes' figures are suspect",
    );
  });

  it("aims the point-in-time restore before a middle transaction began, with a free millisecond before it", () => {
    const f = (xs: number[]) => Float64Array.from(xs);
    // Sequences 41..45: began and returned at these wall-clock milliseconds.
    const start = f([995, 1055, 1115, 1175, 1235]);
    assert.deepEqual(pointInTimeTarget(41, start, f([1000, 1060, 1120, 1180, 1240])), {
      tsMs: 1114,
      expectedSeq: 42,
    });
    // The bench's 2026-12-06 case: the middle transaction returned 2 ms after it began (its commit
    // published in the first of them). A target taken from its return (1119) would count it out
    // although it may have committed at 1118; the start of it bounds it.
    assert.deepEqual(
      pointInTimeTarget(41, f([995, 1055, 1118, 1175, 1235]), f([1000, 1060, 1120, 1180, 1240])),
      {
        tsMs: 1117,
        expectedSeq: 42,
      },
    );
    // No free millisecond before the middle one (began in the millisecond the one before returned),
    // nor the next; the one after that has one.
    assert.deepEqual(pointInTimeTarget(1, f([0, 3, 4, 9]), f([3, 4, 6, 12])), { tsMs: 8, expectedSeq: 3 });
    // Back to back throughout: no target can be told apart.
    assert.throws(
      () => pointInTimeTarget(1, f([0, 1, 2, 3]), f([1, 2, 3, 4])),
      /no transaction with a whole millisecond/,
    );
    assert.throws(() => pointInTimeTarget(1, f([]), f([])), /no commits/);
  });
});
