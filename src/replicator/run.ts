/**
 * Wires a parsed config into running databases and destinations: one Db per `dbs[]` entry, one Replica
 * per destination, their loops, and a final sync on shutdown.
 */
import { readFile, rm } from "node:fs/promises";
import { describeError, ErrorCodes, hasCode, WalshipError } from "../shared/errors.ts";
import type { Logger } from "../shared/log.ts";
import { DEFAULT_CLAIM_TTL_MS } from "./claim.ts";
import type { Config } from "./config.ts";
import { createReplicaClient } from "./config.ts";
import { Db } from "./db.ts";
import { Fence, FencedClient } from "./fence.ts";
import { IdleCollector } from "./idle-gc.ts";
import { shadow } from "./layout.ts";
import { kubeAccessFromEnv, LeaseApi, LeaseClaim } from "./lease.ts";
import { credentialFiles, DestinationProbe } from "./probe.ts";
import { Replica } from "./replica.ts";
import type { SealedReplicaClient } from "./storage/sealed.ts";

/** How long the final sync at shutdown may take when the config does not say (`shutdown-sync-timeout`). */
export const DEFAULT_SHUTDOWN_SYNC_TIMEOUT_MS = 10_000;

export interface Replication {
  dbs: Db[];
  replicas: Replica[];
  /** Each destination's self-test (probe.ts), in the order of `replicas`; none with `probe-interval: 0`. */
  probes: DestinationProbe[];
  /** Resolves when every loop has ended (after `stop`). */
  done: Promise<void>;
  /**
   * Stops the loops, runs one final sync of every database and destination (for at most
   * `finalSyncTimeoutMs`, default DEFAULT_SHUTDOWN_SYNC_TIMEOUT_MS), closes the databases.
   */
  stop(opts?: { finalSyncTimeoutMs?: number }): Promise<void>;
}

export async function startReplication(config: Config, log: Logger): Promise<Replication> {
  const dbs: Db[] = [];
  const replicas: Replica[] = [];
  const probes: DestinationProbe[] = [];
  /** Destinations whose retention deletes: their credentials must be able to. */
  const retaining: Replica[] = [];
  const sealed: Array<{ db: Db; name: string; client: SealedReplicaClient }> = [];
  /** One single-writer claim per destination (fence.ts), unless `claim-ttl` is 0. */
  const fences: Fence[] = [];
  const claimTtlMs = config.claimTtlMs ?? DEFAULT_CLAIM_TTL_MS;
  const kube = kubeAccessFromEnv(process.env);
  if (kube && claimTtlMs > 0) log.info({ namespace: kube.namespace }, "claims: a Lease per destination too");
  for (const [i, dc] of config.dbs.entries()) {
    const db = new Db(dc.path, {
      ...(dc.metaPath ? { metaPath: dc.metaPath } : {}),
      monitorIntervalMs: dc.monitorIntervalMs,
      checkpointIntervalMs: dc.checkpointIntervalMs,
      minCheckpointPageCount: dc.minCheckpointPageCount,
      maxCheckpointPageCount: dc.maxCheckpointPageCount,
      truncatePageCount: dc.truncatePageCount,
      busyTimeoutMs: dc.busyTimeoutMs,
      log,
    });
    dbs.push(db);
    for (const [j, rc] of dc.replicas.entries()) {
      const client = await createReplicaClient(rc, `dbs[${i}].replicas[${j}]`, { log, writing: true });
      sealed.push({ db, name: rc.name, client });
      // The claim is plaintext on the raw destination: any replicator reads it, whatever its keys.
      // In a cluster, a Lease per destination beside it (lease.ts), when the operator gave access.
      const fence =
        claimTtlMs > 0
          ? new Fence(client.inner, {
              name: rc.name,
              ttlMs: claimTtlMs,
              ...(kube
                ? { lease: new LeaseClaim(new LeaseApi(kube), client.inner.location, claimTtlMs) }
                : {}),
              log: log.child({ db: db.path }),
            })
          : undefined;
      if (fence) fences.push(fence);
      const replica = new Replica(db, fence ? new FencedClient(client, fence) : client, {
        name: rc.name,
        syncIntervalMs: rc.syncIntervalMs,
        ...(rc.snapshotIntervalMs ? { snapshotIntervalMs: rc.snapshotIntervalMs } : {}),
        retentionMs: rc.retentionMs,
        retentionCheckIntervalMs: rc.retentionCheckIntervalMs,
        ...(rc.validationIntervalMs ? { validationIntervalMs: rc.validationIntervalMs } : {}),
        ...(fence ? { fence } : {}),
        log: log.child({ db: db.path }),
      });
      replicas.push(replica);
      if (config.probeIntervalMs !== 0) {
        probes.push(
          new DestinationProbe(db.path, rc.name, client.inner, {
            ...(config.probeIntervalMs !== undefined ? { retryMs: config.probeIntervalMs } : {}),
            ...(rc.s3?.region !== undefined ? { region: rc.s3.region } : {}),
            credentialFiles: credentialFiles(rc),
            log,
          }),
        );
      }
      if (replica.retentionMs > 0) retaining.push(replica);
      log.info(
        {
          db: db.path,
          name: rc.name,
          type: rc.type,
          location: client.location,
          encryption: rc.age ? "age" : "none",
          syncIntervalMs: replica.syncIntervalMs,
        },
        "replicating to",
      );
    }
  }
  await checkAccess(retaining, log);
  await checkSealing(sealed, log);
  const ac = new AbortController();
  for (const db of dbs) {
    await db.init();
    log.info({ path: db.path }, "initialized db");
  }
  // The claims are kept until after the final sync, then released: they outlive the other loops.
  const claims = new AbortController();
  const claiming = Promise.all(fences.map((f) => f.run(claims.signal)));
  const loops = [
    ...dbs.map((db) => db.monitor(ac.signal)),
    ...replicas.map((r) => r.run(ac.signal)),
    ...probes.map((p) => p.run(ac.signal)),
  ];
  const done = Promise.all(loops).then(() => undefined);
  // One collection once quiet: the garbage of the last burst is otherwise kept until the next.
  const idleGc = new IdleCollector(() => {
    let a = 0;
    for (const db of dbs) a += db.metrics.totalWalBytes;
    for (const r of replicas) a += r.metrics.walBytes + r.metrics.snapshotCount;
    return a;
  });

  async function stop(opts: { finalSyncTimeoutMs?: number } = {}): Promise<void> {
    idleGc.close();
    ac.abort();
    await done;
    const started = Date.now();
    const final = (async () => {
      // A claim being taken right now decides whether this stop runs a final sync there.
      await Promise.all(fences.map((f) => f.idle()));
      for (const db of dbs) {
        try {
          await db.sync();
        } catch (err) {
          log.error({ db: db.path, err: describeError(err) }, "final sync failed");
        }
      }
      await Promise.all(
        // A fenced destination gets no final sync: another writer holds it.
        replicas
          .filter((r) => r.mayWrite)
          .map(async (r) => {
            try {
              await r.sync();
            } catch (err) {
              log.error(
                { db: r.db.path, replica: r.name, err: describeError(err) },
                "final replica sync failed",
              );
            }
          }),
      );
    })();
    const timeout = opts.finalSyncTimeoutMs ?? DEFAULT_SHUTDOWN_SYNC_TIMEOUT_MS;
    let timer: NodeJS.Timeout | undefined;
    const timedOut = await Promise.race([
      final.then(() => false),
      new Promise<boolean>((r) => {
        timer = setTimeout(() => r(true), timeout);
      }),
    ]);
    clearTimeout(timer);
    if (timedOut) log.error({ timeoutMs: timeout }, "final sync did not finish in time");
    claims.abort();
    await claiming;
    // Released only after the final sync: a successor (a rolling restart) starts at once. Within
    // what is left of the shutdown budget (half a second at least): a store that hangs keeps the
    // claim, which then expires.
    const left = Math.max(500, started + timeout - Date.now());
    await Promise.all(fences.map((f) => f.release({ signal: AbortSignal.timeout(left) })));
    for (const r of replicas) r.close();
    for (const db of dbs) await db.close();
  }

  return { dbs, replicas, probes, done, stop };
}

/**
 * Before anything starts, each destination's age keys are read and checked, and its path is looked
 * at (sealed.ts `check`): a path holding the other form (plaintext generations where age is set, age
 * ones where it is not) stops the start, unless `age.allow-plaintext-generations` is set; then, if
 * the database's current generation is one of those plaintext ones, its shadow generation pointer is
 * removed so that a new generation (encrypted from its first snapshot) starts. A path that cannot be
 * looked at now (the network) is looked at again before the first write, which waits for it.
 */
async function checkSealing(
  list: Array<{ db: Db; name: string; client: SealedReplicaClient }>,
  log: Logger,
): Promise<void> {
  for (const { db, name, client } of list) {
    if (client.sealing.mode === "age") await client.sealing.keys();
    let foreign: ReadonlySet<string>;
    try {
      foreign = await client.check();
    } catch (err) {
      if (hasCode(err, ErrorCodes.ENCRYPTION) || hasCode(err, ErrorCodes.CONFIG)) throw err;
      log.warn(
        { replica: name, err: describeError(err) },
        "could not look at the destination's objects at start; looked at again before the first write",
      );
      continue;
    }
    if (foreign.size === 0) continue;
    log.warn(
      { replica: name, generations: [...foreign] },
      "plaintext generations kept beside the encrypted ones (age.allow-plaintext-generations)",
    );
    const file = shadow.generationFile(db.metaPath);
    const current = (await readFile(file, "utf8").catch(() => "")).trim();
    if (foreign.has(current)) {
      await rm(file, { force: true });
      log.warn(
        { replica: name, generation: current },
        "the current generation is plaintext at this destination: a new generation starts",
      );
    }
  }
}

/**
 * Destinations that can prove their credentials (GCS) do so before replication starts: credentials
 * that cannot delete would only fail at the first retention pass, hours later. A refusal stops the
 * start; any other failure (the network) is logged and replication starts anyway.
 */
async function checkAccess(replicas: Replica[], log: Logger): Promise<void> {
  for (const r of replicas) {
    if (!r.client.checkAccess) continue;
    try {
      await r.client.checkAccess();
    } catch (err) {
      if (err instanceof WalshipError && err.details.permission !== undefined) throw err;
      log.warn(
        { replica: r.name, err: describeError(err) },
        "could not check the destination's access at start",
      );
    }
  }
}
