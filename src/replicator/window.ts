/**
 * The recoverability window of a destination: the oldest and newest times a `-timestamp` restore
 * can reach there.
 *
 * - oldest: the time of the oldest snapshot still stored, across generations, by the rule restore
 *   applies (Walship's recorded snapshot time, else the object's time). Reading it lists the
 *   destination, so the answer is cached: refreshed at most every `refreshMs`, or sooner when the
 *   destination takes a snapshot or changes generation (retention deletes are picked up by the
 *   periodic refresh). A failed listing keeps the last answer.
 * - newest: the newest commit known durable there, else the last successful sync, and never before
 *   oldest (a restore to the oldest snapshot holds every commit made before it). No listing.
 * With no snapshot known there is no window at all: both ends are absent.
 */
import { describeError } from "../shared/errors.ts";
import { type Logger, nullLogger } from "../shared/log.ts";
import { readSnapshotMeta } from "./extras.ts";
import type { Replica } from "./replica.ts";
import type { ReplicaClient } from "./storage/client.ts";

/** The longest a cached oldest-snapshot time is served without listing the destination again. */
export const DEFAULT_WINDOW_REFRESH_MS = 30_000;
/** How long a caller waits for a listing in flight before it takes the cached answer. */
export const DEFAULT_WINDOW_WAIT_MS = 1000;

export interface Window {
  oldest?: Date;
  newest?: Date;
}

export interface WindowOptions {
  /** Re-list a destination at most this often (unless it took a snapshot). Default 30 s. */
  refreshMs?: number;
  /** How long `get` waits for a listing; 0 = never wait, answer from the cache. Default 1 s. */
  waitMs?: number;
  log?: Logger;
}

/**
 * The oldest time a restore can reach on a destination: the earliest first snapshot of any
 * generation. Undefined when the destination holds no snapshot.
 */
export async function oldestRestorableTime(
  client: ReplicaClient,
  signal?: AbortSignal,
): Promise<Date | undefined> {
  let oldest: number | undefined;
  for (const generation of await client.generations({ signal })) {
    // Listings are sorted by index: the first snapshot is the generation's earliest restorable point.
    const first = (await client.snapshots(generation, { signal }))[0];
    if (!first) continue;
    // Same rule as restore: Walship's recorded snapshot time, else the object's time.
    const meta = await readSnapshotMeta(client, generation, first.index, signal);
    const time = meta ? meta.time : first.createdAt.getTime();
    if (oldest === undefined || time < oldest) oldest = time;
  }
  return oldest === undefined ? undefined : new Date(oldest);
}

interface Entry {
  /** What the cached answer was read for: changes when the destination snapshots or changes generation. */
  key: string;
  oldest: Date | undefined;
  fetchedAt: number;
  inflight: Promise<void> | undefined;
}

/** Caches each destination's oldest restorable time; one listing in flight per destination. */
export class RecoverabilityWindows {
  readonly refreshMs: number;
  readonly waitMs: number;
  #log: Logger;
  #entries = new WeakMap<Replica, Entry>();
  #ac = new AbortController();

  constructor(opts: WindowOptions = {}) {
    this.refreshMs = opts.refreshMs ?? DEFAULT_WINDOW_REFRESH_MS;
    this.waitMs = opts.waitMs ?? DEFAULT_WINDOW_WAIT_MS;
    this.#log = opts.log ?? nullLogger();
  }

  /** The window of a destination now; lists the destination only when the cached answer is stale. */
  async get(replica: Replica, now = Date.now()): Promise<Window> {
    const key = `${replica.db.generation ?? ""}/${replica.metrics.snapshotCount}/${replica.status().lastSnapshotAt?.getTime() ?? ""}`;
    let entry = this.#entries.get(replica);
    if (!entry) {
      entry = { key, oldest: undefined, fetchedAt: Number.NEGATIVE_INFINITY, inflight: undefined };
      this.#entries.set(replica, entry);
    }
    const stale = entry.key !== key || now - entry.fetchedAt >= this.refreshMs;
    if (stale && !entry.inflight && !this.#ac.signal.aborted) {
      entry.inflight = this.#refresh(replica, entry, key);
    }
    if (entry.inflight && this.waitMs > 0) await waitAtMost(entry.inflight, this.waitMs);
    // Nothing is restorable without a snapshot: a window has both ends or none.
    const oldest = entry.oldest;
    if (!oldest) return {};
    // A restore to the oldest snapshot's time already holds every commit made before it.
    const status = replica.status();
    const newest = latest(status.lastDurableCommitAt ?? status.lastSyncAt, oldest);
    return { oldest, newest };
  }

  /** Cancels listings in flight. */
  close(): void {
    this.#ac.abort();
  }

  async #refresh(replica: Replica, entry: Entry, key: string): Promise<void> {
    const started = Date.now();
    try {
      entry.oldest = await oldestRestorableTime(replica.client, this.#ac.signal);
    } catch (err) {
      if (!this.#ac.signal.aborted) {
        this.#log.warn(
          { db: replica.db.path, replica: replica.name, err: describeError(err) },
          "recoverability window listing failed",
        );
      }
    } finally {
      // A failure also waits for the next refresh, so a down destination is not listed on every scrape.
      entry.key = key;
      entry.fetchedAt = started;
      entry.inflight = undefined;
    }
  }
}

function latest(a: Date | undefined, b: Date): Date {
  return a && a > b ? a : b;
}

async function waitAtMost(p: Promise<void>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([p, new Promise<void>((r) => (timer = setTimeout(r, ms)))]);
  clearTimeout(timer);
}
