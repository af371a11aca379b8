/** Wake-ups of the Db's monitor loop: a change of the WAL or database file (inotify), or the monitor interval. */

import fs from "node:fs";
import path from "node:path";

/**
 * inotify reports every write SQLite makes to the WAL (two per frame); each report costs the main
 * thread about 7 µs, 5,000-14,000 times a second under a heavy writer (30-100 MiB/s of WAL), about
 * an eighth of the replicator's CPU (docs/benchmarks.md). So while the writes come this thick, the
 * watch is put down and the wal-index header is read every POLL_MS instead (a commit shows there once
 * SQLite publishes it), and after QUIET_MS without a published change the watch comes back, so a
 * quiet database's first commit still wakes a sync at once. Changes of the database file alone (a
 * checkpoint writing it back) are not seen while polling: every commit goes through the WAL.
 */
const STREAM_EVENTS = 16;
const STREAM_WINDOW_MS = 10;
const POLL_MS = 5;
const QUIET_MS = 50;

/**
 * Under a steady stream of changes, syncs for changes start at most once per monitor interval, unless
 * a destination about to upload asks for one sooner (`hurry`, from Db.catchUp). Each sync costs a
 * wake-up, a read of the wal-index and the WAL's tail, an fsync of the shadow WAL and a checkpoint
 * check: waking one for every inotify event made the heavy writer's CPU per GiB 2.2 times
 * Litestream's, which copies once per monitor interval. Copying on the destinations' ticks instead
 * keeps the lag: a destination uploads only on its tick, and the sync it asks for copies everything
 * committed before it. A quiet database's first change still wakes a sync at once.
 */
export class WalWatcher {
  #watcher: fs.FSWatcher | undefined;
  /** Made when someone waits for the next change: a busy WAL changes thousands of times a second. */
  #walEvent: PromiseWithResolvers<void> | undefined;
  /**
   * A change seen since the last wait ended: a commit made while a sync runs (a back-fill can take
   * seconds) must wake the next wait at once, not after the monitor interval.
   */
  #pending = false;
  /** When the last wait that a change ended did end (performance.now()): the start of that sync. */
  #wokeAt = Number.NEGATIVE_INFINITY;
  /** Ends the coalescing wait under way, if one is (see hurry). */
  #hurry: (() => void) | undefined;
  /** A destination asked for the pending changes: the next wait ends at once. */
  #hurried = false;

  readonly path: string;
  readonly walPath: string;
  readonly monitorIntervalMs: number;
  readonly coalesceMs: number;

  /**
   * Reads the wal-index on every change of the WAL or database file, before any wait is woken, and
   * on every poll: true if a commit was published since the last read, false if not (or the header
   * was being written), undefined if it cannot be read (no polling then).
   */
  readonly #observe: (() => boolean | undefined) | undefined;
  /** Set while the wal-index is polled instead of watched (see STREAM_EVENTS). */
  #poller: NodeJS.Timeout | undefined;
  #windowStart = Number.NEGATIVE_INFINITY;
  #windowEvents = 0;
  /** When polling last saw a published change (performance.now()). */
  #lastMove = 0;
  #closed = false;

  constructor(
    dbPath: string,
    walPath: string,
    monitorIntervalMs: number,
    opts: { coalesceMs?: number; observe?: () => boolean | undefined } = {},
  ) {
    this.path = dbPath;
    this.walPath = walPath;
    this.monitorIntervalMs = monitorIntervalMs;
    this.coalesceMs = opts.coalesceMs ?? monitorIntervalMs;
    this.#observe = opts.observe;
  }

  /** Whether the wal-index is being polled (a steady stream of writes) rather than watched. */
  get polling(): boolean {
    return this.#poller !== undefined;
  }

  start(): void {
    this.#closed = false;
    this.#arm();
  }

  #arm(): void {
    try {
      // Watch the directory: the WAL file may not exist yet, or be replaced.
      const wal = path.basename(this.walPath);
      const db = path.basename(this.path);
      this.#watcher = fs.watch(path.dirname(this.path), { persistent: false }, (_ev, name) => {
        if (name === wal || name === db) {
          const readable = this.#observe?.() !== undefined;
          this.#changed();
          if (readable) this.#countForStream();
        }
      });
      this.#watcher.on("error", () => {
        this.#watcher?.close();
        this.#watcher = undefined;
      });
    } catch {
      this.#watcher = undefined;
    }
  }

  #changed(): void {
    this.#pending = true;
    const waiting = this.#walEvent;
    this.#walEvent = undefined;
    waiting?.resolve();
  }

  /** STREAM_EVENTS changes within STREAM_WINDOW_MS: poll instead of watching. */
  #countForStream(): void {
    if (this.#poller !== undefined) return;
    const now = performance.now();
    if (now - this.#windowStart > STREAM_WINDOW_MS) {
      this.#windowStart = now;
      this.#windowEvents = 0;
    }
    if (++this.#windowEvents < STREAM_EVENTS) return;
    this.#watcher?.close();
    this.#watcher = undefined;
    this.#lastMove = now;
    this.#poller = setInterval(() => this.#poll(), POLL_MS);
    this.#poller.unref();
  }

  #poll(): void {
    const moved = this.#observe?.();
    const now = performance.now();
    if (moved === true) {
      this.#lastMove = now;
      this.#changed();
      return;
    }
    if (moved === false && now - this.#lastMove < QUIET_MS) return;
    // Quiet (or the wal-index cannot be read): watch again, then read once more for a commit
    // published between the last poll and the new watch.
    clearInterval(this.#poller);
    this.#poller = undefined;
    this.#windowEvents = 0;
    if (this.#closed) return;
    this.#arm();
    if (this.#observe?.() === true) this.#changed();
  }

  /**
   * Until the next change, the monitor interval or the abort; at once if a change came since the last
   * wait (during the sync). A change wakes it no sooner than `coalesceMs` after the last wait ended,
   * so syncs for changes start at most that often; after a quiet spell, at once.
   */
  async wait(signal: AbortSignal): Promise<void> {
    // An abort before the call (during the sync) fires no listener: without this the loop slept a
    // whole monitor interval before it saw the signal.
    if (signal.aborted) return;
    if (!this.#pending) {
      const { promise, resolve } = Promise.withResolvers<void>();
      const timer = setTimeout(resolve, this.monitorIntervalMs);
      const onAbort = (): void => resolve();
      signal.addEventListener("abort", onAbort, { once: true });
      void this.event().then(() => resolve());
      await promise;
      clearTimeout(timer);
      signal.removeEventListener("abort", onAbort);
    }
    if (this.#pending && !this.#hurried && !signal.aborted) {
      const rest = this.#wokeAt + this.coalesceMs - performance.now();
      if (rest > 0) await this.#coalesce(rest, signal);
    }
    // Only a wait ended by a change starts a coalescing period: a change just after the interval's
    // own sync is a quiet database's first.
    if (this.#pending) this.#wokeAt = performance.now();
    this.#pending = false;
    this.#hurried = false;
  }

  /** Settles at the next change of the WAL or database file. */
  event(): Promise<void> {
    this.#walEvent ??= Promise.withResolvers<void>();
    return this.#walEvent.promise;
  }

  /**
   * For a destination about to read the shadow WAL: the changes held back would otherwise miss that
   * upload. Ends the coalescing wait under way, or, while a sync runs, makes the next wait end at
   * once for the changes that came during it. Returns whether a sync for pending changes will start.
   */
  hurry(): boolean {
    const end = this.#hurry;
    if (end !== undefined) {
      this.#hurry = undefined;
      end();
      return true;
    }
    if (!this.#pending) return false;
    this.#hurried = true;
    return true;
  }

  async #coalesce(ms: number, signal: AbortSignal): Promise<void> {
    const { promise, resolve } = Promise.withResolvers<void>();
    this.#hurry = resolve;
    const timer = setTimeout(resolve, ms);
    const onAbort = (): void => resolve();
    signal.addEventListener("abort", onAbort, { once: true });
    await promise;
    this.#hurry = undefined;
    clearTimeout(timer);
    signal.removeEventListener("abort", onAbort);
  }

  close(): void {
    this.#closed = true;
    clearInterval(this.#poller);
    this.#poller = undefined;
    this.#watcher?.close();
    this.#watcher = undefined;
  }
}
