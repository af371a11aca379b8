/**
 * A memory cgroup for one process, so that it runs under the memory limit a pod gives it. Node sizes
 * V8's heap from the memory it may use (process.constrainedMemory(): the cgroup's limit, else the
 * machine's): on this 24 GiB machine an unconstrained replicator's young generation grows to 128 MiB
 * of semi-spaces, while under the sidecar's 384 MiB limit its heap limit is about 260 MiB and the
 * young generation a few MiB. A soak outside the limit measures a process no pod runs.
 *
 * `limitedCommand` wraps a command so that it joins the group before it execs (V8 reads the limit
 * at start, so a process moved in later keeps its sizes). cgroup v2 (memory.max) or v1's memory
 * controller (memory.limit_in_bytes), as root. Groups are named `walship-torture-<pid of the
 * torture run>`; `sweepMemoryGroups` removes those of runs that are gone (a crashed run's leftovers).
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync, writeFileSync } from "node:fs";
import path from "node:path";

const PREFIX = "walship-torture-";

/** The memory hierarchy's root: v2's unified one, or v1's memory controller; undefined without one. */
function memoryRoot(): { root: string; limitFile: string } | undefined {
  const v2 = "/sys/fs/cgroup";
  if (existsSync(path.join(v2, "cgroup.controllers"))) {
    const ctl = readFileSync(path.join(v2, "cgroup.controllers"), "utf8");
    return ctl.split(/\s+/).includes("memory") ? { root: v2, limitFile: "memory.max" } : undefined;
  }
  const v1 = "/sys/fs/cgroup/memory";
  return existsSync(path.join(v1, "memory.limit_in_bytes"))
    ? { root: v1, limitFile: "memory.limit_in_bytes" }
    : undefined;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Removes the groups of torture runs that no longer exist (only empty groups can be removed). */
export function sweepMemoryGroups(): string[] {
  const m = memoryRoot();
  if (!m) return [];
  const removed: string[] = [];
  for (const name of readdirSync(m.root)) {
    if (!name.startsWith(PREFIX)) continue;
    const pid = Number(name.slice(PREFIX.length).split("-")[0]);
    if (Number.isInteger(pid) && alive(pid)) continue;
    try {
      rmdirSync(path.join(m.root, name));
      removed.push(name);
    } catch {
      // still has a process in it: left for the next sweep
    }
  }
  return removed;
}

export interface MemoryGroup {
  dir: string;
  limitBytes: number;
  /** `cmd args` made to join the group first: `sh -c 'echo $$ > procs; exec "$0" "$@"' cmd args`. */
  wrap(cmd: string, args: readonly string[]): { cmd: string; args: string[] };
  /** Removes the group (once the process in it has exited). */
  remove(): void;
}

/**
 * A new memory group limited to `limitBytes`, or why there can be none here (not root, no memory
 * controller): the caller reports that rather than measure without the limit.
 */
export function memoryGroup(label: string, limitBytes: number): MemoryGroup | { unavailable: string } {
  if (process.getuid?.() !== 0) return { unavailable: "not root: cannot create a memory cgroup" };
  const m = memoryRoot();
  if (!m) return { unavailable: "no cgroup memory controller under /sys/fs/cgroup" };
  const dir = path.join(m.root, `${PREFIX}${process.pid}-${label}`);
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, m.limitFile), String(limitBytes));
  return {
    dir,
    limitBytes,
    wrap(cmd, args) {
      const procs = path.join(dir, "cgroup.procs");
      return { cmd: "/bin/sh", args: ["-c", `echo $$ > '${procs}' && exec "$0" "$@"`, cmd, ...args] };
    },
    remove() {
      try {
        rmdirSync(dir);
      } catch {
        // a process still in it; sweepMemoryGroups takes it later
      }
    },
  };
}

/** "384Mi", "512M", "1Gi", or bytes, as bytes. */
export function parseMemory(s: string): number {
  const m = /^(\d+)(Ki|Mi|Gi|K|M|G)?$/.exec(s.trim());
  if (!m) throw new Error(`not a memory size: ${JSON.stringify(s)} (e.g. 384Mi)`);
  const unit = { Ki: 1024, Mi: 1024 ** 2, Gi: 1024 ** 3, K: 1e3, M: 1e6, G: 1e9 }[m[2] ?? ""] ?? 1;
  return Number(m[1]) * unit;
}
