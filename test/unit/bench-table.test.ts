/**
 * The bench's table over several passes (bench/table.ts): each figure is the median of its passes,
 * the ratio the median of the per-pass ratios (not the ratio of the medians), and the range column
 * the lowest and highest of those ratios.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { aggregate, median, type Row, table } from "../../bench/table.ts";

const row = (figure: string, walship?: number, litestream?: number): Row => ({
  figure,
  walship,
  litestream,
  ratio: walship !== undefined && litestream ? Math.round((walship / litestream) * 100) / 100 : undefined,
});

describe("bench table", () => {
  it("takes the median of an odd and an even count, and of nothing", () => {
    assert.equal(median([3, 1, 2]), 2);
    assert.equal(median([4, 1, 3, 2]), 2.5);
    assert.equal(median([]), undefined);
  });

  it("gives each figure the median of its passes and the range of its ratio", () => {
    const passes = [
      [row("cpu", 20, 10), row("rss", 200, 100)],
      [row("cpu", 30, 10), row("rss", 150, 100)],
      [row("cpu", 12, 12), row("rss", 180, 90)],
    ];
    const [cpu, rss] = aggregate(passes);
    assert.equal(cpu?.walship, 20);
    assert.equal(cpu?.litestream, 10);
    // Ratios 2, 3 and 1: their median is 2; the ratio of the medians happens to agree here.
    assert.equal(cpu?.ratio, 2);
    assert.deepEqual(cpu?.spread, [1, 3]);
    assert.deepEqual(cpu?.all?.walship, [20, 30, 12]);
    // Ratios 2, 1.5 and 2: median 2, while the medians' ratio would be 180 / 100 = 1.8.
    assert.equal(rss?.ratio, 2);
    assert.deepEqual(rss?.spread, [1.5, 2]);
  });

  it("keeps a figure without a ratio (walship's alone) with the range of its values", () => {
    const [op] = aggregate([[row("operator s", 6)], [row("operator s", 8)], [row("operator s", 7)]]);
    assert.equal(op?.walship, 7);
    assert.equal(op?.litestream, undefined);
    assert.equal(op?.ratio, undefined);
    assert.deepEqual(op?.spread, [6, 8]);
  });

  it("leaves out a pass that lacks a figure instead of counting it as zero", () => {
    const [cpu] = aggregate([[row("cpu", 20, 10)], [], [row("cpu", 40, 10)]]);
    assert.equal(cpu?.walship, 30);
    assert.deepEqual(cpu?.all?.walship, [20, null, 40]);
  });

  it("prints a range column only over several passes", () => {
    const one = table(aggregate([[row("cpu", 20, 10)]]));
    assert.doesNotMatch(one, /range/);
    const three = table(aggregate([[row("cpu", 20, 10)], [row("cpu", 30, 10)], [row("cpu", 12, 12)]]));
    assert.match(three, /\| figure +\| walship \| litestream \| walship\/litestream \| range +\|/);
    assert.match(three, /\| cpu +\| +20 \| +10 \| +2 \| +1–3 \|/);
  });
});
