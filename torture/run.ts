/**
 * `make torture`: long reliability runs outside `make test` (a short variant of each part runs in
 * test/integration/torture.test.ts). Runs the chosen parts one after the other, prints their figures,
 * and writes them to torture/results/<time>.json. Exits 1 when any part reports a failure.
 *
 * Environment (see docs/reliability.md for each part's own knobs):
 *   TORTURE_PARTS=a,b    the parts to run (default: every part marked byDefault; `all` for all)
 *   TORTURE_QUICK=1      each part's short variant (what `make test` runs)
 *   TORTURE_SEED=n       the seed of every random choice (default: from the clock; printed)
 *   TORTURE_WALSHIP=path the walship executable (default bin/walship)
 */
import { mkdirSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { makeTempDir, stopAll } from "../test/helpers/proc.ts";
import { log, ROOT, TortureCtx } from "./common.ts";
import { PARTS } from "./parts.ts";

export interface PartReport {
  part: string;
  seconds: number;
  figures: Record<string, unknown>;
  failures: string[];
}

export function pickParts(wanted: string | undefined) {
  if (!wanted) return PARTS.filter((p) => p.byDefault);
  if (wanted === "all") return [...PARTS];
  const names = wanted
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);
  return names.map((n) => {
    const p = PARTS.find((q) => q.name === n);
    if (!p)
      throw new Error(`TORTURE_PARTS: no part named "${n}" (have ${PARTS.map((q) => q.name).join(", ")})`);
    return p;
  });
}

async function main(): Promise<number> {
  const parts = pickParts(process.env.TORTURE_PARTS);
  const ctx = new TortureCtx({ work: makeTempDir("torture") });
  const stamp = new Date().toISOString().replace(/[:.]/g, "").slice(0, 15);
  log(`torture: parts ${parts.map((p) => p.name).join(", ")}, seed ${ctx.seed}${ctx.quick ? ", quick" : ""}`);
  const reports: PartReport[] = [];
  try {
    for (const p of parts) {
      log(`${p.name}: ${p.summary}`);
      const t0 = Date.now();
      let rep: PartReport;
      try {
        const res = await p.run(ctx);
        rep = { part: p.name, seconds: Math.round((Date.now() - t0) / 1000), ...res };
      } catch (err) {
        rep = {
          part: p.name,
          seconds: Math.round((Date.now() - t0) / 1000),
          figures: {},
          failures: [`the part itself failed: ${(err as Error).stack ?? String(err)}`],
        };
      }
      reports.push(rep);
      log(
        `${p.name}: ${rep.failures.length === 0 ? "ok" : `${rep.failures.length} FAILURES`} in ${rep.seconds} s`,
      );
      for (const [k, v] of Object.entries(rep.figures))
        console.log(`  ${k.padEnd(32)} ${typeof v === "object" ? JSON.stringify(v) : String(v)}`);
      for (const f of rep.failures.slice(0, 20)) console.log(`  FAILURE: ${f}`);
    }
  } finally {
    await ctx.close();
    await stopAll();
  }
  const dir = path.join(ROOT, "torture/results");
  mkdirSync(dir, { recursive: true });
  const file = path.join(dir, `${stamp}.json`);
  const doc = {
    time: new Date().toISOString(),
    seed: ctx.seed,
    quick: ctx.quick,
    host: { cpus: os.cpus().length, load: os.loadavg(), node: process.version },
    commit: process.env.TORTURE_COMMIT,
    parts: reports,
  };
  writeFileSync(file, `${JSON.stringify(doc, null, 2)}\n`);
  log(`figures written to ${path.relative(ROOT, file)}`);
  return reports.some((r) => r.failures.length > 0) ? 1 : 0;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  main().then(
    (code) => process.exit(code),
    (err) => {
      console.error(err);
      process.exit(1);
    },
  );
}
