/**
 * What the restore's gate costs: `PRAGMA integrity_check` on a finished file, read the way SQLite
 * reads by default (a `pread` per page, its own page cache) and the way restore now opens it
 * (src/replicator/restore/verify.ts `openForCheck`: through a memory map). Two databases of about
 * the same size, built here: the benchmark's own table of 4,000-byte rows with no index (what
 * `make bench` restores), and a table of short rows with three secondary indexes (closer to an
 * application's), whose check compares every row with every index. The file is read once before each
 * round so it is in the page cache, as a restore leaves it.
 *
 *   make bench-integrity-check [DIR=dir]    (default: the system's temporary directory)
 *
 * BENCH_CHECK_MIB (default 512): the size of each database. BENCH_CHECK_REPEATS (default 3): rounds,
 * the two ways alternating; each row prints the median and the range. Each check runs in a process
 * of its own, timed by /usr/bin/time (wall, CPU, peak RSS). Litestream has no such check, so there
 * is no column for it. See docs/benchmarks.md ("The restore's integrity check").
 */
import { spawnSync } from "node:child_process";
import { closeSync, mkdtempSync, openSync, readSync, rmSync, statSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import Database from "better-sqlite3";
import { openForCheck } from "../src/replicator/restore/verify.ts";
import { round } from "./measure.ts";
import { makeRow } from "./rows.ts";
import { median } from "./table.ts";

const MiB = 1 << 20;

/** `node bench/integrity-check.ts --one WAY FILE`: one check, in this process. */
function one(way: string, file: string): void {
  const db = way === "mapped" ? openForCheck(file) : new Database(file, { fileMustExist: true });
  try {
    const r = db.pragma("integrity_check", { simple: true });
    if (r !== "ok") throw new Error(`integrity_check: ${String(r)}`);
  } finally {
    db.close();
  }
}

/** The bench's rows (bench/rows.ts) in `t(id, v)`, no index, to about `bytes`. */
function plainDb(file: string, bytes: number): void {
  const db = new Database(file);
  db.pragma("journal_mode = WAL");
  db.exec("CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB NOT NULL)");
  const ins = db.prepare("INSERT INTO t(v) VALUES (?)");
  const batch = db.transaction((from: number) => {
    for (let i = 0; i < 256; i++) ins.run(makeRow(from + i, 4000));
  });
  for (let n = 0; n * 4096 < bytes; n += 256) batch(n);
  db.pragma("wal_checkpoint(TRUNCATE)");
  db.close();
}

/** `u(id, email, name, score, note)` with an index on each of email, name and score, to about `bytes`. */
function indexedDb(file: string, bytes: number): void {
  const db = new Database(file);
  db.pragma("journal_mode = WAL");
  db.exec(
    "CREATE TABLE u(id INTEGER PRIMARY KEY, email TEXT NOT NULL, name TEXT NOT NULL, score INTEGER NOT NULL, note TEXT NOT NULL);" +
      "CREATE INDEX u_email ON u(email); CREATE INDEX u_name ON u(name); CREATE INDEX u_score ON u(score)",
  );
  const ins = db.prepare("INSERT INTO u(email, name, score, note) VALUES (?, ?, ?, ?)");
  let x = 2463534242;
  const next = (): number => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return x >>> 0;
  };
  const batch = db.transaction(() => {
    for (let i = 0; i < 1000; i++) {
      const k = next().toString(36) + next().toString(36);
      ins.run(`${k}@example.test`, `n${k.slice(0, 6)}`, next() % 1_000_000, `note ${k} `.repeat(8));
    }
  });
  // About 330 bytes per row with its three index entries.
  for (let n = 0; n * 330 < bytes; n += 1000) batch();
  db.pragma("wal_checkpoint(TRUNCATE)");
  db.close();
}

interface Run {
  seconds: number;
  cpuSec: number;
  sysSec: number;
  peakRssMiB: number;
}

/** Reads the file once, 4 MiB at a time, so it is in the page cache as a restore leaves it. */
function warm(file: string): void {
  const fd = openSync(file, "r");
  try {
    const buf = Buffer.allocUnsafe(4 * MiB);
    while (readSync(fd, buf, 0, buf.length, null) > 0);
  } finally {
    closeSync(fd);
  }
}

function timed(way: string, file: string): Run {
  warm(file);
  const self = new URL(import.meta.url).pathname;
  const r = spawnSync("/usr/bin/time", ["-f", "%e %U %S %M", process.execPath, self, "--one", way, file], {
    encoding: "utf8",
  });
  if (r.status !== 0) throw new Error(`check (${way}) of ${file} failed: ${r.stderr}`);
  const [e, u, s, m] = r.stderr.trim().split("\n").pop()!.split(" ").map(Number);
  return { seconds: e!, cpuSec: round(u! + s!, 2), sysSec: s!, peakRssMiB: round(m! / 1024) };
}

function main(): void {
  const bytes = Number(process.env.BENCH_CHECK_MIB ?? 512) * MiB;
  const repeats = Number(process.env.BENCH_CHECK_REPEATS ?? 3);
  const dir = mkdtempSync(path.join(process.argv[2] ?? os.tmpdir(), "walship-check-"));
  try {
    const dbs = [
      { name: "no index (the bench's rows)", file: path.join(dir, "plain.db"), build: plainDb },
      { name: "three indexes", file: path.join(dir, "indexed.db"), build: indexedDb },
    ];
    const rows: string[] = [];
    for (const d of dbs) {
      const t0 = Date.now();
      d.build(d.file, bytes);
      const size = statSync(d.file).size;
      console.log(
        `[${new Date().toISOString()}] built ${d.name}: ${round(size / MiB)} MiB in ${Date.now() - t0} ms`,
      );
      const runs: Record<string, Run[]> = { default: [], mapped: [] };
      for (let i = 0; i < repeats; i++) {
        for (const way of i % 2 === 0 ? ["default", "mapped"] : ["mapped", "default"]) {
          const r = timed(way, d.file);
          runs[way]!.push(r);
          console.log(
            `  ${d.name}, ${way}: ${r.seconds} s, CPU ${r.cpuSec} s (system ${r.sysSec}), peak RSS ${r.peakRssMiB} MiB`,
          );
        }
      }
      for (const way of ["default", "mapped"]) {
        const col = (k: keyof Run) => {
          const v = runs[way]!.map((r) => r[k]);
          return `${median(v)} (${Math.min(...v)}–${Math.max(...v)})`;
        };
        rows.push(
          `| ${d.name}, ${round(size / MiB)} MiB | ${way} | ${col("seconds")} | ${col("cpuSec")} | ${col("sysSec")} | ${col("peakRssMiB")} |`,
        );
      }
    }
    console.log(
      "\n| database | read | seconds | CPU s | system s | peak RSS MiB |\n|---|---|--:|--:|--:|--:|",
    );
    for (const r of rows) console.log(r);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[2] === "--one") one(process.argv[3]!, process.argv[4]!);
else main();
