/**
 * walship: one CLI, two roles. The replicator commands (replicate, restore, snapshots, generations,
 * wal, databases) follow Litestream v0.3's command line; `operator` runs the Kubernetes controller.
 * One file per command in cli/ (as Litestream's cmd/): replicate.ts, restore.ts, list.ts (snapshots,
 * generations, wal, databases), operator.ts, version.ts; what they share is in cli/common.ts.
 */
import { closeClients } from "./cli/clients.ts";
import type { Command } from "./cli/common.ts";
import { applyEnvCredentials } from "./replicator/config/env.ts";
import { describeError, ErrorCodes, WalshipError } from "./shared/errors.ts";
import { flagHelp, parseFlags } from "./shared/flags.ts";

/**
 * Each command's one-line summary, and its module, loaded only when it runs: `walship version` reads
 * no replicator code, and a restore from a file replica no cloud SDK (the start-up figures are in
 * docs/benchmarks.md).
 */
const commands: Record<string, { summary: string; load: () => Promise<Command> }> = {
  replicate: {
    summary: "stream databases' WAL to their destinations",
    load: async () => (await import("./cli/replicate.ts")).replicateCommand,
  },
  restore: {
    summary: "restore a database from a destination",
    load: async () => (await import("./cli/restore.ts")).restoreCommand,
  },
  drill: {
    summary: "restore each destination into scratch space and check it (a restore drill)",
    load: async () => (await import("./cli/drill.ts")).drillCommand,
  },
  snapshots: {
    summary: "list snapshots",
    load: async () => (await import("./cli/list.ts")).snapshotsCommand,
  },
  generations: {
    summary: "list generations",
    load: async () => (await import("./cli/list.ts")).generationsCommand,
  },
  wal: { summary: "list WAL segments", load: async () => (await import("./cli/list.ts")).walCommand },
  databases: {
    summary: "list the databases in the config",
    load: async () => (await import("./cli/list.ts")).databasesCommand,
  },
  version: {
    summary: "print the version",
    load: async () => (await import("./cli/version.ts")).versionCommand,
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
  if (name === "-version" || name === "--version") return (await commands.version!.load()).run({}, []);
  if (name === "operator") return (await import("./cli/operator.ts")).runOperatorCommand(rest);
  const entry = commands[name];
  if (!entry) {
    // Exit 1, as Litestream does for an unknown command.
    process.stderr.write(`walship ${name}: unknown command [${ErrorCodes.USAGE}]\n\n${usage()}\n`);
    return 1;
  }
  // As Litestream's main does: LITESTREAM_ACCESS_KEY_ID/SECRET stand for the AWS_* pair where unset.
  applyEnvCredentials(process.env);
  const cmd = await entry.load();
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
