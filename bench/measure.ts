/**
 * Measuring instruments for the benchmark: a clock shared by every thread, /proc readings of a
 * replicator process, percentiles, and the bucket poller that sees each WAL segment appear.
 *
 * The poller lists the replica's generations every ~20 ms (keys after the last one seen, through the
 * store's reader in bench/stores.ts: S3, GCS, Azure Blob or an SFTP server's directory) and stamps
 * each new object with the time its listing returned: that is when the segment was seen durable in
 * the bucket. Downloading and decoding (LZ4 frame, then WAL frames) runs in a worker thread
 * (bench/decoder.ts), so a large segment never delays the next listing.
 */
import { execFileSync } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { performance } from "node:perf_hooks";
import { Worker } from "node:worker_threads";
import type { ManagedProcess } from "../test/helpers/proc.ts";
import type { DecodeRequest, DecodeResult } from "./decoder.ts";
import { openStore, type StoreReader, type StoreSpec } from "./stores.ts";

/** Milliseconds since the epoch with sub-millisecond resolution; comparable across threads. */
export function now(): number {
  return performance.timeOrigin + performance.now();
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

let clkTck: number | undefined;
function ticksPerSecond(): number {
  if (clkTck === undefined) {
    try {
      clkTck = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;
    } catch {
      clkTck = 100;
    }
  }
  return clkTck;
}

export interface ProcSample {
  /** utime + stime of the process (all its threads), seconds. */
  cpuSec: number;
  /** Peak resident set size so far (VmHWM), bytes. */
  hwmBytes: number;
  /** Current resident set size (VmRSS), bytes. */
  rssBytes: number;
  /**
   * The part of it no file backs (RssAnon + RssShmem), bytes: VmRSS also counts the pages of files
   * the process has mapped, which are the page cache's whether mapped or not.
   */
  privateBytes: number;
}

/** Reads /proc/<pid>/stat and /proc/<pid>/status; undefined once the process is gone. */
export function sampleProc(pid: number): ProcSample | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // Fields after the command name (which may hold spaces): state is field 3, utime 14, stime 15.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const ticks = Number(fields[11]) + Number(fields[12]);
    const status = readFileSync(`/proc/${pid}/status`, "utf8");
    const kib = (name: string): number => {
      const m = new RegExp(`^${name}:\\s+(\\d+) kB`, "m").exec(status);
      return m ? Number(m[1]) * 1024 : 0;
    };
    return {
      cpuSec: ticks / ticksPerSecond(),
      hwmBytes: kib("VmHWM"),
      rssBytes: kib("VmRSS"),
      privateBytes: kib("RssAnon") + kib("RssShmem"),
    };
  } catch {
    return undefined;
  }
}

/** The first process whose argument list `match` accepts (found through /proc), if any. */
export function findProcess(match: (argv: string[]) => boolean): number | undefined {
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
    try {
      const argv = readFileSync(`/proc/${name}/cmdline`, "latin1").split("\0");
      if (match(argv)) return Number(name);
    } catch {
      // gone meanwhile
    }
  }
  return undefined;
}

/**
 * Samples a process every `everyMs` until `stop()`: the highest `privateBytes` seen (a sampled peak,
 * so a spike shorter than the period can be missed). `find` is asked again until it names one.
 */
export function privatePeak(find: () => number | undefined, everyMs = 25): { stop(): number } {
  let pid: number | undefined;
  let peak = 0;
  const tick = () => {
    pid ??= find();
    if (pid === undefined) return;
    const s = sampleProc(pid);
    if (s && s.privateBytes > peak) peak = s.privateBytes;
  };
  const timer = setInterval(tick, everyMs);
  return {
    stop() {
      clearInterval(timer);
      return peak;
    },
  };
}

/** Nearest-rank percentile of an ascending array (p in 0..100); NaN when empty. */
export function percentile(sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))]!;
}

export interface LagStats {
  count: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  /** Transactions never seen in the bucket before the wait for them gave up. */
  unseen: number;
}

/** One WAL segment as the poller saw it. */
export interface SeenSegment {
  key: string;
  /** When the listing that first showed the object returned (ms since the epoch). */
  seenAt: number;
  compressedBytes: number;
  /** Decoded WAL bytes (the 32-byte header included for offset-0 segments). */
  walBytes: number;
  frames: number;
  commits: number;
  /** Highest benchmark sequence number in the segment's committed frames, 0 if none. */
  maxSeq: number;
  /** Whether the frames verified against the WAL header's salts and the running checksum. */
  verified: boolean;
}

export interface SeenSnapshot {
  key: string;
  seenAt: number;
  size: number;
}

export interface PollerOptions {
  /** Where the replica is stored (the bucket or directory the tool writes to). */
  store: StoreSpec;
  /** The replica's path inside the bucket (no trailing slash). */
  prefix: string;
  intervalMs?: number;
  /** Download and decode WAL segments (default true); off when only snapshot times matter. */
  decode?: boolean;
}

/**
 * Watches one replica: its generations, snapshots and WAL segments. Segments are decoded in list
 * order by a worker, which tracks each index's WAL header and running checksum to verify frames.
 */
export class BucketPoller {
  readonly segments: SeenSegment[] = [];
  readonly snapshots: SeenSnapshot[] = [];
  readonly generations = new Set<string>();
  /** Highest sequence number in any decoded segment. */
  maxSeq = 0;
  walBytes = 0;
  listings = 0;
  errors = 0;
  private readonly opts: Required<PollerOptions>;
  private readonly reader: Promise<StoreReader>;
  private readonly lastWalKey = new Map<string, string>();
  private readonly lastSnapKey = new Map<string, string>();
  private readonly worker: Worker | undefined;
  private pending = 0;
  private stopped = false;
  private loop: Promise<void> | undefined;
  private lastGenScan = 0;
  private waiters: Array<() => void> = [];

  constructor(opts: PollerOptions) {
    this.opts = { intervalMs: 20, decode: true, ...opts };
    this.reader = openStore(opts.store);
    // Not awaited here: a failure to open it surfaces in the first poll.
    this.reader.catch(() => undefined);
    if (this.opts.decode) {
      this.worker = new Worker(new URL("./decoder.ts", import.meta.url), {
        workerData: { role: "decoder", store: opts.store },
      });
      this.worker.on("message", (r: DecodeResult) => this.onDecoded(r));
      this.worker.on("error", (err) => {
        this.errors++;
        console.error(`bench: decoder worker failed: ${err.message}`);
      });
    }
  }

  start(): void {
    this.loop = this.run();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.loop;
    await this.worker?.terminate();
    (await this.reader.catch(() => undefined))?.close();
  }

  /** Resolves true once a segment holding `seq` has been decoded, false after `timeoutMs`. */
  async waitForSeq(seq: number, timeoutMs: number): Promise<boolean> {
    const deadline = now() + timeoutMs;
    while (this.maxSeq < seq || this.pending > 0) {
      if (now() > deadline) return this.maxSeq >= seq;
      await new Promise<void>((r) => {
        this.waiters.push(r);
        setTimeout(r, 100);
      });
    }
    return true;
  }

  async waitForSnapshot(timeoutMs: number): Promise<SeenSnapshot | undefined> {
    const deadline = now() + timeoutMs;
    while (this.snapshots.length === 0 && now() < deadline) await sleep(10);
    return this.snapshots[0];
  }

  /**
   * Lag of each transaction: the first time a segment holding it (or a later one: segments are
   * uploaded in order) was seen, minus its commit time. `commitAt[i]` is the commit time of
   * sequence number `firstSeq + i`. NaN where no segment holding it was seen.
   */
  lags(firstSeq: number, commitAt: Float64Array): { lags: Float64Array; unseen: number } {
    // Segments in the order they were seen, with the running maximum of their sequence numbers.
    const order = [...this.segments].sort((a, b) => a.seenAt - b.seenAt);
    const reach: number[] = [];
    const at: number[] = [];
    let m = 0;
    for (const s of order) {
      if (s.maxSeq > m) {
        m = s.maxSeq;
        reach.push(m);
        at.push(s.seenAt);
      }
    }
    const out = new Float64Array(commitAt.length).fill(Number.NaN);
    let unseen = 0;
    let j = 0;
    for (let i = 0; i < commitAt.length; i++) {
      const seq = firstSeq + i;
      while (j < reach.length && reach[j]! < seq) j++;
      if (j === reach.length) unseen++;
      else out[i] = at[j]! - commitAt[i]!;
    }
    return { lags: out, unseen };
  }

  /** Sum of decoded WAL bytes of the segments seen in [from, to). */
  walBytesBetween(from: number, to: number): number {
    let b = 0;
    for (const s of this.segments) if (s.seenAt >= from && s.seenAt < to) b += s.walBytes;
    return b;
  }

  private onDecoded(r: DecodeResult): void {
    this.pending--;
    if (r.error !== undefined) {
      this.errors++;
      console.error(`bench: decode ${r.key}: ${r.error}`);
    }
    this.segments.push(r);
    this.walBytes += r.walBytes;
    if (r.maxSeq > this.maxSeq) this.maxSeq = r.maxSeq;
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  private async list(prefix: string, startAfter: string | undefined, delimiter?: "/") {
    const listing = await (await this.reader).list(prefix, startAfter, delimiter);
    this.listings++;
    return { ...listing, seenAt: now() };
  }

  private async pollOnce(): Promise<void> {
    const root = `${this.opts.prefix}/generations/`;
    if (this.generations.size === 0 || now() - this.lastGenScan > 1000) {
      this.lastGenScan = now();
      const g = await this.list(root, undefined, "/");
      for (const p of g.common) this.generations.add(p.slice(root.length, -1));
    }
    for (const gen of [...this.generations].sort()) {
      const walPrefix = `${root}${gen}/wal/`;
      const w = await this.list(walPrefix, this.lastWalKey.get(walPrefix));
      for (const c of w.contents) {
        this.lastWalKey.set(walPrefix, c.key);
        if (this.worker) {
          this.pending++;
          const req: DecodeRequest = { key: c.key, seenAt: w.seenAt, size: c.size };
          this.worker.postMessage(req);
        } else {
          this.segments.push({
            key: c.key,
            seenAt: w.seenAt,
            compressedBytes: c.size,
            walBytes: 0,
            frames: 0,
            commits: 0,
            maxSeq: 0,
            verified: false,
          });
        }
      }
      const snapPrefix = `${root}${gen}/snapshots/`;
      const s = await this.list(snapPrefix, this.lastSnapKey.get(snapPrefix));
      for (const c of s.contents) {
        this.lastSnapKey.set(snapPrefix, c.key);
        this.snapshots.push({ key: c.key, seenAt: s.seenAt, size: c.size });
      }
    }
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      const started = now();
      try {
        await this.pollOnce();
      } catch (err) {
        this.errors++;
        if (this.errors < 5) console.error(`bench: list ${this.opts.prefix}: ${(err as Error).message}`);
      }
      const wait = this.opts.intervalMs - (now() - started);
      if (wait > 0) await sleep(wait);
    }
  }
}

/**
 * The tool's first snapshot in the bucket. A tool that exits first fails the part at once, with its
 * exit and log tail: a wrapper that could not start its binary waited out the whole timeout.
 */
export async function firstSnapshot(
  pol: BucketPoller,
  proc: ManagedProcess,
  what: string,
  timeoutMs: number,
): Promise<SeenSnapshot> {
  const deadline = now() + timeoutMs;
  while (now() < deadline) {
    const snap = await pol.waitForSnapshot(Math.min(250, deadline - now()));
    if (snap) return snap;
    if (proc.exitInfo !== undefined) {
      throw new Error(
        `${what}: ${proc.name} exited (${JSON.stringify(proc.exitInfo)}) before its first snapshot; log ${proc.logFile}:\n${proc.logTail(10)}`,
      );
    }
  }
  throw new Error(`${what}: no snapshot within ${timeoutMs / 1000} s`);
}

/** Lag statistics of a set of lags (ms). */
export function lagStats(lags: Float64Array, unseen: number): LagStats {
  const sorted = lags.filter((x) => !Number.isNaN(x)).sort();
  return {
    count: sorted.length,
    p50Ms: round(percentile(sorted, 50)),
    p99Ms: round(percentile(sorted, 99)),
    maxMs: round(sorted.length ? sorted[sorted.length - 1]! : Number.NaN),
    unseen,
  };
}

export function round(x: number, digits = 1): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

/**
 * Whether lag stayed bounded during one throughput step: the per-second maximum lag must not keep
 * rising over the step's second half (slope below 0.1 s per s), and both the p99 lag and the last
 * second's maximum must stay under 3 sync intervals plus 2 s (5 s at a 1 s sync interval). `lags[i]` belongs to the commit at `commitAt[i]`.
 */
export function lagBounded(
  commitAt: Float64Array,
  lags: Float64Array,
  syncMs: number,
): { bounded: boolean; slope: number; lastMaxMs: number } {
  if (lags.length === 0 || lags.length !== commitAt.length) {
    return { bounded: false, slope: Number.NaN, lastMaxMs: Number.NaN };
  }
  const t0 = commitAt[0]!;
  const buckets = new Map<number, number>();
  for (let i = 0; i < lags.length; i++) {
    const b = Math.floor((commitAt[i]! - t0) / 1000);
    // A transaction never seen counts as unbounded lag.
    const lag = Number.isNaN(lags[i]!) ? Number.POSITIVE_INFINITY : lags[i]!;
    buckets.set(b, Math.max(buckets.get(b) ?? 0, lag));
  }
  const keys = [...buckets.keys()].sort((a, b) => a - b);
  const half = keys.slice(Math.floor(keys.length / 2));
  let slope = 0;
  if (half.length >= 2) {
    const xs = half;
    const ys = half.map((k) => buckets.get(k)!);
    const mx = xs.reduce((a, b) => a + b, 0) / xs.length;
    const my = ys.reduce((a, b) => a + b, 0) / ys.length;
    let num = 0;
    let den = 0;
    for (let i = 0; i < xs.length; i++) {
      num += (xs[i]! - mx) * (ys[i]! - my);
      den += (xs[i]! - mx) ** 2;
    }
    slope = den === 0 ? 0 : num / den / 1000; // ms per bucket(1 s) -> s per s
  }
  const lastMaxMs = buckets.get(keys[keys.length - 1]!) ?? Number.NaN;
  const sorted = lags.filter((x) => !Number.isNaN(x)).sort();
  const p99 = sorted.length < lags.length ? Number.POSITIVE_INFINITY : percentile(sorted, 99);
  const limit = 3 * syncMs + 2000;
  return {
    bounded: slope < 0.1 && lastMaxMs < limit && p99 < limit,
    slope: round(slope, 3),
    lastMaxMs,
  };
}
