/**
 * The torture's app, on a thread of its own: a transaction every `pauseMs`, paused and resumed on
 * request. Its transactions are synchronous (better-sqlite3) and, on a database of tens of MB, take
 * 40 ms on average (an update rewrites a share of the table): run on the test's main thread they
 * stalled its event loop, and with it the HTTP fault proxy that every request of the replicator
 * goes through, for about half of the time.
 *
 *   const app = startAppWriter(db, seed, { vacuum: false, prefill: 6000 });
 *   await app.ready;                 // prefill done: { pageCount, pageSize, prefillMs }
 *   app.transactions                 // committed so far (prefill not counted)
 *   await app.pause(); ... app.resume();
 *   await app.stop();                // the connection is closed
 */
import { Worker } from "node:worker_threads";

export interface AppWriter {
  /** Settles once the database is open (and prefilled). */
  ready: Promise<{ pageCount: number; pageSize: number; prefillMs: number }>;
  readonly transactions: number;
  /** Transactions that found the database locked for longer than the busy timeout (5 s) and were skipped. */
  readonly busy: number;
  /** Resolves once no transaction is running and none will start until `resume`. */
  pause(): Promise<void>;
  resume(): void;
  stop(): Promise<void>;
}

interface WriterData {
  file: string;
  seed: number;
  vacuum: boolean;
  prefill: number;
  pauseMs: number;
  /** [0] transactions, [1] paused (1) / running (0) / stop (2), [2] acknowledged state, [3] busy. */
  shared: SharedArrayBuffer;
}

export function startAppWriter(
  file: string,
  seed: number,
  opts: { vacuum?: boolean; prefill?: number; pauseMs?: number } = {},
): AppWriter {
  const shared = new SharedArrayBuffer(16);
  const state = new Int32Array(shared);
  const data: WriterData = {
    file,
    seed,
    vacuum: opts.vacuum ?? true,
    prefill: opts.prefill ?? 0,
    pauseMs: opts.pauseMs ?? 50,
    shared,
  };
  const worker = new Worker(new URL(import.meta.url), { workerData: data });
  let failure: Error | undefined;
  worker.on("error", (err) => {
    failure = err;
  });
  const exited = new Promise<void>((resolve) => worker.once("exit", () => resolve()));
  const ready = new Promise<{ pageCount: number; pageSize: number; prefillMs: number }>((resolve, reject) => {
    worker.once("message", resolve);
    worker.once("error", reject);
  });
  const waitAck = async (want: number) => {
    while (Atomics.load(state, 2) !== want) {
      // An error in the worker ends it: do not wait for an acknowledgement that will never come.
      if (await Promise.race([exited.then(() => true), new Promise((r) => setTimeout(r, 5, false))]))
        throw new Error(`app writer: the worker exited: ${failure?.stack ?? "no error"}`);
    }
  };
  return {
    ready,
    get transactions() {
      return Atomics.load(state, 0);
    },
    get busy() {
      return Atomics.load(state, 3);
    },
    async pause() {
      Atomics.store(state, 1, 1);
      await waitAck(1);
    },
    resume() {
      Atomics.store(state, 1, 0);
    },
    async stop() {
      Atomics.store(state, 1, 2);
      await exited;
    },
  };
}

async function writerMain(data: WriterData): Promise<void> {
  const { parentPort } = await import("node:worker_threads");
  const { openWorkload } = await import("../helpers/sqlite.ts");
  const state = new Int32Array(data.shared);
  const w = openWorkload(data.file, data.seed, { vacuum: data.vacuum });
  const t0 = Date.now();
  for (let i = 0; i < data.prefill; i++) w.step();
  if (data.prefill > 0) w.db.pragma("wal_checkpoint(TRUNCATE)");
  parentPort!.postMessage({
    pageCount: w.db.pragma("page_count", { simple: true }) as number,
    pageSize: w.db.pragma("page_size", { simple: true }) as number,
    prefillMs: Date.now() - t0,
  });
  for (;;) {
    const want = Atomics.load(state, 1);
    if (want === 2) break;
    Atomics.store(state, 2, want);
    // Look again after saying "running": a pause asked in between is seen here, or else it waits for
    // the next acknowledgement, after this transaction.
    if (want === 0 && Atomics.load(state, 1) === 0) {
      try {
        w.step();
        Atomics.add(state, 0, 1);
      } catch (err) {
        // The replicator's checkpoint can hold the lock past the busy timeout on a loaded machine: an
        // app would try again; anything else ends the writer (and the run, with its stack).
        if ((err as { code?: string }).code !== "SQLITE_BUSY") throw err;
        Atomics.add(state, 3, 1);
      }
    }
    await new Promise((r) => setTimeout(r, data.pauseMs));
  }
  w.close();
}

const { isMainThread, workerData } = await import("node:worker_threads");
if (!isMainThread && (workerData as WriterData | undefined)?.shared)
  await writerMain(workerData as WriterData);
