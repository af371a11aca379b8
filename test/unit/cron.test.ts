/** The five-field cron parser (src/shared/cron.ts): fields, ranges, steps, lists, the day rule, and next times in UTC. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { CRON_PATTERN, type Cron, nextCronTime, parseCron } from "../../src/shared/cron.ts";

function cron(expr: string): Cron {
  const c = parseCron(expr);
  assert.ok(!("problem" in c), `${expr}: ${JSON.stringify(c)}`);
  return c;
}
const next = (expr: string, after: string) => nextCronTime(cron(expr), new Date(after))?.toISOString();
const sorted = (s: ReadonlySet<number>) => [...s].sort((a, b) => a - b);

describe("parseCron", () => {
  it("reads numbers, ranges, steps and lists", () => {
    const c = cron("*/15 1-3,22 1,15 */3 1-5");
    assert.deepEqual(sorted(c.minutes), [0, 15, 30, 45]);
    assert.deepEqual(sorted(c.hours), [1, 2, 3, 22]);
    assert.deepEqual(sorted(c.days), [1, 15]);
    assert.deepEqual(sorted(c.months), [1, 4, 7, 10]);
    assert.deepEqual(sorted(c.weekdays), [1, 2, 3, 4, 5]);
    assert.equal(c.anyDay, false);
    assert.equal(c.anyWeekday, false);
  });

  it("a range with a step, a start with a step, 7 as Sunday, and the macros", () => {
    assert.deepEqual(sorted(cron("10-30/10 * * * *").minutes), [10, 20, 30]);
    assert.deepEqual(sorted(cron("50/5 * * * *").minutes), [50, 55]);
    assert.deepEqual(sorted(cron("0 0 * * 7").weekdays), [0]);
    assert.deepEqual(sorted(cron("0 0 * * 5-7").weekdays), [0, 5, 6]);
    assert.deepEqual(cron("@daily"), cron("0 0 * * *"));
    assert.deepEqual(cron("@weekly"), cron("0 0 * * 0"));
  });

  it("names the field that is wrong", () => {
    const problem = (e: string) => {
      const c = parseCron(e);
      return "problem" in c ? c.problem : "";
    };
    assert.match(problem("61 * * * *"), /^minute "61" is outside 0-59/);
    assert.match(problem("0 24 * * *"), /^hour "24"/);
    assert.match(problem("0 0 0 * *"), /^day-of-month "0" is outside 1-31/);
    assert.match(problem("0 0 * 13 *"), /^month "13"/);
    assert.match(problem("0 0 * * 8"), /^day-of-week "8"/);
    assert.match(problem("0 5-1 * * *"), /start is after its end/);
    assert.match(problem("*/0 * * * *"), /step of 0/);
    assert.match(problem("0 0 * * MON"), /day-of-week "MON" is not a number/);
    assert.match(problem("0 0 * *"), /has 4 fields; a schedule has 5/);
  });

  it("the CRD's pattern admits the schedules and macros, not other text", () => {
    const re = new RegExp(CRON_PATTERN);
    for (const ok of ["0 3 * * *", "*/5 1-3 1,15 * 0", "@hourly", "@annually"]) assert.ok(re.test(ok), ok);
    for (const bad of ["0 3 * *", "@often", "0 3 * * MON", "0  3 * * *", "0 3 * * * *"])
      assert.ok(!re.test(bad), bad);
  });
});

describe("nextCronTime", () => {
  it("is strictly after, to the minute, in UTC", () => {
    assert.equal(next("30 3 * * *", "2026-12-03T03:29:59.999Z"), "2026-12-03T03:30:00.000Z");
    assert.equal(next("30 3 * * *", "2026-12-03T03:30:00.000Z"), "2026-12-04T03:30:00.000Z");
    assert.equal(next("*/15 * * * *", "2026-12-03T10:07:12Z"), "2026-12-03T10:15:00.000Z");
    assert.equal(next("0 * * * *", "2026-12-31T23:30:00Z"), "2027-01-01T00:00:00.000Z");
  });

  it("day of week, day of month, and either when both are restricted", () => {
    // 2026-12-03 is a Thursday.
    assert.equal(next("0 4 * * 0", "2026-12-03T10:00:00Z"), "2026-12-06T04:00:00.000Z");
    assert.equal(next("0 4 1 * *", "2026-12-03T10:00:00Z"), "2027-01-01T04:00:00.000Z");
    assert.equal(next("0 4 1 * 5", "2026-12-03T10:00:00Z"), "2026-12-04T04:00:00.000Z");
    assert.equal(next("0 0 29 2 *", "2026-03-01T00:00:00Z"), "2028-02-29T00:00:00.000Z");
  });

  it("a date that never comes gives undefined", () => {
    assert.equal(next("0 0 30 2 *", "2026-01-01T00:00:00Z"), undefined);
  });
});
