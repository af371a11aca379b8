/**
 * When each commit happened, to the millisecond, although it is copied into the shadow WAL later.
 *
 * A commit's time (CommitRecord.time) is what point-in-time restores cut at: a restore to T holds
 * every commit stamped at or before T. A stamp must never be earlier than the commit (the restore
 * would then hold a transaction made after T), and should be as little later as possible (a late
 * stamp leaves out a transaction made before T). Stamping at the copy was exact while every change
 * woke a copy at once; since a steady stream is copied on the destinations' ticks (watch.ts), a copy
 * comes up to a sync-interval later, and the bench's point-in-time restore missed 15 transactions.
 *
 * So each change of the WAL that inotify reports also reads the wal-index header (96 bytes of -shm,
 * through the descriptor the Db holds already), and so does each poll while a steady stream of writes
 * has the watch put down (every 5 ms, watch.ts): a header whose salts are the WAL's and whose
 * `mxFrame` has reached a commit's frame proves that commit was published by then. The commit's stamp
 * is the earliest such observation, and never later than the copy that reads it.
 */
import { readSync } from "node:fs";
import { walIndexHeaderReady, walIndexMxFrame } from "../sqlite/wal-index.ts";

/** Observations kept at most: far more than arrive between two copies at any rate measured. */
const MAX_OBSERVATIONS = 4096;

interface Observation {
  time: number;
  salts: Buffer;
  mxFrame: number;
}

export class CommitClock {
  #seen: Observation[] = [];
  readonly #buf = Buffer.alloc(96);
  /**
   * The last header recorded, kept apart from #seen: a copy forgets the observations it used, and
   * the same header read after it is still no new commit (it used to wake a sync for nothing and
   * hold the poll up, once per copy).
   */
  #lastMxFrame = -1;
  readonly #lastSalts = Buffer.alloc(8);

  /**
   * Records the wal-index as it is now, read through `shmFd`: one 96-byte read, on each WAL change
   * event or poll (watch.ts). True if it found a commit published since the last record, false if
   * not (or the header was being written), undefined if it cannot read (`shmFd` not open yet).
   */
  observe(shmFd: number | undefined): boolean | undefined {
    if (shmFd === undefined) return undefined;
    let n: number;
    try {
      n = readSync(shmFd, this.#buf, 0, this.#buf.length, 0);
    } catch {
      return undefined;
    }
    const b = this.#buf;
    // A busy WAL changes thousands of times a second: nothing is allocated unless mxFrame moved.
    // A header that is short or torn (a writer was changing it) is read again at the next change.
    if (n < b.length || !walIndexHeaderReady(b)) return false;
    const mxFrame = walIndexMxFrame(b);
    if (mxFrame === this.#lastMxFrame && this.#lastSalts.compare(b, 32, 40) === 0) return false;
    this.#lastMxFrame = mxFrame;
    b.copy(this.#lastSalts, 0, 32, 40);
    if (this.#seen.length >= MAX_OBSERVATIONS) this.#seen.shift();
    // Date.now() is the current millisecond, truncated: the end of it bounds the commit strictly.
    this.#seen.push({ time: Date.now() + 1, salts: Buffer.from(b.subarray(32, 40)), mxFrame });
    return true;
  }

  /**
   * For one copy of the WAL with `salts`, whose commits come in frame order: the time of the commit
   * whose last frame is number `frame` (1-based) is the earliest observation that had it published,
   * or `copiedAt` if that is earlier or none did. One pass over the observations per copy.
   */
  stamper(salts: Uint8Array): (frame: number, copiedAt: number) => number {
    const mine = this.#seen.filter((o) => o.salts.equals(salts));
    let i = 0;
    return (frame, copiedAt) => {
      while (i < mine.length && mine[i]!.mxFrame < frame) i++;
      const o = mine[i];
      return o === undefined ? copiedAt : Math.min(o.time, copiedAt);
    };
  }

  /** Forgets what no later commit can need: observations of this WAL up to its frame `copied`. */
  copied(salts: Uint8Array, copied: number): void {
    this.#seen = this.#seen.filter((o) => o.mxFrame > copied || !o.salts.equals(salts));
  }
}
