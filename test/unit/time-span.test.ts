/** timeSpan: the first and last object time over listings, in one pass and for any listing size. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { timeSpan } from "../../src/replicator/types.ts";
import { table } from "../../src/shared/flags.ts";

const at = (ms: number) => ({ createdAt: new Date(ms) });

describe("timeSpan", () => {
  it("takes the earliest and latest time across every list", () => {
    assert.deepEqual(timeSpan([at(5), at(2)], [at(9), at(3)]), { start: 2, end: 9 });
    assert.deepEqual(timeSpan([at(7)]), { start: 7, end: 7 });
    assert.equal(timeSpan([], []), undefined);
    assert.equal(timeSpan(), undefined);
  });

  it("handles 1,000,000 objects (a spread into Math.min overflows the stack at ~150,000)", () => {
    const big = Array.from({ length: 1_000_000 }, (_, i) => at(1_000_000 + ((i * 7919) % 1_000_000)));
    assert.deepEqual(timeSpan(big, [at(5)]), { start: 5, end: 1_999_999 });
    assert.throws(() => Math.min(...big.map((o) => o.createdAt.getTime())), RangeError);
  });
});

describe("table", () => {
  it("lays out 200,000 rows", () => {
    const rows = Array.from({ length: 200_000 }, (_, i) => [String(i), "x"]);
    const out = table(["n", "v"], rows).split("\n");
    assert.equal(out.length, 200_001);
    assert.equal(out[0], "n       v");
    assert.equal(out[200_000], "199999  x");
  });
});
