/**
 * Storage faults, as a torture part: the replicator replicates a database that an app keeps writing
 * to MinIO through two proxies, the test's HTTP fault proxy (S3 errors, truncated bodies, lost
 * answers) in front of toxiproxy (latency, bandwidth, resets, stalls, half-open connections, a
 * refused port), and goes through each fault in turn, then an outage of MinIO itself.
 *
 * For each fault: it is on for `faultSeconds` while the app writes; then it is cleared and the time
 * until the lag is back under `normalLagSeconds` with no error is measured; then the writer pauses,
 * the replica catches up, and a restore straight from MinIO must equal the source (logical hash and
 * integrity_check). The replicator's RSS is sampled throughout. At the end restores through the
 * faulty path (30% of requests answered 503 SlowDown; 30% of bodies cut) must equal the source or
 * fail clearly (a STORAGE error naming the object, no output), and one with stock Litestream v0.3.13
 * must equal the source.
 *
 *   storageFaultsPart({ faultSeconds: 60, outageSeconds: 300 })   -> figures (JSON-able)
 *   node test/torture/storage-faults.ts --fault-seconds 60 --outage-seconds 300 --out faults.json
 */
import { appendFileSync, existsSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { parseArgs } from "node:util";
import { ReplicatorStatusSchema } from "../../src/shared/protocol.ts";
import { type MemoryGroup, memoryGroup, parseMemory, sweepMemoryGroups } from "../../torture/memcg.ts";
import { runLitestream } from "../helpers/litestream.ts";
import { type Minio, startMinio } from "../helpers/minio.ts";
import { freePort } from "../helpers/ports.ts";
import { makeTempDir } from "../helpers/proc.ts";
import { type HttpFault, type S3FaultProxy, startS3FaultProxy } from "../helpers/s3-fault-proxy.ts";
import { integrityCheck, logicalHash } from "../helpers/sqlite.ts";
import { startToxiproxy, type ToxicProxy, type Toxiproxy } from "../helpers/toxiproxy.ts";
import { caughtUp, type Replicator, sleep, startReplicator, walship } from "../helpers/walship.ts";
import { type AppWriter, startAppWriter } from "./app-writer.ts";

export interface FaultFigures {
  fault: string;
  layer: "tcp" | "http" | "server";
  seconds: number;
  /** Syncs that failed while it was on (the replicator's own count). */
  syncErrors: number;
  /** Requests the HTTP proxy answered with a fault, by kind. */
  injected: Record<string, number>;
  maxLagSeconds: number;
  /** From clearing the fault to lag under normalLagSeconds with no error. */
  recoverySeconds: number;
  /** How long that may take: recoveryLimitSeconds, and for the outage more with its backlog. */
  recoveryLimitSeconds: number;
  /** From clearing the fault to the replica's position moving again (NaN: it had not moved by then). */
  resumedSeconds: number;
  /** WAL not yet uploaded when the fault was cleared (MB). */
  backlogAtClearMB: number;
  restoreEqual: boolean;
  rssMaxMiB: number;
  /** The V8 heap in use once the fault was over and the replica caught up. */
  heapAfterMiB: number;
  /** When the lag did not come back in time: samples of /status after the fault was cleared. */
  recoveryTrace?: string[];
  errorSample?: string;
}

export interface StorageFaultsFigures {
  part: "storage-faults";
  faultSeconds: number;
  outageSeconds: number;
  /** Minutes with a fault on, all kinds together. */
  faultMinutes: number;
  transactions: number;
  /** The app's transactions that found the database locked past its busy timeout (skipped). */
  appBusy: number;
  baselineLagSeconds: number;
  rssStartMiB: number;
  rssMaxMiB: number;
  heapStartMiB: number;
  faults: FaultFigures[];
  /** Restores through the faulty path, with S3 errors or truncated bodies on. */
  restoreUnderFaults: Array<{
    faults: string;
    outcome: "equal" | "failed clearly" | "wrong";
    injected: Record<string, number>;
    error?: string;
  }>;
  litestreamRestoreEqual: boolean;
  /** Every check held: restores equal, lag recovered in time, memory within bounds. */
  ok: boolean;
  problems: string[];
}

export interface StorageFaultsOptions {
  faultSeconds: number;
  outageSeconds: number;
  /** Only these faults (names as in the figures); default all. */
  only?: string[];
  normalLagSeconds?: number;
  /** A fault that does not recover within this long after it is cleared is a problem. */
  recoveryLimitSeconds?: number;
  /**
   * The outage's limit instead grows with its backlog: recoveryLimitSeconds plus the backlog at the
   * clear over this rate (MB of WAL a second, net of what the app goes on writing). Five minutes of
   * this app's writes are about 24 GB of WAL, which no fixed 60 s can drain: the one-minute faults
   * measured 55-125 MB/s net (docs/reliability-faults.md), so 50 by default.
   */
  outageDrainMBps?: number;
  /** RSS may grow at most this much over the start. */
  rssBudgetMiB?: number;
  seed?: number;
  log?: (line: string) => void;
  /** Write the replicator's log (JSON lines) here at the end. */
  replicatorLog?: string;
  /** Without the HTTP fault proxy: the replicator talks to toxiproxy directly (HTTP faults then do nothing). */
  noHttpProxy?: boolean;
  /** The replicator's log level (`debug` logs every segment written, with its size and time). */
  logLevel?: string;
  /**
   * Run this many of the app's transactions before the replicator starts, so the faults meet the
   * database as it is late in a full run (the app's updates rewrite a share of the table: the bigger
   * the database, the more WAL per second).
   */
  prefillTransactions?: number;
  /** Append every /status sample here as a JSON line (time, positions, lag, pending, error). */
  traceFile?: string;
  /** Extra arguments for the replicator's node (e.g. `--cpu-prof`), through NODE_OPTIONS. */
  nodeOptions?: string;
  /**
   * Run the replicator under this memory limit (a memory cgroup, as root: torture/memcg.ts), as its
   * pod does; Node sizes V8's heap from it. Unset: no limit.
   */
  memoryLimitBytes?: number;
}

interface FaultDef {
  name: string;
  layer: FaultFigures["layer"];
  on(): Promise<void>;
  off(): Promise<void>;
}

function faultDefs(tp: ToxicProxy, fp: S3FaultProxy, minio: Minio): FaultDef[] {
  const tcp = (name: string, on: () => Promise<unknown>): FaultDef => ({
    name,
    layer: "tcp",
    on: async () => void (await on()),
    off: () => tp.clear(),
  });
  const http = (name: string, f: HttpFault): FaultDef => ({
    name,
    layer: "http",
    on: async () => fp.set(f),
    off: async () => fp.set(undefined),
  });
  return [
    tcp("latency 1s +-0.5s", async () => {
      await tp.add({ type: "latency", attributes: { latency: 1000, jitter: 500 } });
      await tp.add({ type: "latency", attributes: { latency: 1000, jitter: 500 } }, { stream: "upstream" });
    }),
    tcp("bandwidth 16 KB/s", async () => {
      await tp.add({ type: "bandwidth", attributes: { rate: 16 } });
      await tp.add({ type: "bandwidth", attributes: { rate: 16 } }, { stream: "upstream" });
    }),
    tcp("connection resets (half of connections)", () =>
      tp.add({ type: "reset_peer", attributes: { timeout: 0 } }, { toxicity: 0.5, stream: "upstream" }),
    ),
    tcp("timeouts (stall 2 s, then close)", () => tp.add({ type: "timeout", attributes: { timeout: 2000 } })),
    tcp("half-open connections (no data, never closed)", () =>
      tp.add({ type: "timeout", attributes: { timeout: 0 } }),
    ),
    { name: "connection refused", layer: "tcp", on: () => tp.disable(), off: () => tp.enable() },
    http("HTTP 500 InternalError (half)", { kind: "status", status: 500, code: "InternalError", share: 0.5 }),
    http("HTTP 503 SlowDown (half)", { kind: "status", status: 503, code: "SlowDown", share: 0.5 }),
    http("HTTP 429 SlowDown (half)", { kind: "status", status: 429, code: "SlowDown", share: 0.5 }),
    http("truncated bodies (half)", { kind: "truncate", share: 0.5 }),
    http("lost answers (a third)", { kind: "drop-response", share: 0.33 }),
    {
      name: "MinIO down (outage)",
      layer: "server",
      on: () => minio.stop(),
      off: () => minio.restart(),
    },
  ];
}

function rssMiB(pid: number | undefined): number {
  if (pid === undefined) return 0;
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Math.round(Number(m[1]) / 1024) : 0;
  } catch {
    return 0;
  }
}

/** A process's CPU time (user + system), in seconds, from /proc. */
function cpuSeconds(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return undefined;
  }
}

/** How long a process's main thread has waited for a CPU while runnable, in seconds (schedstat). */
function runqueueSeconds(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  try {
    return Number(readFileSync(`/proc/${pid}/schedstat`, "utf8").split(" ")[1]) / 1e9;
  } catch {
    return undefined;
  }
}

function s3Config(port: number, db: string, endpoint: string, minio: Minio, logLevel?: string): string {
  return `addr: 127.0.0.1:${port}
${logLevel ? `logging:\n  level: ${logLevel}\n` : ""}dbs:
  - path: ${db}
    monitor-interval: 100ms
    replicas:
      - name: minio
        url: s3://faults/app
        endpoint: ${endpoint}
        region: us-east-1
        access-key-id: ${minio.accessKeyId}
        secret-access-key: ${minio.secretAccessKey}
        sync-interval: 200ms
`;
}

export async function storageFaultsPart(opts: StorageFaultsOptions): Promise<StorageFaultsFigures> {
  const log = opts.log ?? (() => undefined);
  const normalLag = opts.normalLagSeconds ?? 3;
  // A half-open connection is noticed by the S3 client's 30 s idle timeout; then the backoff (at most
  // 10 s) and the catch-up.
  const recoveryLimit = opts.recoveryLimitSeconds ?? 60;
  const outageDrain = opts.outageDrainMBps ?? 50;
  const rssBudget = opts.rssBudgetMiB ?? 150;
  const problems: string[] = [];
  const dir = makeTempDir("faults");
  const db = path.join(dir, "app.db");
  let minio: Minio | undefined;
  let tox: Toxiproxy | undefined;
  let fp: S3FaultProxy | undefined;
  let rep: Replicator | undefined;
  let replicatorOutput: (() => string) | undefined;
  let app: AppWriter | undefined;
  let group: MemoryGroup | undefined;
  try {
    minio = await startMinio();
    await minio.createBucket("faults");
    tox = await startToxiproxy();
    const tp = await tox.proxy("minio", minio.port);
    fp = await startS3FaultProxy(tp.port, { seed: opts.seed ?? 1 });
    const port = await freePort();
    const cfg = path.join(dir, "walship.yml");
    const direct = path.join(dir, "direct.yml");
    writeFileSync(
      cfg,
      s3Config(port, db, opts.noHttpProxy ? tp.endpoint : fp.endpoint, minio, opts.logLevel),
    );
    writeFileSync(direct, s3Config(await freePort(), db, minio.endpoint, minio));
    const base = `http://127.0.0.1:${port}`;
    const env = { AWS_EC2_METADATA_DISABLED: "true" };

    // The app on a thread of its own: its transactions must not stall the fault proxy (see app-writer.ts).
    app = startAppWriter(db, opts.seed ?? 71, { vacuum: false, prefill: opts.prefillTransactions ?? 0 });
    const w = app;
    const filled = await w.ready;
    if (opts.prefillTransactions)
      log(
        `storage faults: prefilled ${opts.prefillTransactions} transactions in ${(filled.prefillMs / 1000).toFixed(1)} s, database ${filled.pageCount * filled.pageSize} bytes`,
      );
    if (opts.memoryLimitBytes !== undefined) {
      sweepMemoryGroups();
      const g = memoryGroup("faults", opts.memoryLimitBytes);
      if ("unavailable" in g) throw new Error(`storage faults: a memory limit: ${g.unavailable}`);
      group = g;
    }
    const g = group;
    rep = startReplicator(["-config", cfg], {
      env: opts.nodeOptions ? { ...env, NODE_OPTIONS: opts.nodeOptions } : env,
      ...(g ? { wrap: (cmd: string, args: string[]) => g.wrap(cmd, args) } : {}),
    });
    const r = rep;
    replicatorOutput = () => r.output();
    const status = async () => {
      // A kept-alive connection the server has just closed fails once ("other side closed"): retry.
      for (let attempt = 1; ; attempt++) {
        try {
          const res = await fetch(`${base}/status`, { signal: AbortSignal.timeout(5000) });
          const d = ReplicatorStatusSchema.parse(await res.json()).databases[0]!;
          const s = d.replicas[0]!;
          if (opts.traceFile) {
            const p = (x: typeof s.position) => x && `${x.index.toString(16)}:${x.offset}`;
            appendFileSync(
              opts.traceFile,
              `${JSON.stringify({ t: Date.now(), db: p(d.position), rep: p(s.position), dbBytes: d.sizeBytes, walBytes: d.walSizeBytes, lag: s.lagSeconds, pendingTx: s.pendingTransactions, pendingBytes: s.pendingBytes, errors: s.syncErrorCount, syncs: s.syncCount, tx: w.transactions, busy: w.busy, cpu: cpuSeconds(r.child.pid), runqueue: runqueueSeconds(r.child.pid), selfCpu: Math.round((process.cpuUsage().user + process.cpuUsage().system) / 1e4) / 100, err: s.lastError?.message.slice(0, 160) })}\n`,
            );
          }
          return s;
        } catch (err) {
          if (attempt >= 3) throw err;
          await sleep(100);
        }
      }
    };
    const waitUntil = async <T>(what: string, fn: () => Promise<T | undefined>, ms: number): Promise<T> => {
      const end = Date.now() + ms;
      for (;;) {
        try {
          const v = await fn();
          if (v !== undefined) return v;
        } catch {
          // not up yet
        }
        if (Date.now() > end) throw new Error(`storage faults: timed out waiting for ${what}`);
        if (r.child.exitCode !== null) throw new Error(`replicator exited: ${r.output().slice(-2000)}`);
        await sleep(250);
      }
    };
    await waitUntil(
      "the replicator to sync",
      async () => ((await status()).ready ? true : undefined),
      60_000,
    );

    // Baseline: lag while nothing is wrong.
    const lags: number[] = [];
    for (let i = 0; i < 10; i++) {
      lags.push((await status()).lagSeconds);
      await sleep(300);
    }
    const baselineLag = Math.max(...lags);
    const rssStart = rssMiB(r.child.pid);
    let rssMax = rssStart;
    /** The replicator's V8 heap in use (its /metrics), to tell a leak from a heap that grew and stays. */
    const heapMiB = async (): Promise<number> => {
      const text = await (await fetch(`${base}/metrics`, { signal: AbortSignal.timeout(5000) })).text();
      const m = /^nodejs_heap_size_used_bytes (\d+(?:\.\d+)?(?:e\+\d+)?)$/m.exec(text);
      return m ? Math.round(Number(m[1]) / 1048576) : 0;
    };
    const heapStart = await heapMiB();
    log(
      `storage faults: baseline lag ${baselineLag.toFixed(2)} s, RSS ${rssStart} MiB, heap ${heapStart} MiB`,
    );

    /** Pauses the app, lets the replica catch up, restores from MinIO directly and compares. */
    const restoreEquals = async (label: string, catchUpSeconds: number): Promise<boolean> => {
      await w.pause();
      try {
        try {
          // Settled, not one reading (helpers/walship.ts): the app's last commits before the pause
          // may not have been read from the WAL yet.
          await caughtUp(base, `${label}: the replica to catch up`, {
            timeoutMs: catchUpSeconds * 1000,
            clear: (d) => !d.replicas[0]!.lastError,
            replicator: r,
          });
        } catch (err) {
          // A replica that does not catch up is a finding of this fault, not the end of the run.
          problems.push(`${label}: ${(err as Error).message}`);
          return false;
        }
        const want = logicalHash(db);
        const out = path.join(dir, `restore-${label.replace(/[^a-z0-9]+/gi, "-")}.db`);
        const res = await walship(["restore", "-config", direct, "-o", out, db], { env });
        if (res.code !== 0) {
          problems.push(`${label}: restore failed: ${res.stderr.slice(-500)}`);
          return false;
        }
        const ok = integrityCheck(out) === "ok" && logicalHash(out) === want;
        if (!ok) problems.push(`${label}: the restore differs from the source`);
        return ok;
      } finally {
        w.resume();
      }
    };

    const figures: FaultFigures[] = [];
    const defs = faultDefs(tp, fp, minio).filter((d) => !opts.only || opts.only.includes(d.name));
    for (const d of defs) {
      const seconds = d.layer === "server" ? opts.outageSeconds : opts.faultSeconds;
      const errorsBefore = (await status()).syncErrorCount;
      const injectedBefore = { ...fp.counts.injected };
      log(`storage faults: ${d.name} for ${seconds} s`);
      if (opts.traceFile)
        appendFileSync(opts.traceFile, `${JSON.stringify({ t: Date.now(), on: d.name })}\n`);
      await d.on();
      const started = Date.now();
      let maxLag = 0;
      let errorSample: string | undefined;
      while (Date.now() - started < seconds * 1000) {
        await sleep(1000);
        rssMax = Math.max(rssMax, rssMiB(r.child.pid));
        try {
          const s = await status();
          maxLag = Math.max(maxLag, s.lagSeconds);
          errorSample ??= s.lastError?.message;
        } catch {
          // /status itself must stay up; a slow answer under load is tolerated here
        }
        if (r.child.exitCode !== null)
          throw new Error(`replicator exited during ${d.name}: ${r.output().slice(-2000)}`);
      }
      await d.off();
      const cleared = Date.now();
      if (opts.traceFile) appendFileSync(opts.traceFile, `${JSON.stringify({ t: cleared, off: d.name })}\n`);
      let recovery = Number.NaN;
      // What the replica said while recovering, to show where a slow recovery stood.
      const trace: string[] = [];
      // Where the replica stood when the fault was cleared, and the backlog then: the replicator's
      // own part of a recovery is how soon it moves again; the rest is the backlog over the rate
      // it uploads at while the app goes on writing.
      const atClear = await status().catch(() => undefined);
      const posKey = (x: { position?: { index: number; offset: number } | undefined } | undefined) =>
        x?.position ? `${x.position.index}:${x.position.offset}` : "";
      let resumed = Number.NaN;
      const backlogMB = atClear ? atClear.pendingBytes / 1e6 : 0;
      const limit = d.layer === "server" ? Math.ceil(recoveryLimit + backlogMB / outageDrain) : recoveryLimit;
      try {
        await waitUntil(
          `${d.name}: lag back to normal`,
          async () => {
            const s = await status();
            maxLag = Math.max(maxLag, s.lagSeconds);
            if (Number.isNaN(resumed) && atClear && posKey(s) !== posKey(atClear))
              resumed = (Date.now() - cleared) / 1000;
            trace.push(
              `+${((Date.now() - cleared) / 1000).toFixed(1)}s lag ${s.lagSeconds.toFixed(1)} pending ${s.pendingTransactions}/${s.pendingBytes}B${s.lastError ? ` error ${s.lastError.message.slice(0, 120)}` : ""}`,
            );
            return s.lagSeconds <= normalLag && !s.lastError ? true : undefined;
          },
          limit * 1000,
        );
        recovery = (Date.now() - cleared) / 1000;
      } catch {
        problems.push(`${d.name}: lag not back under ${normalLag} s within ${limit} s`);
      }
      const errorsAfter = (await status()).syncErrorCount;
      const injected: Record<string, number> = {};
      for (const [k, v] of Object.entries(fp.counts.injected)) {
        const n = v - (injectedBefore[k] ?? 0);
        if (n > 0) injected[k] = n;
      }
      const restoreEqual = await restoreEquals(d.name, limit);
      rssMax = Math.max(rssMax, rssMiB(r.child.pid));
      const heapAfter = await heapMiB().catch(() => 0);
      const f: FaultFigures = {
        fault: d.name,
        layer: d.layer,
        seconds,
        syncErrors: errorsAfter - errorsBefore,
        injected,
        maxLagSeconds: Math.round(maxLag * 10) / 10,
        recoverySeconds: Math.round(recovery * 10) / 10,
        recoveryLimitSeconds: limit,
        resumedSeconds: Math.round(resumed * 10) / 10,
        backlogAtClearMB: atClear ? Math.round(atClear.pendingBytes / 1e6) : Number.NaN,
        restoreEqual,
        rssMaxMiB: rssMax,
        heapAfterMiB: heapAfter,
        ...(Number.isNaN(recovery) ? { recoveryTrace: trace.filter((_, i) => i % 8 === 0).slice(-40) } : {}),
        ...(errorSample ? { errorSample: errorSample.slice(0, 300) } : {}),
      };
      figures.push(f);
      log(
        `storage faults: ${d.name}: ${f.syncErrors} failed syncs, max lag ${f.maxLagSeconds} s, ${Number.isNaN(f.recoverySeconds) ? `lag NOT back under ${normalLag} s within ${f.recoveryLimitSeconds} s` : `recovered in ${f.recoverySeconds} s`} (backlog ${f.backlogAtClearMB} MB at the clear, moving again after ${f.resumedSeconds} s), restore ${restoreEqual ? "equal" : "DIFFERS"}, RSS max ${rssMax} MiB, heap ${heapAfter} MiB`,
      );
    }
    if (rssMax > rssStart + rssBudget) problems.push(`RSS grew from ${rssStart} to ${rssMax} MiB`);

    // The end: stop writing, let it catch up, stop the replicator; restore through the faults, and
    // with Litestream.
    const transactions = w.transactions;
    const appBusy = w.busy;
    await w.stop();
    const want = logicalHash(db);
    await waitUntil(
      "the final sync",
      async () => ((await status()).pendingTransactions === 0 ? true : undefined),
      60_000,
    );
    const code = await r.stop();
    if (code !== 0) problems.push(`replicator exited ${code} on SIGTERM`);
    rep = undefined;

    // Restores through the faulty path: each must equal the source, or fail clearly (STORAGE, naming
    // the object, no output) when a request still fails after all its attempts.
    const restoreUnderFaults: StorageFaultsFigures["restoreUnderFaults"] = [];
    for (const [label, fault] of [
      ["30% HTTP 503 SlowDown", { kind: "status", status: 503, code: "SlowDown", share: 0.3 }],
      ["30% truncated bodies", { kind: "truncate", share: 0.3 }],
    ] as const) {
      const before = { ...fp.counts.injected };
      fp.set(fault);
      const file = path.join(dir, `restore-through-${label.replace(/[^a-z0-9]+/gi, "-")}.db`);
      const res = await walship(["restore", "-config", cfg, "-o", file, db], { env });
      fp.set(undefined);
      const injected: Record<string, number> = {};
      for (const [k, v] of Object.entries(fp.counts.injected)) {
        const n = v - (before[k] ?? 0);
        if (n > 0) injected[k] = n;
      }
      let outcome: "equal" | "failed clearly" | "wrong";
      if (res.code === 0) outcome = logicalHash(file) === want ? "equal" : "wrong";
      else {
        const clear =
          /\[WALSHIP_ERR_STORAGE\]/.test(res.stderr) &&
          /read s3:\/\/faults\/app\//.test(res.stderr) &&
          !existsSync(file);
        outcome = clear ? "failed clearly" : "wrong";
      }
      restoreUnderFaults.push({
        faults: label,
        outcome,
        injected,
        ...(res.code !== 0
          ? {
              error: res.stderr
                .split("\n")
                .filter((l) => l.startsWith("walship"))
                .join(" ")
                .slice(0, 400),
            }
          : {}),
      });
      if (outcome === "wrong") problems.push(`a restore through ${label}: ${res.stderr.slice(-300)}`);
    }

    const lsOut = path.join(dir, "restore-litestream.db");
    const ls = await runLitestream(["restore", "-config", direct, "-o", lsOut, db], {
      env: { ...env, AWS_ACCESS_KEY_ID: minio.accessKeyId, AWS_SECRET_ACCESS_KEY: minio.secretAccessKey },
      allowFailure: true,
      // A full run leaves tens of GB of WAL in the generation; Litestream applies it all.
      timeoutMs: 30 * 60_000,
    });
    const litestreamRestoreEqual = ls.code === 0 && logicalHash(lsOut) === want;
    if (!litestreamRestoreEqual) problems.push(`litestream restore: ${ls.code} ${ls.stderr.slice(-300)}`);

    for (const f of figures) if (!f.restoreEqual) problems.push(`${f.fault}: restore differs`);
    const faultSecondsTotal = figures.reduce((s, f) => s + f.seconds, 0);
    return {
      part: "storage-faults",
      faultSeconds: opts.faultSeconds,
      outageSeconds: opts.outageSeconds,
      faultMinutes: Math.round((faultSecondsTotal / 60) * 10) / 10,
      transactions,
      appBusy,
      baselineLagSeconds: baselineLag,
      rssStartMiB: rssStart,
      rssMaxMiB: rssMax,
      heapStartMiB: heapStart,
      faults: figures,
      restoreUnderFaults,
      litestreamRestoreEqual,
      ok: problems.length === 0,
      problems: [...new Set(problems)],
    };
  } finally {
    if (rep) await rep.stop().catch(() => undefined);
    if (opts.replicatorLog && replicatorOutput) writeFileSync(opts.replicatorLog, replicatorOutput());
    await app?.stop().catch(() => undefined);
    await fp?.close();
    await tox?.close();
    await minio?.close();
    group?.remove();
  }
}

if (import.meta.main) {
  const { values } = parseArgs({
    options: {
      "fault-seconds": { type: "string", default: "60" },
      "outage-seconds": { type: "string", default: "300" },
      out: { type: "string" },
      seed: { type: "string" },
      only: { type: "string", multiple: true },
      "no-http-proxy": { type: "boolean" },
      "log-level": { type: "string" },
      trace: { type: "string" },
      prefill: { type: "string" },
      "node-options": { type: "string" },
      "outage-drain-mbps": { type: "string" },
      memory: { type: "string" },
    },
  });
  const figures = await storageFaultsPart({
    faultSeconds: Number(values["fault-seconds"]),
    outageSeconds: Number(values["outage-seconds"]),
    ...(values.seed ? { seed: Number(values.seed) } : {}),
    ...(values.only ? { only: values.only } : {}),
    ...(values["no-http-proxy"] ? { noHttpProxy: true } : {}),
    ...(values["log-level"] ? { logLevel: values["log-level"] } : {}),
    ...(values.trace ? { traceFile: values.trace } : {}),
    ...(values.prefill ? { prefillTransactions: Number(values.prefill) } : {}),
    ...(values["node-options"] ? { nodeOptions: values["node-options"] } : {}),
    ...(values["outage-drain-mbps"] ? { outageDrainMBps: Number(values["outage-drain-mbps"]) } : {}),
    ...(values.memory && values.memory !== "none" ? { memoryLimitBytes: parseMemory(values.memory) } : {}),
    ...(values.out ? { replicatorLog: `${values.out}.replicator.log` } : {}),
    log: (l) => console.log(l),
  });
  console.log(JSON.stringify(figures, null, 2));
  if (values.out) writeFileSync(values.out, `${JSON.stringify(figures, null, 2)}\n`);
  process.exitCode = figures.ok ? 0 : 1;
}
