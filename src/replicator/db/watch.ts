/** Wake-ups of the Db's monitor loop: a change of the WAL or database file (inotify), or the monitor interval. */

import fs from "node:fs";
import path from "node:path";

export class WalWatcher {
  #watcher: fs.FSWatcher | undefined;
  #walEvent: PromiseWithResolvers<void> = Promise.withResolvers<void>();
  /**
   * A change seen since the last wait ended: a commit made while a sync runs (a back-fill can take
   * seconds) must wake the next wait at once, not after the monitor interval.
   */
  #pending = false;

  readonly path: string;
  readonly walPath: string;
  readonly monitorIntervalMs: number;

  constructor(dbPath: string, walPath: string, monitorIntervalMs: number) {
    this.path = dbPath;
    this.walPath = walPath;
    this.monitorIntervalMs = monitorIntervalMs;
  }

  start(): void {
    try {
      // Watch the directory: the WAL file may not exist yet, or be replaced.
      this.#watcher = fs.watch(path.dirname(this.path), { persistent: false }, (_ev, name) => {
        if (name === path.basename(this.walPath) || name === path.basename(this.path)) {
          this.#pending = true;
          const prev = this.#walEvent;
          this.#walEvent = Promise.withResolvers<void>();
          prev.resolve();
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

  /** Until the next change, the monitor interval or the abort; at once if a change came since the last wait. */
  async wait(signal: AbortSignal): Promise<void> {
    if (this.#pending) {
      this.#pending = false;
      return;
    }
    const { promise, resolve } = Promise.withResolvers<void>();
    const timer = setTimeout(resolve, this.monitorIntervalMs);
    const onAbort = () => resolve();
    signal.addEventListener("abort", onAbort, { once: true });
    void this.#walEvent.promise.then(resolve);
    await promise;
    this.#pending = false;
    clearTimeout(timer);
    signal.removeEventListener("abort", onAbort);
  }

  close(): void {
    this.#watcher?.close();
    this.#watcher = undefined;
  }
}
