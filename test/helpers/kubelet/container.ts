/**
 * One run of one container as a local process tree: its own process group, its own cgroup (when
 * cgroup v2 is writable), its own private mount namespace with the pod's volumes bind-mounted at
 * their real mountPaths, and stdout/stderr appended to a log file.
 */
import { type ChildProcess, spawn } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { CgroupTree, type HostTools } from "./host.ts";

export interface Mount {
  /** Host path (a directory or a file; a symlink is followed). */
  source: string;
  /** The mountPath the container sees. */
  target: string;
  readOnly: boolean;
}

export interface LaunchSpec {
  argv: string[];
  env: Record<string, string>;
  cwd: string;
  mounts: Mount[];
  logFile: string;
  /** Where the wrapper script is written. */
  scriptFile: string;
  /** The cgroup directory to join, if any. */
  cgroup: string | undefined;
}

export interface Exit {
  /** The exit code, or 128 + signal number when a signal ended the process. */
  code: number;
  signal: string | undefined;
  finishedAt: Date;
}

function q(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/** The shell script that joins the cgroup, mounts the volumes, enters the workdir and execs the command. */
function wrapperScript(tools: HostTools, spec: LaunchSpec): string {
  const lines = ["set -e"];
  if (spec.cgroup !== undefined) lines.push(`echo $$ > ${q(path.join(spec.cgroup, "cgroup.procs"))}`);
  const mounts = [...spec.mounts].sort((a, b) => a.target.split("/").length - b.target.split("/").length);
  for (const m of mounts) {
    lines.push(`${q(tools.mount)} --bind ${q(m.source)} ${q(m.target)}`);
    if (m.readOnly) lines.push(`${q(tools.mount)} -o remount,bind,ro ${q(m.target)}`);
  }
  lines.push(`cd ${q(spec.cwd)}`, `exec "$@"`);
  return `${lines.join("\n")}\n`;
}

export class ContainerProcess {
  readonly pid: number;
  readonly startedAt = new Date();
  readonly exited: Promise<Exit>;
  readonly cgroup: string | undefined;
  readonly env: Record<string, string>;
  #done = false;
  #termSent = false;
  readonly #tools: HostTools;

  private constructor(child: ChildProcess, tools: HostTools, spec: LaunchSpec) {
    this.#tools = tools;
    this.cgroup = spec.cgroup;
    this.env = spec.env;
    this.pid = child.pid ?? -1;
    this.exited = new Promise<Exit>((resolve) => {
      const finish = (code: number | null, signal: NodeJS.Signals | null): void => {
        if (this.#done) return;
        this.#done = true;
        // The main process is gone: nothing else of the container may survive it.
        this.#signalAll("SIGKILL");
        CgroupTree.killSync(this.cgroup);
        const signum = signal === null ? undefined : os.constants.signals[signal];
        resolve({
          code: code ?? 128 + (signum ?? 0),
          signal: signal ?? undefined,
          finishedAt: new Date(),
        });
        setTimeout(() => CgroupTree.remove(this.cgroup), 200).unref();
      };
      child.once("exit", finish);
      child.once("error", () => finish(127, null));
    });
  }

  static start(tools: HostTools, spec: LaunchSpec): ContainerProcess {
    fs.mkdirSync(path.dirname(spec.scriptFile), { recursive: true });
    fs.writeFileSync(spec.scriptFile, wrapperScript(tools, spec), { mode: 0o755 });
    fs.mkdirSync(path.dirname(spec.logFile), { recursive: true });
    const log = fs.openSync(spec.logFile, "a");
    try {
      const child = spawn(
        tools.setpriv,
        [
          "--pdeathsig",
          "KILL",
          "--",
          tools.unshare,
          "--mount",
          "--propagation",
          "private",
          "--",
          tools.sh,
          spec.scriptFile,
          ...spec.argv,
        ],
        { detached: true, env: spec.env, stdio: ["ignore", log, log], cwd: "/" },
      );
      return new ContainerProcess(child, tools, spec);
    } finally {
      fs.closeSync(log);
    }
  }

  get running(): boolean {
    return !this.#done;
  }

  #signalGroup(sig: NodeJS.Signals): void {
    try {
      if (this.pid > 0) process.kill(-this.pid, sig);
    } catch {
      // group gone
    }
  }

  #signalAll(sig: NodeJS.Signals): void {
    this.#signalGroup(sig);
    for (const pid of CgroupTree.pids(this.cgroup)) {
      try {
        process.kill(pid, sig);
      } catch {
        // gone
      }
    }
  }

  /**
   * Sends a signal to the container's process group, once per process (a second SIGTERM could hit a
   * process between its handler and its exit). SIGKILL also reaches processes that left the group.
   */
  signal(sig: NodeJS.Signals): void {
    if (this.#done) return;
    if (sig === "SIGKILL") this.#signalAll(sig);
    else this.#signalGroup(sig);
  }

  /** SIGKILLs everything now (synchronous; for exit hooks). */
  killSync(): void {
    this.#signalAll("SIGKILL");
    CgroupTree.killSync(this.cgroup);
  }

  /** SIGTERM, then SIGKILL at `deadline` (ms since epoch) if still running; resolves on exit. */
  async stop(deadline: number): Promise<Exit> {
    if (!this.#done) {
      if (!this.#termSent) this.signal("SIGTERM");
      this.#termSent = true;
      const wait = Math.max(0, deadline - Date.now());
      let timer: NodeJS.Timeout | undefined;
      const killed = new Promise<void>((resolve) => {
        timer = setTimeout(() => {
          this.killSync();
          resolve();
        }, wait);
      });
      await Promise.race([this.exited, killed]);
      clearTimeout(timer);
    }
    return this.exited;
  }

  /** Runs argv in this container's mount namespace with its env; resolves to the exit code and output. */
  exec(argv: string[], timeoutMs: number): Promise<{ code: number | null; stdout: string; stderr: string }> {
    return new Promise((resolve) => {
      const child = spawn(this.#tools.nsenter, ["--target", String(this.pid), "--mount", "--", ...argv], {
        env: this.env,
        stdio: ["ignore", "pipe", "pipe"],
        detached: true,
      });
      let stdout = "";
      let stderr = "";
      child.stdout?.on("data", (d: Buffer) => {
        stdout += d.toString();
      });
      child.stderr?.on("data", (d: Buffer) => {
        stderr += d.toString();
      });
      const timer = setTimeout(() => {
        try {
          if (child.pid !== undefined) process.kill(-child.pid, "SIGKILL");
        } catch {
          // gone
        }
      }, timeoutMs);
      child.once("error", (err) => {
        clearTimeout(timer);
        resolve({ code: null, stdout, stderr: stderr + String(err) });
      });
      child.once("close", (code) => {
        clearTimeout(timer);
        resolve({ code, stdout, stderr });
      });
    });
  }
}
