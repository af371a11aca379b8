/**
 * Soak: hours of steady writes (TORTURE_SOAK_TPS transactions a second) replicated to a file and an
 * S3 (MinIO) destination, with snapshots and retention running. Every TORTURE_SOAK_SAMPLE_SECONDS
 * the replicator's RSS, open file descriptors, CPU and each destination's lag (from /status) are
 * sampled; the figures compare the first tenth of the run with the last. At the end the database is
 * restored from both destinations with Walship and stock Litestream v0.3.13 and compared.
 *
 * A leak fails the run once it is long enough to judge (TORTURE_SOAK_MINUTES >= 30): file
 * descriptors up by more than 16, RSS more than doubled plus 64 MiB, or the lag's p99 at the end
 * above max(2 s, 4 x the start's).
 *
 * The replicator runs under the sidecar's default memory limit (TORTURE_SOAK_MEMORY, 384Mi; `none`
 * for no limit), in a memory cgroup (memcg.ts), as in its pod: Node sizes V8's heap from that limit,
 * and without it the young generation alone grows to 128 MiB on this machine (the RSS "growth" of the
 * first 100-minute run, docs/reliability.md).
 *
 * Knobs: TORTURE_SOAK_MINUTES (180), TORTURE_SOAK_TPS (20), TORTURE_SOAK_SAMPLE_SECONDS (10),
 * TORTURE_SOAK_MEMORY (384Mi).
 */
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import Database from "better-sqlite3";
import { freePort } from "../test/helpers/ports.ts";
import {
  appReady,
  checkOpen,
  type Dest,
  log,
  type PartResult,
  pct,
  restoreEverywhere,
  seconds,
  startApp,
  startReplicator,
  type TortureCtx,
  type TorturePart,
  writeConfig,
} from "./common.ts";
import { memoryGroup, parseMemory, sweepMemoryGroups } from "./memcg.ts";
import { readSmaps, type SmapsSummary } from "./smaps.ts";
import { readJsMemory, readStatus, waitCaughtUp } from "./status.ts";

interface Sample {
  t: number;
  rssMiB: number;
  /** RSS split as the kernel counts it: anonymous (heaps, buffers) and file-backed (code, mappings). */
  anonMiB: number;
  fileMiB: number;
  /** V8's heap in use and its external memory (Buffers), from the replicator's /metrics. */
  heapMiB: number;
  heapTotalMiB: number;
  youngMiB: number;
  externalMiB: number;
  fds: number;
  cpuSec: number;
  lagSec: number;
  pending: number;
}

const TICKS = 100; // USER_HZ on Linux

function sampleProcess(
  pid: number,
):
  | Omit<Sample, "t" | "lagSec" | "pending" | "heapMiB" | "heapTotalMiB" | "youngMiB" | "externalMiB">
  | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const status = readFileSync(`/proc/${pid}/status`, "utf8");
    const kB = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(status)?.[1] ?? 0);
    const mib = (n: number) => Math.round((n / 1024) * 10) / 10;
    return {
      rssMiB: mib(kB("VmRSS")),
      anonMiB: mib(kB("RssAnon")),
      fileMiB: mib(kB("RssFile")),
      fds: readdirSync(`/proc/${pid}/fd`).length,
      cpuSec: (Number(fields[11]) + Number(fields[12])) / TICKS,
    };
  } catch {
    return undefined;
  }
}

function median(
  w: Sample[],
  key:
    | "rssMiB"
    | "anonMiB"
    | "fileMiB"
    | "heapMiB"
    | "heapTotalMiB"
    | "youngMiB"
    | "externalMiB"
    | "fds"
    | "lagSec",
): number {
  return pct(
    w.map((s) => s[key]),
    50,
  );
}

function windowStats(w: Sample[]) {
  const span = w.length > 1 ? (w.at(-1)!.t - w[0]!.t) / 1000 : 0;
  return {
    samples: w.length,
    rssMiB: median(w, "rssMiB"),
    anonMiB: median(w, "anonMiB"),
    fileMiB: median(w, "fileMiB"),
    heapMiB: median(w, "heapMiB"),
    heapTotalMiB: median(w, "heapTotalMiB"),
    youngMiB: median(w, "youngMiB"),
    externalMiB: median(w, "externalMiB"),
    fds: median(w, "fds"),
    lagP50Sec: median(w, "lagSec"),
    lagP99Sec: pct(
      w.map((s) => s.lagSec),
      99,
    ),
    lagMaxSec: pct(
      w.map((s) => s.lagSec),
      100,
    ),
    cpuPercent: span > 0 ? Math.round(((w.at(-1)!.cpuSec - w[0]!.cpuSec) / span) * 1000) / 10 : Number.NaN,
  };
}

export const soak: TorturePart = {
  name: "soak",
  summary: "steady writes for a long time: RSS, file descriptors and lag at the end against the start",
  byDefault: false,
  async run(ctx: TortureCtx): Promise<PartResult> {
    const minutes = ctx.knob("SOAK_MINUTES", 180, 1);
    const tps = Math.max(1, ctx.knob("SOAK_TPS", 20));
    const every = Math.max(1, ctx.knob("SOAK_SAMPLE_SECONDS", 10, 2));
    const dir = ctx.dir("soak");
    const db = path.join(dir, "app.db");
    const cfg = path.join(dir, "walship.yml");
    const port = await freePort();
    const dests: Dest[] = [
      { name: "file", kind: "file", path: path.join(dir, "replica") },
      { name: "s3", kind: "s3", bucket: "torture-soak", prefix: `run-${ctx.seed}` },
    ];
    const short = minutes < 10;
    await writeConfig(ctx, cfg, db, dests, {
      addr: `127.0.0.1:${port}`,
      monitor: "1s",
      minCheckpointPages: 1000,
      maxCheckpointPages: 10_000,
      sync: "1s",
      snapshotInterval: short ? "20s" : "10m",
      retention: short ? "30s" : "1h",
      retentionCheck: short ? "10s" : "5m",
    });
    const failures: string[] = [];
    const pause = Math.max(0, Math.round(1000 / tps) - 2);
    const appOpts = {
      db,
      seed: ctx.seed,
      pauseMinMs: pause,
      pauseMaxMs: pause,
      maxRows: 20_000,
      maxBlobs: 40,
    };
    let app = startApp(appOpts, path.join(dir, "app.log"));
    await appReady(app);
    const memory = process.env.TORTURE_SOAK_MEMORY ?? "384Mi";
    for (const g of sweepMemoryGroups()) log(`  soak: removed a crashed run's memory cgroup ${g}`);
    const group = memory === "none" ? undefined : memoryGroup("soak", parseMemory(memory));
    if (group && "unavailable" in group) {
      throw new Error(
        `TORTURE_SOAK_MEMORY=${memory}: ${group.unavailable} (TORTURE_SOAK_MEMORY=none to soak without it)`,
      );
    }
    const rep = await startReplicator(ctx, cfg, path.join(dir, "replicator.log"), group);
    const started = Date.now();
    const end = started + minutes * 60_000;
    const samples: Sample[] = [];
    // Where the resident memory lives (smaps.ts), a minute in and then every ten minutes.
    const memoryMap: ({ minute: number } & SmapsSummary)[] = [];
    let lastLog = started - 9 * 60_000;
    while (Date.now() < end) {
      await new Promise((res) => setTimeout(res, every * 1000));
      if (rep.exitInfo) {
        failures.push(`the replicator exited: ${JSON.stringify(rep.exitInfo)}; log ${rep.logFile}`);
        break;
      }
      if (app.exitInfo) {
        failures.push(`the app exited: ${JSON.stringify(app.exitInfo)}; restarted`);
        app = startApp(appOpts, path.join(dir, "app.log"));
      }
      const p = sampleProcess(rep.pid);
      const st = await readStatus(port);
      const js = await readJsMemory(port);
      if (!p || !st || !js) continue;
      const reps = st.databases.flatMap((d) => d.replicas);
      samples.push({
        t: Date.now(),
        ...p,
        ...js,
        lagSec: Math.max(0, ...reps.map((x) => x.lagSeconds)),
        pending: reps.reduce((a, x) => a + x.pendingTransactions, 0),
      });
      if (Date.now() - lastLog >= 10 * 60_000) {
        lastLog = Date.now();
        const s = samples.at(-1)!;
        const m = readSmaps(rep.pid);
        if (m) memoryMap.push({ minute: Math.round((Date.now() - started) / 6000) / 10, ...m });
        const where = m
          ? `; brk ${m.brk.rssMiB}, arenas ${m.arena.rssMiB} in ${m.arena.mappings}, ` +
            `anon <1M ${m.anonSmall.rssMiB} in ${m.anonSmall.mappings}, anon >=1M ${m.anonLarge.rssMiB} in ${m.anonLarge.mappings}`
          : "";
        log(
          `  soak: ${seconds(Date.now() - started)} s, rss ${s.rssMiB} MiB (anon ${s.anonMiB}, file ${s.fileMiB}; ` +
            `V8 heap ${s.heapMiB} of ${s.heapTotalMiB}, young ${s.youngMiB}, external ${s.externalMiB}${where}), fds ${s.fds}, lag ${s.lagSec} s`,
        );
      }
    }
    const tenth = Math.max(1, Math.floor(samples.length / 10));
    const start = windowStats(samples.slice(0, tenth));
    const last = windowStats(samples.slice(-tenth));

    // The end: everything replicated, then restored from both destinations with both tools.
    const holder = new Database(db);
    let restores = 0;
    let mismatches = 0;
    let transactions = 0;
    try {
      await appReady(app);
      app.kill("SIGTERM");
      await app.exited;
      const caught = await waitCaughtUp(port, rep, 300_000);
      if (caught) failures.push(caught);
      const stop = await rep.stop({ signal: "SIGTERM", graceMs: 120_000 });
      if (stop.code !== 0) failures.push(`the replicator's clean stop exited ${JSON.stringify(stop)}`);
      group?.remove();
      const src = checkOpen(holder);
      transactions = src.seq;
      const res = await restoreEverywhere(ctx, cfg, db, dests, src, dir);
      restores = res.restores;
      mismatches = res.problems.length;
      failures.push(...res.problems);
    } finally {
      holder.close();
    }
    const judged = minutes >= 30;
    const leaks: string[] = [];
    if (last.fds > start.fds + 16) leaks.push(`file descriptors ${start.fds} -> ${last.fds}`);
    if (last.rssMiB > start.rssMiB * 2 + 64) leaks.push(`RSS ${start.rssMiB} -> ${last.rssMiB} MiB`);
    if (last.lagP99Sec > Math.max(2, 4 * start.lagP99Sec))
      leaks.push(`lag p99 ${start.lagP99Sec} -> ${last.lagP99Sec} s`);
    if (judged) for (const l of leaks) failures.push(`at the end against the start: ${l}`);
    return {
      figures: {
        minutes: Math.round((Date.now() - started) / 6000) / 10,
        memoryLimit: memory,
        tps,
        transactions,
        samples: samples.length,
        start,
        end: last,
        growth: { rssMiB: Math.round((last.rssMiB - start.rssMiB) * 10) / 10, fds: last.fds - start.fds },
        leakVerdict: judged ? (leaks.length ? leaks.join("; ") : "none") : `not judged (${minutes} min < 30)`,
        restores,
        mismatches,
        memoryMap,
      },
      failures,
    };
  },
};
