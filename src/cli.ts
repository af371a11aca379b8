/**
 * walship: one CLI, two roles. The replicator commands (replicate, restore, snapshots, generations,
 * wal, databases) follow Litestream v0.3's command line; `operator` runs the Kubernetes controller.
 */
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import {
  type Config,
  configFromArgs,
  createReplicaClient,
  defaultConfigPath,
  findDb,
  isUrl,
  loadConfig,
  type ReplicaConfig,
  replicaFromUrl,
} from "./replicator/config.ts";
import { isGenerationName } from "./replicator/layout.ts";
import {
  type NamedClient,
  planRestore,
  type RestoreProgress,
  type RestoreTarget,
  restore,
} from "./replicator/restore.ts";
import { startReplication } from "./replicator/run.ts";
import { type ReplicatorServer, startServer } from "./replicator/server.ts";
import type { ReplicaClient } from "./replicator/storage/client.ts";
import { timeSpan } from "./replicator/types.ts";
import { takeEarlySignals } from "./shared/early-signals.ts";
import { describeError, ErrorCodes, WalshipError } from "./shared/errors.ts";
import { type FlagSpec, flagHelp, parseFlags, table } from "./shared/flags.ts";
import { hex8, isoSeconds } from "./shared/format.ts";
import { createLogger, type LogFormat, type Logger } from "./shared/log.ts";

export const VERSION = readVersion();

interface Command {
  summary: string;
  usage: string;
  description: string;
  flags: FlagSpec[];
  run(flags: Record<string, string | boolean | undefined>, args: string[]): Promise<number>;
}

const configFlags: FlagSpec[] = [
  {
    name: "config",
    type: "string",
    metavar: "PATH",
    help: "config file (default $WALSHIP_CONFIG, $LITESTREAM_CONFIG or /etc/litestream.yml)",
  },
  { name: "no-expand-env", type: "boolean", help: "do not expand $VARS in the config file" },
];
const replicaFlag: FlagSpec = {
  name: "replica",
  type: "string",
  metavar: "NAME",
  help: "only this destination",
};
const jsonFlag: FlagSpec = { name: "json", type: "boolean", help: "print JSON instead of a table" };

const commands: Record<string, Command> = {
  replicate: {
    summary: "stream databases' WAL to their destinations",
    usage: "walship replicate [flags] [DB_PATH REPLICA_URL [REPLICA_URL...]]",
    description:
      "Runs until SIGTERM or SIGINT, then syncs once more and exits 0. With DB_PATH and URLs no config file\n" +
      "is read and defaults apply. With -exec the command runs as a child; replication stops when it exits.",
    flags: [
      ...configFlags,
      {
        name: "exec",
        type: "string",
        metavar: "CMD",
        help: "run CMD as a child process (shell words) while replicating",
      },
      {
        name: "log-format",
        type: "string",
        metavar: "text|json",
        help: "override the config's logging.type",
      },
    ],
    run: runReplicate,
  },
  restore: {
    summary: "restore a database from a destination",
    usage: "walship restore [flags] DB_PATH|REPLICA_URL",
    description:
      "Restores the latest state, an index, or the state at a time. The result is checked with\n" +
      "PRAGMA integrity_check before it is renamed into place; an existing database is never replaced\n" +
      "unless -overwrite is given (it is then kept as <db>.pre-restore-<time>).",
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
  },
  snapshots: {
    summary: "list snapshots",
    usage: "walship snapshots [flags] DB_PATH|REPLICA_URL",
    description: "Lists the snapshots of every generation, sorted by generation and index.",
    flags: [...configFlags, replicaFlag, jsonFlag],
    run: (f, a) => runListing("snapshots", f, a),
  },
  generations: {
    summary: "list generations",
    usage: "walship generations [flags] DB_PATH|REPLICA_URL",
    description: "Lists generations with their time span and how far each lags the database.",
    flags: [...configFlags, replicaFlag, jsonFlag],
    run: (f, a) => runListing("generations", f, a),
  },
  wal: {
    summary: "list WAL segments",
    usage: "walship wal [flags] DB_PATH|REPLICA_URL",
    description: "Lists WAL segments, sorted by generation, index and offset.",
    flags: [
      ...configFlags,
      replicaFlag,
      { name: "generation", type: "string", metavar: "ID", help: "only this generation" },
      jsonFlag,
    ],
    run: (f, a) => runListing("wal", f, a),
  },
  databases: {
    summary: "list the databases in the config",
    usage: "walship databases [flags]",
    description: "Lists each configured database and its destinations.",
    flags: [...configFlags, jsonFlag],
    run: runDatabases,
  },
  version: {
    summary: "print the version",
    usage: "walship version",
    description: "Prints the version of this build.",
    flags: [],
    run: async () => {
      process.stdout.write(`${VERSION}\n`);
      return 0;
    },
  },
};

function usage(): string {
  const names = Object.keys(commands);
  const w = Math.max(...names.map((n) => n.length)) + 2;
  return [
    "walship: SQLite replication to object storage, Litestream v0.3-compatible, and its Kubernetes operator.",
    "",
    "Usage: walship <command> [flags] [arguments]",
    "",
    "Commands:",
    `  ${"operator".padEnd(w)}run the Kubernetes operator (SqliteReplica, SqliteRestore)`,
    ...names.map((n) => `  ${n.padEnd(w)}${commands[n]!.summary}`),
    "",
    "Run 'walship <command> -h' for a command's flags.",
  ].join("\n");
}

function commandHelp(c: Command): string {
  return [
    `Usage: ${c.usage}`,
    "",
    c.description,
    ...(c.flags.length ? ["", "Flags:", flagHelp(c.flags)] : []),
  ].join("\n");
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === "help" || name === "-h" || name === "--help") {
    process.stdout.write(`${usage()}\n`);
    return name ? 0 : 1;
  }
  if (name === "-version" || name === "--version") return commands.version!.run({}, []);
  if (name === "operator") return runOperatorCommand(rest);
  const cmd = commands[name];
  if (!cmd) {
    // Exit 1, as Litestream does for an unknown command.
    process.stderr.write(`walship ${name}: unknown command [${ErrorCodes.USAGE}]\n\n${usage()}\n`);
    return 1;
  }
  try {
    const { values, args } = parseFlags(name, cmd.flags, rest);
    return await cmd.run(values, args);
  } catch (err) {
    if (err instanceof WalshipError && err.code === ErrorCodes.USAGE && err.details.help) {
      process.stdout.write(`${commandHelp(cmd)}\n`);
      return 0;
    }
    const code = err instanceof WalshipError ? err.code : "WALSHIP_ERR_INTERNAL";
    process.stderr.write(`walship ${name}: ${describeError(err)} [${code}]\n`);
    if (err instanceof WalshipError && err.code === ErrorCodes.USAGE)
      process.stderr.write(`\n${commandHelp(cmd)}\n`);
    return err instanceof WalshipError && err.code === ErrorCodes.USAGE ? 2 : 1;
  } finally {
    closeClients();
  }
}

/** The clients a read command opened: closed when it ends (an SSH connection would keep the process up). */
const opened: ReplicaClient[] = [];

function closeClients(): void {
  for (const c of opened.splice(0)) c.close?.();
}

// --- operator --------------------------------------------------------------------------------------

/** The operator role: loaded only when asked for, so the replicator never loads the Kubernetes client. */
async function runOperatorCommand(argv: string[]): Promise<number> {
  if (argv.some((a) => a === "-h" || a === "--help" || a === "-help")) {
    const { OPERATOR_FLAGS } = await import("./operator/options.ts");
    process.stdout.write(
      `Usage: walship operator [flags]\n\nWatches SqliteReplica and SqliteRestore resources and wires the replicator into\nStatefulSets. Runs until SIGTERM or SIGINT. See docs/operator.md.\n\nFlags:\n${flagHelp(OPERATOR_FLAGS)}\n`,
    );
    return 0;
  }
  const op = await import("./operator/main.ts");
  if (takeEarlySignals().length > 0) return 0;
  try {
    return await op.runOperator(argv);
  } catch (err) {
    const code = err instanceof WalshipError ? err.code : "WALSHIP_ERR_INTERNAL";
    process.stderr.write(`walship operator: ${describeError(err)} [${code}]\n`);
    return err instanceof WalshipError && err.code === ErrorCodes.USAGE ? 2 : 1;
  }
}

// --- config resolution ------------------------------------------------------------------------------

async function readConfig(flags: Record<string, string | boolean | undefined>): Promise<Config> {
  const file = typeof flags.config === "string" ? flags.config : defaultConfigPath(process.env);
  const config = await loadConfig(file, { expandEnv: !flags["no-expand-env"], env: process.env });
  for (const w of config.warnings) process.stderr.write(`walship: warning: ${w}\n`);
  return config;
}

/** The destinations for a DB path (from the config) or a replica URL. */
async function resolveTarget(
  flags: Record<string, string | boolean | undefined>,
  args: string[],
): Promise<{ clients: NamedClient[]; dbPath?: string; replicas: ReplicaConfig[] }> {
  const target = args[0];
  if (!target) throw new WalshipError(ErrorCodes.USAGE, "a database path or replica URL is required");
  if (args.length > 1)
    throw new WalshipError(ErrorCodes.USAGE, `unexpected arguments: ${args.slice(1).join(" ")}`);
  let replicas: ReplicaConfig[];
  let dbPath: string | undefined;
  if (isUrl(target)) {
    if (typeof flags.config === "string") {
      throw new WalshipError(ErrorCodes.USAGE, "cannot use a replica URL together with -config");
    }
    replicas = [replicaFromUrl(target)];
  } else {
    const config = await readConfig(flags);
    const db = findDb(config, target);
    if (!db) {
      throw new WalshipError(
        ErrorCodes.CONFIG,
        `database ${path.resolve(target)} is not in config ${config.source ?? ""}`,
      );
    }
    dbPath = db.path;
    replicas = db.replicas;
  }
  if (typeof flags.replica === "string") {
    replicas = replicas.filter((r) => r.name === flags.replica);
    if (replicas.length === 0)
      throw new WalshipError(ErrorCodes.USAGE, `no replica named "${flags.replica}"`);
  }
  const clients = replicas.map((r, i) => {
    const client = createReplicaClient(r, `replicas[${i}]`);
    opened.push(client);
    return { name: r.name, client };
  });
  return { clients, replicas, ...(dbPath ? { dbPath } : {}) };
}

function logFormat(flag: string | boolean | undefined, fallback?: LogFormat): LogFormat {
  if (flag === "json" || flag === "text") return flag;
  if (flag !== undefined)
    throw new WalshipError(ErrorCodes.USAGE, `-log-format must be text or json, not "${String(flag)}"`);
  return fallback ?? (process.stderr.isTTY ? "text" : "json");
}

// --- replicate ----------------------------------------------------------------------------------------

async function runReplicate(
  flags: Record<string, string | boolean | undefined>,
  args: string[],
): Promise<number> {
  // Signals first: one that arrives while starting up is honoured once replication is running.
  let child: ReturnType<typeof spawn> | undefined;
  let onSignal: (sig: NodeJS.Signals) => void = () => undefined;
  const early: NodeJS.Signals[] = [];
  for (const sig of ["SIGTERM", "SIGINT"] as const) {
    process.on(sig, () => {
      if (child && child.exitCode === null) child.kill(sig);
      else if (onSignal) onSignal(sig);
    });
  }
  onSignal = (sig) => early.push(sig);
  early.push(...takeEarlySignals());
  let config: Config;
  if (args.length > 0) {
    if (typeof flags.config === "string")
      throw new WalshipError(ErrorCodes.USAGE, "cannot use -config with a DB path and URLs");
    if (args.length < 2)
      throw new WalshipError(ErrorCodes.USAGE, "a database path needs at least one replica URL");
    config = configFromArgs(args[0]!, args.slice(1));
  } else {
    config = await readConfig(flags);
  }
  if (config.dbs.length === 0)
    throw new WalshipError(ErrorCodes.CONFIG, "no databases configured (dbs is empty)");
  const log = createLogger({
    level: config.logging.level,
    format: logFormat(flags["log-format"], config.logging.type),
    stderr: config.logging.stderr,
  });
  log.info({ version: VERSION }, "walship starting");
  const replication = await startReplication(config, log);
  let server: ReplicatorServer | undefined;
  if (config.addr) {
    try {
      server = await startServer(config.addr, replication, { log, version: VERSION });
    } catch (err) {
      await replication.stop({ finalSyncTimeoutMs: config.shutdownSyncTimeoutMs });
      throw err;
    }
  }

  const execCmd = typeof flags.exec === "string" ? flags.exec : config.exec;
  let exitCode = 0;
  const stopped = Promise.withResolvers<void>();
  let stopping = false;
  const shutdown = async (reason: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ reason }, "shutting down; final sync");
    await replication.stop({ finalSyncTimeoutMs: config.shutdownSyncTimeoutMs });
    await server?.close();
    log.info({}, "stopped");
    stopped.resolve();
  };
  onSignal = (sig) => void shutdown(sig);
  if (early.length > 0) {
    void shutdown(early[0]!);
  } else if (execCmd) {
    const words = splitShellWords(execCmd);
    child = spawn(words[0]!, words.slice(1), { stdio: "inherit", env: process.env });
    child.on("error", (err) => {
      log.error({ err: describeError(err), exec: execCmd }, "exec failed");
      exitCode = 1;
      void shutdown("exec failed");
    });
    child.on("exit", (code, signal) => {
      exitCode = code ?? (signal ? 128 : 1);
      log.info({ code, signal }, "exec command exited");
      void shutdown("exec exited");
    });
  }
  await stopped.promise;
  return exitCode;
}

/** Splits a command line into words: whitespace separated, with single and double quotes and backslashes. */
export function splitShellWords(s: string): string[] {
  const words: string[] = [];
  let cur = "";
  let quote: '"' | "'" | undefined;
  let inWord = false;
  for (let i = 0; i < s.length; i++) {
    const ch = s[i]!;
    if (quote) {
      if (ch === quote) quote = undefined;
      else if (ch === "\\" && quote === '"' && i + 1 < s.length) cur += s[++i];
      else cur += ch;
    } else if (ch === "'" || ch === '"') {
      quote = ch;
      inWord = true;
    } else if (ch === "\\" && i + 1 < s.length) {
      cur += s[++i];
      inWord = true;
    } else if (/\s/.test(ch)) {
      if (inWord) words.push(cur);
      cur = "";
      inWord = false;
    } else {
      cur += ch;
      inWord = true;
    }
  }
  if (quote) throw new WalshipError(ErrorCodes.CONFIG, `exec: unterminated ${quote} quote in "${s}"`);
  if (inWord) words.push(cur);
  if (words.length === 0) throw new WalshipError(ErrorCodes.CONFIG, "exec: empty command");
  return words;
}

// --- restore -------------------------------------------------------------------------------------------

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
  const { clients, dbPath } = await resolveTarget(flags, args);
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
  if (flags["refuse-if-replica-exists"]) return refuseIfReplicaExists(clients, path.resolve(output), log);
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
 * begin a new history over them. Exits 0 when the database exists or there is no backup.
 */
async function refuseIfReplicaExists(clients: NamedClient[], db: string, log: Logger): Promise<number> {
  const { stat } = await import("node:fs/promises");
  if (
    await stat(db).then(
      () => true,
      () => false,
    )
  ) {
    log.info({ path: db }, "database exists");
    return 0;
  }
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

// --- listings --------------------------------------------------------------------------------------------

async function runListing(
  kind: "snapshots" | "generations" | "wal",
  flags: Record<string, string | boolean | undefined>,
  args: string[],
): Promise<number> {
  const { clients, dbPath } = await resolveTarget(flags, args);
  const rows: Array<Record<string, string | number>> = [];
  for (const { name, client } of clients) {
    for (const gen of await client.generations()) {
      if (kind === "wal" && typeof flags.generation === "string" && gen !== flags.generation) continue;
      if (kind === "snapshots") {
        for (const s of await client.snapshots(gen)) {
          rows.push({
            replica: name,
            generation: gen,
            index: s.index,
            size: s.size,
            created: isoSeconds(s.createdAt),
          });
        }
      } else if (kind === "wal") {
        for (const s of await client.walSegments(gen)) {
          rows.push({
            replica: name,
            generation: gen,
            index: s.index,
            offset: s.offset,
            size: s.size,
            created: isoSeconds(s.createdAt),
          });
        }
      } else {
        const span = timeSpan(await client.snapshots(gen), await client.walSegments(gen));
        if (!span) continue;
        const { start, end } = span;
        const ref = dbPath ? await dbModTime(dbPath) : Date.now();
        rows.push({
          name,
          generation: gen,
          lag: formatLag(ref - end),
          start: isoSeconds(new Date(start)),
          end: isoSeconds(new Date(end)),
        });
      }
    }
  }
  if (flags.json) {
    process.stdout.write(`${JSON.stringify(rows, null, 2)}\n`);
  } else {
    const header =
      kind === "snapshots"
        ? ["replica", "generation", "index", "size", "created"]
        : kind === "wal"
          ? ["replica", "generation", "index", "offset", "size", "created"]
          : ["name", "generation", "lag", "start", "end"];
    process.stdout.write(
      `${table(
        header,
        rows.map((r) => header.map((h) => String(r[h]))),
      )}\n`,
    );
  }
  return 0;
}

async function dbModTime(dbPath: string): Promise<number> {
  const { stat } = await import("node:fs/promises");
  const times = await Promise.all(
    [dbPath, `${dbPath}-wal`].map((p) =>
      stat(p).then(
        (s) => s.mtimeMs,
        () => 0,
      ),
    ),
  );
  return Math.max(...times) || Date.now();
}

function formatLag(ms: number): string {
  const neg = ms < 0 ? "-" : "";
  const a = Math.abs(ms);
  if (a >= 10_000) return `${neg}${Math.floor(a / 1000)}s`;
  if (a >= 1000) return `${neg}${(Math.floor(a / 100) / 10).toFixed(1)}s`;
  return `${neg}${Math.floor(a)}ms`;
}

async function runDatabases(
  flags: Record<string, string | boolean | undefined>,
  args: string[],
): Promise<number> {
  if (args.length > 0) throw new WalshipError(ErrorCodes.USAGE, `unexpected arguments: ${args.join(" ")}`);
  const config = await readConfig(flags);
  const rows = config.dbs.map((d) => ({ path: d.path, replicas: d.replicas.map((r) => r.name).join(",") }));
  if (flags.json) process.stdout.write(`${JSON.stringify(rows, null, 2)}\n`);
  else
    process.stdout.write(
      `${table(
        ["path", "replicas"],
        rows.map((r) => [r.path, r.replicas]),
      )}\n`,
    );
  return 0;
}

function readVersion(): string {
  try {
    const here = path.dirname(fileURLToPath(import.meta.url));
    const pkg = JSON.parse(readFileSync(path.join(here, "..", "package.json"), "utf8")) as {
      version: string;
    };
    return `v${pkg.version}`;
  } catch {
    return "(development build)";
  }
}

export type { Logger };
