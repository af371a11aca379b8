/**
 * A long-lived generation: 160,000 WAL objects. Spreading a listing into a call (`Math.min(...times)`)
 * overflows V8's stack at about 150,000 arguments, which made such a generation unlistable and
 * unrestorable ("Maximum call stack size exceeded [WALSHIP_ERR_INTERNAL]"). The objects here are real
 * files in a real file destination, named and dated as Litestream v0.3.13 lays them out, but their
 * bodies are empty: only the listings and the restore plan read them, never their contents.
 */
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { keys } from "../../src/replicator/layout.ts";
import { walship } from "../helpers/walship.ts";

const N = 160_000;
const GEN = "0123456789abcdef";
const dir = mkdtempSync(path.join(os.tmpdir(), "walship-listing-"));
const root = path.join(dir, "replica");
const url = `file://${root}`;
after(() => rmSync(dir, { recursive: true, force: true }));

const FIRST = new Date("2024-01-01T00:00:00Z");
const LAST = new Date("2024-06-30T12:00:00Z");

describe(`a generation of ${N.toLocaleString("en")} WAL objects (real files, empty bodies: listings only)`, () => {
  before(() => {
    // 16 indexes of 10,000 segments each, offsets 4096 apart.
    const per = N / 16;
    for (let index = 0; index < 16; index++) {
      for (let k = 0; k < per; k++) {
        const file = path.join(root, keys.segment(GEN, index, k * 4096));
        if (index === 0 && k === 0) mkdirSync(path.dirname(file), { recursive: true });
        writeFileSync(file, "");
      }
    }
    const snap = path.join(root, keys.snapshot(GEN, 0));
    mkdirSync(path.dirname(snap), { recursive: true });
    writeFileSync(snap, "");
    utimesSync(snap, FIRST, FIRST);
    utimesSync(path.join(root, keys.segment(GEN, 15, (per - 1) * 4096)), LAST, LAST);
  });

  it("`walship generations` lists it with its first and last object times", async () => {
    const res = await walship(["generations", "-json", url]);
    assert.equal(res.code, 0, res.stderr);
    const rows = JSON.parse(res.stdout) as Array<Record<string, string>>;
    assert.equal(rows.length, 1);
    assert.equal(rows[0]!.generation, GEN);
    assert.equal(rows[0]!.start, FIRST.toISOString().replace(".000Z", "Z"));
    assert.ok(new Date(rows[0]!.end!).getTime() >= LAST.getTime());
  });

  it("`walship wal` prints every segment as a table", async () => {
    const res = await walship(["wal", url]);
    assert.equal(res.code, 0, res.stderr);
    assert.equal(res.stdout.trimEnd().split("\n").length, N + 1);
  });

  it("`walship restore -dry-run` plans all of it", async () => {
    const res = await walship([
      "restore",
      "-dry-run",
      "-log-format",
      "json",
      "-o",
      path.join(dir, "out.db"),
      url,
    ]);
    assert.equal(res.code, 0, res.stderr);
    const plan = res.stderr
      .split("\n")
      .filter((l) => l.startsWith("{"))
      .map((l) => JSON.parse(l) as Record<string, unknown>)
      .find((l) => l.msg === "restore plan");
    assert.ok(plan, res.stderr);
    assert.equal(plan.segments, N);
    assert.equal(plan.upTo, `${GEN}/0000000f`);
  });
});
