/**
 * Runs every fuzz target (or those named) for a set time each, prints the figures and writes them to
 * a JSON file; exits 1 on any finding (saved to test/fuzz/corpus/<target>/crash-*).
 *
 *   node test/fuzz/run.ts --seconds 60 --out fuzz.json [--seed N] [wal-scan lz4-frame ...]
 *   make fuzz FUZZ_SECONDS=60
 *
 * `fuzzPart({ seconds })` is the same run as a torture part: it returns the figures.
 */
import { writeFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { type FuzzFigures, fuzzTarget, replayCorpus } from "./harness.ts";
import { TARGETS } from "./targets.ts";

export interface FuzzPartFigures {
  part: "fuzz";
  secondsPerTarget: number;
  executions: number;
  ms: number;
  findings: number;
  corpusReplayFailures: number;
  targets: FuzzFigures[];
}

export async function fuzzPart(opts: {
  seconds: number;
  seed?: number;
  targets?: string[];
  log?: (line: string) => void;
}): Promise<FuzzPartFigures> {
  const log = opts.log ?? (() => undefined);
  const chosen = TARGETS.filter((t) => !opts.targets?.length || opts.targets.includes(t.name));
  const unknown = opts.targets?.filter((n) => !TARGETS.some((t) => t.name === n)) ?? [];
  if (unknown.length > 0) throw new Error(`fuzz: unknown target(s) ${unknown.join(", ")}`);
  const out: FuzzFigures[] = [];
  let replayFailures = 0;
  for (const t of chosen) {
    const bad = await replayCorpus(t);
    replayFailures += bad.length;
    for (const b of bad) log(`fuzz ${t.name}: corpus entry ${b.file} fails: ${String(b.error)}`);
    const f = await fuzzTarget(t, {
      ms: opts.seconds * 1000,
      ...(opts.seed !== undefined ? { seed: opts.seed } : {}),
    });
    out.push(f);
    log(
      `fuzz ${t.name}: ${f.executions} inputs in ${(f.ms / 1000).toFixed(1)} s (seed ${f.seed}, corpus ${f.corpusEntries})${
        f.failures.length ? `: FINDING ${f.failures[0]!.error} -> ${f.failures[0]!.file}` : ""
      }`,
    );
  }
  return {
    part: "fuzz",
    secondsPerTarget: opts.seconds,
    executions: out.reduce((s, f) => s + f.executions, 0),
    ms: out.reduce((s, f) => s + f.ms, 0),
    findings: out.reduce((s, f) => s + f.failures.length, 0),
    corpusReplayFailures: replayFailures,
    targets: out,
  };
}

if (import.meta.main) {
  const { values, positionals } = parseArgs({
    options: {
      seconds: { type: "string", default: "30" },
      out: { type: "string" },
      seed: { type: "string" },
    },
    allowPositionals: true,
  });
  const figures = await fuzzPart({
    seconds: Number(values.seconds),
    ...(values.seed !== undefined ? { seed: Number(values.seed) } : {}),
    targets: positionals,
    log: (l) => console.log(l),
  });
  console.log(
    `fuzz: ${figures.executions} inputs in ${(figures.ms / 1000).toFixed(0)} s over ${figures.targets.length} targets; ${figures.findings} finding(s), ${figures.corpusReplayFailures} corpus entries failing`,
  );
  if (values.out) writeFileSync(values.out, `${JSON.stringify(figures, null, 2)}\n`);
  process.exitCode = figures.findings + figures.corpusReplayFailures > 0 ? 1 : 0;
}
