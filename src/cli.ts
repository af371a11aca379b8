/**
 * walship: one CLI, two roles. The replicator commands (replicate, restore, snapshots, generations,
 * wal, databases) follow Litestream v0.3's command line; `operator` runs the Kubernetes controller.
 * One file per command in cli/ (as Litestream's cmd/): replicate.ts, restore.ts, list.ts (snapshots,
 * generations, wal, databases), operator.ts, version.ts; what they share is in cli/common.ts.
 */
import { type Command, closeClients } from "./cli/common.ts";
import { databasesCommand, generationsCommand, snapshotsCommand, walCommand } from "./cli/list.ts";
import { runOperatorCommand } from "./cli/operator.ts";
import { replicateCommand } from "./cli/replicate.ts";
import { restoreCommand } from "./cli/restore.ts";
import { versionCommand } from "./cli/version.ts";
import { describeError, ErrorCodes, WalshipError } from "./shared/errors.ts";
import { flagHelp, parseFlags } from "./shared/flags.ts";
import type { Logger } from "./shared/log.ts";

export { splitShellWords } from "./cli/replicate.ts";
export { parseTimestamp } from "./cli/restore.ts";
export { VERSION } from "./cli/version.ts";

const commands: Record<string, Command> = {
  replicate: replicateCommand,
  restore: restoreCommand,
  snapshots: snapshotsCommand,
  generations: generationsCommand,
  wal: walCommand,
  databases: databasesCommand,
  version: versionCommand,
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

export type { Logger };
