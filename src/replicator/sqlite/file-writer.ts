/**
 * Writes one file on a worker thread, in the order asked: restore's database writes (snapshot blocks,
 * batches of pages, truncations, the final fsync) cost the kernel seconds per GiB, and on a worker
 * they overlap with downloading, decoding and verifying on the main thread.
 *
 * Buffers handed over are transferred (the caller's copy becomes unusable) and come back for reuse
 * through `buffer()`. Every request is answered in order; the first failure fails every later request too.
 *
 * `inline: true` performs each request at once on this thread instead: a small restore has nothing
 * to overlap, and starting a thread (tens of milliseconds) would be most of its time.
 */
import { Worker } from "node:worker_threads";
import { ErrorCodes, WalshipError } from "../../shared/errors.ts";
import { performWrite } from "./file-writer-ops.ts";
import { BatchedPages, PAGE_WRITER_BYTES, type PageRun, type PageSink } from "./wal-apply.ts";

export type FileWriterRequest =
  | { id: number; op: "write"; data: Uint8Array; position: number }
  | { id: number; op: "pages"; run: PageRun }
  | { id: number; op: "truncate"; size: number }
  | { id: number; op: "sync" };

export interface FileWriterReply {
  id: number;
  /** The buffer of a write or the arena of a page run, given back. */
  buffer?: ArrayBuffer;
  /** Bytes of this write that went through the direct descriptor. */
  direct?: number;
  error?: { message: string; code?: string };
}

/** Buffers kept for reuse. */
const MAX_SPARE = 16;

const WORKER = new URL(
  import.meta.url.endsWith(".ts") ? "./file-writer-worker.ts" : "./file-writer-worker.js",
  import.meta.url,
);

export class FileWriter {
  /** Absent in the inline mode. */
  readonly #worker: Worker | undefined;
  readonly #fd: number;
  readonly #what: string;
  #next = 0;
  readonly #pending = new Map<number, { resolve: () => void; reject: (e: Error) => void }>();
  #failed: Error | undefined;
  #closed = false;
  /** Buffers back from the worker, for reuse. */
  readonly #spare: ArrayBuffer[] = [];
  /** Bytes written through the direct descriptor so far (answered requests). */
  directBytes = 0;

  /**
   * `fd` stays the caller's to close, after `close()`. `what` names the file in errors. `directFd`, an
   * O_DIRECT descriptor of the same file (direct-write.ts, also the caller's to close), takes the
   * worker's aligned writes; the inline mode does not use it.
   */
  constructor(fd: number, what: string, opts: { inline?: boolean; directFd?: number | undefined } = {}) {
    this.#what = what;
    this.#fd = fd;
    if (opts.inline) return;
    const worker = new Worker(WORKER, { workerData: { fd, directFd: opts.directFd } });
    worker.on("message", (r: FileWriterReply) => this.#answer(r));
    worker.on("error", (err) => this.#fail(err));
    worker.on("exit", (code) => {
      if (!this.#closed) this.#fail(new Error(`the writer thread exited with code ${code}`));
    });
    this.#worker = worker;
  }

  /** Requests sent and not answered yet. */
  get pending(): number {
    return this.#pending.size;
  }

  /**
   * A buffer of exactly `bytes` to fill and hand to `write` or `pages`: one given back by the worker
   * when there is one (so memory is recycled, not left to the worker's garbage collector), else new
   * (and the spares, all too small, are let go).
   */
  buffer(bytes: number): Uint8Array {
    const i = this.#spare.findIndex((b) => b.byteLength >= bytes);
    if (i < 0) {
      // Every spare is too small: they were made for smaller requests (a restore's snapshot blocks,
      // before its page batches) and keeping them would only hold memory.
      this.#spare.length = 0;
      return new Uint8Array(bytes);
    }
    const b = this.#spare.splice(i, 1)[0] as ArrayBuffer;
    return new Uint8Array(b, 0, bytes);
  }

  /** Writes `data` (its whole buffer is transferred) at `position`. */
  write(data: Uint8Array, position: number): Promise<void> {
    return this.#send({ id: 0, op: "write", data, position }, [data.buffer as ArrayBuffer]);
  }

  /** Writes a run of pages; its arena is transferred (and comes back through `buffer()`). */
  pages(run: PageRun): Promise<void> {
    return this.#send({ id: 0, op: "pages", run }, [run.arena.buffer as ArrayBuffer]);
  }

  truncate(size: number): Promise<void> {
    return this.#send({ id: 0, op: "truncate", size });
  }

  /** fsync, after everything asked before. */
  sync(): Promise<void> {
    return this.#send({ id: 0, op: "sync" });
  }

  /** Waits until at most `n` requests are unanswered (0: all done). Rejects if any failed. */
  async drain(n = 0): Promise<void> {
    while (this.#pending.size > n) {
      // Ids ascend and a Map iterates in insertion order: the first key is the oldest request.
      const oldest = this.#pending.keys().next().value as number;
      await new Promise<void>((resolve, reject) => {
        const p = this.#pending.get(oldest)!;
        this.#pending.set(oldest, {
          resolve: () => {
            p.resolve();
            resolve();
          },
          reject: (e) => {
            p.reject(e);
            reject(e);
          },
        });
      });
    }
    if (this.#failed) throw this.#failed;
  }

  /** Waits for the requests in flight (their errors are dropped), then stops the thread. */
  async close(): Promise<void> {
    if (this.#closed) return;
    await this.drain().catch(() => undefined);
    this.#closed = true;
    await this.#worker?.terminate();
  }

  #send(req: FileWriterRequest, transfer: ArrayBuffer[] = []): Promise<void> {
    if (this.#failed) return Promise.reject(this.#failed);
    if (this.#closed) return Promise.reject(new Error("write file: the writer is closed"));
    const id = ++this.#next;
    req.id = id;
    const p = new Promise<void>((resolve, reject) => this.#pending.set(id, { resolve, reject }));
    p.catch(() => undefined);
    if (this.#worker) {
      this.#worker.postMessage(req, transfer);
      return p;
    }
    // Inline: performed now, answered as the worker would answer.
    const reply: FileWriterReply = { id };
    try {
      const buffer = performWrite(this.#fd, req);
      if (buffer) reply.buffer = buffer;
    } catch (err) {
      const e = err as { message?: string; code?: string };
      reply.error = { message: e.message ?? String(err), ...(e.code ? { code: e.code } : {}) };
    }
    this.#answer(reply);
    return p;
  }

  #answer(r: FileWriterReply): void {
    if (r.buffer && this.#spare.length < MAX_SPARE) this.#spare.push(r.buffer);
    if (r.direct) this.directBytes += r.direct;
    const p = this.#pending.get(r.id);
    this.#pending.delete(r.id);
    if (r.error) {
      const code = Object.values(ErrorCodes).find((c) => c === r.error?.code) ?? ErrorCodes.RESTORE;
      this.#fail(new WalshipError(code, `write ${this.#what}: ${r.error.message}`), p);
    } else {
      p?.resolve();
    }
  }

  #fail(err: Error, first?: { reject: (e: Error) => void }): void {
    this.#failed ??= err;
    first?.reject(this.#failed);
    for (const p of this.#pending.values()) p.reject(this.#failed);
    this.#pending.clear();
  }
}

/**
 * A PageSink whose batches are written by a FileWriter. Pages are copied into an arena; a full arena
 * goes to the worker and a returned (or, while all are out, a new) one takes its place. The caller
 * bounds memory by awaiting `writer.drain(n)` between chunks.
 */
export function offThreadPages(writer: FileWriter, capacityBytes = PAGE_WRITER_BYTES): PageSink {
  return new BatchedPages(
    {
      arena: (bytes) => writer.buffer(bytes),
      // Failures surface through writer.drain().
      write: (run) => writer.pages(run).catch(() => undefined),
      truncate: (size) => writer.truncate(size).catch(() => undefined),
    },
    capacityBytes,
  );
}
