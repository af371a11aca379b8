/**
 * One full garbage collection once the replicator has gone quiet. V8 collects when it allocates, so
 * a sidecar that stops writing keeps the garbage of its last burst: the buffers of its last uploads
 * (external memory, freed only by a collection) and the heap around them. Measured on an idle
 * sidecar after a 6 MiB burst: 113 MiB resident before one collection, 101 after, external memory
 * 27 -> 9 MiB (docs/benchmarks.md, "The sidecar's memory"). A writer that never pauses gets none;
 * one that pauses gets one per pause, a few milliseconds of a heap this size.
 */
import { v8Collector } from "../shared/v8-gc.ts";

/** Quiet this long (no WAL copied, uploaded or snapshotted) before the collection. */
export const DEFAULT_IDLE_GC_MS = 15_000;
/** How often the activity signature is read. */
const CHECK_MS = 5_000;

/** V8's own full collection (src/shared/v8-gc.ts), or undefined where V8 will not give it. */
export function fullCollection(): (() => void) | undefined {
  const gc = v8Collector();
  return gc && (() => gc());
}

export interface IdleCollectorOptions {
  idleMs?: number;
  checkMs?: number;
  /** The collection to run (tests count calls); default fullCollection(). */
  collect?: (() => void) | undefined;
}

/**
 * Reads `activity` (a number that moves whenever work was done: bytes copied, uploaded, snapshots
 * taken) every few seconds, and collects once after it has stood still for `idleMs`.
 */
export class IdleCollector {
  readonly #activity: () => number;
  readonly #idleMs: number;
  readonly #collect: (() => void) | undefined;
  readonly #timer: NodeJS.Timeout;
  #last: number;
  #since = Date.now();
  #collected = true;
  #collections = 0;

  constructor(activity: () => number, opts: IdleCollectorOptions = {}) {
    this.#activity = activity;
    this.#idleMs = opts.idleMs ?? DEFAULT_IDLE_GC_MS;
    this.#collect = "collect" in opts ? opts.collect : fullCollection();
    this.#last = activity();
    this.#timer = setInterval(() => this.#check(), opts.checkMs ?? CHECK_MS).unref();
  }

  #check(): void {
    const now = Date.now();
    const a = this.#activity();
    if (a !== this.#last) {
      this.#last = a;
      this.#since = now;
      this.#collected = false;
      return;
    }
    if (this.#collected || now - this.#since < this.#idleMs || !this.#collect) return;
    this.#collected = true;
    this.#collect();
    this.#collections++;
  }

  /** Collections run so far. */
  get collections(): number {
    return this.#collections;
  }

  close(): void {
    clearInterval(this.#timer);
  }
}
