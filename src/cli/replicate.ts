/** `walship replicate`: signals, the replication, the HTTP server and the `-exec` child. */

import { spawn } from "node:child_process";
import { type Config, configFromArgs } from "../replicator/config.ts";
import { lz4Implementation } from "../replicator/lz4/native.ts";
import { startReplication } from "../replicator/run.ts";
import type { ReplicatorServer } from "../replicator/server.ts";
import { takeEarlySignals } from "../shared/early-signals.ts";
import { describeError, ErrorCodes, WalshipError } from "../shared/errors.ts";
import { createLogger } from "../shared/log.ts";
import { type Command, configFlags, logFormat, readConfig } from "./common.ts";
import { VERSION } from "./version.ts";

export const replicateCommand: Command = {
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
};

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
  log.info({ version: VERSION, lz4: lz4Implementation() }, "walship starting");
  const replication = await startReplication(config, log);
  let server: ReplicatorServer | undefined;
  if (config.addr) {
    try {
      // Loaded only with an address: the server, its HTTP stack and its metrics are about 4 MiB
      // that a replicator without one would carry for nothing (docs/benchmarks.md, "The sidecar's
      // memory").
      const { startServer } = await import("../replicator/server.ts");
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
