/**
 * BENCH_LAG_CONFIGS (bench/workloads.ts pickLagConfigs): the lag configurations kept by position,
 * in the order given, each once; anything else is refused with the list of what there is.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { benchParams, pickLagConfigs } from "../../bench/workloads.ts";

describe("BENCH_LAG_CONFIGS", () => {
  const all = benchParams(false).lagConfigs;

  it("keeps the configurations named by position, in the order given, each once", () => {
    assert.deepEqual(
      pickLagConfigs(all, "2").map((c) => c.label),
      ["sync 100ms, monitor 100ms"],
    );
    assert.deepEqual(
      pickLagConfigs(all, " 2, 0,2").map((c) => c.label),
      ["sync 100ms, monitor 100ms", "sync 1s"],
    );
  });

  it("refuses a position that is not there, naming the ones that are", () => {
    for (const bad of ["3", "-1", "1.5", "monitor", "", "0,,1"]) {
      assert.throws(
        () => pickLagConfigs(all, bad),
        (err: Error) =>
          err.message.startsWith("BENCH_LAG_CONFIGS: ") &&
          err.message.includes('0 "sync 1s", 1 "sync 100ms", 2 "sync 100ms, monitor 100ms"'),
        bad,
      );
    }
  });
});
