/**
 * The workloads, their parameters in quick and full mode, and the main-thread handle on the writer
 * worker (bench/writer.ts).
 */
import { Worker } from "node:worker_threads";

/** One paced run of transactions. */
export interface TxShape {
  /** Insert new rows, or overwrite random existing rows with rows of the same size. */
  mode: "insert" | "update";
  rowsPerTx: number;
  rowBytes: number;
  /** Target commit rate; 0 = as fast as possible. Ignored with `burst`. */
  txPerSec: number;
  /** `txPerBurst` transactions back to back every `everyMs`. */
  burst?: { everyMs: number; txPerBurst: number };
  /** Stop after this long, or after `txCount` transactions, whichever comes first. */
  durationMs?: number;
  txCount?: number;
}

export type WriterRequest =
  | { op: "open"; path: string }
  | { op: "create"; path: string; bytes: number; rowBytes: number }
  | { op: "paced"; shape: TxShape }
  | { op: "close" };

export interface PacedReply {
  op: "paced";
  firstSeq: number;
  lastSeq: number;
  /** Commit time of sequence number firstSeq + i (bench/measure.ts now(): the monotonic clock). */
  commitAt: Float64Array;
  /** The same commits' wall-clock times (Date.now()), which point-in-time targets are in. */
  commitWall: Float64Array;
  /** The wall-clock time (Date.now()) read just before each of these transactions began. */
  startWall: Float64Array;
  elapsedMs: number;
  rows: number;
  rowBytes: number;
}

export type WriterReply =
  | { op: "open"; seq: number; rows: number }
  | { op: "create"; rows: number; ms: number }
  | PacedReply
  | { op: "close" }
  | { op: "error"; message: string };

/** The application, in its own thread so that the poller's clock readings are never held up. */
export class Writer {
  private readonly worker = new Worker(new URL("./writer.ts", import.meta.url));

  private call(req: WriterRequest): Promise<WriterReply> {
    return new Promise((resolve, reject) => {
      const onError = (err: Error) => reject(err);
      this.worker.once("error", onError);
      this.worker.once("message", (r: WriterReply) => {
        this.worker.off("error", onError);
        if (r.op === "error") reject(new Error(`writer ${req.op}: ${r.message}`));
        else resolve(r);
      });
      this.worker.postMessage(req);
    });
  }

  async open(path: string): Promise<void> {
    await this.call({ op: "open", path });
  }

  async create(path: string, bytes: number, rowBytes: number): Promise<{ rows: number; ms: number }> {
    const r = await this.call({ op: "create", path, bytes, rowBytes });
    if (r.op !== "create") throw new Error("writer create: unexpected reply");
    return r;
  }

  async paced(shape: TxShape): Promise<PacedReply> {
    const r = await this.call({ op: "paced", shape });
    if (r.op !== "paced") throw new Error("writer paced: unexpected reply");
    return r;
  }

  async close(): Promise<void> {
    await this.call({ op: "close" });
    await this.worker.terminate();
  }
}

const MB = 1 << 20;

export interface LagWorkload {
  name: string;
  shape: TxShape;
}

export interface BenchParams {
  quick: boolean;
  /** Sync intervals for the lag runs; `monitor` adds `monitor-interval` to the config. */
  lagConfigs: Array<{ label: string; sync: string; syncMs: number; monitor?: string }>;
  lagWorkloads: LagWorkload[];
  /** Throughput ramp: row-data rates in MB/s, one step each, with large-ish transactions. */
  rampMBps: number[];
  rampStepMs: number;
  rampTxBytes: number;
  /** The long-running heavy writer (CPU per GB, peak RSS): duration; its rate follows the ramp. */
  heavyMs: number;
  /** Database sizes for the snapshot runs. */
  snapshotBytes: number[];
  /** Restore: database size and WAL written on top of it. */
  restoreDbBytes: number;
  restoreWalBytes: number;
  /** How long writing that WAL takes (paced), so restore points fall between many segments. */
  restoreWriteMs: number;
  rowBytes: number;
  /** Passes over every phase; the table gives each figure's median (BENCH_REPEATS, default 3). */
  repeats: number;
}

export type LagConfig = BenchParams["lagConfigs"][number];

/**
 * BENCH_LAG_CONFIGS: the lag runs to keep, by position in the full list, comma-separated (`2` is
 * "sync 100ms, monitor 100ms"), so that one configuration can be compared without the other two.
 */
export function pickLagConfigs(all: LagConfig[], spec: string): LagConfig[] {
  const listed = all.map((c, i) => `${i} "${c.label}"`).join(", ");
  const picked: LagConfig[] = [];
  for (const part of spec.split(",")) {
    const i = Number(part.trim());
    const config = part.trim() === "" || !Number.isInteger(i) ? undefined : all[i];
    if (!config) throw new Error(`BENCH_LAG_CONFIGS: "${part}" is not one of ${listed}`);
    if (!picked.includes(config)) picked.push(config);
  }
  return picked;
}

export function benchParams(quick: boolean): BenchParams {
  const lagMs = quick ? 15_000 : 30_000;
  return {
    quick,
    lagConfigs: [
      { label: "sync 1s", sync: "1s", syncMs: 1000 },
      { label: "sync 100ms", sync: "100ms", syncMs: 100 },
      { label: "sync 100ms, monitor 100ms", sync: "100ms", syncMs: 100, monitor: "100ms" },
    ],
    lagWorkloads: [
      {
        name: "steady 1k rows/s (1k tx/s x 1 row)",
        shape: { mode: "insert", rowsPerTx: 1, rowBytes: 200, txPerSec: 1000, durationMs: lagMs },
      },
      {
        name: "steady 10k rows/s (1k tx/s x 10 rows)",
        shape: { mode: "insert", rowsPerTx: 10, rowBytes: 200, txPerSec: 1000, durationMs: lagMs },
      },
      {
        name: "bursts: 5 tx x 4 MB every 3 s",
        shape: {
          mode: "insert",
          rowsPerTx: 1024,
          rowBytes: 4000,
          txPerSec: 0,
          burst: { everyMs: 3000, txPerBurst: 5 },
          durationMs: lagMs,
        },
      },
    ],
    // Doubling up to 64, where both tools still keep up on this machine; then steps of 16 so that the
    // ratio is not either 1.0 or 2.0 (the 64 -> 128 jump made it 1.0 in one run, 1.39 in the next).
    rampMBps: [2, 4, 8, 16, 32, 64, 80, 96, 112, 128],
    rampStepMs: quick ? 8_000 : 15_000,
    rampTxBytes: 256 * 1024,
    heavyMs: quick ? 20_000 : 120_000,
    snapshotBytes: quick ? [100 * MB, 400 * MB] : [1024 * MB, 4096 * MB],
    restoreDbBytes: quick ? 100 * MB : 1024 * MB,
    restoreWalBytes: quick ? 100 * MB : 1024 * MB,
    restoreWriteMs: quick ? 20_000 : 60_000,
    rowBytes: 4000,
    repeats: 3,
  };
}
