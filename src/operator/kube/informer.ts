/**
 * An informer: list, then watch from the list's resourceVersion, keeping a cache keyed by
 * `namespace/name`. It never stops on its own: a failed list or watch is retried with jittered
 * exponential backoff, a 410 Gone (or a watch the server ended) relists, and the cache is reconciled
 * with the fresh list (objects gone while we were not watching are reported deleted). Every
 * `resyncMs` each cached object is handed to `onUpdate` again (without `old`).
 */
import { setTimeout as sleep } from "node:timers/promises";
import type { KubeClient } from "./client.ts";
import type { KubeObject } from "./types.ts";

export interface InformerHandlers<T> {
  /** Added, changed, or handed again at a resync; `old` is the cached object it replaces, if any. */
  onUpdate(obj: T, old?: T): void;
  onDelete(obj: T): void;
  /** A list or watch failed; the informer retries by itself. */
  onError?(err: unknown): void;
}

export interface InformerOptions {
  /** The list path, e.g. `/apis/apps/v1/statefulsets` or `/api/v1/namespaces/x/pods`. */
  path: string;
  resyncMs?: number;
  backoff?: { initialMs: number; maxMs: number };
}

export function keyOf(obj: KubeObject): string {
  return `${obj.metadata?.namespace ?? ""}/${obj.metadata?.name ?? ""}`;
}

export class Informer<T extends KubeObject> {
  readonly #client: KubeClient;
  readonly #opts: InformerOptions;
  readonly #handlers: InformerHandlers<T>;
  readonly #cache = new Map<string, T>();
  #synced = false;
  #syncWaiters: Array<() => void> = [];
  #restarts = 0;

  constructor(client: KubeClient, opts: InformerOptions, handlers: InformerHandlers<T>) {
    this.#client = client;
    this.#opts = opts;
    this.#handlers = handlers;
  }

  get(key: string): T | undefined {
    return this.#cache.get(key);
  }

  list(): T[] {
    return [...this.#cache.values()];
  }

  /** True once the first list has filled the cache. */
  get synced(): boolean {
    return this.#synced;
  }

  /** Resolves once the cache is filled (or at once when `signal` aborts). */
  waitSynced(signal?: AbortSignal): Promise<void> {
    if (this.#synced || signal?.aborted) return Promise.resolve();
    return new Promise((resolve) => {
      this.#syncWaiters.push(resolve);
      signal?.addEventListener("abort", () => resolve(), { once: true });
    });
  }

  /** How many times list+watch was restarted after an error. */
  get restarts(): number {
    return this.#restarts;
  }

  /** Runs until `signal` aborts. */
  async run(signal: AbortSignal): Promise<void> {
    const backoff = this.#opts.backoff ?? { initialMs: 500, maxMs: 30_000 };
    let delay = backoff.initialMs;
    const resync = setInterval(() => {
      for (const obj of this.#cache.values()) this.#handlers.onUpdate(obj);
    }, this.#opts.resyncMs ?? 60_000);
    try {
      while (!signal.aborted) {
        try {
          const rv = await this.#relist(signal);
          delay = backoff.initialMs;
          await this.#watch(rv, signal);
        } catch (err) {
          if (signal.aborted) break;
          this.#restarts++;
          this.#handlers.onError?.(err);
          const jitter = delay * (0.5 + Math.random() * 0.5);
          await sleep(jitter, undefined, { signal }).catch(() => undefined);
          delay = Math.min(delay * 2, backoff.maxMs);
        }
      }
    } finally {
      clearInterval(resync);
    }
  }

  async #relist(signal: AbortSignal): Promise<string> {
    const list = await this.#client.request<{ items: T[]; metadata: { resourceVersion: string } }>(
      "GET",
      this.#opts.path,
      { signal },
    );
    const seen = new Set<string>();
    for (const item of list.items) {
      const key = keyOf(item);
      seen.add(key);
      const old = this.#cache.get(key);
      this.#cache.set(key, item);
      this.#handlers.onUpdate(item, old);
    }
    for (const [key, obj] of this.#cache) {
      if (!seen.has(key)) {
        this.#cache.delete(key);
        this.#handlers.onDelete(obj);
      }
    }
    this.#synced = true;
    for (const w of this.#syncWaiters.splice(0)) w();
    return list.metadata.resourceVersion;
  }

  async #watch(resourceVersion: string, signal: AbortSignal): Promise<void> {
    let rv = resourceVersion;
    // Each watch lasts at most timeoutSeconds; then it is resumed from the last resourceVersion.
    while (!signal.aborted) {
      const events = this.#client.watch<T>(
        this.#opts.path,
        { resourceVersion: rv, allowWatchBookmarks: true, timeoutSeconds: 300 },
        signal,
      );
      for await (const ev of events) {
        if (ev.type === "ERROR") {
          const st = ev.object as unknown as { code?: number; message?: string };
          if (st.code === 410) return; // too old: relist
          throw new Error(`watch ${this.#opts.path}: ${st.message ?? "error event"}`);
        }
        rv = ev.object.metadata?.resourceVersion ?? rv;
        if (ev.type === "BOOKMARK") continue;
        const key = keyOf(ev.object);
        if (ev.type === "DELETED") {
          this.#cache.delete(key);
          this.#handlers.onDelete(ev.object);
        } else {
          const old = this.#cache.get(key);
          this.#cache.set(key, ev.object);
          this.#handlers.onUpdate(ev.object, old);
        }
      }
    }
  }
}

/**
 * One informer per namespace, read as one cache (or a single cluster-wide informer when
 * `namespaces` is empty): the namespaced mode, where the operator may list and watch only in its
 * namespaces (a Role in each, no ClusterRole).
 */
export class InformerSet<T extends KubeObject> {
  readonly #parts: Informer<T>[];

  /** `pathFor(undefined)` is the cluster-wide list path, `pathFor(ns)` a namespace's. */
  constructor(
    client: KubeClient,
    pathFor: (namespace: string | undefined) => string,
    namespaces: readonly string[],
    opts: Omit<InformerOptions, "path">,
    handlers: InformerHandlers<T>,
  ) {
    const paths = namespaces.length === 0 ? [pathFor(undefined)] : namespaces.map((ns) => pathFor(ns));
    this.#parts = paths.map((path) => new Informer<T>(client, { ...opts, path }, handlers));
  }

  get(key: string): T | undefined {
    for (const p of this.#parts) {
      const o = p.get(key);
      if (o) return o;
    }
    return undefined;
  }

  list(): T[] {
    return this.#parts.flatMap((p) => p.list());
  }

  get synced(): boolean {
    return this.#parts.every((p) => p.synced);
  }

  async waitSynced(signal?: AbortSignal): Promise<void> {
    await Promise.all(this.#parts.map((p) => p.waitSynced(signal)));
  }

  async run(signal: AbortSignal): Promise<void> {
    await Promise.all(this.#parts.map((p) => p.run(signal)));
  }
}
