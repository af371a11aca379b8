/**
 * Runs checkpoint back-fills (`wal_checkpoint(PASSIVE)` from a separate connection) on a worker
 * thread. better-sqlite3 is synchronous: copying thousands of pages back into the database on the
 * main thread stalled every upload, inotify wake-up and HTTP request for its duration (18.6 % of wall
 * time under a heavy writer in the benchmark profile, docs/benchmarks.md). The caller still awaits the
 * result, so the order of steps (and with it every locking argument in db.ts) is unchanged; only the
 * thread that waits on SQLite's I/O differs.
 */
import { Worker } from "node:worker_threads";
import { ErrorCodes, WalshipError } from "../shared/errors.ts";

export interface BackfillRequest {
  id: number;
  path: string;
  busyTimeoutMs: number;
  /** PASSIVE checkpoints to try until the WAL is fully copied back. */
  tries: number;
  /** Pause between tries. */
  retryMs: number;
}

export type BackfillReply =
  | { id: number; complete: boolean; error?: undefined }
  | { id: number; error: { message: string; code?: string } };

// Compiled to dist/*.js, run from src/*.ts by the tests: the worker is the sibling with our extension.
const WORKER = new URL(
  import.meta.url.endsWith(".ts") ? "./backfill-worker.ts" : "./backfill-worker.js",
  import.meta.url,
);

/**
 * An idle worker is stopped after this long. Its isolate and SQLite connection code are 9-11 MiB of
 * a sidecar that back-fills once every few minutes; starting one again costs tens of milliseconds of
 * CPU, off the sync path. A busy writer's worker never idles this long and stays.
 */
export const DEFAULT_BACKFILL_IDLE_MS = 30_000;

export class Backfiller {
  #worker: Worker | undefined;
  #next = 1;
  #idle: NodeJS.Timeout | undefined;
  #starts = 0;
  readonly #idleMs: number;
  readonly #pending = new Map<number, { resolve: (v: boolean) => void; reject: (e: Error) => void }>();

  constructor(opts: { idleMs?: number } = {}) {
    this.#idleMs = opts.idleMs ?? DEFAULT_BACKFILL_IDLE_MS;
  }

  /** Whether a worker thread is up now. */
  get running(): boolean {
    return this.#worker !== undefined;
  }

  /** Worker threads started so far. */
  get starts(): number {
    return this.#starts;
  }

  /** Back-fills the database at `path`; resolves true when the whole WAL was copied back. */
  run(path: string, opts: { busyTimeoutMs: number; tries: number; retryMs?: number }): Promise<boolean> {
    clearTimeout(this.#idle);
    this.#idle = undefined;
    const worker = this.#start();
    const id = this.#next++;
    const req: BackfillRequest = {
      id,
      path,
      busyTimeoutMs: opts.busyTimeoutMs,
      tries: opts.tries,
      retryMs: opts.retryMs ?? 100,
    };
    return new Promise<boolean>((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      worker.ref(); // keep the process alive while a back-fill is under way
      worker.postMessage(req);
    });
  }

  /** Stops the worker (a back-fill under way is answered with an error). */
  async close(): Promise<void> {
    clearTimeout(this.#idle);
    const w = this.#worker;
    this.#worker = undefined;
    if (w) await w.terminate();
    this.#failAll(new WalshipError(ErrorCodes.SQLITE, "checkpoint: the back-fill worker was stopped"));
  }

  #start(): Worker {
    if (this.#worker) return this.#worker;
    const w = new Worker(WORKER);
    w.unref();
    w.on("message", (reply: BackfillReply) => {
      const p = this.#pending.get(reply.id);
      if (!p) return;
      this.#pending.delete(reply.id);
      if (this.#pending.size === 0) {
        w.unref();
        this.#idle = setTimeout(() => this.#stopIdle(w), this.#idleMs).unref();
      }
      if (reply.error) {
        const err = new Error(reply.error.message) as Error & { code?: string };
        if (reply.error.code) err.code = reply.error.code;
        p.reject(err);
      } else p.resolve(reply.complete);
    });
    const lost = (why: string) => {
      if (this.#worker === w) this.#worker = undefined;
      this.#failAll(new WalshipError(ErrorCodes.SQLITE, `checkpoint: the back-fill worker ${why}`));
    };
    w.on("error", (err) => lost(`failed: ${err.message}`));
    w.on("exit", (code) => lost(`exited with code ${code}`));
    this.#worker = w;
    this.#starts++;
    return w;
  }

  /** Stops `w` if it is still the worker and has nothing to do; the next run starts another. */
  #stopIdle(w: Worker): void {
    if (this.#worker !== w || this.#pending.size > 0) return;
    this.#worker = undefined;
    // Its exit is expected: nothing pending to fail, and a later worker's requests are not its own.
    w.removeAllListeners("exit");
    w.removeAllListeners("error");
    w.on("error", () => {});
    void w.terminate();
  }

  #failAll(err: Error): void {
    for (const p of this.#pending.values()) p.reject(err);
    this.#pending.clear();
  }
}
