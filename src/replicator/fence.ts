/**
 * One destination's single-writer fence: takes the claim (claim.ts) before anything is written,
 * renews it every TTL/3, releases it at a clean stop, and refuses every write while another writer
 * holds it (`FencedClient`). Works through the ReplicaClient contract alone, so on every backend.
 *
 * Claiming is last-writer-wins with a read-back: write our claim, wait a moment (`settleMs`, by
 * default twice our own write's round trip, at least 200 ms), read it again; whoever's token is
 * there won, and the other backs off. A concurrent claimer read before our write landed, so its own
 * write lands within about one round trip after ours. A claimer whose write lands after the
 * other's read-back is found at the next renewal, and the one that finds another's claim stops at
 * once: two writers can overlap for at most one renewal period, never longer.
 *
 * In a cluster the fence also holds the destination's Lease (lease.ts), looked at first: another
 * writer's Lease fences us at once, with no overlap, and a Lease that cannot be checked leaves the
 * decision to the bucket claim.
 *
 * Our own hold is bounded by our own clock: writes are allowed only until the expiry we last wrote
 * (less a margin), so a replicator that cannot renew (the store is down) stops writing before any
 * other may take over.
 */
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import os from "node:os";
import type { Readable } from "node:stream";
import { setTimeout as sleep } from "node:timers/promises";
import { describeError, ErrorCodes, isNotFound, WalshipError } from "../shared/errors.ts";
import { type Logger, nullLogger } from "../shared/log.ts";
import {
  CLAIM_KEY,
  type ClaimDoc,
  type ClaimHolder,
  claimDoc,
  DEFAULT_CLAIM_TTL_MS,
  describeHolder,
  holderFromEnv,
  judgeClaim,
  parseClaim,
  Sightings,
} from "./claim.ts";
import { encodeJson } from "./extras.ts";
import type { LeaseClaim } from "./lease.ts";
import type { CallOptions, ReplicaClient } from "./storage/client.ts";
import type { SnapshotInfo, WalSegmentInfo } from "./types.ts";

/** Another writer holds the destination: who, until when (by its stamp), and since when we know. */
export interface FencedBy {
  holder: ClaimHolder;
  expiresAt: Date;
  since: Date;
  /** The Lease (`namespace/name`) that the other writer holds, when the Lease fenced us. */
  lease?: string;
}

/** The destination's Lease as this replicator last saw it. */
export interface LeaseState {
  /** `namespace/name`. */
  ref: string;
  /** True while this replicator holds it. */
  held: boolean;
  /** Why it could not be checked (the API server, RBAC): the bucket claim alone fences meanwhile. */
  error?: string;
}

export interface FenceOptions {
  /** The destination's name, for logs and errors. */
  name: string;
  /** How long a claim lasts unless renewed. Default DEFAULT_CLAIM_TTL_MS (30 s). */
  ttlMs?: number;
  /**
   * Between writing a claim and reading it back. Default twice the write's own round trip, at least
   * 200 ms, at most TTL/10.
   */
  settleMs?: number;
  /** Who we are; default from the env (WALSHIP_POD_*) and the host. */
  holder?: ClaimHolder;
  /** In a cluster: the destination's Lease (lease.ts), taken before the bucket claim. */
  lease?: LeaseClaim;
  log?: Logger;
}

/** This process's holder identity (the env the operator injects, else host, pid and boot id). */
export function localHolder(env: NodeJS.ProcessEnv = process.env): ClaimHolder {
  let bootId: string | undefined;
  try {
    bootId = readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim() || undefined;
  } catch {
    bootId = undefined;
  }
  return holderFromEnv(env, os.hostname(), process.pid, bootId);
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: it exists, owned by someone else.
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

export class Fence {
  readonly name: string;
  readonly ttlMs: number;
  readonly settleMs: number | undefined;
  readonly holder: ClaimHolder;
  readonly token = randomBytes(16).toString("hex");
  /** The raw destination (no encryption): any replicator, whatever its keys, reads the claim. */
  readonly #client: ReplicaClient;
  #log: Logger;
  /** Our claim holds until this local time (0: not held). */
  #heldUntil = 0;
  #fencedBy: FencedBy | undefined;
  readonly #sightings = new Sightings();
  readonly #lease: LeaseClaim | undefined;
  #leaseState: LeaseState | undefined;
  #waiters: Array<() => void> = [];
  #lastError: string | undefined;
  #inflight: Promise<void> = Promise.resolve();

  constructor(client: ReplicaClient, opts: FenceOptions) {
    this.#client = client;
    this.name = opts.name;
    this.ttlMs = opts.ttlMs ?? DEFAULT_CLAIM_TTL_MS;
    this.settleMs = opts.settleMs;
    this.holder = opts.holder ?? localHolder();
    this.#lease = opts.lease;
    if (opts.lease) this.#leaseState = { ref: opts.lease.ref, held: false };
    this.#log = (opts.log ?? nullLogger()).child({ replica: opts.name });
  }

  /** True while our claim is current by our own clock (a margin of TTL/6 before its expiry). */
  get held(): boolean {
    return Date.now() < this.#heldUntil - Math.floor(this.ttlMs / 6);
  }

  /** Set while another writer holds the destination. */
  get fencedBy(): FencedBy | undefined {
    return this.#fencedBy;
  }

  /** The destination's Lease, in a cluster. */
  get lease(): LeaseState | undefined {
    return this.#leaseState;
  }

  /** The last failure to read or write the claim, cleared by the next success. */
  get lastError(): string | undefined {
    return this.#lastError;
  }

  /**
   * Resolves once the claim is ours, or once a look at it has failed (the caller's own attempt then
   * meets the store's error and reports it), or when the signal aborts.
   */
  waitTurn(signal: AbortSignal): Promise<void> {
    if (this.held || this.#lastError !== undefined || signal.aborted) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        signal.removeEventListener("abort", done);
        resolve();
      };
      this.#waiters.push(done);
      signal.addEventListener("abort", done, { once: true });
    });
  }

  /** Takes and keeps the claim until the signal aborts: renews every TTL/3, re-checks as often. */
  async run(signal: AbortSignal): Promise<void> {
    const every = Math.max(100, Math.floor(this.ttlMs / 3));
    while (!signal.aborted) {
      try {
        await this.step({ signal });
        this.#lastError = undefined;
      } catch (err) {
        if (signal.aborted) break;
        const message = describeError(err);
        // Logged when it changes: the destination's syncs report the store's errors as they go.
        if (message !== this.#lastError) {
          this.#log.warn({ err: message }, "claim: could not check or renew the replica claim");
        }
        this.#lastError = message;
        for (const w of this.#waiters.splice(0)) w();
        // A store that fails is looked at again within a second: the destination waits on it.
        await sleep(Math.min(every, 1000), undefined, { signal }).catch(() => undefined);
        continue;
      }
      await sleep(every, undefined, { signal }).catch(() => undefined);
    }
  }

  /** Resolves when no look at the claim is under way (a stop decides on the final sync after it). */
  async idle(): Promise<void> {
    await this.#inflight;
  }

  /** One look at the claim: take, renew, or stand back. */
  step(opts: CallOptions = {}): Promise<void> {
    const run = this.#step(opts);
    this.#inflight = run.catch(() => undefined);
    return run;
  }

  async #step(opts: CallOptions): Promise<void> {
    const wasHeld = this.#heldUntil > Date.now();
    if ((await this.#leaseStep(wasHeld, opts)) === "held") return;
    const found = await this.#read(opts);
    const judged = judgeClaim(
      { doc: found, unchangedMs: this.#sightings.unchanged(found) },
      { holder: this.holder, token: this.token, alive: pidAlive },
      Date.now(),
    );
    if (judged.kind === "held") {
      this.#standBack(judged.holder, judged.expiresAt, wasHeld);
      return;
    }
    const at = Date.now();
    try {
      await this.#client.putExtra(
        CLAIM_KEY,
        encodeJson(claimDoc(this.holder, this.token, at, this.ttlMs)),
        opts,
      );
    } catch (err) {
      // A concurrent claimer's write can break ours (a file store's temp file renamed under it):
      // if another's claim is there now, that writer won.
      const now = await this.#read(opts).catch(() => undefined);
      if (now && now.token !== this.token) {
        this.#standBack(now.holder, new Date(now.expiresAt), wasHeld);
        return;
      }
      throw err;
    }
    if (judged.kind === "ours") {
      // Still ours in the bucket after the Lease fenced us for a while: writing resumes.
      this.#fencedBy = undefined;
      this.#hold(at + this.ttlMs);
      return;
    }
    // A new claim: read it back after a moment, to lose cleanly against a concurrent claimer.
    const settle =
      this.settleMs ?? Math.min(Math.floor(this.ttlMs / 10), Math.max(200, 2 * (Date.now() - at)));
    await sleep(settle, undefined, opts.signal ? { signal: opts.signal } : undefined);
    const back = await this.#read(opts);
    if (back?.token !== this.token) {
      if (back) this.#standBack(back.holder, new Date(back.expiresAt), false);
      return;
    }
    const was = this.#fencedBy;
    this.#fencedBy = undefined;
    this.#log.info(
      {
        why: judged.why,
        ...(was ? { previous: describeHolder(was.holder) } : {}),
        expiresAt: back.expiresAt,
      },
      "claim: this replicator now holds the replica path",
    );
    this.#hold(at + this.ttlMs);
  }

  /**
   * The Lease first (in a cluster): another writer's Lease fences us as its bucket claim would. A
   * Lease that cannot be checked does not: the bucket claim still decides, and the error is reported.
   */
  async #leaseStep(wasHeld: boolean, opts: CallOptions): Promise<"held" | "go on"> {
    const lease = this.#lease;
    if (!lease) return "go on";
    const me = { holder: this.holder, token: this.token, alive: pidAlive };
    try {
      const turn = await lease.step(me, opts);
      this.#leaseState = { ref: lease.ref, held: turn.kind === "ours" };
      if (turn.kind === "held") {
        this.#standBack(turn.holder, turn.expiresAt, wasHeld, lease.ref);
        return "held";
      }
    } catch (err) {
      if (opts.signal?.aborted) throw err;
      const message = describeError(err);
      if (message !== this.#leaseState?.error) {
        this.#log.warn(
          { lease: lease.ref, err: message },
          "claim: could not check the Lease; the claim in the bucket alone fences this replica path",
        );
      }
      this.#leaseState = { ref: lease.ref, held: false, error: message };
    }
    return "go on";
  }

  /** Our claim holds until `until` (local ms); whoever waits for it goes on. */
  #hold(until: number): void {
    this.#heldUntil = until;
    if (this.held) for (const w of this.#waiters.splice(0)) w();
  }

  /** Releases our claim (a clean stop), so a successor need not wait for it to expire. */
  async release(opts: CallOptions = {}): Promise<void> {
    if (this.#heldUntil !== 0) {
      this.#heldUntil = 0;
      await this.#releaseClaim(opts);
    }
    await this.#releaseLease(opts);
  }

  async #releaseClaim(opts: CallOptions): Promise<void> {
    try {
      const found = await this.#read(opts);
      if (found?.token !== this.token) return;
      await this.#client.deleteExtras([CLAIM_KEY], opts);
      this.#log.info({}, "claim: released the replica path");
    } catch (err) {
      this.#log.warn({ err: describeError(err) }, "claim: could not release; it expires on its own");
    }
  }

  async #releaseLease(opts: CallOptions): Promise<void> {
    const lease = this.#lease;
    if (!lease) return;
    try {
      await lease.release(this.token, opts);
      if (this.#leaseState) this.#leaseState = { ref: lease.ref, held: false };
    } catch (err) {
      this.#log.warn(
        { lease: lease.ref, err: describeError(err) },
        "claim: could not release the Lease; it expires on its own",
      );
    } finally {
      lease.close();
    }
  }

  #standBack(holder: ClaimHolder, expiresAt: Date, wasHeld: boolean, lease?: string): void {
    this.#heldUntil = 0;
    const first = !this.#fencedBy || describeHolder(this.#fencedBy.holder) !== describeHolder(holder);
    this.#fencedBy = {
      holder,
      expiresAt,
      since: first ? new Date() : (this.#fencedBy?.since ?? new Date()),
      ...(lease ? { lease } : {}),
    };
    const where = lease ? { lease } : {};
    if (wasHeld) {
      this.#log.error(
        { holder: describeHolder(holder), expiresAt: expiresAt.toISOString(), ...where },
        "claim: another writer took the replica path; writing stopped",
      );
    } else if (first) {
      this.#log.error(
        { holder: describeHolder(holder), expiresAt: expiresAt.toISOString(), ...where },
        "claim: another writer holds the replica path; not replicating there",
      );
    }
  }

  async #read(opts: CallOptions): Promise<ClaimDoc | undefined> {
    let bytes: Uint8Array;
    try {
      bytes = await this.#client.getExtra(CLAIM_KEY, opts);
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
    const parsed = parseClaim(bytes);
    if ("problem" in parsed) {
      // Unreadable is not a holder: nothing can renew it but a writer that overwrites it.
      this.#log.warn({ problem: parsed.problem }, "claim: the claim object is not a claim; replacing it");
      return undefined;
    }
    return parsed.doc;
  }
}

/** The error every write gets while the fence is not held. */
function fencedError(fence: Fence, verb: string): WalshipError {
  const by = fence.fencedBy;
  const who = by
    ? `; held by ${describeHolder(by.holder)} until ${by.expiresAt.toISOString()}`
    : fence.lastError
      ? `; the claim could not be checked: ${fence.lastError}`
      : "";
  return new WalshipError(
    ErrorCodes.FENCED,
    `${verb} ${fence.name}: this replicator does not hold the replica path's claim${who}`,
    { details: { replica: fence.name } },
  );
}

/**
 * A ReplicaClient whose writes and deletes pass only while `fence` is held; reads always pass. The
 * last line of defence: the replica's loops wait for the fence before they start.
 */
export class FencedClient implements ReplicaClient {
  readonly inner: ReplicaClient;
  readonly fence: Fence;
  readonly checkAccess?: (opts?: CallOptions) => Promise<void>;

  constructor(inner: ReplicaClient, fence: Fence) {
    this.inner = inner;
    this.fence = fence;
    const check = inner.checkAccess?.bind(inner);
    if (check) this.checkAccess = check;
  }

  get type(): string {
    return this.inner.type;
  }
  get location(): string {
    return this.inner.location;
  }
  get operations() {
    return this.inner.operations;
  }

  #guard(verb: string): void {
    if (!this.fence.held) throw fencedError(this.fence, verb);
  }

  generations(opts?: CallOptions): Promise<string[]> {
    return this.inner.generations(opts);
  }
  async deleteGeneration(generation: string, opts?: CallOptions): Promise<void> {
    this.#guard("delete generation");
    return this.inner.deleteGeneration(generation, opts);
  }
  snapshots(generation: string, opts?: CallOptions): Promise<SnapshotInfo[]> {
    return this.inner.snapshots(generation, opts);
  }
  async writeSnapshot(
    generation: string,
    index: number,
    body: Readable,
    opts?: CallOptions,
  ): Promise<SnapshotInfo> {
    if (!this.fence.held) {
      body.destroy();
      throw fencedError(this.fence, "write snapshot");
    }
    return this.inner.writeSnapshot(generation, index, body, opts);
  }
  snapshotReader(generation: string, index: number, opts?: CallOptions): Promise<Readable> {
    return this.inner.snapshotReader(generation, index, opts);
  }
  async deleteSnapshot(generation: string, index: number, opts?: CallOptions): Promise<void> {
    this.#guard("delete snapshot");
    return this.inner.deleteSnapshot(generation, index, opts);
  }
  walSegments(generation: string, opts?: CallOptions): Promise<WalSegmentInfo[]> {
    return this.inner.walSegments(generation, opts);
  }
  async writeWalSegment(
    generation: string,
    index: number,
    offset: number,
    body: Readable | Uint8Array,
    opts?: CallOptions,
  ): Promise<WalSegmentInfo> {
    if (!this.fence.held) {
      if (!(body instanceof Uint8Array)) body.destroy();
      throw fencedError(this.fence, "write wal segment");
    }
    return this.inner.writeWalSegment(generation, index, offset, body, opts);
  }
  walSegmentReader(generation: string, index: number, offset: number, opts?: CallOptions): Promise<Readable> {
    return this.inner.walSegmentReader(generation, index, offset, opts);
  }
  async deleteWalSegments(
    segments: ReadonlyArray<{ generation: string; index: number; offset: number }>,
    opts?: CallOptions,
  ): Promise<void> {
    this.#guard("delete wal segments");
    return this.inner.deleteWalSegments(segments, opts);
  }
  async putExtra(key: string, body: Uint8Array, opts?: CallOptions): Promise<void> {
    this.#guard("put extra");
    return this.inner.putExtra(key, body, opts);
  }
  getExtra(key: string, opts?: CallOptions): Promise<Uint8Array> {
    return this.inner.getExtra(key, opts);
  }
  listExtras(prefix: string, opts?: CallOptions): Promise<string[]> {
    return this.inner.listExtras(prefix, opts);
  }
  async deleteExtras(list: readonly string[], opts?: CallOptions): Promise<void> {
    this.#guard("delete extras");
    return this.inner.deleteExtras(list, opts);
  }
  close(): void {
    this.inner.close?.();
  }
}
