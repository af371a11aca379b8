/** Runs the built CLI (bin/walship) the way users do. */
import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import {
  type DatabaseStatus,
  type ReplicatorStatus,
  ReplicatorStatusSchema,
} from "../../src/shared/protocol.ts";
import { waitFor } from "./proc.ts";

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
export const WALSHIP = path.join(ROOT, "bin/walship");

export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export async function walship(
  args: string[],
  opts: { env?: NodeJS.ProcessEnv; cwd?: string } = {},
): Promise<RunResult> {
  const child = spawn(WALSHIP, args, {
    env: { ...process.env, ...opts.env },
    cwd: opts.cwd,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (d: Buffer) => {
    stdout += d.toString();
  });
  child.stderr.on("data", (d: Buffer) => {
    stderr += d.toString();
  });
  const [code] = (await once(child, "exit")) as [number | null];
  return { code, stdout, stderr };
}

const running = new Set<ChildProcess>();
process.on("exit", () => {
  for (const c of running) c.kill("SIGKILL");
});

export interface Replicator {
  child: ChildProcess;
  output(): string;
  /** SIGTERM, then wait for the exit code. */
  stop(): Promise<number | null>;
  kill9(): Promise<void>;
}

export function startReplicator(
  args: string[],
  opts: {
    env?: NodeJS.ProcessEnv;
    /** Runs the command through this (e.g. a memory cgroup's `sh -c '…; exec'`); the pid stays the replicator's. */
    wrap?: (cmd: string, args: string[]) => { cmd: string; args: string[] };
  } = {},
): Replicator {
  const argv = ["replicate", "-log-format", "json", ...args];
  const run = opts.wrap ? opts.wrap(WALSHIP, argv) : { cmd: WALSHIP, args: argv };
  const child = spawn(run.cmd, run.args, {
    env: { ...process.env, ...opts.env },
    stdio: ["ignore", "pipe", "pipe"],
    detached: false,
  });
  running.add(child);
  let out = "";
  child.stdout!.on("data", (d: Buffer) => {
    out += d.toString();
  });
  child.stderr!.on("data", (d: Buffer) => {
    out += d.toString();
  });
  const exited = once(child, "exit").then(([code]) => {
    running.delete(child);
    return code as number | null;
  });
  return {
    child,
    output: () => out,
    async stop() {
      child.kill("SIGTERM");
      return exited;
    },
    async kill9() {
      child.kill("SIGKILL");
      await exited;
    },
  };
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** The replicator's /status at `base`, checked against its schema. */
export async function replicatorStatus(base: string): Promise<ReplicatorStatus> {
  return ReplicatorStatusSchema.parse(await (await fetch(`${base}/status`)).json());
}

/** The first database's part of the replicator's /status at `base`. */
export async function databaseStatus(base: string): Promise<DatabaseStatus> {
  return (await replicatorStatus(base)).databases[0]!;
}

/**
 * Waits until every commit made before this call is on every destination of the first database of
 * the replicator at `base`: a /status whose `walReadAt` is later than the call, with nothing pending
 * at any destination and `clear` true. Returns that status.
 *
 * "Nothing pending" alone is not enough: the replicator counts a commit as pending only once it has
 * read it from the WAL (on inotify's report, or the monitor interval), so a status read just after
 * the app commits can show nothing pending while that commit is nowhere yet (seen once in CI:
 * guardrails.test.ts read "all clear" just after its last writes and restored before the remote
 * destination had them). `walReadAt` says which commits the count covers (docs/metrics.md).
 */
export async function caughtUp(
  base: string,
  what: string,
  opts: {
    timeoutMs: number;
    clear?: (db: DatabaseStatus) => boolean | Promise<boolean>;
    /** The replicator serving `base`: if it exits, fail at once with its output instead of timing out. */
    replicator?: Replicator;
  },
): Promise<DatabaseStatus> {
  const rep = opts.replicator;
  const exited = () => rep !== undefined && (rep.child.exitCode !== null || rep.child.signalCode !== null);
  let since: number | undefined;
  const got = await waitFor(
    async () => {
      // A dead replicator's /status refuses the connection, which waitFor takes for "not yet".
      if (exited()) return "exited" as const;
      const doc = await replicatorStatus(base);
      // As docs/metrics.md tells users: the time of a document read after the last commit, on the
      // replicator's own clock; a read of the WAL that began after it saw every commit made before.
      // (That first document's own walReadAt is earlier than its time: it cannot be the answer.)
      if (since === undefined) {
        since = Date.parse(doc.time);
        return undefined;
      }
      const d = doc.databases[0]!;
      const readAfter = d.walReadAt !== undefined && Date.parse(d.walReadAt) > since;
      return readAfter &&
        d.replicas.every((r) => r.pendingTransactions === 0) &&
        (await (opts.clear?.(d) ?? true))
        ? d
        : undefined;
    },
    { what, timeoutMs: opts.timeoutMs, intervalMs: 200 },
  );
  if (got === "exited") {
    const c = rep!.child;
    throw new Error(
      `wait for ${what}: the replicator exited (${c.signalCode ?? `code ${c.exitCode}`}): ${rep!.output().slice(-2000)}`,
    );
  }
  return got;
}

/** A setting's value as a config writes it. */
type Value = string | number | boolean;

/**
 * The text of a config with one database and one file destination (`url: file://<replica>`), the
 * tests' usual shape: `dbKeys` and `replicaKeys` are written as given (e.g. `monitor-interval: 50ms`);
 * `top` is prepended (e.g. `addr: 127.0.0.1:9090`).
 */
export function fileReplicaConfig(
  db: string,
  replica: string,
  opts: { dbKeys?: Record<string, Value>; replicaKeys?: Record<string, Value>; top?: string } = {},
): string {
  const keys = (o: Record<string, Value> | undefined, indent: string) =>
    Object.entries(o ?? {})
      .map(([k, v]) => `${indent}${k}: ${String(v)}\n`)
      .join("");
  return (
    `${opts.top ? `${opts.top}\n` : ""}dbs:\n  - path: ${db}\n${keys(opts.dbKeys, "    ")}` +
    `    replicas:\n      - url: file://${replica}\n${keys(opts.replicaKeys, "        ")}`
  );
}

/** Writes a config as `<dir>/<file>` (walship.yml) and returns its path. */
export function writeConfig(dir: string, text: string, file = "walship.yml"): string {
  const cfg = path.join(dir, file);
  writeFileSync(cfg, text);
  return cfg;
}

/** Writes a config into `dir` and starts `walship replicate -config` on it. */
export function replicate(
  dir: string,
  text: string,
  opts: { env?: NodeJS.ProcessEnv; file?: string } = {},
): { cfg: string; rep: Replicator } {
  const cfg = writeConfig(dir, text, opts.file);
  return { cfg, rep: startReplicator(["-config", cfg], opts.env ? { env: opts.env } : {}) };
}
