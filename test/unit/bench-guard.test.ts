/**
 * A bench phase that fails does not end the run (bench/guard.ts): its failure is returned after
 * the clean-up ran, the next phase still runs, and the report names every failed phase by pass.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { failureReport, guardPhase } from "../../bench/guard.ts";

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
});
