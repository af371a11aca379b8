/**
 * Child processes and temporary directories for tests, with cleanup that survives failed tests.
 *
 * Every child started here runs in its own process group (and, where util-linux `setpriv` is present,
 * with a parent-death signal, so it dies even if the test process is SIGKILLed). `stop()` signals the
 * whole group. A process-wide hook kills every remaining group and removes every temporary directory
 * on exit (an uncaught exception included) and on SIGINT/SIGTERM/SIGHUP, so no orphan survives a test
 * file.
 *
 * Output of each child goes to a log file (in its temp dir, or the dir given); when a child dies
 * early, errors carry the tail of that log. Set WALSHIP_KEEP_TMP=1 to keep temp dirs (and logs).
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import {
  closeSync,
  existsSync,
  fstatSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readSync,
  rmSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";

export type InfraErrorCode =
  /** A binary from test/infra/install is missing from the cache. */
  | "INFRA_MISSING_BINARY"
  /** A managed process exited while it was expected to run. */
  | "INFRA_PROCESS_EXITED"
  /** waitFor() gave up. */
  | "INFRA_TIMEOUT"
  /** A command run by runCommand() exited non-zero. */
  | "INFRA_COMMAND_FAILED";

/** Errors of the test infrastructure itself (not of Walship); tests may assert on `code`. */
export class InfraError extends Error {
  readonly code: InfraErrorCode;
  constructor(code: InfraErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = "InfraError";
    this.code = code;
  }
}

export interface SpawnOptions {
  /** A label for logs and errors; default: the command's basename. */
  name?: string;
  cwd?: string;
  /** Added to (and overriding) process.env, unless `replaceEnv` is set. */
  env?: Record<string, string | undefined>;
  /** Use `env` as the whole environment instead of adding to process.env. */
  replaceEnv?: boolean;
  /** Where stdout and stderr go (appended). Default: `<logDir>/<name>.log`. */
  logFile?: string;
  /** Directory for the default log file. Default: a fresh temp dir removed at exit. */
  logDir?: string;
}

export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface ManagedProcess {
  readonly name: string;
  readonly pid: number;
  readonly child: ChildProcess;
  readonly logFile: string;
  /** Resolves when the process has exited (never rejects). */
  readonly exited: Promise<ExitInfo>;
  /** Set once the process has exited. */
  readonly exitInfo: ExitInfo | undefined;
  /** Signals the whole process group now (default SIGTERM). */
  kill(signal?: NodeJS.Signals): void;
  /** SIGTERM (or `signal`) to the group, SIGKILL after `graceMs` (default 10 s); waits for the exit. */
  stop(opts?: { signal?: NodeJS.Signals; graceMs?: number }): Promise<ExitInfo>;
  /** The last `lines` lines of the log file. */
  logTail(lines?: number): string;
  /** Throws INFRA_PROCESS_EXITED (with the log tail) if the process has exited. */
  assertRunning(): void;
}

const live = new Set<Managed>();
const tempDirs = new Set<string>();
let hooksInstalled = false;
let pdeathsig: boolean | undefined;

function keepTmp(): boolean {
  return process.env.WALSHIP_KEEP_TMP === "1";
}

function hasSetprivPdeathsig(): boolean {
  if (pdeathsig === undefined) {
    try {
      const help = execFileSync("setpriv", ["--help"], {
        encoding: "utf8",
        stdio: ["ignore", "pipe", "ignore"],
      });
      pdeathsig = help.includes("--pdeathsig");
    } catch {
      pdeathsig = false;
    }
  }
  return pdeathsig;
}

function killGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    // ESRCH: the group is gone already.
  }
}

/** Synchronous last-resort cleanup: kill every group, remove every temp dir. */
function cleanupSync(): void {
  for (const p of live) killGroup(p.pid, "SIGKILL");
  live.clear();
  if (!keepTmp()) {
    for (const d of tempDirs) rmSync(d, { recursive: true, force: true });
    tempDirs.clear();
  }
}

function installHooks(): void {
  if (hooksInstalled) return;
  hooksInstalled = true;
  process.on("exit", cleanupSync);
  for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
    process.once(sig, () => {
      cleanupSync();
      process.kill(process.pid, sig);
    });
  }
}

let swept = false;

/** Removes temp dirs left by test processes that were SIGKILLed (their pid is in the name and gone). */
function sweepStaleTempDirs(): void {
  if (swept || keepTmp()) return;
  swept = true;
  for (const name of readdirSync(tmpdir())) {
    const m = /^walship-p(\d+)-/.exec(name);
    if (!m) continue;
    try {
      process.kill(Number(m[1]), 0);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ESRCH")
        rmSync(join(tmpdir(), name), { recursive: true, force: true });
    }
  }
}

/**
 * A fresh directory `walship-p<pid>-<prefix>-XXXXXX` under the OS temp dir, removed at process exit
 * (or earlier by `removeTempDir`); a later test process removes it if this one was SIGKILLed.
 */
export function makeTempDir(prefix: string): string {
  installHooks();
  sweepStaleTempDirs();
  // Kept dirs are named so that no sweep removes them.
  const owner = keepTmp() ? "keep" : `p${process.pid}`;
  const dir = mkdtempSync(join(tmpdir(), `walship-${owner}-${prefix}-`));
  tempDirs.add(dir);
  return dir;
}

/** Removes a directory made by makeTempDir now (kept when WALSHIP_KEEP_TMP=1). */
export function removeTempDir(dir: string): void {
  tempDirs.delete(dir);
  if (!keepTmp()) rmSync(dir, { recursive: true, force: true });
}

/** The last `lines` lines of a file (reads at most the last 64 KiB); "" if it does not exist. */
export function fileTail(path: string, lines = 40): string {
  if (!existsSync(path)) return "";
  const fd = openSync(path, "r");
  try {
    const size = fstatSync(fd).size;
    const len = Math.min(size, 64 * 1024);
    const buf = Buffer.alloc(len);
    readSync(fd, buf, 0, len, size - len);
    return buf
      .toString("utf8")
      .split("\n")
      .slice(-lines - 1)
      .join("\n")
      .trimEnd();
  } finally {
    closeSync(fd);
  }
}

class Managed implements ManagedProcess {
  readonly name: string;
  readonly pid: number;
  readonly child: ChildProcess;
  readonly logFile: string;
  readonly exited: Promise<ExitInfo>;
  exitInfo: ExitInfo | undefined;

  constructor(name: string, child: ChildProcess, logFile: string) {
    if (child.pid === undefined) {
      throw new InfraError(
        "INFRA_PROCESS_EXITED",
        `spawn ${name}: the process did not start (missing binary?)`,
      );
    }
    this.name = name;
    this.pid = child.pid;
    this.child = child;
    this.logFile = logFile;
    this.exited = new Promise<ExitInfo>((resolve) => {
      child.once("exit", (code, signal) => {
        this.exitInfo = { code, signal };
        live.delete(this);
        // Anything the process left in its group goes too.
        killGroup(this.pid, "SIGKILL");
        resolve(this.exitInfo);
      });
    });
  }

  kill(signal: NodeJS.Signals = "SIGTERM"): void {
    if (this.exitInfo === undefined) killGroup(this.pid, signal);
  }

  async stop(opts?: { signal?: NodeJS.Signals; graceMs?: number }): Promise<ExitInfo> {
    if (this.exitInfo !== undefined) return this.exitInfo;
    this.kill(opts?.signal ?? "SIGTERM");
    const graceMs = opts?.graceMs ?? 10_000;
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<"timeout">((resolve) => {
      timer = setTimeout(() => resolve("timeout"), graceMs);
    });
    const first = await Promise.race([this.exited, timedOut]);
    clearTimeout(timer);
    if (first === "timeout") killGroup(this.pid, "SIGKILL");
    return this.exited;
  }

  logTail(lines = 40): string {
    return fileTail(this.logFile, lines);
  }

  describeExit(): string {
    const e = this.exitInfo;
    if (e === undefined) return `${this.name} (pid ${this.pid}) is running`;
    const how = e.signal !== null ? `signal ${e.signal}` : `code ${e.code}`;
    return `${this.name} (pid ${this.pid}) exited with ${how}; log ${this.logFile}:\n${indent(this.logTail())}`;
  }

  assertRunning(): void {
    if (this.exitInfo !== undefined) {
      throw new InfraError("INFRA_PROCESS_EXITED", `run ${this.name}: ${this.describeExit()}`);
    }
  }
}

function indent(text: string): string {
  return text
    .split("\n")
    .map((l) => `    | ${l}`)
    .join("\n");
}

/**
 * Starts `cmd args` in its own process group with stdout+stderr appended to a log file, tracked for
 * cleanup. stdin is /dev/null.
 */
export function spawnManaged(cmd: string, args: readonly string[], opts: SpawnOptions = {}): ManagedProcess {
  installHooks();
  const name = opts.name ?? basename(cmd);
  const logFile =
    opts.logFile ?? join(opts.logDir ?? makeTempDir(`log-${safeName(name)}`), `${safeName(name)}.log`);
  const fd = openSync(logFile, "a");
  const env = opts.replaceEnv ? { ...opts.env } : { ...process.env, ...opts.env };
  let file = cmd;
  let argv = [...args];
  if (hasSetprivPdeathsig()) {
    // setpriv execs cmd in place (same pid); the kernel sends SIGKILL to it when we die.
    file = "setpriv";
    argv = ["--pdeathsig", "KILL", "--", cmd, ...args];
  }
  let child: ChildProcess;
  try {
    child = spawn(file, argv, { cwd: opts.cwd, env, detached: true, stdio: ["ignore", fd, fd] });
  } finally {
    closeSync(fd);
  }
  const managed = new Managed(name, child, logFile);
  live.add(managed);
  // A failed exec shows up as an exit with code 127 (setpriv) or here; either way exitInfo is set.
  child.on("error", () => {});
  return managed;
}

function safeName(name: string): string {
  return name.replace(/[^A-Za-z0-9._-]/g, "_");
}

/** Stops every process started by spawnManaged that is still running. */
export async function stopAll(graceMs = 5_000): Promise<void> {
  await Promise.all([...live].map((p) => p.stop({ graceMs })));
}

export interface WaitForOptions {
  /** What is awaited, for the error message ("minio ready"). */
  what: string;
  timeoutMs?: number;
  intervalMs?: number;
  /** Processes that must stay alive meanwhile: if one exits, fail at once with its log tail. */
  processes?: readonly ManagedProcess[];
}

/**
 * Calls `fn` every `intervalMs` (default 100) until it returns a value other than false, null or
 * undefined, and returns that value. A throw from `fn` counts as "not yet" and is reported on timeout.
 * Fails with INFRA_TIMEOUT after `timeoutMs` (default 30 s), or INFRA_PROCESS_EXITED when a watched
 * process dies.
 */
export async function waitFor<T>(
  fn: () => T | false | null | undefined | Promise<T | false | null | undefined>,
  opts: WaitForOptions,
): Promise<T> {
  const timeoutMs = opts.timeoutMs ?? 30_000;
  const intervalMs = opts.intervalMs ?? 100;
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    for (const p of opts.processes ?? []) {
      if (p.exitInfo !== undefined) {
        const desc = p instanceof Managed ? p.describeExit() : `${p.name} exited`;
        throw new InfraError("INFRA_PROCESS_EXITED", `wait for ${opts.what}: ${desc}`);
      }
    }
    try {
      const v = await fn();
      if (v !== false && v !== null && v !== undefined) return v;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() >= deadline) {
      const last = lastError === undefined ? "" : ` (last error: ${errText(lastError)})`;
      const logs = (opts.processes ?? [])
        .map((p) => `\n  ${p.name} log ${p.logFile}:\n${indent(p.logTail(20))}`)
        .join("");
      throw new InfraError(
        "INFRA_TIMEOUT",
        `wait for ${opts.what}: timed out after ${timeoutMs} ms${last}${logs}`,
        {
          cause: lastError,
        },
      );
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

function errText(err: unknown): string {
  if (err instanceof Error) {
    const cause = err.cause instanceof Error ? `: ${err.cause.message}` : "";
    return `${err.message}${cause}`;
  }
  return String(err);
}

export interface RunOptions {
  cwd?: string;
  env?: Record<string, string | undefined>;
  /** Written to stdin. */
  input?: string | Buffer;
  /** Kill (SIGKILL to the group) after this long; default 120 s. */
  timeoutMs?: number;
  /** Return a non-zero exit instead of throwing INFRA_COMMAND_FAILED. */
  allowFailure?: boolean;
}

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs a command to completion, capturing its output; tracked for cleanup like spawnManaged. */
export function runCommand(cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  installHooks();
  const child = spawn(cmd, [...args], {
    cwd: opts.cwd,
    env: { ...process.env, ...opts.env },
    detached: true,
    stdio: ["pipe", "pipe", "pipe"],
  });
  const tracked = child.pid === undefined ? undefined : new Managed(basename(cmd), child, "/dev/null");
  if (tracked) live.add(tracked);
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  child.stdout?.on("data", (b: Buffer) => out.push(b));
  child.stderr?.on("data", (b: Buffer) => err.push(b));
  child.stdin?.on("error", () => {});
  child.stdin?.end(opts.input ?? "");
  const timeoutMs = opts.timeoutMs ?? 120_000;
  return new Promise<RunResult>((resolve, reject) => {
    const timer = setTimeout(() => {
      if (child.pid !== undefined) killGroup(child.pid, "SIGKILL");
    }, timeoutMs);
    child.once("error", (e) => {
      clearTimeout(timer);
      if (tracked) live.delete(tracked);
      reject(new InfraError("INFRA_COMMAND_FAILED", `run ${cmd}: ${e.message}`, { cause: e }));
    });
    child.once("close", (code, signal) => {
      clearTimeout(timer);
      if (tracked) live.delete(tracked);
      const res: RunResult = {
        code,
        signal,
        stdout: Buffer.concat(out).toString("utf8"),
        stderr: Buffer.concat(err).toString("utf8"),
      };
      if (code === 0 || opts.allowFailure) {
        resolve(res);
        return;
      }
      const how = signal !== null ? `signal ${signal}` : `code ${code}`;
      const tail = (res.stderr.trim() || res.stdout.trim()).split("\n").slice(-30).join("\n");
      reject(
        new InfraError(
          "INFRA_COMMAND_FAILED",
          `run ${basename(cmd)} ${args.join(" ")}: exited with ${how}${signal === "SIGKILL" ? ` (timeout ${timeoutMs} ms?)` : ""}:\n${indent(tail)}`,
        ),
      );
    });
  });
}
