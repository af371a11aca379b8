/** `walship restore`: its flags, the progress line, -dry-run and the -refuse-if-replica-exists guard. */

import path from "node:path";
import { isUrl } from "../replicator/config/url.ts";
import { exists } from "../replicator/fs.ts";
import { isGenerationName } from "../replicator/layout.ts";
// The restore code itself (SQLite, LZ4, the WAL applier) is imported when a restore runs, not for a
// database that is already there.
import type { NamedClient, RestoreProgress, RestoreTarget } from "../replicator/restore.ts";
import { ErrorCodes, WalshipError } from "../shared/errors.ts";
import { hex8 } from "../shared/format.ts";
import { createLogger, type Logger } from "../shared/log.ts";
import { type Command, configFlags, logFormat, openClients, replicaFlag, resolveReplicas } from "./common.ts";

export const restoreCommand: Command = {
  usage: "walship restore [flags] DB_PATH...|REPLICA_URL",
  description:
    "Restores the latest state, an index, or the state at a time. The result is checked with\n" +
    "PRAGMA integrity_check before it is renamed into place; an existing database is never replaced\n" +
    "unless -overwrite is given (it is then kept as <db>.pre-restore-<time>). With -config, several\n" +
    "databases of the config can be named: each is restored in turn, and the first failure stops.",
  flags: [
    ...configFlags,
    {
      name: "o",
      type: "string",
      metavar: "PATH",
      help: "output path (required with a URL; default: the database path)",
    },
    replicaFlag,
    { name: "generation", type: "string", metavar: "ID", help: "only this generation" },
    {
      name: "index",
      type: "string",
      metavar: "HEX",
      help: "restore up to this WAL index (hex, inclusive)",
    },
    {
      name: "timestamp",
      type: "string",
      metavar: "RFC3339",
      help: "restore transactions committed at or before this time",
    },
    { name: "parallelism", type: "string", metavar: "N", help: "WAL downloads in parallel (default 8)" },
    { name: "if-db-not-exists", type: "boolean", help: "exit 0 without restoring if the database exists" },
    { name: "if-replica-exists", type: "boolean", help: "exit 0 without restoring if there is no backup" },
    {
      name: "overwrite",
      type: "boolean",
      help: "replace an existing database (kept as a .pre-restore file)",
    },
    {
      name: "verify-sql",
      type: "string",
      metavar: "QUERY",
      help: "also require this query to return a row on the restored database before it is renamed into place",
    },
    {
      name: "refuse-if-replica-exists",
      type: "boolean",
      help: "restore nothing; exit 1 if the database is missing while a backup exists (a start-up guard)",
    },
    {
      name: "dry-run",
      type: "boolean",
      help: "only plan: check the target can be restored and log the plan; download and write nothing",
    },
    {
      name: "log-format",
      type: "string",
      metavar: "text|json",
      help: "log format (default text on a terminal, json otherwise)",
    },
  ],
  run: runRestore,
};

export function parseTimestamp(s: string): Date {
  const re = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$/i;
  const ms = re.test(s) ? Date.parse(s) : Number.NaN;
  if (Number.isNaN(ms)) {
    throw new WalshipError(
      ErrorCodes.USAGE,
      `invalid -timestamp "${s}": use RFC 3339, e.g. 2000-01-01T00:00:00Z or 2000-01-01T00:00:00.123Z`,
    );
  }
  return new Date(ms);
}

async function runRestore(
  flags: Record<string, string | boolean | undefined>,
  args: string[],
): Promise<number> {
  if (args.length > 1) {
    if (typeof flags.config !== "string" || args.some(isUrl))
      throw new WalshipError(
        ErrorCodes.USAGE,
        "several databases can be restored only by path, with -config",
      );
    if (typeof flags.o === "string")
      throw new WalshipError(ErrorCodes.USAGE, "-o takes one database; name one database path with it");
    for (const db of args) {
      const rc = await restoreOne(flags, [db]);
      if (rc !== 0) return rc;
    }
    return 0;
  }
  return restoreOne(flags, args);
}

async function restoreOne(
  flags: Record<string, string | boolean | undefined>,
  args: string[],
): Promise<number> {
  const { replicas, dbPath } = await resolveReplicas(flags, args);
  const output = typeof flags.o === "string" ? flags.o : dbPath;
  if (!output) throw new WalshipError(ErrorCodes.USAGE, "-o is required when restoring from a URL");
  let index: number | undefined;
  if (typeof flags.index === "string") {
    if (!/^[0-9a-fA-F]{1,8}$/.test(flags.index))
      throw new WalshipError(ErrorCodes.USAGE, `invalid -index "${flags.index}": use hex, e.g. 0000002a`);
    index = Number.parseInt(flags.index, 16);
  }
  const timestamp = typeof flags.timestamp === "string" ? parseTimestamp(flags.timestamp) : undefined;
  let parallelism: number | undefined;
  if (typeof flags.parallelism === "string") {
    parallelism = Number(flags.parallelism);
    if (!Number.isInteger(parallelism) || parallelism < 1)
      throw new WalshipError(ErrorCodes.USAGE, `-parallelism must be a positive integer`);
  }
  const log = createLogger({ format: logFormat(flags["log-format"]), stderr: true });
  const refuse = flags["refuse-if-replica-exists"] === true;
  if (refuse || (flags["if-db-not-exists"] === true && !flags["dry-run"])) {
    // A pod's restore init container passes one of these at every start, and its database is there
    // at every start but the first: that case ends here, the config read and checked in full
    // (resolveReplicas), with no destination's SDK and no restore code loaded, and no store asked
    // anything (docs/benchmarks.md, Start-up).
    const db = path.resolve(output);
    if (await exists(db)) {
      log.info({ path: db }, refuse ? "database exists" : "database already exists, skipping restore");
      return 0;
    }
  }
  const clients = await openClients(replicas);
  if (refuse) return refuseIfReplicaExists(clients, path.resolve(output), log);
  const target: RestoreTarget = {
    ...(typeof flags.replica === "string" ? { replica: flags.replica } : {}),
    ...(typeof flags.generation === "string" ? { generation: flags.generation } : {}),
    ...(index !== undefined ? { index } : {}),
    ...(timestamp ? { timestamp } : {}),
  };
  if (target.generation !== undefined && !isGenerationName(target.generation)) {
    throw new WalshipError(
      ErrorCodes.USAGE,
      `invalid -generation "${target.generation}": a generation is 16 lowercase hex digits`,
    );
  }
  if (flags["dry-run"]) return restoreDryRun(clients, target, flags["if-replica-exists"] === true, log);
  const tty = process.stderr.isTTY === true;
  let lastLine = 0;
  const onProgress = (p: RestoreProgress) => {
    const now = Date.now();
    if (now - lastLine < (tty ? 100 : 5000)) return;
    lastLine = now;
    const mb = (p.bytes / 1048576).toFixed(1);
    if (tty)
      process.stderr.write(
        `\r${p.phase}: ${mb} MiB downloaded, ${p.segmentsDone}/${p.segmentsTotal} WAL segments`,
      );
    else
      log.info(
        { phase: p.phase, bytes: p.bytes, segments: p.segmentsDone, total: p.segmentsTotal },
        "restore progress",
      );
  };
  const { restore } = await import("../replicator/restore.ts");
  const result = await restore(clients, {
    outputPath: output,
    ...target,
    ...(parallelism ? { parallelism } : {}),
    ifDbNotExists: flags["if-db-not-exists"] === true,
    ifReplicaExists: flags["if-replica-exists"] === true,
    overwrite: flags.overwrite === true,
    ...(typeof flags["verify-sql"] === "string" ? { verifySql: flags["verify-sql"] } : {}),
    log,
    onProgress,
  });
  if (tty && lastLine) process.stderr.write("\n");
  if (result === "db-exists") {
    log.info({ path: path.resolve(output) }, "database already exists, skipping restore");
    return 0;
  }
  if (result === "no-replica") {
    log.info({}, "no backups found, skipping restore");
    return 0;
  }
  if (result.timeRule === "object-times") {
    log.warn(
      { generation: result.generation },
      "this replica has no Walship commit-time index (written by Litestream?): the timestamp was applied to upload times, as Litestream v0.3.13 does",
    );
  }
  log.info(
    {
      path: result.outputPath,
      replica: result.replica,
      generation: result.generation,
      snapshotIndex: hex8(result.snapshotIndex),
      position: `${result.generation}/${hex8(result.index)}:${result.offset}`,
      ...(result.lastCommitTime ? { lastCommit: result.lastCommitTime.toISOString() } : {}),
      timeRule: result.timeRule,
      bytes: result.bytes,
      segments: result.segments,
      ...(result.backupPath ? { previousDatabase: result.backupPath } : {}),
    },
    "restored",
  );
  return 0;
}

/**
 * -dry-run: plans the restore as `restore` would (destination, generation, snapshot, WAL up to the
 * target) and logs it, downloading and writing nothing; fails as `restore` would when nothing can be
 * restored (a time before the first snapshot, no backup, an unreachable destination).
 */
async function restoreDryRun(
  clients: NamedClient[],
  target: RestoreTarget,
  ifReplicaExists: boolean,
  log: Logger,
): Promise<number> {
  const { planRestore } = await import("../replicator/restore.ts");
  const plan = await planRestore(clients, target);
  if (!plan) {
    if (ifReplicaExists) {
      log.info({}, "no backups found, nothing to restore");
      return 0;
    }
    throw new WalshipError(ErrorCodes.RESTORE, "restore: no matching backups found");
  }
  const last = plan.cut?.index ?? plan.segments.at(-1)?.index ?? plan.snapshot.index;
  log.info(
    {
      replica: plan.replica,
      generation: plan.generation,
      snapshotIndex: hex8(plan.snapshot.index),
      upTo: `${plan.generation}/${hex8(last)}${plan.cut ? `:${plan.cut.offset}` : ""}`,
      ...(plan.lastCommitTime ? { lastCommit: plan.lastCommitTime.toISOString() } : {}),
      timeRule: plan.timeRule,
      segments: plan.segments.length,
    },
    "restore plan",
  );
  return 0;
}

/**
 * A start-up guard: an app whose database is gone while backups exist should not start empty and
 * begin a new history over them. Called when the database is missing (restoreOne returns 0 when it
 * exists); exits 0 when there is no backup either.
 */
async function refuseIfReplicaExists(clients: NamedClient[], db: string, log: Logger): Promise<number> {
  const { planRestore } = await import("../replicator/restore.ts");
  const plan = await planRestore(clients, {});
  if (!plan) {
    log.info({ path: db }, "database missing and no backup: a fresh start");
    return 0;
  }
  throw new WalshipError(
    ErrorCodes.EXISTS,
    `database ${db} is missing while destination "${plan.replica}" holds generation ${plan.generation}: refusing to start empty; restore it first (walship restore, or a SqliteRestore)`,
  );
}
