/**
 * The host side of the real node: what it changes on this machine, how it is set up, and how it is put
 * back, after a clean stop and after a crashed run alike. Everything here is synchronous so that it
 * can run from a process-exit hook.
 *
 * What the node changes, and how each is undone:
 * - the bridge `walship0` (10.214.0.1/24), the route of the Service range through it, an unreachable
 *   route for the whole 10.214.0.0/16 (nothing in the range can leave the machine, even with the
 *   bridge gone) and the nft table `inet walship-guard` (nothing is forwarded between the bridge and
 *   any other interface): deleted;
 * - kube-proxy's nft tables `ip kube-proxy` and `ip6 kube-proxy`: deleted;
 * - sysctls the kubelet and the CNI bridge plugin set (vm.overcommit_memory, kernel.panic,
 *   kernel.panic_on_oops, net.ipv4.ip_forward, ...): the values from before the first start are saved
 *   in RUN_DIR/host.json and written back;
 * - the kubelet's root dir (bind mounts, projected-token tmpfs mounts): unmounted recursively, removed;
 * - pod cgroups (`kubepods` in every hierarchy): removed depth-first;
 * - paths the kubelet and containerd create outside our dirs (/var/lib/kubelet/device-plugins,
 *   /var/log/containers, /run/containerd, /var/lib/cni, /var/run/netns): removed when they did not
 *   exist before (recorded in host.json);
 * - pods: `crictl rmp -fa` (sandboxes stopped, CNI DEL run: veths and IP leases freed, netns removed).
 *
 * host.json is written before the first change and removed after the last undo, so a run that died in
 * between (SIGKILL, a crash) leaves it behind and the next start sweeps with it.
 */
import { execFileSync } from "node:child_process";
import {
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmdirSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";

export const BRIDGE = "walship0";
export const GATEWAY = "10.214.0.1";
export const POD_CIDR = "10.214.0.0/24";
export const SERVICE_CIDR = "10.214.1.0/24";
/** Everything in here is ours; an unreachable route keeps it on the machine. */
export const GUARD_CIDR = "10.214.0.0/16";
const GUARD_METRIC = "4242";
export const GUARD_TABLE = "walship-guard";
export const NODE_NAME = "walship-node";

/** Volatile state: containerd's state and socket, host.json. */
export const RUN_DIR = "/run/walship-node";
/** The node's working files: kubelet root, CNI config and leases, PKI copies, volumes. */
export const STATE_DIR = "/var/lib/walship-node";
export const KUBELET_ROOT = join(STATE_DIR, "kubelet");
const HOST_JSON = join(RUN_DIR, "host.json");

/** Sysctls the node may change (the kubelet always sets the first three; the bridge plugin ip_forward). */
const SYSCTLS = [
  "vm.overcommit_memory",
  "kernel.panic",
  "kernel.panic_on_oops",
  "net.ipv4.ip_forward",
  "net.ipv4.conf.all.forwarding",
  "net.ipv6.conf.all.forwarding",
  "net.bridge.bridge-nf-call-iptables",
  "net.bridge.bridge-nf-call-ip6tables",
  "net.ipv4.conf.all.route_localnet",
  "net.netfilter.nf_conntrack_max",
];

/** Paths created outside our directories by the kubelet, containerd, CNI. */
const FOREIGN_PATHS = [
  "/var/lib/kubelet",
  "/var/log/containers",
  "/var/log/pods",
  "/run/containerd",
  "/var/lib/cni",
  "/var/run/netns",
];

interface HostRecord {
  /** Original sysctl values (missing keys did not exist). */
  sysctls: Record<string, string>;
  /** FOREIGN_PATHS that existed before the first start. */
  existed: string[];
  /** Pids of the node's daemons, for a sweep after a crash. */
  pids: Record<string, number>;
}

function run(cmd: string, args: string[], allowFailure = false): string {
  try {
    return execFileSync(cmd, args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"], timeout: 60_000 });
  } catch (err) {
    if (allowFailure) return "";
    const e = err as { stderr?: string; message: string };
    throw new Error(`${cmd} ${args.join(" ")}: ${(e.stderr ?? "").trim() || e.message}`);
  }
}

function sysctlPath(key: string): string {
  return join("/proc/sys", ...key.split("."));
}

function readSysctl(key: string): string | undefined {
  try {
    return readFileSync(sysctlPath(key), "utf8").trim();
  } catch {
    return undefined;
  }
}

function readRecord(): HostRecord | undefined {
  try {
    return JSON.parse(readFileSync(HOST_JSON, "utf8")) as HostRecord;
  } catch {
    return undefined;
  }
}

function writeRecord(r: HostRecord): void {
  mkdirSync(RUN_DIR, { recursive: true });
  writeFileSync(HOST_JSON, `${JSON.stringify(r, null, 2)}\n`);
}

/** Saves what the node is about to change, unless a crashed run's record (the true originals) is there. */
export function recordHost(): void {
  if (readRecord()) return;
  const sysctls: Record<string, string> = {};
  for (const k of SYSCTLS) {
    const v = readSysctl(k);
    if (v !== undefined) sysctls[k] = v;
  }
  writeRecord({ sysctls, existed: FOREIGN_PATHS.filter((p) => existsSync(p)), pids: {} });
}

export function recordPid(name: string, pid: number): void {
  const r = readRecord();
  if (!r) return;
  r.pids[name] = pid;
  writeRecord(r);
}

/** The bridge, the routes and the guard table; the bridge exists before anything binds its address. */
export function setUpNetwork(): void {
  run("ip", ["link", "add", BRIDGE, "type", "bridge"]);
  run("ip", ["addr", "add", `${GATEWAY}/24`, "dev", BRIDGE]);
  run("ip", ["link", "set", BRIDGE, "up"]);
  // host -> ClusterIP goes to the bridge, where kube-proxy's rules DNAT it.
  run("ip", ["route", "replace", SERVICE_CIDR, "dev", BRIDGE]);
  run("ip", ["route", "replace", "unreachable", GUARD_CIDR, "metric", GUARD_METRIC]);
  const rules = [
    `table inet ${GUARD_TABLE} {`,
    "  chain forward {",
    "    type filter hook forward priority 0; policy accept;",
    `    iifname "${BRIDGE}" oifname != "${BRIDGE}" drop`,
    `    oifname "${BRIDGE}" iifname != "${BRIDGE}" drop`,
    "  }",
    "}",
  ].join("\n");
  execFileSync("nft", ["-f", "-"], { input: rules, stdio: ["pipe", "pipe", "pipe"] });
}

function isMounted(prefix: string): boolean {
  return readFileSync("/proc/self/mounts", "utf8")
    .split("\n")
    .some((l) => (l.split(" ")[1] ?? "").startsWith(prefix));
}

/** Unmounts everything at or below `dir`, deepest first. */
export function unmountAll(dir: string): void {
  for (let i = 0; i < 5 && isMounted(dir); i++) {
    const points = readFileSync("/proc/self/mounts", "utf8")
      .split("\n")
      .map((l) => (l.split(" ")[1] ?? "").replace(/\\040/g, " "))
      .filter((p) => p === dir || p.startsWith(`${dir}/`))
      .sort((a, b) => b.length - a.length);
    for (const p of points) run("umount", ["-l", p], true);
  }
}

/** Removes a cgroup directory tree depth-first (cgroupfs only allows rmdir of empty groups). */
function removeCgroup(dir: string): void {
  let st: ReturnType<typeof statSync>;
  try {
    st = statSync(dir);
  } catch {
    return;
  }
  if (!st.isDirectory()) return;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    if (e.isDirectory()) removeCgroup(join(dir, e.name));
  }
  try {
    rmdirSync(dir);
  } catch {
    // Still busy (a process left in it): the next sweep tries again.
  }
}

function podCgroups(): string[] {
  const out: string[] = [];
  const root = "/sys/fs/cgroup";
  if (!existsSync(root)) return out;
  const candidates = [root, ...readdirSync(root).map((d) => join(root, d))];
  for (const h of candidates) {
    for (const name of ["kubepods", "kubepods.slice"]) {
      const p = join(h, name);
      if (existsSync(p)) out.push(p);
    }
  }
  return out;
}

function killPid(pid: number): void {
  try {
    process.kill(pid, "SIGKILL");
  } catch {
    // gone already
  }
}

function nftHasTable(family: string, name: string): boolean {
  return run("nft", ["list", "tables"], true)
    .split("\n")
    .some((l) => l.trim() === `table ${family} ${name}`);
}

export interface SweepOptions {
  /** A function that removes every pod sandbox (crictl rmp -fa), when containerd still answers. */
  removePods?: () => void;
}

/**
 * Puts the host back: pods, daemons, mounts, cgroups, nft tables, routes, the bridge, sysctls,
 * foreign paths. Safe to run when nothing is set up; returns what it found to undo (for logs).
 */
export function sweepHost(opts: SweepOptions = {}): string[] {
  const found: string[] = [];
  const rec = readRecord();
  if (opts.removePods) {
    try {
      opts.removePods();
    } catch (err) {
      found.push(`pods: ${(err as Error).message}`);
    }
  }
  for (const [name, pid] of Object.entries(rec?.pids ?? {})) {
    // Only if the pid is still that daemon (pids are reused).
    let comm = "";
    try {
      comm = readFileSync(`/proc/${pid}/comm`, "utf8").trim();
    } catch {
      // gone
    }
    if (comm === name) {
      found.push(`process ${name} (${pid})`);
      killPid(pid);
    }
  }
  if (isMounted(STATE_DIR)) {
    found.push(`mounts under ${STATE_DIR}`);
    unmountAll(STATE_DIR);
  }
  for (const cg of podCgroups()) {
    found.push(`cgroup ${cg}`);
    removeCgroup(cg);
  }
  for (const [family, name] of [
    ["inet", GUARD_TABLE],
    ["ip", "kube-proxy"],
    ["ip6", "kube-proxy"],
  ] as const) {
    if (nftHasTable(family, name)) {
      found.push(`nft table ${family} ${name}`);
      run("nft", ["delete", "table", family, name], true);
    }
  }
  if (existsSync(`/sys/class/net/${BRIDGE}`)) {
    found.push(`bridge ${BRIDGE}`);
    run("ip", ["link", "del", BRIDGE], true);
  }
  if (run("ip", ["route", "show", "type", "unreachable", GUARD_CIDR], true).trim() !== "") {
    found.push(`route unreachable ${GUARD_CIDR}`);
    run("ip", ["route", "del", "unreachable", GUARD_CIDR, "metric", GUARD_METRIC], true);
  }
  if (rec) {
    for (const [k, v] of Object.entries(rec.sysctls)) {
      if (readSysctl(k) !== v) {
        found.push(`sysctl ${k}=${readSysctl(k)} (was ${v})`);
        try {
          writeFileSync(sysctlPath(k), v);
        } catch {
          // read-only in this namespace: nothing we could have changed either
        }
      }
    }
    for (const p of FOREIGN_PATHS) {
      if (!rec.existed.includes(p) && existsSync(p)) {
        found.push(`path ${p}`);
        unmountAll(p);
        rmSync(p, { recursive: true, force: true });
      }
    }
  }
  if (existsSync(STATE_DIR)) rmSync(STATE_DIR, { recursive: true, force: true });
  // Last: the record (a sweep that dies before this point is redone by the next start).
  if (existsSync(RUN_DIR)) {
    unmountAll(RUN_DIR);
    rmSync(RUN_DIR, { recursive: true, force: true });
  }
  return found;
}

/** True when a previous run left something behind (its record, the bridge, or a table). */
export function hasLeftovers(): boolean {
  return (
    readRecord() !== undefined ||
    existsSync(`/sys/class/net/${BRIDGE}`) ||
    nftHasTable("inet", GUARD_TABLE) ||
    existsSync(STATE_DIR)
  );
}
