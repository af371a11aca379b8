/**
 * The fuzz targets (test/fuzz/) in `make test`: every committed corpus entry replayed, then a short
 * fuzzing run of each target (WALSHIP_FUZZ_MS, default 1500 ms; WALSHIP_FUZZ_SEED to repeat one), and
 * the findings fixed so far as literal regressions. The long run is `make fuzz`.
 *
 * config-secret found that the config text was expanded before it was parsed, so a value holding a
 * quote and a newline rewrote other settings (the endpoint, hence where the data and the keys go),
 * and a lone quote broke the file with an error naming no field; config.ts (owned elsewhere) now
 * expands inside the parsed values, and the operator hands keys over as files. Its findings stay in
 * the corpus as regressions.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { lz4DecodeFrame } from "../../src/replicator/lz4.ts";
import { fuzzTarget, replayCorpus, runOne } from "../fuzz/harness.ts";
import { TARGETS } from "../fuzz/targets.ts";
import { configSecret, runSecret } from "../fuzz/targets-config.ts";
import { planner, runPlanner } from "../fuzz/targets-planner.ts";

const MS = Number(process.env.WALSHIP_FUZZ_MS ?? 1500);
const SEED = process.env.WALSHIP_FUZZ_SEED === undefined ? undefined : Number(process.env.WALSHIP_FUZZ_SEED);
/** Targets with a known open finding run as `todo` (none now). */
const KNOWN_OPEN: Record<string, string> = {};

describe("fuzz targets", () => {
  for (const target of TARGETS) {
    const todo = KNOWN_OPEN[target.name];
    it(`${target.name}: every corpus entry gives a result or a typed error`, {
      ...(todo ? { todo } : {}),
    }, async () => {
      const bad = await replayCorpus(target);
      assert.deepEqual(
        bad.map((b) => `${b.file}: ${b.error instanceof Error ? b.error.message : String(b.error)}`),
        [],
      );
    });
    it(`${target.name}: ${MS} ms of generated inputs`, { ...(todo ? { todo } : {}) }, async () => {
      const f = await fuzzTarget(target, {
        ms: MS,
        save: false,
        ...(SEED !== undefined ? { seed: SEED } : {}),
      });
      assert.ok(f.executions > 0, "ran no input");
      assert.deepEqual(f.failures, [], `seed ${f.seed} (repeat with WALSHIP_FUZZ_SEED=${f.seed})`);
    });
  }
});

describe("fuzz findings, fixed", () => {
  const T0 = 1_700_000_000_000;
  const gen = "0000000000000001";
  for (const [why, body] of [
    ["commits is not a list", '{"v":1,"commits":"x"}'],
    ["the document is a list", "[]"],
    ["a commit is not a pair of numbers", '{"v":1,"commits":[["a","b"]]}'],
    ["a commit is null", '{"v":1,"commits":[null]}'],
  ] as const) {
    it(`restore planner: a foreign commit-times object (${why}) falls back to the object time`, async () => {
      // Before the fix: TypeError (doc.commits.filter is not a function, reading 'length' of undefined).
      await runPlanner({
        gens: [
          {
            name: gen,
            snapshots: [{ index: 0, t: T0 }],
            segments: [{ index: 0, offset: 0, t: T0 }],
            extras: { [`walship/generations/${gen}/commits/00000000_00000000.json`]: body },
          },
        ],
        target: { timestamp: T0 },
      });
    });
  }

  it("restore planner: a foreign snapshot record is ignored", async () => {
    await runOne(planner, {
      gens: [
        {
          name: gen,
          snapshots: [{ index: 0, t: T0 }],
          segments: [],
          extras: { [`walship/generations/${gen}/snapshots/00000000.json`]: '{"v":1,"time":"soon"}' },
        },
      ],
      target: { timestamp: T0 + 5 },
    });
  });

  it("config: a Secret value cannot move the S3 endpoint or break the file", async () => {
    await runOne(configSecret, { keyId: "AKIAEXAMPLE", secret: "x'\n        endpoint: 'http://127.0.0.1:1" });
    runSecret({ keyId: "AKIAEXAMPLE", secret: "it's" });
    runSecret({ keyId: "AKIAEXAMPLE", secret: "''" });
  });

  it("lz4-frame: a block size of 0 with the uncompressed flag (0x80000000) ends the frame, as in the reference lz4", async () => {
    // Found by the lz4-frame target (seed 1611102360): before the fix, TypeError reading 'length' of
    // undefined (an empty raw block taken from an empty input queue), not a result or a typed error.
    const frame = Buffer.from("04224d186470b900000080", "hex");
    // The frame asks for a content checksum, which is missing: a typed error naming it.
    assert.throws(() => lz4DecodeFrame(frame), {
      code: "WALSHIP_ERR_CORRUPT",
      message: /truncated input: 0 byte\(s\) left over at input offset 11 while reading a content checksum/,
    });
    // With the checksum of no content (XXH32 of nothing, 0x02cc5d05), an empty frame.
    assert.equal(lz4DecodeFrame(Buffer.concat([frame, Buffer.from("055dcc02", "hex")])).length, 0);
    const target = TARGETS.find((t) => t.name === "lz4-frame");
    assert.ok(target);
    await runOne(target, { bytes: new Uint8Array(frame), cuts: [] } as never);
    await runOne(target, { bytes: new Uint8Array(frame), cuts: [0.3, 0.5] } as never);
  });
});
