/**
 * `make bench-startup`: how long a command takes from exec to exit, Walship against Litestream
 * v0.3.13 in the same run: `version`, and the restore of a small database (a few KiB, one snapshot
 * and its WAL) from a file replica and from S3 (a local MinIO, given in a config file as the
 * operator's restore init container gives it), each tool restoring from the replica it wrote itself;
 * and that init container's run at every later start of its pod, when the database is already there.
 * Walship runs as the image runs it, with a compile cache filled the way the image's build fills its
 * own; two more rows give the S3 restore without it, and through the AWS SDK instead of Walship's own
 * S3 requests (`WALSHIP_S3_CLIENT=sdk`), each alternating with the first. Each figure is the median and
 * the range of BENCH_STARTUP_RUNS (default 15) runs, after one warm-up run; the
 * machine's load average is printed beside them. See docs/benchmarks.md ("Start-up").
 */
import { execFileSync, spawn } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { ListObjectsV2Command } from "@aws-sdk/client-s3";
import Database from "better-sqlite3";
import { LITESTREAM_VERSION, litestreamBin } from "../test/helpers/litestream.ts";
import { startMinio } from "../test/helpers/minio.ts";
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

/** Set for the S3 rows: the store's credentials, and no cloud metadata endpoint probed. */
let toolEnv: NodeJS.ProcessEnv = process.env;
/**
 * Node's compile cache, filled as the image's build fills its own (dist/warm-compile-cache.js); the
 * image sets NODE_COMPILE_CACHE for every command, and so does this bench for Walship's runs unless
 * a row says otherwise.
 */
let compileCache: string | undefined;

/** The environment of one of `tool`'s runs. */
function envOf(argv: string[], cache = true): NodeJS.ProcessEnv {
  return argv[0] === node && cache && compileCache
    ? { ...toolEnv, NODE_COMPILE_CACHE: compileCache }
    : toolEnv;
}

/** Milliseconds from spawn to exit of one run; throws on a non-zero exit. */
function timed(argv: string[], env: NodeJS.ProcessEnv): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ["ignore", "ignore", "pipe"], env });
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

async function series(argv: () => string[], before?: () => void): Promise<Stats> {
  before?.();
  await timed(argv(), envOf(argv()));
  const ms: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    before?.();
    ms.push(await timed(argv(), envOf(argv())));
  }
  return stats(ms);
}

type Stats = { median: number; min: number; max: number };

function stats(ms: number[]): Stats {
  ms.sort((a, b) => a - b);
  return { median: round(ms[Math.floor(ms.length / 2)]!), min: round(ms[0]!), max: round(ms.at(-1)!) };
}

/**
 * Walship's run in two environments, alternating (one of each per round, after a warm-up of each),
 * so that the machine's drift falls on both alike.
 */
async function alternating(
  argv: () => string[],
  before: () => void,
  a: NodeJS.ProcessEnv,
  b: NodeJS.ProcessEnv,
): Promise<[Stats, Stats]> {
  const on: number[] = [];
  const off: number[] = [];
  for (let i = -1; i < RUNS; i++) {
    for (const [env, into] of [
      [a, on],
      [b, off],
    ] as const) {
      before();
      const ms = await timed(argv(), env);
      if (i >= 0) into.push(ms);
    }
  }
  return [stats(on), stats(off)];
}

/** A small database of 50 rows in WAL mode, left open (so its WAL stays) until `close`. */
function smallDb(dir: string, name: string): { db: string; close: () => void } {
  const db = path.join(dir, `${name}.db`);
  const d = new Database(db);
  d.pragma("journal_mode = WAL");
  d.exec("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)");
  for (let i = 0; i < 50; i++) d.prepare("INSERT INTO t(v) VALUES (?)").run(`row ${i}`);
  return { db, close: () => d.close() };
}

/** Runs `replicate` with `args` until `done` says the replica has a WAL segment, then stops it cleanly. */
async function replicateUntil(tool: string[], args: string[], done: () => Promise<boolean>): Promise<void> {
  const child = spawn(tool[0]!, [...tool.slice(1), "replicate", ...args], {
    stdio: "ignore",
    env: envOf(tool),
  });
  let ready = false;
  for (let i = 0; i < 100 && !ready; i++) {
    await sleep(100);
    ready = await done().catch(() => false);
  }
  await sleep(1500);
  child.kill("SIGTERM");
  await new Promise((r) => child.once("exit", r));
  if (!ready) throw new Error(`${tool.join(" ")} replicate ${args.join(" ")}: no WAL segment within 10 s`);
}

/** A small database replicated to a file replica by `tool` (`replicate DB URL`); returns the URL. */
async function replicateSmall(tool: string[], dir: string, name: string): Promise<string> {
  const { db, close } = smallDb(dir, name);
  const replica = path.join(dir, `${name}-replica`);
  await replicateUntil(tool, [db, `file://${replica}`], async () => {
    const gens = path.join(replica, "generations");
    const g = readdirSync(gens)[0];
    return g !== undefined && readdirSync(path.join(gens, g, "wal")).length > 0;
  });
  close();
  return `file://${replica}`;
}

/**
 * A small database replicated by `tool` to `s3://bucket/<name>` on the local MinIO, through a config
 * file (as a restore init container is given it); returns the config file and the database path.
 */
async function replicateSmallS3(
  tool: string[],
  dir: string,
  name: string,
  store: { endpoint: string; bucket: string; hasWal: (prefix: string) => Promise<boolean> },
): Promise<{ config: string; db: string }> {
  const { db, close } = smallDb(dir, name);
  const config = path.join(dir, `${name}.yml`);
  writeFileSync(
    config,
    `access-key-id: $LITESTREAM_ACCESS_KEY_ID
secret-access-key: $LITESTREAM_SECRET_ACCESS_KEY
dbs:
  - path: ${db}
    replicas:
      - type: s3
        bucket: ${store.bucket}
        path: ${name}
        endpoint: ${store.endpoint}
        region: us-east-1
        force-path-style: true
`,
  );
  await replicateUntil(tool, ["-config", config], () => store.hasWal(name));
  close();
  return { config, db };
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
  const rows: Array<[string, Stats, Stats]> = [];
  compileCache = path.join(dir, "compile-cache");
  execFileSync(node, [...flags, path.join(path.dirname(MAIN), "warm-compile-cache.js")], {
    env: { ...process.env, NODE_COMPILE_CACHE: compileCache },
    stdio: "ignore",
  });
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
  const minio = await startMinio();
  try {
    await minio.createBucket("startup");
    toolEnv = {
      ...process.env,
      LITESTREAM_ACCESS_KEY_ID: minio.accessKeyId,
      LITESTREAM_SECRET_ACCESS_KEY: minio.secretAccessKey,
      AWS_EC2_METADATA_DISABLED: "true",
    };
    const s3 = minio.client();
    const store = {
      endpoint: minio.endpoint,
      bucket: "startup",
      hasWal: async (prefix: string) => {
        const listed = await s3.send(new ListObjectsV2Command({ Bucket: "startup", Prefix: `${prefix}/` }));
        return (listed.Contents ?? []).some((o) => o.Key?.includes("/wal/"));
      },
    };
    const w = await replicateSmallS3(walship, dir, "ws3", store);
    const l = await replicateSmallS3(litestream, dir, "ls3", store);
    s3.destroy();
    const wRestore = () => [...walship, "restore", "-config", w.config, "-o", out("ws3"), w.db];
    const lRestore = () => [...litestream, "restore", "-config", l.config, "-o", out("ls3"), l.db];
    const withCache = envOf(wRestore());
    const [cached, uncached] = await alternating(wRestore, clear("ws3"), withCache, envOf(wRestore(), false));
    // Walship's own S3 requests (keys given) against the AWS SDK client they replace.
    const [, sdk] = await alternating(wRestore, clear("ws3"), withCache, {
      ...withCache,
      WALSHIP_S3_CLIENT: "sdk",
    });
    const lS3 = await series(lRestore, clear("ls3"));
    rows.push(["restore of a small database (S3, config file)", cached, lS3]);
    rows.push([
      "the same, Walship without the compile cache (runs alternating with the row above)",
      uncached,
      lS3,
    ]);
    rows.push(["the same, Walship through the AWS SDK (`WALSHIP_S3_CLIENT=sdk`)", sdk, lS3]);
    // Every start of a pod but the first: the restore init container's flags (the operator's
    // IfReplicaExists mode), the database already there.
    const skip = ["restore", "-if-db-not-exists", "-if-replica-exists", "-config"];
    rows.push([
      "restore init container over a database that is there (S3, config file)",
      await series(() => [...walship, ...skip, w.config, w.db]),
      await series(() => [...litestream, ...skip, l.config, l.db]),
    ]);
  } finally {
    await minio.close();
  }
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
