/**
 * The destination self-test: with the process's own credentials, write a small object, read it back
 * and compare, find it in a listing, and delete it, through the same ReplicaClient replication uses
 * (so every destination type is tested the same way). A failure names the step, the store's own
 * error and a hint (probe-hints.ts); the result is in /status (`probe`) and the metric
 * `walship_destination_probe_ok`, and the operator turns it into the `DestinationReachable` condition.
 *
 * Invariants:
 * - The object is `walship/probe/<id>` under the replica's path: Walship's side directory, which
 *   Litestream v0.3.13 never lists (it reads only `generations/`), and which no restore or retention
 *   pass lists either. Its body holds no secret. A probe that fails after the write still tries to
 *   delete what it wrote.
 * - The probe runs beside replication and never holds it up: a destination that fails it still
 *   replicates what it can (a bucket that refuses deletes still takes the WAL).
 * - When it runs: at start (a destination added or its config changed rolls the pod, since the
 *   config hash covers the rendered config), again every `retryMs` while it fails (so it clears once
 *   the user fixes things), and again when a credential file it reads changes (a rotated Secret is
 *   used without a restart, so a restart cannot be what re-tests it).
 * - The client is the inner (unsealed) one: the self-test is about the store and the credentials,
 *   not about age keys (checked at start by run.ts).
 */
import { createHash, randomBytes } from "node:crypto";
import { readFile } from "node:fs/promises";
import { hostname } from "node:os";
import { setTimeout as sleep } from "node:timers/promises";
import { describeError } from "../shared/errors.ts";
import { type Logger, nullLogger } from "../shared/log.ts";
import type { ReplicaConfig } from "./config/types.ts";
import { errorFacts, type ProbeStep, probeHint } from "./probe-hints.ts";
import type { ReplicaClient } from "./storage/client.ts";
import { DEFAULT_CREDENTIAL_REFRESH_MS } from "./storage/credential-file.ts";

export type { ProbeStep } from "./probe-hints.ts";

/** Where probe objects go, relative to the replica's root. */
export const PROBE_PREFIX = "walship/probe/";
/** How often a failed probe is tried again when the config does not say (`probe-interval`). */
export const DEFAULT_PROBE_RETRY_MS = 60_000;
/** How long one probe may take, all four steps (the clients' own retries included). */
export const DEFAULT_PROBE_TIMEOUT_MS = 60_000;
/** How often the credential files are looked at for a change (while the probe passes). */
const CREDENTIAL_CHECK_MS = 30_000;

export interface ProbeResult {
  outcome: "ok" | "failed";
  at: Date;
  /** The step that failed. */
  step?: ProbeStep;
  /** The store's error, one line with causes; never a credential. */
  message?: string;
  hint?: string;
  elapsedMs: number;
}

export interface ProbeOptions {
  /** Names the object (`walship/probe/<id>`); default `<hostname>-<8 random hex>`. */
  id?: string;
  /** Default DEFAULT_PROBE_TIMEOUT_MS. */
  timeoutMs?: number;
  /** The region the client signs for (s3), for the wrong-region hint. */
  region?: string;
  signal?: AbortSignal;
}

/** Runs the four steps once. Never throws: a failure is a result (an abort by `signal` included). */
export async function probeDestination(client: ReplicaClient, opts: ProbeOptions = {}): Promise<ProbeResult> {
  const started = Date.now();
  const at = new Date(started);
  const id = opts.id ?? `${hostname()}-${randomBytes(4).toString("hex")}`;
  const key = `${PROBE_PREFIX}${id}`;
  const timeoutMs = opts.timeoutMs ?? DEFAULT_PROBE_TIMEOUT_MS;
  const timeout = AbortSignal.timeout(timeoutMs);
  const signal = opts.signal ? AbortSignal.any([opts.signal, timeout]) : timeout;
  const body = new TextEncoder().encode(`walship destination probe ${at.toISOString()} ${id}\n`);
  let step: ProbeStep = "write";
  let written = false;
  try {
    await client.putExtra(key, body, { signal });
    written = true;
    step = "read";
    const back = await client.getExtra(key, { signal });
    if (Buffer.compare(Buffer.from(back), Buffer.from(body)) !== 0) {
      return failed(
        at,
        started,
        step,
        `read ${key}: got ${back.length} bytes that differ from the ${body.length} written`,
        "the store returned other bytes than were written: check that nothing rewrites objects on the way (a proxy, a transform on the bucket)",
      );
    }
    step = "list";
    const listed = await client.listExtras(PROBE_PREFIX, { signal });
    if (!listed.includes(key)) {
      return failed(
        at,
        started,
        step,
        `list ${PROBE_PREFIX}: the object just written (${key}) is not listed`,
        "the store's listing does not show a new object: sync and restore find objects by listing them; check the path prefix and the store's consistency",
      );
    }
    step = "delete";
    await client.deleteExtras([key], { signal });
    written = false;
    return { outcome: "ok", at, elapsedMs: Date.now() - started };
  } catch (err) {
    const timedOut = timeout.aborted && !opts.signal?.aborted;
    const message = timedOut
      ? `${step} ${key}: timed out after ${Math.round(timeoutMs / 1000)}s (${describeError(err)})`
      : describeError(err);
    const facts = timedOut ? { ...errorFacts(err), code: "EPROBETIMEOUT" } : errorFacts(err);
    const where = { location: client.location, ...(opts.region ? { region: opts.region } : {}) };
    return failed(at, started, step, message, probeHint(client.type, step, facts, where));
  } finally {
    if (written) {
      // Best effort, and not under the probe's signal (which may be what failed it).
      await client.deleteExtras([key], { signal: AbortSignal.timeout(10_000) }).catch(() => undefined);
    }
  }
}

function failed(
  at: Date,
  started: number,
  step: ProbeStep,
  message: string,
  hint: string | undefined,
): ProbeResult {
  return {
    outcome: "failed",
    at,
    step,
    message: message.slice(0, 1024),
    ...(hint ? { hint } : {}),
    elapsedMs: Date.now() - started,
  };
}

/** The credential files a destination's client reads (a Secret mounted as files), for change detection. */
export function credentialFiles(rc: ReplicaConfig): string[] {
  const files = [
    rc.s3?.accessKeyIdFile,
    rc.s3?.secretAccessKeyFile,
    rc.gcs?.credentialsFile,
    rc.abs?.accountKeyFile,
    rc.abs?.sasTokenFile,
    rc.sftp?.keyPath,
    rc.sftp?.passwordFile,
    rc.sftp?.keyPassphraseFile,
  ];
  return files.filter((f): f is string => f !== undefined);
}

/** A digest of the files' contents (a missing file counts as its own state); never logged as content. */
async function fingerprint(files: readonly string[]): Promise<string> {
  const h = createHash("sha256");
  for (const f of files) {
    const body = await readFile(f).catch((err: NodeJS.ErrnoException) => Buffer.from(`\0${err.code}`));
    h.update(f).update("\0").update(body).update("\0");
  }
  return h.digest("hex");
}

export interface DestinationProbeOptions {
  /** Try a failed probe again this often. Default DEFAULT_PROBE_RETRY_MS. */
  retryMs?: number;
  timeoutMs?: number;
  region?: string;
  /** Credential files whose change runs the probe again (credentialFiles). */
  credentialFiles?: readonly string[];
  log?: Logger;
}

/** One destination's self-test over the process's life: the loop and the last result. */
export class DestinationProbe {
  readonly db: string;
  readonly name: string;
  readonly #client: ReplicaClient;
  readonly #retryMs: number;
  readonly #opts: DestinationProbeOptions;
  readonly #log: Logger;
  /** One name for the process's life: the error messages (and the condition the operator derives) stay the same across retries. */
  readonly #id = `${hostname()}-${randomBytes(4).toString("hex")}`;
  #last: ProbeResult | undefined;

  constructor(db: string, name: string, client: ReplicaClient, opts: DestinationProbeOptions = {}) {
    this.db = db;
    this.name = name;
    this.#client = client;
    this.#retryMs = opts.retryMs ?? DEFAULT_PROBE_RETRY_MS;
    this.#opts = opts;
    this.#log = (opts.log ?? nullLogger()).child({ db, replica: name });
  }

  /** The last finished probe; undefined before the first has finished. */
  get result(): ProbeResult | undefined {
    return this.#last;
  }

  /** Probes now and records the result. */
  async probe(signal?: AbortSignal): Promise<ProbeResult> {
    const result = await probeDestination(this.#client, {
      id: this.#id,
      ...(this.#opts.timeoutMs !== undefined ? { timeoutMs: this.#opts.timeoutMs } : {}),
      ...(this.#opts.region !== undefined ? { region: this.#opts.region } : {}),
      ...(signal ? { signal } : {}),
    });
    if (signal?.aborted) return result;
    const was = this.#last?.outcome;
    this.#last = result;
    if (result.outcome === "ok") {
      if (was !== "ok") this.#log.info({ elapsedMs: result.elapsedMs }, "destination probe passed");
    } else {
      this.#log.error(
        { step: result.step, err: result.message, hint: result.hint },
        "destination probe failed",
      );
    }
    return result;
  }

  /**
   * Probes at once, then again every `retryMs` while it fails, and after a credential file changed
   * (once the clients have read it again), until the signal aborts.
   */
  async run(signal: AbortSignal): Promise<void> {
    const files = this.#opts.credentialFiles ?? [];
    let seen = files.length > 0 ? await fingerprint(files) : "";
    let changedAt: number | undefined;
    await this.probe(signal);
    const tick = Math.min(this.#retryMs, CREDENTIAL_CHECK_MS);
    while (!signal.aborted) {
      await sleep(tick, undefined, { signal }).catch(() => undefined);
      if (signal.aborted) break;
      if (files.length > 0) {
        const now = await fingerprint(files);
        if (now !== seen) {
          seen = now;
          changedAt = Date.now();
          this.#log.info({ files }, "destination credentials changed: probing again");
        }
      }
      // A changed file is probed once the clients have read it again (they re-read keys every 10 s).
      const settled = changedAt !== undefined && Date.now() - changedAt > DEFAULT_CREDENTIAL_REFRESH_MS;
      const retry =
        this.#last?.outcome !== "ok" && Date.now() - (this.#last?.at.getTime() ?? 0) >= this.#retryMs;
      if (settled || retry) {
        changedAt = undefined;
        await this.probe(signal);
      }
    }
  }
}
