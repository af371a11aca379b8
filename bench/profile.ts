/**
 * Summarises V8 CPU profiles (`node --cpu-prof`, as `BENCH_PROFILE=1` writes them for walship):
 * the functions with the most self time, and self time per source file.
 *
 *   node bench/profile.ts bench/results/profiles-<stamp>/heavy [more dirs or .cpuprofile files]
 */
import { readdirSync, readFileSync, statSync } from "node:fs";
import path from "node:path";

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number; columnNumber: number };
}

interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

export interface SelfTime {
  name: string;
  where: string;
  ms: number;
}

function files(args: string[]): string[] {
  const out: string[] = [];
  for (const a of args) {
    if (statSync(a).isDirectory()) {
      for (const f of readdirSync(a)) if (f.endsWith(".cpuprofile")) out.push(path.join(a, f));
    } else out.push(a);
  }
  return out;
}

function shortUrl(url: string): string {
  const i = url.indexOf("/dist/");
  if (i >= 0) return url.slice(i + 1);
  const n = url.indexOf("/node_modules/");
  if (n >= 0) return url.slice(n + 1);
  return url.replace(/^file:\/\//, "") || "(native)";
}

/** Self time per function (name + file:line) and per file, over all the given profiles. */
export function summarise(paths: string[]): { total: number; byFunction: SelfTime[]; byFile: SelfTime[] } {
  const fn = new Map<string, SelfTime>();
  const file = new Map<string, SelfTime>();
  let total = 0;
  for (const p of paths) {
    const prof = JSON.parse(readFileSync(p, "utf8")) as CpuProfile;
    const byId = new Map(prof.nodes.map((n) => [n.id, n]));
    for (let i = 0; i < prof.samples.length; i++) {
      const node = byId.get(prof.samples[i]!);
      const dt = (prof.timeDeltas[i] ?? 0) / 1000;
      if (!node) continue;
      total += dt;
      const cf = node.callFrame;
      const where = cf.url ? `${shortUrl(cf.url)}:${cf.lineNumber + 1}` : "(native)";
      const name = cf.functionName || "(anonymous)";
      const k = `${name} ${where}`;
      const e = fn.get(k) ?? { name, where, ms: 0 };
      e.ms += dt;
      fn.set(k, e);
      const fk = cf.url ? shortUrl(cf.url) : name.startsWith("(") ? name : "(native)";
      const f = file.get(fk) ?? { name: fk, where: "", ms: 0 };
      f.ms += dt;
      file.set(fk, f);
    }
  }
  const sort = (m: Map<string, SelfTime>) => [...m.values()].sort((a, b) => b.ms - a.ms);
  return { total, byFunction: sort(fn), byFile: sort(file) };
}

function main(): void {
  const args = process.argv.slice(2);
  if (args.length === 0) {
    console.error("usage: node bench/profile.ts DIR|FILE.cpuprofile ...");
    process.exit(2);
  }
  const s = summarise(files(args));
  const pct = (ms: number) => `${((100 * ms) / s.total).toFixed(1)}%`.padStart(6);
  console.log(`total sampled: ${(s.total / 1000).toFixed(2)} s`);
  console.log("\ntop self time by function:");
  for (const e of s.byFunction.slice(0, 25)) {
    console.log(`${(e.ms / 1000).toFixed(2).padStart(8)} s ${pct(e.ms)}  ${e.name}  ${e.where}`);
  }
  console.log("\nself time by file:");
  for (const e of s.byFile.slice(0, 15)) {
    console.log(`${(e.ms / 1000).toFixed(2).padStart(8)} s ${pct(e.ms)}  ${e.name}`);
  }
}

if (import.meta.main) main();
