/**
 * A real OpenSSH sshd for tests, set up the way seed 000's backup server is: a chrooted, sftp-only
 * user (`ForceCommand internal-sftp`) with key auth, on a port of the loopback interface (or another
 * listen host, such as the node's bridge gateway for pods).
 *
 *   const s = await startSftp();                 // user, chroot, host keys, a client key
 *   s.keyPath; s.hostKeyLine("ed25519"); s.knownHostsLine();
 *   await s.killSessions();                      // drop every connection (the listener stays)
 *   await s.close();                             // stop sshd, delete the user and the chroot
 *
 * Needs root (useradd, chroot) and Debian's openssh-server (test/infra/install installs it). sshd
 * refuses a chroot with any group- or world-writable component, so everything lives under
 * /run/walship-sftp/p<pid>-<n> rather than /tmp. The user is created with useradd and deleted on
 * close; a later test process deletes users and directories left by one that was SIGKILLed.
 */
import { execFileSync } from "node:child_process";
import {
  chmodSync,
  chownSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { lifecycle } from "./lifecycle.ts";
import { freePort } from "./ports.ts";
import { InfraError, type ManagedProcess, runCommand, spawnManaged, waitFor } from "./proc.ts";

export const SSHD = "/usr/sbin/sshd";
const BASE = "/run/walship-sftp";
const HOST_KEY_TYPES = ["ed25519", "ecdsa", "rsa"] as const;
export type HostKeyType = (typeof HOST_KEY_TYPES)[number];

export interface SftpOptions {
  /** Address sshd listens on; default 127.0.0.1 (pods use the node's bridge gateway instead). */
  listenHost?: string;
  /** Default: a free port. */
  port?: number;
  /** The sftp-only user; default `wsftp<pid>x<n>`. Must not exist yet. */
  user?: string;
  /** Directories inside the chroot the user owns; default `data` and `home/<user>` (its home). */
  writableDirs?: string[];
  /** Also allow password auth with this password (for URL-form restores). */
  password?: string;
  /** Which host keys the server offers; default all three. */
  hostKeyTypes?: readonly HostKeyType[];
}

export interface SftpServer {
  listenHost: string;
  port: number;
  /** `host:port` as a replica's `host` key takes it. */
  address: string;
  user: string;
  password: string | undefined;
  /** The chroot directory on disk (what the user sees as `/`). */
  root: string;
  /** An unencrypted ed25519 client key that the user accepts (mode 0600). */
  keyPath: string;
  /** Its public key line. */
  publicKey: string;
  /** The server's public host key of a type, as an OpenSSH line (`ssh-ed25519 AAAA...`). */
  hostKeyLine(type?: HostKeyType): string;
  /** A known_hosts line for this server (`[host]:port keytype base64`). */
  knownHostsLine(type?: HostKeyType): string;
  /** Makes a client key pair (optionally passphrase-protected) the user accepts; returns its paths. */
  addClientKey(opts?: { type?: "ed25519" | "rsa"; passphrase?: string }): Promise<{
    privatePath: string;
    publicKey: string;
  }>;
  /** The sshd listener; undefined while stopped. */
  readonly process: ManagedProcess | undefined;
  logFile: string;
  /**
   * Signals every per-connection sshd process, the monitor and its unprivileged child that holds the
   * socket (the listener keeps running); returns how many. SIGKILL drops the connections; SIGSTOP
   * makes them hang (nothing is answered, the TCP connection stays up) until SIGCONT.
   */
  killSessions(signal?: NodeJS.Signals): number;
  /** Stops the listener (live sessions go on until killed). */
  stop(): Promise<void>;
  /** Starts the listener again on the same port. */
  restart(): Promise<void>;
  /** Stops sshd, kills its sessions, deletes the user and the directory. Safe twice. */
  close(): Promise<void>;
}

let serial = 0;
const owned = new Set<{ user: string; dir: string }>();
let hooked = false;

/** Starts sshd with a fresh chrooted sftp-only user. */
export async function startSftp(opts: SftpOptions = {}): Promise<SftpServer> {
  if (process.getuid?.() !== 0) {
    throw new InfraError("INFRA_COMMAND_FAILED", "start sftp server: needs root (useradd, chroot)");
  }
  if (!existsSync(SSHD)) {
    throw new InfraError(
      "INFRA_MISSING_BINARY",
      `start sftp server: ${SSHD} is missing; install Debian's openssh-server (test/infra/install does)`,
    );
  }
  sweepStale();
  hookExit();
  const n = ++serial;
  const listenHost = opts.listenHost ?? "127.0.0.1";
  const port = opts.port ?? (await freePort());
  const user = opts.user ?? `wsftp${process.pid}x${n}`;
  if (userExists(user)) {
    throw new InfraError("INFRA_COMMAND_FAILED", `start sftp server: user ${user} exists already`);
  }
  const dir = join(BASE, `p${process.pid}-${n}`);
  const etc = join(dir, "etc");
  const root = join(dir, "root");
  const keysDir = join(etc, "keys");
  mkdirSync(BASE, { recursive: true, mode: 0o755 });
  chmodSync(BASE, 0o755);
  mkdirSync(keysDir, { recursive: true, mode: 0o755 });
  mkdirSync(root, { mode: 0o755 });
  chmodSync(dir, 0o755);
  // /run/sshd is sshd's privilege-separation directory.
  mkdirSync("/run/sshd", { recursive: true, mode: 0o755 });
  const record = { user, dir };
  owned.add(record);
  writeFileSync(join(dir, "owner"), `${process.pid}\n${user}\n`);

  try {
    await runCommand("useradd", [
      "--system",
      "--no-create-home",
      "--home-dir",
      `/home/${user}`,
      "--shell",
      "/usr/sbin/nologin",
      "--user-group",
      user,
    ]);
    if (opts.password !== undefined) {
      execFileSync("chpasswd", { input: `${user}:${opts.password}\n` });
    } else {
      // A locked account ("!") refuses keys too unless UsePAM; "*" means "no password, keys fine".
      await runCommand("usermod", ["-p", "*", user]);
    }
    const { uid, gid } = idsOf(user);
    for (const rel of opts.writableDirs ?? ["data", `home/${user}`]) {
      const parts = rel.split("/").filter(Boolean);
      let at = root;
      for (const p of parts) {
        at = join(at, p);
        mkdirSync(at, { recursive: true, mode: 0o755 });
      }
      chownSync(at, uid, gid);
    }

    const types = opts.hostKeyTypes ?? HOST_KEY_TYPES;
    await Promise.all(
      types.map((t) =>
        runCommand("ssh-keygen", ["-q", "-t", t, "-N", "", "-C", `host-${t}`, "-f", join(etc, `host_${t}`)]),
      ),
    );
    const hostKeys = new Map<HostKeyType, string>();
    for (const t of types) hostKeys.set(t, publicLine(readFileSync(join(etc, `host_${t}.pub`), "utf8")));

    const authorized = join(keysDir, user);
    writeFileSync(authorized, "", { mode: 0o644 });
    const addClientKey: SftpServer["addClientKey"] = async (k = {}) => {
      const type = k.type ?? "ed25519";
      const privatePath = join(etc, `client_${type}_${readdirSync(etc).length}`);
      await runCommand("ssh-keygen", [
        "-q",
        "-t",
        type,
        ...(type === "rsa" ? ["-b", "2048"] : []),
        "-N",
        k.passphrase ?? "",
        "-C",
        `walship-test-${type}`,
        "-f",
        privatePath,
      ]);
      chmodSync(privatePath, 0o600);
      const publicKey = publicLine(readFileSync(`${privatePath}.pub`, "utf8"));
      writeFileSync(authorized, `${readFileSync(authorized, "utf8")}${publicKey}\n`);
      return { privatePath, publicKey };
    };
    const first = await addClientKey();

    const config = [
      `Port ${port}`,
      `ListenAddress ${listenHost.includes(":") ? `[${listenHost}]` : listenHost}`,
      ...types.map((t) => `HostKey ${join(etc, `host_${t}`)}`),
      `PidFile ${join(dir, "sshd.pid")}`,
      `AuthorizedKeysFile ${join(keysDir, "%u")}`,
      "UsePAM no",
      "StrictModes no",
      "PermitRootLogin no",
      `AllowUsers ${user}`,
      "KbdInteractiveAuthentication no",
      `PasswordAuthentication ${opts.password !== undefined ? "yes" : "no"}`,
      "PubkeyAuthentication yes",
      "X11Forwarding no",
      "PrintMotd no",
      "LogLevel VERBOSE",
      "MaxStartups 100:30:200",
      "Subsystem sftp internal-sftp",
      `Match User ${user}`,
      `  ChrootDirectory ${root}`,
      "  ForceCommand internal-sftp",
      "  AllowTcpForwarding no",
      "  PermitTunnel no",
      "",
    ].join("\n");
    const configPath = join(etc, "sshd_config");
    writeFileSync(configPath, config, { mode: 0o644 });
    const logFile = join(dir, "sshd.log");
    await runCommand(SSHD, ["-t", "-f", configPath]);

    const life = lifecycle(
      "sshd",
      async (track) => {
        const p = spawnManaged(SSHD, ["-D", "-e", "-f", configPath], { name: "sshd", logFile });
        track(p);
        await waitFor(() => readFileSync(logFile, "utf8").includes("Server listening on"), {
          what: `sshd listening on ${listenHost}:${port}`,
          timeoutMs: 15_000,
          processes: [p],
        });
      },
      () => {
        // Sessions outlive the listener: kill them by pid, then the user and the directory go.
        for (const pid of sessions) {
          try {
            process.kill(pid, "SIGKILL");
          } catch {
            // gone
          }
        }
        removeOwned(record);
      },
      5_000,
    );
    let sessions: number[] = [];
    const killSessions = (signal: NodeJS.Signals = "SIGKILL"): number => {
      const listener = life.process?.pid;
      if (listener === undefined) return 0;
      let killed = 0;
      for (const pid of descendantsOf(listener)) {
        try {
          process.kill(pid, signal);
          killed++;
        } catch {
          // gone already
        }
      }
      return killed;
    };
    const server: SftpServer = {
      listenHost,
      port,
      address: `${listenHost.includes(":") ? `[${listenHost}]` : listenHost}:${port}`,
      user,
      password: opts.password,
      root,
      keyPath: first.privatePath,
      publicKey: first.publicKey,
      hostKeyLine(type = "ed25519") {
        const line = hostKeys.get(type);
        if (!line) throw new Error(`sftp server: no ${type} host key`);
        return line;
      },
      knownHostsLine(type = "ed25519") {
        const host = port === 22 ? listenHost : `[${listenHost}]:${port}`;
        return `${host} ${server.hostKeyLine(type)}`;
      },
      addClientKey,
      get process() {
        return life.process;
      },
      logFile,
      killSessions,
      stop: life.stop,
      restart: life.restart,
      async close() {
        const listener = life.process?.pid;
        sessions = listener === undefined ? [] : descendantsOf(listener);
        await life.close();
      },
    };
    await life.start();
    return server;
  } catch (err) {
    removeOwned(record);
    throw err;
  }
}

/** The key type and base64 of a public key file's line, without the comment. */
function publicLine(text: string): string {
  const [type, b64] = text.trim().split(/\s+/);
  return `${type} ${b64}`;
}

function userExists(user: string): boolean {
  return readFileSync("/etc/passwd", "utf8")
    .split("\n")
    .some((l) => l.startsWith(`${user}:`));
}

function idsOf(user: string): { uid: number; gid: number } {
  const line = readFileSync("/etc/passwd", "utf8")
    .split("\n")
    .find((l) => l.startsWith(`${user}:`));
  const f = line?.split(":") ?? [];
  return { uid: Number(f[2]), gid: Number(f[3]) };
}

/** Every process below a process (sshd forks a monitor per connection, which forks the session). */
function descendantsOf(pid: number): number[] {
  const out: number[] = [];
  const todo = [pid];
  for (let p = todo.pop(); p !== undefined; p = todo.pop()) {
    for (const c of childrenOf(p)) {
      out.push(c);
      todo.push(c);
    }
  }
  return out;
}

/** Direct children of a process. */
function childrenOf(pid: number): number[] {
  const out: number[] = [];
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, "utf8");
      // pid (comm) state ppid ...: comm may hold spaces, so read after the last ")".
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      if (ppid === pid) out.push(Number(name));
    } catch {
      // exited meanwhile
    }
  }
  return out;
}

/** Processes running as a uid. */
function processesOf(uid: number): number[] {
  const out: number[] = [];
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const m = /^Uid:\s+(\d+)/m.exec(readFileSync(`/proc/${name}/status`, "utf8"));
      if (m && Number(m[1]) === uid) out.push(Number(name));
    } catch {
      // exited meanwhile
    }
  }
  return out;
}

/** Kills the user's processes, deletes the user and the directory (synchronously: also at exit). */
function removeOwned(record: { user: string; dir: string }): void {
  owned.delete(record);
  if (userExists(record.user)) {
    // Its sessions (sshd's unprivileged halves run as the user), each by pid: userdel refuses a
    // user that still runs something.
    const { uid } = idsOf(record.user);
    for (const pid of Number.isInteger(uid) && uid > 0 ? processesOf(uid) : []) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        // gone already
      }
    }
    try {
      execFileSync("userdel", [record.user], { stdio: "ignore" });
    } catch {
      // retried by the next sweep
    }
  }
  rmSync(record.dir, { recursive: true, force: true });
}

function hookExit(): void {
  if (hooked) return;
  hooked = true;
  process.on("exit", () => {
    for (const r of [...owned]) removeOwned(r);
  });
}

/** Removes users and directories left by test processes that died without cleaning up. */
function sweepStale(): void {
  if (!existsSync(BASE)) return;
  for (const name of readdirSync(BASE)) {
    const m = /^p(\d+)-\d+$/.exec(name);
    if (!m || Number(m[1]) === process.pid) continue;
    try {
      process.kill(Number(m[1]), 0);
      continue; // still alive
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ESRCH") continue;
    }
    const dir = join(BASE, name);
    let user = "";
    try {
      user = readFileSync(join(dir, "owner"), "utf8").split("\n")[1] ?? "";
    } catch {
      // no owner file: only the directory to remove
    }
    removeOwned({ user, dir });
  }
}
