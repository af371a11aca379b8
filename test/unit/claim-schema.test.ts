/**
 * The claim document's checks (parseClaim in src/replicator/claim.ts, written out without a schema
 * library) against the zod schema they replaced (test/helpers/claim-schema-zod.ts, the oracle), on
 * generated documents: each gives the same document, or a problem at the same key path. From fixed
 * seeds, so a failure repeats and names its seed.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { parseClaim } from "../../src/replicator/claim.ts";
import { ClaimDocSchema } from "../helpers/claim-schema-zod.ts";
import { rng } from "../helpers/rng.ts";

const TIMES = [
  "2026-12-06T05:33:37.869Z",
  "2026-12-06T05:33:37Z",
  "2026-12-06T05:33:37.1+02:00",
  "2026-12-06T05:33:37-11:30",
  "2024-02-29T00:00:00Z",
  "2000-02-29T23:59:59Z",
  "0000-02-29T00:00:00Z",
  "1900-02-29T00:00:00Z",
  "2200-02-29T00:00:00Z",
  "2400-02-29T00:00:00Z",
  "2026-02-29T00:00:00Z",
  "2026-02-28T00:00:00Z",
  "2026-04-31T00:00:00Z",
  "2026-04-30T00:00:00Z",
  "2026-13-01T00:00:00Z",
  "2026-00-01T00:00:00Z",
  "2026-01-00T00:00:00Z",
  "2026-01-31T24:00:00Z",
  "2026-01-31T23:60:00Z",
  "2026-01-31T23:59:60Z",
  "2026-01-31T23:59Z",
  "2026-01-31T23:59:59",
  "2026-01-31T23:59:59z",
  "2026-01-31t23:59:59Z",
  "2026-01-31 23:59:59Z",
  "2026-01-31T23:59:59.Z",
  "2026-01-31T23:59:59+24:00",
  "2026-01-31T23:59:59+23:60",
  "2026-01-31T23:59:59+0200",
  "2026-1-31T23:59:59Z",
  "+02026-01-31T23:59:59Z",
  "2026-01-31T23:59:59Z ",
  "\u0662026-01-31T23:59:59Z",
  "",
  "now",
];
const STRINGS = ["", "x", "app-0", "uid-a", "boot-1", "a/app"];
const NUMBERS = [0, 1, -1, 7, 1.5, 2 ** 53, 2 ** 53 - 1, -(2 ** 53) + 1, 1e300];
const OTHERS = [null, true, false, [], {}, ["x"], 0, "1"];

function gen(seed: number): unknown {
  const r = rng(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)] as T;
  // Mostly right, sometimes wrong: a wrong value of any type, or the key left out.
  const value = (good: () => unknown, wrongRate = 0.03): unknown => {
    const x = r();
    if (x < wrongRate) return pick([...OTHERS, ...STRINGS, ...NUMBERS, ...TIMES]);
    if (x < wrongRate * 1.5) return undefined;
    return good();
  };
  const obj = (entries: Array<[string, unknown]>): Record<string, unknown> => {
    const o: Record<string, unknown> = {};
    for (const [k, v] of entries) if (v !== undefined) o[k] = v;
    if (r() < 0.1) o[pick(["extra", "Pid", "host2"])] = pick(STRINGS);
    return o;
  };
  // Times: mostly the valid ones at the head of TIMES, else any of them.
  const time = () => (r() < 0.85 ? pick(TIMES.slice(0, 6)) : pick(TIMES));
  const pod = () =>
    obj([
      ["namespace", value(() => pick(STRINGS))],
      ["name", value(() => pick(STRINGS))],
      ["uid", value(() => pick(STRINGS))],
    ]);
  const holder = () =>
    obj([
      ["pod", r() < 0.5 ? value(pod) : undefined],
      ["sqliteReplica", r() < 0.5 ? value(() => pick(STRINGS)) : undefined],
      ["host", value(() => pick(STRINGS))],
      ["pid", value(() => (r() < 0.7 ? pick([1, 7, 4242]) : pick(NUMBERS)), 0.03)],
      ["bootId", r() < 0.5 ? value(() => pick(STRINGS)) : undefined],
    ]);
  return value(
    () =>
      obj([
        ["v", value(() => 1, 0.05)],
        ["holder", value(holder, 0.05)],
        ["token", value(() => pick(STRINGS))],
        ["renewedAt", value(time, 0.03)],
        ["expiresAt", value(time, 0.03)],
      ]),
    0.02,
  );
}

describe("claim document checks against the zod schema they replaced", () => {
  it("4000 generated documents: the same document, or a problem at the same key path", () => {
    let valid = 0;
    for (let seed = 1; seed <= 4000; seed++) {
      const raw = gen(seed);
      const text = JSON.stringify(raw) ?? "null";
      const ours = parseClaim(Buffer.from(text));
      const theirs = ClaimDocSchema.safeParse(JSON.parse(text));
      if (theirs.success) {
        valid++;
        assert.deepEqual(ours, { doc: theirs.data }, `seed ${seed}: ${text}`);
      } else {
        const issue = theirs.error.issues[0];
        const at = issue?.path.join(".") || "document";
        assert.ok("problem" in ours, `seed ${seed}: zod refuses (${at}), ours accepts: ${text}`);
        assert.equal(ours.problem.slice(0, ours.problem.indexOf(":")), at, `seed ${seed}: ${text}`);
      }
    }
    // Both sides of the comparison are exercised.
    assert.ok(valid > 400 && valid < 3600, `valid documents: ${valid}`);
  });

  it("every listed time alone, in both fields", () => {
    const base = { v: 1, holder: { host: "box", pid: 1 }, token: "t" };
    for (const t of TIMES) {
      for (const doc of [
        { ...base, renewedAt: t, expiresAt: "2026-12-06T05:33:37Z" },
        { ...base, renewedAt: "2026-12-06T05:33:37Z", expiresAt: t },
      ]) {
        const ours = parseClaim(Buffer.from(JSON.stringify(doc)));
        assert.equal("doc" in ours, ClaimDocSchema.safeParse(doc).success, JSON.stringify(t));
      }
    }
  });

  it("a problem names the field and what was expected, and does not echo the value", () => {
    const r = parseClaim(Buffer.from(JSON.stringify({ v: 1, holder: { host: "box", pid: "secret-ish" } })));
    assert.deepEqual(r, { problem: "holder.pid: expected an integer" });
  });
});
