/**
 * A keyed, de-duplicating, rate-limited work queue (the client-go model): a key is queued at most
 * once; a key being processed is never processed twice at the same time (added again meanwhile, it
 * is queued after it finishes); failures are retried with per-key exponential backoff; `addAfter`
 * schedules a later visit (periodic status polls). Reconcile reads current state, so a key carries
 * no payload.
 */
export interface WorkQueueOptions {
  /** First retry delay after a failure; doubles per consecutive failure of the key. */
  baseDelayMs?: number;
  maxDelayMs?: number;
}

export class WorkQueue {
  readonly #queue: string[] = [];
  readonly #queued = new Set<string>();
  readonly #processing = new Set<string>();
  /** Keys added while processing: re-queued when done. */
  readonly #dirty = new Set<string>();
  readonly #failures = new Map<string, number>();
  readonly #timers = new Map<string, { at: number; timer: NodeJS.Timeout }>();
  readonly #waiters: Array<() => void> = [];
  readonly #base: number;
  readonly #max: number;
  #shutdown = false;

  constructor(opts: WorkQueueOptions = {}) {
    this.#base = opts.baseDelayMs ?? 500;
    this.#max = opts.maxDelayMs ?? 60_000;
  }

  /** Keys waiting (not counting those being processed or scheduled for later). */
  get depth(): number {
    return this.#queue.length;
  }

  add(key: string): void {
    if (this.#shutdown) return;
    if (this.#processing.has(key)) {
      this.#dirty.add(key);
      return;
    }
    if (this.#queued.has(key)) return;
    this.#queued.add(key);
    this.#queue.push(key);
    this.#waiters.shift()?.();
  }

  /** Adds `key` after `ms`; an earlier pending schedule for the key wins. */
  addAfter(key: string, ms: number): void {
    if (this.#shutdown) return;
    if (ms <= 0) {
      this.add(key);
      return;
    }
    const at = Date.now() + ms;
    const prev = this.#timers.get(key);
    if (prev && prev.at <= at) return;
    if (prev) clearTimeout(prev.timer);
    const timer = setTimeout(() => {
      this.#timers.delete(key);
      this.add(key);
    }, ms);
    timer.unref();
    this.#timers.set(key, { at, timer });
  }

  /** Schedules a retry with the key's backoff; returns the delay. */
  addRateLimited(key: string): number {
    const n = this.#failures.get(key) ?? 0;
    this.#failures.set(key, n + 1);
    const delay = Math.min(this.#base * 2 ** n, this.#max);
    this.addAfter(key, delay);
    return delay;
  }

  /** Clears the key's failure count (after a success). */
  forget(key: string): void {
    this.#failures.delete(key);
  }

  /** The next key, or undefined once shut down. Marks the key as processing until `done(key)`. */
  async get(): Promise<string | undefined> {
    for (;;) {
      if (this.#shutdown) return undefined;
      if (this.#queue.length > 0) break;
      await new Promise<void>((resolve) => this.#waiters.push(resolve));
    }
    const key = this.#queue.shift() as string;
    this.#queued.delete(key);
    this.#processing.add(key);
    return key;
  }

  done(key: string): void {
    this.#processing.delete(key);
    if (this.#dirty.delete(key)) this.add(key);
  }

  /** Stops handing out keys; pending `get()` calls resolve undefined. */
  shutdown(): void {
    this.#shutdown = true;
    for (const t of this.#timers.values()) clearTimeout(t.timer);
    this.#timers.clear();
    for (const w of this.#waiters.splice(0)) w();
  }
}
