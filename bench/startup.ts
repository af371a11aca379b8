/**
 * `make bench-startup`: how long a command takes from exec to exit, Walship against Litestream
 * v0.3.13 in the same run: `version`, and the restore of a small database (a few KiB, one snapshot
 * and its WAL) from a file replica, each tool restoring from the replica it wrote itself. Each figure
 * is the median and the range of BENCH_STARTUP_RUNS (default 15) runs, after one warm-up run; the
 * machine's load average is printed beside them. See docs/benchmarks.md ("Start-up").
 */
import { execFileSync, spawn } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import Database from "better-sqlite3";
import { LITESTREAM_VERSION, litestreamBin } from "../test/helpers/litestream.ts";
import { WALSHIP } from "../test/helpers/walship.ts";
import { round, sleep } from "./measure.ts";

const RUNS = Number(process.env.BENCH_STARTUP_RUNS ?? 15);
const node = execFileSync(path.join(import.meta.dirname, "../scripts/ensure-node"), ["--no-install"], {
  encoding: "utf8",
}).trim();
/**
 * Walship as the image runs it: node on dist/main.js with the flags of its first line (`env -S`),
 * without bin/walship's shell wrapper.
 */
const MAIN = path.join(path.dirname(WALSHIP), "../dist/main.js");
const shebang = readFileSync(MAIN, "utf8").split("\n", 1)[0]!;
const flags = shebang.startsWith("#!/usr/bin/env -S node") ? shebang.split(" ").slice(3) : [];
const walship = [node, ...flags, MAIN];
const litestream = [litestreamBin()];

/** Milliseconds from spawn to exit of one run; throws on a non-zero exit. */
function timed(argv: string[]): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ["ignore", "ignore", "pipe"] });
    let err = "";
    child.stderr.on("data", (d: Buffer) => {
      err += d.toString();
    });
    child.on("error", reject);
    child.on("exit", (code) => {
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      if (code === 0) resolve(ms);
      else reject(new Error(`${argv.join(" ")} exited ${code}: ${err.slice(-500)}`));
    });
  });
}

async function series(
  argv: () => string[],
  before?: () => void,
): Promise<{ median: number; min: number; max: number }> {
  before?.();
  await timed(argv());
  const ms: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    before?.();
    ms.push(await timed(argv()));
  }
  ms.sort((a, b) => a - b);
  return { median: round(ms[Math.floor(ms.length / 2)]!), min: round(ms[0]!), max: round(ms.at(-1)!) };
}

/** A small database replicated to `replica` by `tool` (`replicate DB URL`), stopped cleanly. */
async function replicateSmall(tool: string[], dir: string, name: string): Promise<string> {
  const db = path.join(dir, `${name}.db`);
  const d = new Database(db);
  d.pragma("journal_mode = WAL");
  d.exec("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)");
  for (let i = 0; i < 50; i++) d.prepare("INSERT INTO t(v) VALUES (?)").run(`row ${i}`);
  const replica = path.join(dir, `${name}-replica`);
  const child = spawn(tool[0]!, [...tool.slice(1), "replicate", db, `file://${replica}`], {
    stdio: "ignore",
  });
  for (let i = 0; i < 100; i++) {
    await sleep(100);
    const gens = path.join(replica, "generations");
    try {
      const g = readdirSync(gens)[0];
      if (g && readdirSync(path.join(gens, g, "wal")).length > 0) break;
    } catch {
      // not there yet
    }
  }
  await sleep(1500);
  child.kill("SIGTERM");
  await new Promise((r) => child.once("exit", r));
  d.close();
  return `file://${replica}`;
}

const dir = mkdtempSync(path.join(os.tmpdir(), "walship-bench-startup-"));
try {
  const load = () =>
    os
      .loadavg()
      .map((x) => x.toFixed(2))
      .join(" ");
  console.log(
    `start-up, ${RUNS} runs each after a warm-up; load ${load()}; litestream ${LITESTREAM_VERSION}`,
  );
  const rows: Array<
    [string, { median: number; min: number; max: number }, { median: number; min: number; max: number }]
  > = [];
  rows.push([
    "version",
    await series(() => [...walship, "version"]),
    await series(() => [...litestream, "version"]),
  ]);
  const wUrl = await replicateSmall(walship, dir, "w");
  const lUrl = await replicateSmall(litestream, dir, "l");
  const out = (name: string) => path.join(dir, `${name}-restored.db`);
  const clear = (name: string) => () => {
    for (const x of ["", "-wal", "-shm"]) rmSync(`${out(name)}${x}`, { force: true });
  };
  rows.push([
    "restore of a small database (file replica)",
    await series(() => [...walship, "restore", "-o", out("w"), wUrl], clear("w")),
    await series(() => [...litestream, "restore", "-o", out("l"), lUrl], clear("l")),
  ]);
  console.log("");
  console.log("| command | walship ms (median, range) | litestream ms (median, range) | ratio |");
  console.log("|---|--:|--:|--:|");
  for (const [what, w, l] of rows) {
    console.log(
      `| ${what} | ${w.median} (${w.min}-${w.max}) | ${l.median} (${l.min}-${l.max}) | ${round(w.median / l.median, 2)} |`,
    );
  }
  console.log(`load after: ${load()}`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
