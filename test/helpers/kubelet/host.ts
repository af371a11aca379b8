/**
 * What the process kubelet needs from the machine: executables, a cgroup v2 directory per
 * container (to kill whole process trees), pod IPs claimed across concurrent kubelets, mount points
 * created on the host for mountPaths that do not exist yet, and a last-resort kill on exit.
 */
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { ErrorCodes, WalshipError } from "../../../src/shared/errors.ts";

export interface HostTools {
  sh: string;
  setpriv: string;
  unshare: string;
  nsenter: string;
  mount: string;
}

/** Finds an executable in PATH and the sbin directories, or throws naming it. */
export function findBin(name: string): string {
  const dirs = [...(process.env.PATH ?? "").split(":"), "/usr/sbin", "/sbin", "/usr/bin", "/bin"];
  for (const dir of dirs) {
    if (dir === "") continue;
    const p = path.join(dir, name);
    try {
      fs.accessSync(p, fs.constants.X_OK);
      return p;
    } catch {
      // next directory
    }
  }
  throw new WalshipError(ErrorCodes.CONFIG, `find executable: ${name} is not in PATH (install util-linux)`, {
    details: { executable: name },
  });
}

let checked: HostTools | undefined;

/**
 * Checks once per process that a private mount namespace with a bind mount works here (root,
 * util-linux), and returns the tools' paths.
 */
export function checkHost(): HostTools {
  if (checked !== undefined) return checked;
  if (process.getuid?.() !== 0) {
    throw new WalshipError(
      ErrorCodes.CONFIG,
      "check host: the process kubelet must run as root (bind mounts)",
    );
  }
  const tools: HostTools = {
    sh: findBin("sh"),
    setpriv: findBin("setpriv"),
    unshare: findBin("unshare"),
    nsenter: findBin("nsenter"),
    mount: findBin("mount"),
  };
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "kubelet-mountcheck-"));
  try {
    fs.mkdirSync(path.join(dir, "src"));
    fs.mkdirSync(path.join(dir, "dst"));
    fs.writeFileSync(path.join(dir, "src", "probe"), "ok");
    const script = `${tools.mount} --bind "$1/src" "$1/dst" && cat "$1/dst/probe"`;
    const out = execFileSync(
      tools.unshare,
      ["--mount", "--propagation", "private", "--", tools.sh, "-c", script, "sh", dir],
      { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] },
    );
    if (out !== "ok" || fs.readdirSync(path.join(dir, "dst")).length !== 0) {
      throw new Error(`bind mount check read ${JSON.stringify(out)} or leaked into the host namespace`);
    }
  } catch (err) {
    throw new WalshipError(ErrorCodes.CONFIG, "check host: a bind mount in a private mount namespace fails", {
      cause: err,
    });
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
  checked = tools;
  return tools;
}

/** The cgroup v2 mount point, or undefined (then only process groups are killed). */
function cgroup2Root(): string | undefined {
  let mounts: string;
  try {
    mounts = fs.readFileSync("/proc/self/mounts", "utf8");
  } catch {
    return undefined;
  }
  for (const line of mounts.split("\n")) {
    const [, mountPoint, type] = line.split(" ");
    if (type === "cgroup2" && mountPoint !== undefined) {
      try {
        fs.accessSync(mountPoint, fs.constants.W_OK);
        return mountPoint;
      } catch {
        return undefined;
      }
    }
  }
  return undefined;
}

/** One cgroup v2 directory per kubelet, with one child per container run. */
export class CgroupTree {
  readonly root: string | undefined;

  constructor(id: string) {
    const base = cgroup2Root();
    if (base === undefined) {
      this.root = undefined;
      return;
    }
    const dir = path.join(base, `walship-kubelet-${id}`);
    try {
      fs.mkdirSync(dir);
      fs.accessSync(path.join(dir, "cgroup.kill"));
      this.root = dir;
    } catch {
      this.root = undefined;
    }
  }

  /** Creates a child cgroup and returns its directory (undefined without cgroup support). */
  create(name: string): string | undefined {
    if (this.root === undefined) return undefined;
    const dir = path.join(this.root, name);
    fs.mkdirSync(dir, { recursive: true });
    return dir;
  }

  /** SIGKILLs every process in a cgroup (and its children). */
  static killSync(dir: string | undefined): void {
    if (dir === undefined) return;
    try {
      fs.writeFileSync(path.join(dir, "cgroup.kill"), "1");
    } catch {
      // already gone
    }
  }

  /** The process ids in a cgroup, its children included. */
  static pids(dir: string | undefined): number[] {
    if (dir === undefined) return [];
    const out: number[] = [];
    const walk = (d: string): void => {
      try {
        for (const s of fs.readFileSync(path.join(d, "cgroup.procs"), "utf8").split("\n")) {
          if (s !== "") out.push(Number(s));
        }
        for (const e of fs.readdirSync(d, { withFileTypes: true }))
          if (e.isDirectory()) walk(path.join(d, e.name));
      } catch {
        // gone
      }
    };
    walk(dir);
    return out;
  }

  /** Removes a cgroup directory tree once its processes are gone (best effort). */
  static remove(dir: string | undefined): void {
    if (dir === undefined) return;
    try {
      for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
        if (e.isDirectory()) CgroupTree.remove(path.join(dir, e.name));
      }
      fs.rmdirSync(dir);
    } catch {
      // still populated or already gone
    }
  }
}

/** Shared state of all kubelets on this machine (pod IP claims, created mount points). */
const registryRoot = fs.existsSync("/run")
  ? "/run/walship-kubelet"
  : path.join(os.tmpdir(), "walship-kubelet");

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** The owner id written into claims: pid plus a random part, so that each kubelet is distinct. */
export function newOwnerId(): string {
  return `${process.pid}-${randomBytes(4).toString("hex")}`;
}

function ownerAlive(owner: string): boolean {
  return alive(Number(owner.split("-")[0]));
}

/**
 * How pods get their addresses. `loopback`: 127.100.x.y, nothing changes on the host (Linux routes
 * all of 127/8 to lo) but EndpointSlices reject loopback addresses. `lo-alias`: 10.213.x.y/32 added
 * to `lo` for the pod's life (`ip addr`), valid in EndpointSlices, removed on release.
 */
export type PodNetwork = "loopback" | "lo-alias";

/** Claims pod IPs (x.y.0.2 onwards), exclusively across kubelets; a dead owner's claim is taken over. */
export class IpPool {
  readonly #dir = path.join(registryRoot, "ip");
  readonly #owner: string;
  readonly #prefix: string;
  readonly #ip: string | undefined;
  #next = 0;
  readonly #held = new Set<string>();

  constructor(owner: string, network: PodNetwork) {
    this.#owner = owner;
    this.#prefix = network === "lo-alias" ? "10.213" : "127.100";
    this.#ip = network === "lo-alias" ? findBin("ip") : undefined;
    fs.mkdirSync(this.#dir, { recursive: true });
  }

  #ipAddr(verb: "add" | "del", ip: string): void {
    if (this.#ip === undefined) return;
    try {
      execFileSync(this.#ip, ["addr", verb, `${ip}/32`, "dev", "lo"], {
        stdio: ["ignore", "ignore", "pipe"],
      });
    } catch (err) {
      const stderr = String((err as { stderr?: Buffer }).stderr ?? "");
      // add: already there (a dead owner's leftover); del: already gone.
      if (verb === "add" && !stderr.includes("File exists")) {
        throw new WalshipError(
          ErrorCodes.CONFIG,
          `add pod IP: ip addr add ${ip}/32 dev lo failed: ${stderr}`,
        );
      }
    }
  }

  claim(): string {
    for (let tries = 0; tries < 60000; tries++) {
      const n = this.#next++ % 60000;
      const ip = `${this.#prefix}.${Math.floor(n / 250)}.${(n % 250) + 2}`;
      const file = path.join(this.#dir, ip);
      try {
        fs.writeFileSync(file, this.#owner, { flag: "wx" });
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
        let owner = "";
        try {
          owner = fs.readFileSync(file, "utf8");
        } catch {
          // released meanwhile
        }
        if (owner !== "" && !ownerAlive(owner)) {
          fs.rmSync(file, { force: true });
          this.#next--;
        }
        continue;
      }
      this.#held.add(ip);
      this.#ipAddr("add", ip);
      return ip;
    }
    throw new WalshipError(ErrorCodes.CONFIG, `claim pod IP: all of ${this.#prefix}.0.0/16 is taken`);
  }

  release(ip: string): void {
    if (!this.#held.delete(ip)) return;
    this.#ipAddr("del", ip);
    fs.rmSync(path.join(this.#dir, ip), { force: true });
  }

  /** Releases every claim (synchronous, so exit hooks can use it). */
  releaseAll(): void {
    for (const ip of [...this.#held]) this.release(ip);
  }
}

/**
 * Mount points for mountPaths that do not exist on the host: the kubelet creates them (an empty
 * directory or file, which a private namespace then covers with a bind mount) and removes them
 * when no live kubelet holds them any more.
 */
export class MountPoints {
  readonly #dir = path.join(registryRoot, "mountpoints");
  readonly #owner: string;
  readonly #held = new Set<string>();

  constructor(owner: string) {
    this.#owner = owner;
    fs.mkdirSync(this.#dir, { recursive: true });
  }

  #entry(p: string): string {
    return path.join(this.#dir, encodeURIComponent(p));
  }

  #hold(created: string): void {
    const entry = this.#entry(created);
    fs.mkdirSync(entry, { recursive: true });
    fs.writeFileSync(path.join(entry, this.#owner), "");
    this.#held.add(created);
  }

  /** Makes sure `target` exists (a directory, or an empty file when `file`), recording what it created. */
  ensure(target: string, file: boolean): void {
    let top: string | undefined;
    for (let p = target; ; p = path.dirname(p)) {
      if (fs.existsSync(p)) break;
      top = p;
      if (p === path.dirname(p)) break;
    }
    if (top !== undefined) {
      this.#hold(top);
      if (file) {
        fs.mkdirSync(path.dirname(target), { recursive: true });
        fs.writeFileSync(target, "", { flag: "a" });
      } else {
        fs.mkdirSync(target, { recursive: true });
      }
      return;
    }
    // It exists: if another kubelet created it (or an ancestor), hold it so it is not removed under us.
    for (const name of fs.readdirSync(this.#dir)) {
      const created = decodeURIComponent(name);
      if ((target === created || target.startsWith(`${created}/`)) && !this.#held.has(created)) {
        this.#hold(created);
      }
    }
  }

  releaseAll(): void {
    for (const created of this.#held) {
      const entry = this.#entry(created);
      fs.rmSync(path.join(entry, this.#owner), { force: true });
      let holders: string[] = [];
      try {
        holders = fs.readdirSync(entry).filter(ownerAlive);
      } catch {
        // entry gone
      }
      if (holders.length > 0) continue;
      if (onlyEmpty(created)) fs.rmSync(created, { recursive: true, force: true });
      fs.rmSync(entry, { recursive: true, force: true });
    }
    this.#held.clear();
  }
}

/** True when a path holds nothing but empty directories and empty files. */
function onlyEmpty(p: string): boolean {
  let st: fs.Stats;
  try {
    st = fs.lstatSync(p);
  } catch {
    return true;
  }
  if (st.isFile()) return st.size === 0;
  if (!st.isDirectory()) return false;
  return fs.readdirSync(p).every((e) => onlyEmpty(path.join(p, e)));
}

/**
 * Cleans up after kubelets that died without stop() (SIGKILLed test processes): their empty
 * cgroups, their pod IP claims (and lo aliases), and mount points no live kubelet holds.
 */
export function sweepStale(): void {
  const base = cgroup2Root();
  if (base !== undefined) {
    for (const name of fs.readdirSync(base)) {
      const m = /^walship-kubelet-(\d+-[0-9a-f]+)$/.exec(name);
      if (m !== null && !ownerAlive(m[1] as string)) CgroupTree.remove(path.join(base, name));
    }
  }
  const ipDir = path.join(registryRoot, "ip");
  for (const ip of fs.existsSync(ipDir) ? fs.readdirSync(ipDir) : []) {
    let owner = "";
    try {
      owner = fs.readFileSync(path.join(ipDir, ip), "utf8");
    } catch {
      continue;
    }
    if (owner === "" || ownerAlive(owner)) continue;
    if (ip.startsWith("10.213.")) {
      try {
        execFileSync(findBin("ip"), ["addr", "del", `${ip}/32`, "dev", "lo"], { stdio: "ignore" });
      } catch {
        // already gone
      }
    }
    fs.rmSync(path.join(ipDir, ip), { force: true });
  }
  const mpDir = path.join(registryRoot, "mountpoints");
  for (const name of fs.existsSync(mpDir) ? fs.readdirSync(mpDir) : []) {
    const entry = path.join(mpDir, name);
    let holders: string[];
    try {
      holders = fs.readdirSync(entry);
    } catch {
      continue;
    }
    if (holders.some(ownerAlive)) continue;
    const created = decodeURIComponent(name);
    if (onlyEmpty(created)) fs.rmSync(created, { recursive: true, force: true });
    fs.rmSync(entry, { recursive: true, force: true });
  }
}

/** Kill functions run synchronously when the test process exits or is interrupted. */
const exitKillers = new Set<() => void>();
let hooked = false;

export function onProcessExit(kill: () => void): () => void {
  exitKillers.add(kill);
  if (!hooked) {
    hooked = true;
    const runAll = (): void => {
      for (const k of exitKillers) {
        try {
          k();
        } catch {
          // best effort on the way out
        }
      }
    };
    process.on("exit", runAll);
    for (const sig of ["SIGINT", "SIGTERM"] as const) {
      if (process.listenerCount(sig) === 0) {
        process.once(sig, () => {
          runAll();
          process.kill(process.pid, sig);
        });
      }
    }
  }
  return () => exitKillers.delete(kill);
}
