/**
 * What the CLI's commands share: the Command shape, common flags, reading the config, and the
 * destinations of a target.
 */

import path from "node:path";
// The config modules one by one, not the config.ts barrel: a command given a replica URL must not load
// the YAML parser and the schema (parse.ts, imported when a config file is read).
import { findDb, replicaFromUrl } from "../replicator/config/args.ts";
import { createReplicaClient } from "../replicator/config/clients.ts";
import { defaultConfigPath } from "../replicator/config/env.ts";
import type { Config, ReplicaConfig } from "../replicator/config/types.ts";
import { isUrl } from "../replicator/config/url.ts";
import type { NamedClient } from "../replicator/restore.ts";
import { ErrorCodes, WalshipError } from "../shared/errors.ts";
import type { FlagSpec } from "../shared/flags.ts";
import type { LogFormat } from "../shared/log.ts";
import { opened } from "./clients.ts";

/** A command's help and its run; its one-line summary is in cli.ts (read without loading it). */
export interface Command {
  usage: string;
  description: string;
  flags: FlagSpec[];
  run(flags: Record<string, string | boolean | undefined>, args: string[]): Promise<number>;
}

export const configFlags: FlagSpec[] = [
  {
    name: "config",
    type: "string",
    metavar: "PATH",
    help: "config file (default $WALSHIP_CONFIG, $LITESTREAM_CONFIG or /etc/litestream.yml)",
  },
  { name: "no-expand-env", type: "boolean", help: "do not expand $VARS in the config file" },
];
export const replicaFlag: FlagSpec = {
  name: "replica",
  type: "string",
  metavar: "NAME",
  help: "only this destination",
};
export const jsonFlag: FlagSpec = { name: "json", type: "boolean", help: "print JSON instead of a table" };

export async function readConfig(flags: Record<string, string | boolean | undefined>): Promise<Config> {
  const file = typeof flags.config === "string" ? flags.config : defaultConfigPath(process.env);
  const { loadConfig } = await import("../replicator/config/parse.ts");
  const config = await loadConfig(file, { expandEnv: !flags["no-expand-env"], env: process.env });
  for (const w of config.warnings) process.stderr.write(`walship: warning: ${w}\n`);
  return config;
}

/** The destinations for a DB path (from the config) or a replica URL. */
export async function resolveTarget(
  flags: Record<string, string | boolean | undefined>,
  args: string[],
): Promise<{ clients: NamedClient[]; dbPath?: string; replicas: ReplicaConfig[] }> {
  const resolved = await resolveReplicas(flags, args);
  return { ...resolved, clients: await openClients(resolved.replicas) };
}

/**
 * The replicas of a DB path (from the config) or a replica URL, `-replica` applied; no client is
 * made and no destination's module loaded.
 */
export async function resolveReplicas(
  flags: Record<string, string | boolean | undefined>,
  args: string[],
): Promise<{ dbPath?: string; replicas: ReplicaConfig[] }> {
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
  return { replicas, ...(dbPath ? { dbPath } : {}) };
}

/** The clients of `replicas`, named `replicas[i]` in errors; closed by the CLI at exit. */
export async function openClients(replicas: ReplicaConfig[]): Promise<NamedClient[]> {
  const clients: NamedClient[] = [];
  for (const [i, r] of replicas.entries()) {
    const client = await createReplicaClient(r, `replicas[${i}]`);
    opened.push(client);
    clients.push({ name: r.name, client });
  }
  return clients;
}

export function logFormat(flag: string | boolean | undefined, fallback?: LogFormat): LogFormat {
  if (flag === "json" || flag === "text") return flag;
  if (flag !== undefined)
    throw new WalshipError(ErrorCodes.USAGE, `-log-format must be text or json, not "${String(flag)}"`);
  return fallback ?? (process.stderr.isTTY ? "text" : "json");
}
