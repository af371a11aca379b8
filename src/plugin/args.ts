/**
 * Flags as kubectl and its plugins take them (POSIX style, unlike the walship CLI's Go-style flags):
 * `--name value`, `--name=value`, `-n value`, `-nvalue`, booleans as `--wait` (or `--wait=false`),
 * flags before or after the positional arguments (`status app -n demo`), and `--` to end them. Pure.
 */
import { type DatabaseEntry, type SqliteReplicaSpec, selectDatabase } from "../api/v1alpha1/index.ts";
import { ErrorCodes, WalshipError } from "../shared/errors.ts";

export interface OptSpec {
  name: string;
  /** One letter: `-n`. */
  short?: string;
  type: "string" | "boolean";
  help: string;
  /** Shown in help as `--name VALUE`. */
  metavar?: string;
}

export interface ParsedArgs {
  values: Record<string, string | boolean | undefined>;
  args: string[];
}

/** kubectl's connection flags, which every command takes. */
export const GLOBAL_OPTS: OptSpec[] = [
  {
    name: "kubeconfig",
    type: "string",
    metavar: "PATH",
    help: "the kubeconfig file (default $KUBECONFIG, else ~/.kube/config)",
  },
  { name: "context", type: "string", metavar: "NAME", help: "the kubeconfig context to use" },
  {
    name: "namespace",
    short: "n",
    type: "string",
    metavar: "NS",
    help: "the namespace (default: the context's namespace, else default)",
  },
];

function usage(command: string, message: string): WalshipError {
  return new WalshipError(ErrorCodes.USAGE, `${message} (see 'kubectl walship ${command} -h')`);
}

export function parseArgs(command: string, specs: readonly OptSpec[], argv: readonly string[]): ParsedArgs {
  const long = new Map(specs.map((s) => [s.name, s]));
  const short = new Map(specs.filter((s) => s.short).map((s) => [s.short!, s]));
  const values: Record<string, string | boolean | undefined> = {};
  const args: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === "--") {
      args.push(...argv.slice(i + 1));
      break;
    }
    if (a === "-h" || a === "--help") {
      throw new WalshipError(ErrorCodes.USAGE, "help requested", { details: { help: true } });
    }
    if (!a.startsWith("-") || a === "-") {
      args.push(a);
      continue;
    }
    let spec: OptSpec | undefined;
    let inline: string | undefined;
    let shown: string;
    if (a.startsWith("--")) {
      const eq = a.indexOf("=");
      const name = eq >= 0 ? a.slice(2, eq) : a.slice(2);
      inline = eq >= 0 ? a.slice(eq + 1) : undefined;
      spec = long.get(name);
      shown = `--${name}`;
    } else {
      const letter = a.slice(1, 2);
      spec = short.get(letter);
      shown = `-${letter}`;
      if (a.length > 2) inline = a[2] === "=" ? a.slice(3) : a.slice(2);
    }
    if (!spec) throw usage(command, `unknown flag ${shown}`);
    if (spec.type === "boolean") {
      if (inline === undefined) {
        values[spec.name] = true;
        continue;
      }
      const v = inline.toLowerCase();
      if (!["true", "false", "1", "0"].includes(v)) {
        throw usage(command, `${shown} takes true or false, not "${inline}"`);
      }
      values[spec.name] = v === "true" || v === "1";
      continue;
    }
    if (inline !== undefined) {
      values[spec.name] = inline;
      continue;
    }
    const next = argv[i + 1];
    if (next === undefined) throw usage(command, `${shown} needs a value`);
    values[spec.name] = next;
    i++;
  }
  return { values, args };
}

/** The help lines of the flags, aligned: `  -n, --namespace NS   the namespace ...`. */
export function optHelp(specs: readonly OptSpec[]): string {
  const rows = specs.map((s) => {
    const flag = `${s.short ? `-${s.short}, ` : "    "}--${s.name}`;
    return [s.type === "boolean" ? flag : `${flag} ${s.metavar ?? "VALUE"}`, s.help] as const;
  });
  const width = Math.max(...rows.map(([l]) => l.length)) + 3;
  return rows.map(([l, h]) => `  ${l.padEnd(width)}${h}`).join("\n");
}

/** Exactly one positional argument, the SqliteReplica's name. */
export function oneName(command: string, args: readonly string[]): string {
  if (args.length === 0) throw usage(command, "the SqliteReplica's name is required");
  if (args.length > 1) throw usage(command, `unexpected arguments: ${args.slice(1).join(" ")}`);
  return args[0]!;
}

/** The database `--database` names (required when the SqliteReplica lists several); a usage error otherwise. */
export function pickDatabase(spec: SqliteReplicaSpec, replica: string, flag: unknown): DatabaseEntry {
  const db = selectDatabase(spec, typeof flag === "string" ? flag : undefined, replica, "--database");
  if ("problem" in db) throw new WalshipError(ErrorCodes.USAGE, db.problem);
  return db;
}
