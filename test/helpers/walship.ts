/** Runs the built CLI (bin/walship) the way users do. */
import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

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
