/**
 * A bench phase that fails does not end the run (bench/guard.ts): its failure is returned after
 * the clean-up ran, the next phase still runs, and the report names every failed phase by pass.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { failureReport, guardPhase, pointInTimeTarget } from "../../bench/guard.ts";

describe("bench phases", () => {
  it("returns a failed phase's error after its clean-up, and nothing for one that finished", async () => {
    const ran: string[] = [];
    const cleaned: string[] = [];
    const cleanUp = async (phase: string, err: unknown): Promise<void> => {
      cleaned.push(`${phase}: ${(err as Error).message}`);
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
    assert.deepEqual(lag, { phase: "lag", error: "writer: database is locked" });
    assert.equal(ramp, undefined);
    assert.deepEqual(ran, ["lag", "ramp"], "the phase after the failed one ran");
    assert.deepEqual(cleaned, ["lag: writer: database is locked"], "clean-up only after the failure");
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

  it("aims the point-in-time restore just before the middle commit, in wall-clock time", () => {
    // Sequences 41..45 committed at these wall-clock milliseconds.
    const wall = Float64Array.from([1000, 1060, 1120, 1180, 1240]);
    assert.deepEqual(pointInTimeTarget(41, wall), { tsMs: 1119, expectedSeq: 42 });
    // Two commits in the middle one's millisecond are both out.
    assert.deepEqual(pointInTimeTarget(1, Float64Array.from([5, 9, 9, 12])), { tsMs: 8, expectedSeq: 1 });
    assert.throws(() => pointInTimeTarget(1, new Float64Array(0)), /no commits/);
  });
});
