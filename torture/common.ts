/**
 * What every torture part shares: the run's context (knobs, seed, MinIO, the walship executable),
 * the part contract, one config both Walship and stock Litestream v0.3.13 read, the replicator and
 * application processes, and the checks a restored database must pass.
 */

import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import Database from "better-sqlite3";
import { runLitestream } from "../test/helpers/litestream.ts";
import { type Minio, startMinio } from "../test/helpers/minio.ts";
import { type ManagedProcess, runCommand, spawnManaged, waitFor } from "../test/helpers/proc.ts";
import { logicalHashOf, rng } from "../test/helpers/sqlite.ts";
import type { AppOptions } from "./app.ts";
import type { MemoryGroup } from "./memcg.ts";

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

/** The figures and failures one part reports. A failure is a line saying what differed, and where. */
export interface PartResult {
  figures: Record<string, unknown>;
  failures: string[];
}

/** One part of `make torture`: a file under torture/, registered in torture/parts.ts. */
export interface TorturePart {
  name: string;
  summary: string;
  /** Run when TORTURE_PARTS is not set. */
  byDefault: boolean;
  /** Where its short variant runs instead of test/integration/torture.test.ts (a test of its own). */
  shortVariantElsewhere?: string;
  run(ctx: TortureCtx): Promise<PartResult>;
}

export class TortureCtx {
  readonly quick: boolean;
  readonly seed: number;
  /** A directory of its own for each part under it. */
  readonly work: string;
  readonly walship: string;
  readonly #env: NodeJS.ProcessEnv;
  #minio: Promise<Minio> | undefined;

  constructor(o: { work: string; env?: NodeJS.ProcessEnv; quick?: boolean; seed?: number }) {
    this.#env = o.env ?? process.env;
    this.work = o.work;
    this.quick = o.quick ?? this.#env.TORTURE_QUICK === "1";
    this.seed = o.seed ?? Number(this.#env.TORTURE_SEED ?? Date.now() % 1_000_000);
    this.walship = this.#env.TORTURE_WALSHIP ?? path.join(ROOT, "bin/walship");
  }

  /** A numeric knob `TORTURE_<name>`, or its quick or full default. */
  knob(name: string, full: number, quick = full): number {
    const raw = this.#env[`TORTURE_${name}`];
    if (raw === undefined || raw === "") return this.quick ? quick : full;
    const n = Number(raw);
    if (!Number.isFinite(n) || n < 0) throw new Error(`TORTURE_${name} must be a number >= 0, not "${raw}"`);
    return n;
  }

  /** A list knob `TORTURE_<name>` (comma-separated), or its default. */
  list(name: string, fallback: string[]): string[] {
    const raw = this.#env[`TORTURE_${name}`];
    return raw
      ? raw
          .split(",")
          .map((s) => s.trim())
          .filter(Boolean)
      : fallback;
  }

  rng(salt: number): () => number {
    return rng((this.seed * 7919 + salt) >>> 0);
  }

  dir(name: string): string {
    const d = path.join(this.work, name);
    mkdirSync(d, { recursive: true });
    return d;
  }

  /** One MinIO for the whole run, started on first use. */
  minio(): Promise<Minio> {
    this.#minio ??= startMinio();
    return this.#minio;
  }

  /** The environment the replicator and restores run with (S3 credentials for MinIO). */
  async toolEnv(): Promise<Record<string, string>> {
    const m = await this.minio();
    return {
      LITESTREAM_ACCESS_KEY_ID: m.accessKeyId,
      LITESTREAM_SECRET_ACCESS_KEY: m.secretAccessKey,
      AWS_EC2_METADATA_DISABLED: "true",
    };
  }

  async close(): Promise<void> {
    if (this.#minio) await (await this.#minio).close();
  }
}

export function log(msg: string): void {
  console.log(`[${new Date().toISOString().slice(11, 19)}] ${msg}`);
}

export type Dest =
  | { name: string; kind: "file"; path: string }
  | { name: string; kind: "s3"; bucket: string; prefix: string };

export interface ConfigOptions {
  addr?: string;
  monitor?: string;
  minCheckpointPages?: number;
  maxCheckpointPages?: number;
  sync?: string;
  snapshotInterval?: string;
  retention?: string;
  retentionCheck?: string;
}

/** A config both tools read (Litestream v0.3.13 keys only): the database and its destinations. */
export async function writeConfig(
  ctx: TortureCtx,
  file: string,
  db: string,
  dests: Dest[],
  o: ConfigOptions = {},
): Promise<void> {
  const minio = dests.some((d) => d.kind === "s3") ? await ctx.minio() : undefined;
  const lines = [
    "access-key-id: $LITESTREAM_ACCESS_KEY_ID",
    "secret-access-key: $LITESTREAM_SECRET_ACCESS_KEY",
    ...(o.addr ? [`addr: ${o.addr}`] : []),
    "dbs:",
    `  - path: ${db}`,
    `    monitor-interval: ${o.monitor ?? "50ms"}`,
    `    min-checkpoint-page-count: ${o.minCheckpointPages ?? 200}`,
    `    max-checkpoint-page-count: ${o.maxCheckpointPages ?? 2000}`,
    "    replicas:",
  ];
  for (const d of dests) {
    lines.push(`      - name: ${d.name}`, `        sync-interval: ${o.sync ?? "100ms"}`);
    if (o.snapshotInterval) lines.push(`        snapshot-interval: ${o.snapshotInterval}`);
    if (o.retention) lines.push(`        retention: ${o.retention}`);
    if (o.retentionCheck) lines.push(`        retention-check-interval: ${o.retentionCheck}`);
    if (d.kind === "file") lines.push("        type: file", `        path: ${d.path}`);
    else {
      await minio!.createBucket(d.bucket).catch(() => undefined);
      lines.push(
        "        type: s3",
        `        bucket: ${d.bucket}`,
        `        path: ${d.prefix}`,
        `        endpoint: ${minio!.endpoint}`,
        "        region: us-east-1",
        "        force-path-style: true",
      );
    }
  }
  writeFileSync(file, `${lines.join("\n")}\n`);
}

/** `walship replicate -config cfg`, its output appended to `logFile` across restarts. */
export async function startReplicator(
  ctx: TortureCtx,
  cfg: string,
  logFile: string,
  group?: MemoryGroup,
): Promise<ManagedProcess> {
  const argv = ["replicate", "-log-format", "json", "-config", cfg];
  const run = group ? group.wrap(ctx.walship, argv) : { cmd: ctx.walship, args: argv };
  return spawnManaged(run.cmd, run.args, { name: "walship", logFile, env: await ctx.toolEnv() });
}

/** The torture application (torture/app.ts) in its own process; it says it is ready in `<logFile>.ready`. */
export function startApp(o: AppOptions, logFile: string): ManagedProcess {
  return spawnManaged(
    process.execPath,
    [path.join(ROOT, "torture/app.ts"), JSON.stringify({ ...o, readyFile: `${logFile}.ready` })],
    { name: "app", logFile },
  );
}

/** How long a start-up may take on a loaded machine (two cores shared with other work). */
export const STARTUP_TIMEOUT_MS = 300_000;

/** Waits until the application has opened its database and will stop cleanly on SIGTERM. */
export async function appReady(p: ManagedProcess): Promise<void> {
  await waitFor(() => readFileSync(`${p.logFile}.ready`, "utf8").trim() === String(p.pid), {
    what: "the app to start",
    timeoutMs: STARTUP_TIMEOUT_MS,
    intervalMs: 50,
    processes: [p],
  });
}

export type Tool = "walship" | "litestream";

/** Restores `db` from one destination of `cfg` with either tool; undefined on success, else why not. */
export async function restoreWith(
  ctx: TortureCtx,
  tool: Tool,
  cfg: string,
  replica: string,
  db: string,
  out: string,
  extra: string[] = [],
): Promise<string | undefined> {
  const args = ["restore", "-config", cfg, "-replica", replica, "-o", out, ...extra, db];
  const env = await ctx.toolEnv();
  const res =
    tool === "walship"
      ? await runCommand(ctx.walship, args, { env, allowFailure: true, timeoutMs: 600_000 })
      : await runLitestream(args, { env, allowFailure: true, timeoutMs: 600_000 });
  if (res.code === 0) return undefined;
  const tail = (res.stderr || res.stdout).trim().split("\n").slice(-3).join(" | ");
  return `${tool} restore from ${replica} exited ${res.code ?? res.signal}: ${tail}`;
}

export interface DbCheck {
  integrity: string;
  /** Undefined when the ledger holds together, else what is wrong. */
  ledger: string | undefined;
  /** Ledger rows (the application's transactions in this state). */
  seq: number;
  hash: string;
}

/** integrity_check, the ledger's own consistency and the logical hash of a database file. */
export function checkDb(file: string): DbCheck {
  const db = new Database(file, { readonly: true, fileMustExist: true });
  try {
    return checkOpen(db);
  } finally {
    db.close();
  }
}

export function checkOpen(db: Database.Database): DbCheck {
  const integrity = (db.prepare("PRAGMA integrity_check").pluck().all() as string[]).join("; ");
  let ledger: string | undefined;
  let seq = 0;
  const has = db.prepare("SELECT 1 FROM sqlite_master WHERE name = 'ledger'").get();
  if (has) {
    const s = db
      .prepare("SELECT count(*) AS n, coalesce(min(seq), 0) AS lo, coalesce(max(seq), 0) AS hi FROM ledger")
      .get() as {
      n: number;
      lo: number;
      hi: number;
    };
    seq = s.hi;
    if (s.n > 0 && (s.lo !== 1 || s.hi !== s.n))
      ledger = `ledger has ${s.n} rows over ${s.lo}..${s.hi}: a transaction is missing`;
    const last = db.prepare("SELECT items, qty FROM ledger ORDER BY seq DESC LIMIT 1").get() as
      | { items: number; qty: number }
      | undefined;
    const now = db.prepare("SELECT count(*) AS items, total(qty) AS qty FROM items").get() as {
      items: number;
      qty: number;
    };
    if (last && (last.items !== now.items || last.qty !== now.qty)) {
      ledger ??= `ledger's last row says ${last.items} items (qty ${last.qty}), the table holds ${now.items} (qty ${now.qty})`;
    }
  }
  return { integrity, ledger, seq, hash: logicalHashOf(db) };
}

/** What is wrong with a restored database, if anything: integrity, ledger, or (given) not the source. */
export function judge(got: DbCheck, src?: DbCheck): string | undefined {
  if (got.integrity !== "ok") return `integrity_check: ${got.integrity}`;
  if (got.ledger) return got.ledger;
  if (src && got.hash !== src.hash) {
    return `differs from the source (restored ${got.seq} transactions, source ${src.seq})`;
  }
  return undefined;
}

/**
 * Restores `db` from every destination with Walship and with stock Litestream, each into `outDir`,
 * and compares each with the source. Returns one line per restore that failed or differs.
 */
export async function restoreEverywhere(
  ctx: TortureCtx,
  cfg: string,
  db: string,
  dests: Dest[],
  src: DbCheck,
  outDir: string,
): Promise<{ restores: number; problems: string[] }> {
  const problems: string[] = [];
  let restores = 0;
  for (const d of dests) {
    for (const tool of ["walship", "litestream"] as const) {
      const out = path.join(outDir, `${tool}-${d.name}.db`);
      restores++;
      const err = await restoreWith(ctx, tool, cfg, d.name, db, out);
      const why = err ?? judge(checkDb(out), src);
      if (why) problems.push(`${tool} from ${d.name}: ${why}`);
    }
  }
  return { restores, problems };
}

/** Nearest-rank percentile of unsorted numbers; NaN when empty. */
export function pct(values: number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!;
}

export function seconds(ms: number): number {
  return Math.round(ms / 100) / 10;
}
