import {
  copyFileSync,
  mkdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statfsSync,
  statSync,
  writeFileSync,
} from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { DeleteObjectsCommand, ListObjectsV2Command, type S3Client } from "@aws-sdk/client-s3";
import { litestreamBin, spawnLitestream } from "../test/helpers/litestream.ts";
import { type Minio, startMinio } from "../test/helpers/minio.ts";
import { freePort } from "../test/helpers/ports.ts";
import { type ManagedProcess, makeTempDir, runCommand, spawnManaged, stopAll } from "../test/helpers/proc.ts";
import { clockJumpReport, failureReport, guardPhase, type PhaseFailure, pointInTimeTarget } from "./guard.ts";
import { machineInfo } from "./machine.ts";
import {
  BucketPoller,
  findProcess,
  firstSnapshot,
  type LagStats,
  lagBounded,
  lagStats,
  now,
  type ProcSample,
  privatePeak,
  round,
  sampleProc,
  sleep,
} from "./measure.ts";
import { operatorBench, operatorParams, operatorRows } from "./operator.ts";
import { lastSeqIn } from "./rows.ts";
import type { S3Access } from "./stores.ts";
import { aggregate, type Row, table } from "./table.ts";
import { type BenchParams, benchParams, type PacedReply, pickLagConfigs, Writer } from "./workloads.ts";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
/** The walship executable; BENCH_WALSHIP pins a private build (the shared tree may be rebuilt meanwhile). */
const WALSHIP = process.env.BENCH_WALSHIP ?? path.join(ROOT, "bin/walship");
const RESULTS = path.join(ROOT, "bench/results");
const MiB = 1 << 20;
const GiB = 1 << 30;

type Tool = "walship" | "litestream";
const ALL_TOOLS: Tool[] = ["walship", "litestream"];
const ALL_PHASES = ["lag", "ramp", "heavy", "idle", "snapshot", "restore", "operator"] as const;
type Phase = (typeof ALL_PHASES)[number];

interface Ctx {
  params: BenchParams;
  minio: Minio;
  client: S3Client;
  access: S3Access;
  env: Record<string, string>;
  work: string;
  tools: Tool[];
  profileDir: string | undefined;
  stamp: string;
}

function log(msg: string): void {
  const t = new Date().toISOString().slice(11, 19);
  console.log(`[${t}] ${msg}`);
}

function writeConfig(
  ctx: Ctx,
  dir: string,
  db: string,
  tool: Tool,
  prefix: string,
  o: { sync: string; monitor?: string; addr?: string },
): string {
  const cfg = path.join(dir, "litestream.yml");
  writeFileSync(
    cfg,
    `${o.addr ? `addr: ${o.addr}\n` : ""}access-key-id: $LITESTREAM_ACCESS_KEY_ID
secret-access-key: $LITESTREAM_SECRET_ACCESS_KEY
dbs:
  - path: ${db}
${o.monitor ? `    monitor-interval: ${o.monitor}\n` : ""}    replicas:
      - name: minio
        type: s3
        bucket: ${tool}
        path: ${prefix}
        endpoint: ${ctx.minio.endpoint}
        region: us-east-1
        force-path-style: true
        sync-interval: ${o.sync}
`,
  );
  return cfg;
}

function toolEnv(ctx: Ctx, tool: Tool, label: string): Record<string, string> {
  if (tool !== "walship" || !ctx.profileDir) return ctx.env;
  const dir = path.join(ctx.profileDir, label);
  mkdirSync(dir, { recursive: true });
  return { ...ctx.env, NODE_OPTIONS: `--cpu-prof --cpu-prof-dir=${dir}` };
}

function startTool(ctx: Ctx, tool: Tool, cfg: string, dir: string, label: string): ManagedProcess {
  const env = toolEnv(ctx, tool, label);
  if (tool === "litestream") return spawnLitestream(["replicate", "-config", cfg], { env, logDir: dir });
  return spawnManaged(WALSHIP, ["replicate", "-config", cfg], { name: "walship", env, logDir: dir });
}

async function stopTool(p: ManagedProcess): Promise<ProcSample | undefined> {
  const s = sampleProc(p.pid);
  const exit = await p.stop({ signal: "SIGTERM", graceMs: 60_000 });
  if (exit.code !== 0) log(`  ${p.name} exited with ${JSON.stringify(exit)}; log ${p.logFile}`);
  return s;
}

function poller(ctx: Ctx, tool: Tool, prefix: string, decode = true): BucketPoller {
  const p = new BucketPoller({ store: { kind: "s3", access: ctx.access, bucket: tool }, prefix, decode });
  p.start();
  return p;
}

async function deletePrefix(ctx: Ctx, bucket: string, prefix: string): Promise<void> {
  let token: string | undefined;
  do {
    const res = await ctx.client.send(
      new ListObjectsV2Command({ Bucket: bucket, Prefix: `${prefix}/`, ContinuationToken: token }),
    );
    const objs = (res.Contents ?? []).map((c) => ({ Key: c.Key! }));
    if (objs.length) {
      await ctx.client.send(new DeleteObjectsCommand({ Bucket: bucket, Delete: { Objects: objs } }));
    }
    token = res.IsTruncated ? res.NextContinuationToken : undefined;
  } while (token);
}

/**
 * Runs one tool's part of a phase. If MinIO is found dead (this shared machine runs other suites
 * too), it is restarted on the same data and port, and the part runs once more from scratch.
 */
async function attempt<T>(ctx: Ctx, what: string, fn: () => Promise<T>): Promise<T> {
  for (let i = 0; ; i++) {
    await ensureMinio(ctx);
    const load = os.loadavg()[0]!.toFixed(2);
    log(`  ${what} (load average ${load})`);
    try {
      return await fn();
    } catch (err) {
      const dead = ctx.minio.process === undefined || ctx.minio.process.exitInfo !== undefined;
      if (!dead || i > 0) throw err;
      log(`  ${what}: failed with MinIO gone (${(err as Error).message}); once more`);
      await stopAll(10_000);
    }
  }
}

async function ensureMinio(ctx: Ctx): Promise<void> {
  const p = ctx.minio.process;
  if (p && p.exitInfo === undefined) return;
  log(`  MinIO is not running (${JSON.stringify(p?.exitInfo)}); log tail:\n${p?.logTail(10) ?? ""}`);
  await ctx.minio.restart();
  for (const t of ctx.tools) await ctx.minio.createBucket(t).catch(() => undefined);
}

/** An empty work directory and an empty bucket prefix for one run of a tool. */
async function fresh(ctx: Ctx, name: string, tool: Tool, prefix: string): Promise<string> {
  const dir = path.join(ctx.work, name);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  await deletePrefix(ctx, tool, prefix);
  return dir;
}

function freeBytes(dir: string): number {
  const s = statfsSync(dir);
  return s.bavail * s.bsize;
}

function mbps(bytes: number, ms: number): number {
  return round(bytes / MiB / (ms / 1000), 2);
}

// ------------------------------------------------------------------------------------------------
// Phase: replication lag

interface LagResult {
  config: string;
  workload: string;
  achievedTxPerSec: number;
  achievedRowsPerSec: number;
  walMiBps: number;
  lag: LagStats;
  unverifiedSegments: number;
}

async function lagPhase(ctx: Ctx, tool: Tool): Promise<LagResult[]> {
  const out: LagResult[] = [];
  for (const [i, lc] of ctx.params.lagConfigs.entries()) {
    const dir = await fresh(ctx, `lag${i}-${tool}`, tool, `lag${i}`);
    const db = path.join(dir, "app.db");
    const writer = new Writer();
    await writer.open(db);
    const prefix = `lag${i}`;
    const cfg = writeConfig(ctx, dir, db, tool, prefix, lc);
    const pol = poller(ctx, tool, prefix);
    const proc = startTool(ctx, tool, cfg, dir, `lag${i}`);
    await firstSnapshot(pol, proc, `lag ${tool}`, 120_000);
    await sleep(1500);
    for (const w of ctx.params.lagWorkloads) {
      const segBefore = pol.segments.length;
      const r = await writer.paced(w.shape);
      const drained = await pol.waitForSeq(r.lastSeq, 120_000);
      const { lags, unseen } = pol.lags(r.firstSeq, r.commitAt);
      const segs = pol.segments.slice(segBefore);
      const walBytes = segs.reduce((a, s) => a + s.walBytes, 0);
      const res: LagResult = {
        config: lc.label,
        workload: w.name,
        achievedTxPerSec: round(r.commitAt.length / (r.elapsedMs / 1000)),
        achievedRowsPerSec: round(r.rows / (r.elapsedMs / 1000)),
        walMiBps: mbps(walBytes, r.elapsedMs),
        lag: lagStats(lags, unseen),
        unverifiedSegments: segs.filter((s) => !s.verified).length,
      };
      out.push(res);
      log(
        `  ${tool} ${lc.label} | ${w.name}: ${res.achievedTxPerSec} tx/s, lag p50 ${res.lag.p50Ms} p99 ${res.lag.p99Ms} max ${res.lag.maxMs} ms${drained ? "" : " (NOT drained)"}`,
      );
      await sleep(1000);
    }
    await stopTool(proc);
    await writer.close();
    await pol.stop();
    rmSync(dir, { recursive: true, force: true });
  }
  return out;
}

// ------------------------------------------------------------------------------------------------
// Phase: throughput ramp

interface RampStep {
  targetRowMiBps: number;
  achievedRowMiBps: number;
  walMiBps: number;
  lag: LagStats;
  slopeSecPerSec: number;
  lastSecondMaxLagMs: number;
  drained: boolean;
  bounded: boolean;
  /** The writer reached under 85% of the target while this replicator ran. */
  behindTarget: boolean;
}

interface RampResult {
  steps: RampStep[];
  /** Highest WAL rate of a step whose lag stayed bounded. */
  maxSustainedWalMiBps: number;
  /** Row-data rate of that step (used to pace the heavy writer and the restore setup). */
  maxSustainedRowMiBps: number;
  /** Why the ramp stopped: lag grew, or the writer fell behind the target, at its own ceiling
   * (measured with no replicator; then the figure is a lower bound) or slowed by the replicator. */
  stoppedBy: "lag" | "writer slowed" | "writer ceiling" | "last step";
}

function walOfSeqs(pol: BucketPoller, first: number, last: number): number {
  let b = 0;
  for (const s of pol.segments) if (s.maxSeq >= first && s.maxSeq <= last) b += s.walBytes;
  return b;
}

/** Row-data MiB/s the writer reaches as fast as it can with no replicator running. */
async function writerCeiling(ctx: Ctx): Promise<number> {
  const p = ctx.params;
  const dir = path.join(ctx.work, "calibrate");
  mkdirSync(dir, { recursive: true });
  const writer = new Writer();
  await writer.open(path.join(dir, "app.db"));
  const rowsPerTx = Math.max(1, Math.round(p.rampTxBytes / p.rowBytes));
  const r = await writer.paced({
    mode: "insert",
    rowsPerTx,
    rowBytes: p.rowBytes,
    txPerSec: 0,
    durationMs: 3000,
  });
  await writer.close();
  rmSync(dir, { recursive: true, force: true });
  return mbps(r.rowBytes, r.elapsedMs);
}

async function rampPhase(ctx: Ctx, tool: Tool, ceiling: number): Promise<RampResult> {
  const p = ctx.params;
  const dir = await fresh(ctx, `ramp-${tool}`, tool, "ramp");
  const db = path.join(dir, "app.db");
  const writer = new Writer();
  await writer.open(db);
  const cfg = writeConfig(ctx, dir, db, tool, "ramp", { sync: "1s" });
  const pol = poller(ctx, tool, "ramp");
  const proc = startTool(ctx, tool, cfg, dir, "ramp");
  await firstSnapshot(pol, proc, `ramp ${tool}`, 120_000);
  await sleep(1500);
  const steps: RampStep[] = [];
  const result: RampResult = {
    steps,
    maxSustainedWalMiBps: 0,
    maxSustainedRowMiBps: 0,
    stoppedBy: "last step",
  };
  const rowsPerTx = Math.max(1, Math.round(p.rampTxBytes / p.rowBytes));
  for (const target of p.rampMBps) {
    const txPerSec = (target * MiB) / (rowsPerTx * p.rowBytes);
    const r: PacedReply = await writer.paced({
      mode: "insert",
      rowsPerTx,
      rowBytes: p.rowBytes,
      txPerSec,
      durationMs: p.rampStepMs,
    });
    const drained = await pol.waitForSeq(r.lastSeq, Math.max(60_000, p.rampStepMs * 4));
    const { lags, unseen } = pol.lags(r.firstSeq, r.commitAt);
    const b = lagBounded(r.commitAt, lags, 1000);
    const achieved = mbps(r.rowBytes, r.elapsedMs);
    const step: RampStep = {
      targetRowMiBps: target,
      achievedRowMiBps: achieved,
      walMiBps: mbps(walOfSeqs(pol, r.firstSeq, r.lastSeq), r.elapsedMs),
      lag: lagStats(lags, unseen),
      slopeSecPerSec: b.slope,
      lastSecondMaxLagMs: round(b.lastMaxMs),
      drained,
      bounded: b.bounded && drained,
      behindTarget: achieved < 0.85 * target,
    };
    steps.push(step);
    log(
      `  ${tool} ramp ${target} MiB/s rows: achieved ${achieved}, WAL ${step.walMiBps} MiB/s, lag p99 ${step.lag.p99Ms} ms, slope ${b.slope}, ${step.bounded ? "bounded" : "UNBOUNDED"}${step.behindTarget ? " (writer behind target)" : ""}`,
    );
    if (!step.bounded) {
      result.stoppedBy = "lag";
      break;
    }
    if (step.behindTarget) {
      // The writer could not reach the target next to this replicator: at its own ceiling (measured
      // alone first), or slowed by the replicator (lock waits, CPU). The step still counts.
      result.stoppedBy = achieved >= 0.85 * ceiling ? "writer ceiling" : "writer slowed";
      result.maxSustainedWalMiBps = Math.max(result.maxSustainedWalMiBps, step.walMiBps);
      result.maxSustainedRowMiBps = Math.max(result.maxSustainedRowMiBps, step.achievedRowMiBps);
      break;
    }
    result.maxSustainedWalMiBps = Math.max(result.maxSustainedWalMiBps, step.walMiBps);
    result.maxSustainedRowMiBps = Math.max(result.maxSustainedRowMiBps, step.achievedRowMiBps);
    await sleep(1000);
  }
  await stopTool(proc);
  await writer.close();
  await pol.stop();
  rmSync(dir, { recursive: true, force: true });
  await deletePrefix(ctx, tool, "ramp");
  return result;
}

// ------------------------------------------------------------------------------------------------
// Phase: long-running heavy writer (CPU per GiB of WAL, peak RSS)

interface HeavyResult {
  rowMiBps: number;
  durationSec: number;
  walBytes: number;
  walMiBps: number;
  cpuSec: number;
  cpuSecPerGiB: number;
  peakRssMiB: number;
  lag: LagStats;
}

interface IdleResult {
  /** Resident MiB after the first snapshot and IDLE_SETTLE_MS with nothing written. */
  rssBeforeWritesMiB: number;
  /** Resident MiB IDLE_AFTER_BURST_MS after the burst, nothing written since. */
  rssAfterBurstMiB: number;
  burstMiB: number;
}

const IDLE_SETTLE_MS = 20_000;
const IDLE_AFTER_BURST_MS = 50_000;
/** The burst: 15 transactions of 100 rows of 4,000 bytes, in one second. */
const IDLE_ROW_BYTES = 4000;

/**
 * A sidecar's memory when its application is quiet, as most are most of the time: a one-table
 * database, each tool serving its HTTP endpoint (`addr`, as the operator configures Walship's), the
 * resident set read before any write and again a while after one burst of about 6 MiB.
 */
async function idlePhase(ctx: Ctx, tool: Tool): Promise<IdleResult> {
  const dir = await fresh(ctx, `idle-${tool}`, tool, "idle");
  const db = path.join(dir, "app.db");
  const writer = new Writer();
  await writer.open(db);
  const cfg = writeConfig(ctx, dir, db, tool, "idle", { sync: "1s", addr: `127.0.0.1:${await freePort()}` });
  const pol = poller(ctx, tool, "idle");
  const proc = startTool(ctx, tool, cfg, dir, "idle");
  await firstSnapshot(pol, proc, `idle ${tool}`, 120_000);
  await sleep(IDLE_SETTLE_MS);
  const before = sampleProc(proc.pid);
  const r = await writer.paced({
    mode: "insert",
    rowsPerTx: 100,
    rowBytes: IDLE_ROW_BYTES,
    txPerSec: 15,
    durationMs: 1000,
  });
  await pol.waitForSeq(r.lastSeq, 60_000);
  await sleep(IDLE_AFTER_BURST_MS);
  const after = sampleProc(proc.pid);
  await stopTool(proc);
  await writer.close();
  await pol.stop();
  rmSync(dir, { recursive: true, force: true });
  await deletePrefix(ctx, tool, "idle");
  const res: IdleResult = {
    rssBeforeWritesMiB: round((before?.rssBytes ?? Number.NaN) / MiB),
    rssAfterBurstMiB: round((after?.rssBytes ?? Number.NaN) / MiB),
    burstMiB: round(((r.lastSeq - r.firstSeq + 1) * 100 * IDLE_ROW_BYTES) / MiB, 1),
  };
  log(
    `  ${tool} idle: ${res.rssBeforeWritesMiB} MiB resident before any write, ${res.rssAfterBurstMiB} MiB ${IDLE_AFTER_BURST_MS / 1000} s after a ${res.burstMiB} MiB burst`,
  );
  return res;
}

async function heavyPhase(ctx: Ctx, tool: Tool, rowMiBps: number): Promise<HeavyResult> {
  const p = ctx.params;
  const dir = await fresh(ctx, `heavy-${tool}`, tool, "heavy");
  const db = path.join(dir, "app.db");
  const writer = new Writer();
  await writer.open(db);
  const cfg = writeConfig(ctx, dir, db, tool, "heavy", { sync: "1s" });
  const pol = poller(ctx, tool, "heavy");
  const proc = startTool(ctx, tool, cfg, dir, "heavy");
  await firstSnapshot(pol, proc, `heavy ${tool}`, 120_000);
  await sleep(1500);
  const rowsPerTx = Math.max(1, Math.round(p.rampTxBytes / p.rowBytes));
  const cpu0 = sampleProc(proc.pid);
  const seg0 = pol.segments.length;
  const r = await writer.paced({
    mode: "insert",
    rowsPerTx,
    rowBytes: p.rowBytes,
    txPerSec: (rowMiBps * MiB) / (rowsPerTx * p.rowBytes),
    durationMs: p.heavyMs,
  });
  await pol.waitForSeq(r.lastSeq, 300_000);
  const cpu1 = sampleProc(proc.pid);
  const walBytes = pol.segments.slice(seg0).reduce((a, s) => a + s.walBytes, 0);
  const { lags, unseen } = pol.lags(r.firstSeq, r.commitAt);
  const last = await stopTool(proc);
  await writer.close();
  await pol.stop();
  rmSync(dir, { recursive: true, force: true });
  await deletePrefix(ctx, tool, "heavy");
  const cpuSec = (cpu1?.cpuSec ?? Number.NaN) - (cpu0?.cpuSec ?? Number.NaN);
  const res: HeavyResult = {
    rowMiBps: round(rowMiBps, 2),
    durationSec: round(r.elapsedMs / 1000),
    walBytes,
    walMiBps: mbps(walBytes, r.elapsedMs),
    cpuSec: round(cpuSec, 2),
    cpuSecPerGiB: round(cpuSec / (walBytes / GiB), 2),
    peakRssMiB: round((last?.hwmBytes ?? Number.NaN) / MiB),
    lag: lagStats(lags, unseen),
  };
  log(
    `  ${tool} heavy ${res.rowMiBps} MiB/s rows for ${res.durationSec} s: WAL ${res.walMiBps} MiB/s, CPU ${res.cpuSec} s = ${res.cpuSecPerGiB} s/GiB, peak RSS ${res.peakRssMiB} MiB, lag p99 ${res.lag.p99Ms} ms`,
  );
  return res;
}

// ------------------------------------------------------------------------------------------------
// Phase: snapshots

interface SnapshotResult {
  dbBytes: number;
  /** From the replicator's start to its first snapshot being seen in the bucket. */
  seconds: number;
  snapshotObjectBytes: number;
  peakRssMiB: number;
  cpuSec: number;
}

async function baseDb(ctx: Ctx, bytes: number): Promise<string> {
  const file = path.join(ctx.work, `base-${Math.round(bytes / MiB)}MiB.db`);
  try {
    statSync(file);
    return file;
  } catch {
    // Not made yet.
  }
  const need = bytes * 3 + 2 * GiB;
  if (freeBytes(ctx.work) < need) {
    throw new Error(
      `make base database: ${Math.round(freeBytes(ctx.work) / GiB)} GiB free in ${ctx.work}, need ${Math.round(need / GiB)} GiB`,
    );
  }
  // Made under another name and renamed once whole: a phase that failed while making it must not
  // leave a part of a database that the next phase would take for the base.
  const part = `${file}.part`;
  rmSync(part, { force: true });
  const w = new Writer();
  const r = await w.create(part, bytes, ctx.params.rowBytes).catch(async (err) => {
    await w.close().catch(() => undefined);
    throw err;
  });
  await w.close();
  renameSync(part, file);
  log(`  base database ${path.basename(file)}: ${r.rows} rows in ${round(r.ms / 1000)} s`);
  return file;
}

async function snapshotRun(ctx: Ctx, tool: Tool, base: string): Promise<SnapshotResult> {
  const size = statSync(base).size;
  const label = `snap-${Math.round(size / MiB)}MiB`;
  const dir = await fresh(ctx, `${label}-${tool}`, tool, label);
  const db = path.join(dir, "app.db");
  copyFileSync(base, db);
  const cfg = writeConfig(ctx, dir, db, tool, label, { sync: "1s" });
  const pol = poller(ctx, tool, label, false);
  // As before a restore: the base database and this copy of it are dirty pages (8 GiB for the 4 GiB
  // snapshot, over the kernel's dirty limit), and the first tool's snapshot ran while they were
  // written back. Each snapshot starts on a flushed disk.
  await runCommand("sync", [], { timeoutMs: 600_000 });
  const t0 = now();
  const proc = startTool(ctx, tool, cfg, dir, label);
  const snap = await firstSnapshot(pol, proc, `snapshot ${tool}`, 3_600_000);
  const s = await stopTool(proc);
  await pol.stop();
  rmSync(dir, { recursive: true, force: true });
  await deletePrefix(ctx, tool, label);
  const res: SnapshotResult = {
    dbBytes: size,
    seconds: round((snap.seenAt - t0) / 1000, 2),
    snapshotObjectBytes: snap.size,
    peakRssMiB: round((s?.hwmBytes ?? Number.NaN) / MiB),
    cpuSec: round(s?.cpuSec ?? Number.NaN, 2),
  };
  log(
    `  ${tool} snapshot of ${Math.round(size / MiB)} MiB: ${res.seconds} s, object ${Math.round(snap.size / MiB)} MiB, peak RSS ${res.peakRssMiB} MiB`,
  );
  return res;
}

// ------------------------------------------------------------------------------------------------
// Phase: restore

interface RestoreRun {
  seconds: number;
  /** (database size + WAL bytes replayed) / seconds. */
  MiBps: number;
  peakRssMiB: number;
  /** Sampled peak of the part of the resident set no file backs (RssAnon + RssShmem). */
  peakPrivateMiB: number;
  cpuSec: number;
  restoredSeq: number;
}

interface RestoreResult {
  dbBytes: number;
  walBytes: number;
  /** Row-data rate of the writer (the WAL is spread over restoreWriteMs). */
  writeRowMiBps: number;
  lastSeq: number;
  latest: RestoreRun;
  pointInTime: RestoreRun & { timestamp: string; expectedSeq: number };
  /** WAL segments and WAL indexes in the replica (each index is one checkpoint to apply). */
  segments: number;
  walIndexes: number;
  /** The other tool restoring this tool's replica (latest). */
  crossLatest: RestoreRun & { by: Tool };
}

async function timedRestore(
  ctx: Ctx,
  tool: Tool,
  dir: string,
  cfg: string,
  db: string,
  out: string,
  extra: string[],
  label: string,
): Promise<{ seconds: number; peakRssMiB: number; peakPrivateMiB: number; cpuSec: number; seq: number }> {
  const bin = tool === "walship" ? WALSHIP : litestreamBin();
  const tf = path.join(dir, `time-${label}.txt`);
  // Dirty pages of the set-up (the database, its WAL, MinIO's objects: 3 GiB or more) would
  // otherwise be written back during the restore, from whenever the kernel's 30 s expiry falls:
  // one build's latest restore took 6.1 s in one pass and 7.2 s in another of the same run, and
  // 5.8 s in every pass with this sync. Every restore starts on a flushed disk instead.
  await runCommand("sync", [], { timeoutMs: 600_000 });
  // Peak RSS (`%M`) counts every page of a file the process maps: Walship reads the restored file
  // through a map for its integrity check, so its peak RSS holds up to 2 GiB of page cache the
  // restore has written anyway. The private part is sampled beside it (the restore's process, not
  // `time`: the one whose arguments name this output).
  const priv = privatePeak(() =>
    findProcess((argv) => argv[0] !== "/usr/bin/time" && argv.includes("restore") && argv.includes(out)),
  );
  const t0 = now();
  let privateBytes = 0;
  try {
    await runCommand(
      "/usr/bin/time",
      ["-f", "%e %M %U %S", "-o", tf, bin, "restore", "-config", cfg, "-o", out, ...extra, db],
      { env: toolEnv(ctx, tool, label), timeoutMs: 3_600_000 },
    );
  } finally {
    privateBytes = priv.stop();
  }
  const seconds = (now() - t0) / 1000;
  const [, maxKiB, user, sys] = readFileSync(tf, "utf8").trim().split("\n").pop()!.split(" ").map(Number);
  const seq = lastSeqIn(out);
  rmSync(out, { force: true });
  return {
    seconds,
    peakRssMiB: round((maxKiB ?? 0) / 1024),
    peakPrivateMiB: round(privateBytes / MiB),
    cpuSec: round((user ?? 0) + (sys ?? 0), 2),
    seq,
  };
}

async function restorePhase(ctx: Ctx, tool: Tool, base: string): Promise<RestoreResult> {
  const p = ctx.params;
  const dir = await fresh(ctx, `restore-${tool}`, tool, "restore");
  const db = path.join(dir, "app.db");
  copyFileSync(base, db);
  const dbBytes = statSync(db).size;
  const writer = new Writer();
  await writer.open(db);
  const cfg = writeConfig(ctx, dir, db, tool, "restore", { sync: "1s" });
  const pol = poller(ctx, tool, "restore");
  const proc = startTool(ctx, tool, cfg, dir, "restore-replicate");
  await firstSnapshot(pol, proc, `restore ${tool}`, 3_600_000);
  await sleep(1500);
  const rowsPerTx = 256;
  const walPerTx = rowsPerTx * (4096 + 24);
  const r = await writer.paced({
    mode: "update",
    rowsPerTx,
    rowBytes: p.rowBytes,
    // Spread over a fixed time so the point-in-time target falls between many segments.
    txPerSec: Math.ceil(p.restoreWalBytes / walPerTx) / (p.restoreWriteMs / 1000),
    txCount: Math.ceil(p.restoreWalBytes / walPerTx),
  });
  await pol.waitForSeq(r.lastSeq, 1_800_000);
  await stopTool(proc);
  await writer.close();
  await pol.stop();
  const walBytes = pol.walBytes;
  log(
    `  ${tool} restore setup: ${Math.round(dbBytes / MiB)} MiB database + ${Math.round(walBytes / MiB)} MiB WAL`,
  );
  // Restore into a fresh directory so the source database is never touched.
  const outDir = path.join(dir, "out");
  mkdirSync(outDir);
  const latest = await timedRestore(
    ctx,
    tool,
    dir,
    cfg,
    db,
    path.join(outDir, "latest.db"),
    [],
    "restore-latest",
  );
  const { tsMs, expectedSeq } = pointInTimeTarget(r.firstSeq, r.startWall, r.commitWall);
  const timestamp = new Date(tsMs).toISOString();
  const pit = await timedRestore(
    ctx,
    tool,
    dir,
    cfg,
    db,
    path.join(outDir, "pit.db"),
    ["-timestamp", timestamp],
    "restore-pit",
  );
  // The other tool restores this replica too (the layout is shared): tells a slow replica layout
  // (more WAL indexes to apply) from a slow restore implementation.
  const other: Tool = tool === "walship" ? "litestream" : "walship";
  const cross = await timedRestore(
    ctx,
    other,
    dir,
    cfg,
    db,
    path.join(outDir, "cross.db"),
    [],
    "restore-cross",
  );
  const indexes = new Set(pol.segments.map((s) => s.key.slice(s.key.lastIndexOf("/") + 1, -17))).size;
  const walUpTo = (seq: number): number =>
    pol.segments.filter((s) => s.maxSeq <= seq).reduce((a, s) => a + s.walBytes, 0);
  rmSync(dir, { recursive: true, force: true });
  await deletePrefix(ctx, tool, "restore");
  const run = (x: typeof latest, wal: number): RestoreRun => ({
    seconds: round(x.seconds, 2),
    MiBps: mbps(dbBytes + wal, x.seconds * 1000),
    peakRssMiB: x.peakRssMiB,
    peakPrivateMiB: x.peakPrivateMiB,
    cpuSec: x.cpuSec,
    restoredSeq: x.seq,
  });
  const res: RestoreResult = {
    dbBytes,
    walBytes,
    writeRowMiBps: mbps(r.rowBytes, r.elapsedMs),
    lastSeq: r.lastSeq,
    latest: run(latest, walBytes),
    pointInTime: { ...run(pit, walUpTo(pit.seq)), timestamp, expectedSeq },
    segments: pol.segments.length,
    walIndexes: indexes,
    crossLatest: { by: other, ...run(cross, walBytes) },
  };
  log(
    `  ${tool} restore: ${indexes} WAL indexes, ${pol.segments.length} segments; ${other} restores it in ${res.crossLatest.seconds} s; latest ${res.latest.seconds} s (${res.latest.MiBps} MiB/s, seq ${latest.seq}/${r.lastSeq}); point in time ${res.pointInTime.seconds} s (seq ${pit.seq}, expected ${expectedSeq})`,
  );
  return res;
}

// ------------------------------------------------------------------------------------------------
// One pass

/** What one repeat of the chosen phases measured. */
interface RepeatResult {
  index: number;
  started: string;
  /** The 1, 5 and 15 minute load averages at the start and at the end of the repeat. */
  loadStart: number[];
  loadEnd: number[];
  durationSec: number;
  tools: Record<Tool, Record<string, unknown>>;
  writerCeilingRowMiBps?: number;
  steadyRowMiBps?: number;
  operator?: unknown;
  /** Phases that failed in this pass (their figures are missing from it; the other phases ran). */
  failures?: PhaseFailure<Phase>[];
  /** Phases during which the wall clock moved against the monotonic clock (see bench/guard.ts). */
  clockJumps?: Array<{ phase: Phase; ms: number }>;
  table: Row[];
}

/**
 * One pass over the chosen phases, each tool in turn. `fixedRate` fixes the heavy writer's rate
 * (the first pass's, so every pass runs the same workload); undefined derives it from BENCH_HEAVY_MIBPS
 * or this pass's ramp.
 */
async function runPhases(
  ctx: Ctx,
  phases: Phase[],
  quick: boolean,
  index: number,
  fixedRate: number | undefined,
): Promise<RepeatResult> {
  const { tools, params, profileDir } = ctx;
  const started = now();
  const out: RepeatResult = {
    index,
    started: new Date().toISOString(),
    loadStart: os.loadavg().map((x) => round(x, 2)),
    loadEnd: [],
    durationSec: 0,
    tools: { walship: {}, litestream: {} },
    table: [],
  };
  const per = out.tools;
  const rows = out.table;
  /**
   * Runs one phase of this pass. A phase that fails (a writer error, a tool that exits, a timeout)
   * leaves its figures out of this pass and the run goes on with the next phase: an hour-long run
   * is not lost to one part. Every failure is logged, kept in the JSON and makes the run exit 1.
   */
  const guarded = async (phase: Phase, fn: () => Promise<void>): Promise<void> => {
    if (!phases.includes(phase)) return;
    const { failure, clockJumpMs } = await guardPhase(phase, fn, async (err) => {
      log(
        `phase ${phase} failed in pass ${index}; its figures are left out of this pass:\n${(err as Error).stack ?? err}`,
      );
      // Whatever the phase left running (a tool's process, MinIO) is stopped; the next phase's
      // attempt() starts MinIO again on the same data.
      await stopAll(10_000);
    });
    if (failure) out.failures = [...(out.failures ?? []), failure];
    if (clockJumpMs !== undefined) {
      log(
        `phase ${phase}: the wall clock moved ${clockJumpMs} ms against the monotonic clock (the machine was paused?); its figures in pass ${index} are suspect`,
      );
      out.clockJumps = [...(out.clockJumps ?? []), { phase, ms: clockJumpMs }];
    }
  };
  const add = (figure: string, w: number | undefined, l: number | undefined, ratio = true): void => {
    rows.push({
      figure,
      walship: w,
      litestream: l,
      ratio: ratio && w !== undefined && l !== undefined && l !== 0 ? round(w / l, 2) : undefined,
    });
  };
  await guarded("lag", async () => {
    log("phase lag: replication lag (commit -> segment seen in the bucket)");
    const lag: Partial<Record<Tool, LagResult[]>> = {};
    for (const t of tools) lag[t] = await attempt(ctx, `lag ${t}`, () => lagPhase(ctx, t));
    for (const t of tools) per[t].lag = lag[t];
    const base = lag[tools[0]!] ?? [];
    for (const [i, b] of base.entries()) {
      const w = lag.walship?.[i];
      const l = lag.litestream?.[i];
      const short = `${b.config} | ${b.workload.split(" (")[0]}`;
      add(`lag p50 ms, ${short}`, w?.lag.p50Ms, l?.lag.p50Ms);
      add(`lag p99 ms, ${short}`, w?.lag.p99Ms, l?.lag.p99Ms);
      add(`lag max ms, ${short}`, w?.lag.maxMs, l?.lag.maxMs);
    }
  });
  const ramp: Partial<Record<Tool, RampResult>> = {};
  await guarded("ramp", async () => {
    const ceiling = await writerCeiling(ctx);
    out.writerCeilingRowMiBps = ceiling;
    log(`phase ramp: highest WAL throughput with bounded lag (sync 1s); writer alone: ${ceiling} MiB/s rows`);
    for (const t of tools) ramp[t] = await attempt(ctx, `ramp ${t}`, () => rampPhase(ctx, t, ceiling));
    for (const t of tools) per[t].ramp = ramp[t];
    add("max sustained WAL MiB/s", ramp.walship?.maxSustainedWalMiBps, ramp.litestream?.maxSustainedWalMiBps);
  });
  const rates = tools.map((t) => ramp[t]?.maxSustainedRowMiBps).filter((x): x is number => !!x);
  // The heavy writer and the restore setup run at half the rate both tools sustained.
  const steadyRate =
    fixedRate ??
    (process.env.BENCH_HEAVY_MIBPS
      ? Number(process.env.BENCH_HEAVY_MIBPS)
      : rates.length
        ? Math.max(1, Math.min(...rates) / 2)
        : quick
          ? 4
          : 8);
  out.steadyRowMiBps = steadyRate;
  await guarded("heavy", async () => {
    log(`phase heavy: long-running writer at ${round(steadyRate, 2)} MiB/s of rows`);
    const heavy: Partial<Record<Tool, HeavyResult>> = {};
    for (const t of tools) heavy[t] = await attempt(ctx, `heavy ${t}`, () => heavyPhase(ctx, t, steadyRate));
    for (const t of tools) per[t].heavy = heavy[t];
    add("heavy writer: CPU s per GiB of WAL", heavy.walship?.cpuSecPerGiB, heavy.litestream?.cpuSecPerGiB);
    add("heavy writer: peak RSS MiB", heavy.walship?.peakRssMiB, heavy.litestream?.peakRssMiB);
    add("heavy writer: lag p99 ms", heavy.walship?.lag.p99Ms, heavy.litestream?.lag.p99Ms);
  });
  await guarded("idle", async () => {
    log("phase idle: a quiet sidecar's memory, before any write and after one burst");
    const idle: Partial<Record<Tool, IdleResult>> = {};
    for (const t of tools) idle[t] = await attempt(ctx, `idle ${t}`, () => idlePhase(ctx, t));
    for (const t of tools) per[t].idle = idle[t];
    add(
      "idle: RSS MiB before any write",
      idle.walship?.rssBeforeWritesMiB,
      idle.litestream?.rssBeforeWritesMiB,
    );
    add(
      "idle: RSS MiB 50 s after a 6 MiB burst",
      idle.walship?.rssAfterBurstMiB,
      idle.litestream?.rssAfterBurstMiB,
    );
  });
  await guarded("snapshot", async () => {
    log("phase snapshot: time to first snapshot and peak memory");
    const snaps: Record<Tool, SnapshotResult[]> = { walship: [], litestream: [] };
    for (const size of params.snapshotBytes) {
      const base = await baseDb(ctx, size);
      for (const t of tools)
        snaps[t].push(await attempt(ctx, `snapshot ${t}`, () => snapshotRun(ctx, t, base)));
      if (size !== params.restoreDbBytes || !phases.includes("restore")) rmSync(base, { force: true });
    }
    for (const t of tools) per[t].snapshot = snaps[t];
    for (const [i, size] of params.snapshotBytes.entries()) {
      const w = snaps.walship[i];
      const l = snaps.litestream[i];
      const label = `${Math.round(size / MiB)} MiB db`;
      add(`snapshot s, ${label}`, w?.seconds, l?.seconds);
      add(`snapshot peak RSS MiB, ${label}`, w?.peakRssMiB, l?.peakRssMiB);
      add(`snapshot CPU s, ${label}`, w?.cpuSec, l?.cpuSec);
    }
  });
  await guarded("restore", async () => {
    const base = await baseDb(ctx, params.restoreDbBytes);
    log(
      `phase restore: ${Math.round(params.restoreDbBytes / MiB)} MiB database + WAL, latest and point in time`,
    );
    const rest: Partial<Record<Tool, RestoreResult>> = {};
    for (const t of tools) rest[t] = await attempt(ctx, `restore ${t}`, () => restorePhase(ctx, t, base));
    rmSync(base, { force: true });
    for (const t of tools) per[t].restore = rest[t];
    add("restore latest s", rest.walship?.latest.seconds, rest.litestream?.latest.seconds);
    add("restore latest MiB/s", rest.walship?.latest.MiBps, rest.litestream?.latest.MiBps);
    add(
      "restore latest s, of the other tool's replica",
      rest.litestream?.crossLatest.seconds,
      rest.walship?.crossLatest.seconds,
    );
    add("restore: WAL indexes in the replica", rest.walship?.walIndexes, rest.litestream?.walIndexes);
    add("restore latest peak RSS MiB", rest.walship?.latest.peakRssMiB, rest.litestream?.latest.peakRssMiB);
    add(
      "restore latest peak private MiB (no file pages, sampled)",
      rest.walship?.latest.peakPrivateMiB,
      rest.litestream?.latest.peakPrivateMiB,
    );
    add("restore latest CPU s", rest.walship?.latest.cpuSec, rest.litestream?.latest.cpuSec);
    add("restore point-in-time s", rest.walship?.pointInTime.seconds, rest.litestream?.pointInTime.seconds);
    add("restore point-in-time MiB/s", rest.walship?.pointInTime.MiBps, rest.litestream?.pointInTime.MiBps);
    add("restore point-in-time CPU s", rest.walship?.pointInTime.cpuSec, rest.litestream?.pointInTime.cpuSec);
    add(
      "restore point-in-time: tx past T included (<0: missed)",
      rest.walship ? rest.walship.pointInTime.restoredSeq - rest.walship.pointInTime.expectedSeq : undefined,
      rest.litestream
        ? rest.litestream.pointInTime.restoredSeq - rest.litestream.pointInTime.expectedSeq
        : undefined,
      false,
    );
  });
  await guarded("operator", async () => {
    // The operator alone, on the local control plane; litestream has no counterpart.
    log("phase operator: reconcile SqliteReplicas on the local control plane (walship only)");
    const smoke = process.env.BENCH_SMOKE === "1" ? { objects: 10, idleMs: 15_000 } : {};
    const op = await operatorBench({
      ...operatorParams(quick),
      ...smoke,
      walship: WALSHIP,
      ...(profileDir ? { profileDir: path.join(profileDir, "operator") } : {}),
      log,
    });
    out.operator = op;
    for (const [figure, value] of operatorRows(op)) add(figure, value, undefined, false);
  });
  out.loadEnd = os.loadavg().map((x) => round(x, 2));
  out.durationSec = round((now() - started) / 1000);
  return out;
}

// ------------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const quick = process.env.BENCH_QUICK === "1";
  const params = benchParams(quick);
  if (process.env.BENCH_SMOKE === "1") {
    // A harness check in about two minutes: tiny sizes, short runs; the figures mean little.
    params.lagConfigs = params.lagConfigs.slice(1, 2);
    for (const w of params.lagWorkloads) w.shape.durationMs = 4000;
    params.rampMBps = [4, 8];
    params.rampStepMs = 4000;
    params.heavyMs = 5000;
    params.snapshotBytes = [20 * MiB];
    params.restoreDbBytes = 20 * MiB;
    params.restoreWalBytes = 20 * MiB;
    params.restoreWriteMs = 5000;
  }
  if (process.env.BENCH_LAG_CONFIGS !== undefined)
    params.lagConfigs = pickLagConfigs(params.lagConfigs, process.env.BENCH_LAG_CONFIGS);
  if (process.env.BENCH_SMOKE === "1") params.repeats = 1;
  if (process.env.BENCH_REPEATS !== undefined) {
    const n = Number(process.env.BENCH_REPEATS);
    if (!Number.isInteger(n) || n < 1)
      throw new Error(
        `BENCH_REPEATS: a whole number of passes, at least 1; got "${process.env.BENCH_REPEATS}"`,
      );
    params.repeats = n;
  }
  const phases = (process.env.BENCH_PHASES?.split(",").filter(Boolean) ?? [...ALL_PHASES]) as Phase[];
  for (const ph of phases) if (!ALL_PHASES.includes(ph)) throw new Error(`BENCH_PHASES: unknown phase ${ph}`);
  const tools = (process.env.BENCH_TOOLS?.split(",").filter(Boolean) ?? ALL_TOOLS) as Tool[];
  const stamp = new Date().toISOString().replace(/[:.]/g, "-");
  mkdirSync(RESULTS, { recursive: true });
  const profileDir = process.env.BENCH_PROFILE === "1" ? path.join(RESULTS, `profiles-${stamp}`) : undefined;
  const started = now();
  const work = makeTempDir("bench");
  log(`bench: ${quick ? "quick" : "full"} mode, phases ${phases.join(",")}, work dir ${work}`);
  log(`bench: ${Math.round(freeBytes(work) / GiB)} GiB free in ${work}`);
  const tls = process.env.BENCH_TLS === "1";
  const minio = await startMinio({ tls });
  if (tls) log(`bench: MinIO serves https at ${minio.endpoint} (BENCH_TLS=1)`);
  const client = minio.client();
  const ctx: Ctx = {
    params,
    minio,
    client,
    access: {
      endpoint: minio.endpoint,
      region: minio.region,
      accessKeyId: minio.accessKeyId,
      secretAccessKey: minio.secretAccessKey,
      ...(minio.caFile ? { caFile: minio.caFile } : {}),
    },
    env: {
      LITESTREAM_ACCESS_KEY_ID: minio.accessKeyId,
      LITESTREAM_SECRET_ACCESS_KEY: minio.secretAccessKey,
      // The store's certificate, trusted the way each tool's users do it: Node's extra CAs, and the
      // AWS SDK for Go's bundle (litestream did not take SSL_CERT_FILE here).
      ...(minio.caFile ? { NODE_EXTRA_CA_CERTS: minio.caFile, AWS_CA_BUNDLE: minio.caFile } : {}),
    },
    work,
    tools,
    profileDir,
    stamp,
  };
  for (const t of tools) await minio.createBucket(t);

  const results: Record<string, unknown> = {
    started: new Date(performance.timeOrigin).toISOString(),
    mode: quick ? "quick" : "full",
    tls,
    machine: machineInfo(WALSHIP),
    params,
  };
  const repeats: RepeatResult[] = [];
  results.repeats = repeats;
  let rows: Row[] = [];

  try {
    let steadyRate: number | undefined;
    for (let i = 0; i < params.repeats; i++) {
      if (params.repeats > 1)
        log(`repeat ${i + 1} of ${params.repeats} (load average ${os.loadavg()[0]!.toFixed(2)})`);
      const sub = params.repeats > 1 && profileDir ? path.join(profileDir, `repeat-${i + 1}`) : profileDir;
      const r = await runPhases({ ...ctx, profileDir: sub }, phases, quick, i + 1, steadyRate);
      steadyRate ??= r.steadyRowMiBps;
      repeats.push(r);
      if (params.repeats > 1) console.log(`\nrepeat ${i + 1}:\n${table(r.table)}\n`);
    }
    rows = aggregate(repeats.map((r) => r.table));
  } finally {
    client.destroy();
    await minio.close();
    results.finished = new Date().toISOString();
    results.durationSec = round((now() - started) / 1000);
    results.table = rows;
    const file = path.join(RESULTS, `${stamp}.json`);
    writeFileSync(file, `${JSON.stringify(results, null, 2)}\n`);
    const text = table(rows);
    writeFileSync(path.join(RESULTS, `${stamp}.md`), `${text}\n`);
    console.log(`\n${text}\n`);
    if (phases.includes("operator"))
      console.log("The operator rows are walship's alone: litestream has no operator.");
    console.log(`bench: ${round((now() - started) / 60_000, 1)} min; figures in ${file}`);
    if (profileDir)
      console.log(`bench: walship CPU profiles in ${profileDir} (summarise: node bench/profile.ts DIR)`);
  }
  const jumps = clockJumpReport(repeats);
  if (jumps) console.log(`bench: ${jumps}`);
  const failed = failureReport(repeats);
  if (failed) throw new Error(failed);
}

try {
  await main();
  process.exit(0);
} catch (err) {
  console.error(`bench: ${(err as Error).stack ?? err}`);
  process.exit(1);
}
