/**
 * The SFTP destination (the only importer of ssh2): Litestream v0.3.13's layout under a directory on
 * an SSH server, usually a chrooted sftp-only account.
 *
 *   <path>/generations/<GEN>/snapshots/<IIIIIIII>.snapshot.lz4
 *   <path>/generations/<GEN>/wal/<IIIIIIII>_<OOOOOOOO>.wal.lz4
 *   <path>/walship/...                                  (Walship's extras)
 *
 * A relative path resolves against the login directory, as Litestream's does; files and directories
 * get the server's default modes, as Litestream's do.
 *
 * Where Walship does better than v0.3.13 (destinations-v03.md §1.2, §5):
 * - The server's host key is verified (a pinned key, or known_hosts files); skipping the check is an
 *   explicit `insecureIgnoreHostKey`.
 * - Each object goes to `<name>.tmp`, is fsynced (fsync@openssh.com where offered), then renamed over
 *   the final name (posix-rename@openssh.com): a dropped connection never leaves a short object under
 *   a final name. Litestream ignores `.tmp` names.
 * - Writes and reads keep many requests in flight (sftp-transfer.ts).
 * - A connect timeout, keepalives, and a timeout per request; any transport error (or a timeout)
 *   drops the connection, the next call reconnects, and idempotent calls are retried once at once. An
 *   abort returns at once whatever the network does, so neither a sync nor shutdown can hang on it.
 * - Passphrase-protected private keys.
 */
import { readFile } from "node:fs/promises";
import { homedir } from "node:os";
import path from "node:path";
import { addAbortSignal, type Readable } from "node:stream";
import ssh2, { type ConnectConfig, type SFTPWrapper, type Client as SshClient } from "ssh2";
import { ErrorCodes, NotFoundError, WalshipError } from "../../shared/errors.ts";
import type { Logger } from "../../shared/log.ts";
import { isGenerationName, keys, parseSegmentName, parseSnapshotName } from "../layout.ts";
import type { SnapshotInfo, WalSegmentInfo } from "../types.ts";
import {
  type CallOptions,
  type OperationCounts,
  type ReplicaClient,
  sortSegments,
  sortSnapshots,
} from "./client.ts";
import {
  abortedError,
  checkSignal,
  describe,
  forEachLimited,
  isAbortError,
  newOperationCounts,
  relayDownload,
} from "./common.ts";
import { checkGeneration, checkKey, checkPrefix, checkSegment, checkSnapshot, segmentKeys } from "./names.ts";
import { pipelinedRead, pipelinedWrite } from "./sftp-transfer.ts";
import {
  explainHostKey,
  type HostKey,
  hostKeyAlgorithms,
  parsePublicKey,
  pinnedHostKeys,
  readKnownHosts,
  verifyHostKey,
} from "./ssh-host-keys.ts";

export const DEFAULT_CONNECT_TIMEOUT_MS = 30_000;
export const DEFAULT_REQUEST_TIMEOUT_MS = 60_000;
export const DEFAULT_KEEPALIVE_INTERVAL_MS = 15_000;
export const DEFAULT_KEEPALIVE_COUNT_MAX = 3;
/** Requests in flight per transfer (as ssh2's fastPut). */
export const DEFAULT_DEPTH = 64;
/** Listing stats / deletes in flight. */
const IO_CONCURRENCY = 32;

/** SFTP status codes (draft-ietf-secsh-filexfer-02). */
const NO_SUCH_FILE = 2;
const FAILURE = 4;
const NO_CONNECTION = 6;
const CONNECTION_LOST = 7;
const S_IFMT = 0o170000;
const S_IFREG = 0o100000;
const S_IFDIR = 0o040000;

export interface SftpReplicaClientOptions {
  /** `host`, `host:port`, `[v6]:port` or a bare IPv6 address; port 22 when absent (as Litestream). */
  host: string;
  user: string;
  password?: string;
  /** A private key file (OpenSSH, PEM or PuTTY format); read at connect. */
  keyPath?: string;
  /** The private key itself (instead of keyPath). */
  privateKey?: string | Buffer;
  /** For an encrypted private key. */
  passphrase?: string;
  /** The remote directory; relative paths resolve against the login directory. */
  path?: string;
  /** Pinned server keys (`ssh-ed25519 AAAA...` lines). Checked instead of known_hosts. */
  hostKeys?: readonly string[];
  /**
   * Files of a mounted Secret: pinned host keys (one line each), the password, the passphrase. Read
   * at every connection, like keyPath, so a rotated Secret is used from the next reconnect on.
   */
  hostKeyFile?: string;
  passwordFile?: string;
  passphraseFile?: string;
  /** known_hosts files; default ~/.ssh/known_hosts and /etc/ssh/ssh_known_hosts. */
  knownHostsFiles?: readonly string[];
  /** Accept any host key (Litestream v0.3.13's behaviour). */
  insecureIgnoreHostKey?: boolean;
  connectTimeoutMs?: number;
  requestTimeoutMs?: number;
  keepaliveIntervalMs?: number;
  keepaliveCountMax?: number;
  /** Requests in flight per transfer; default DEFAULT_DEPTH. */
  depth?: number;
  /** For reconnects and other events that are not thrown. */
  log?: Logger;
}

/** `host:port` the Go way: a missing port is 22; IPv6 in brackets or bare. */
export function splitHostPort(hostPort: string): { host: string; port: number } {
  const s = hostPort.trim();
  const bracket = /^\[([^\]]+)\](?::(\d+))?$/.exec(s);
  if (bracket) return { host: bracket[1] as string, port: bracket[2] ? Number(bracket[2]) : 22 };
  const colons = s.split(":").length - 1;
  if (colons === 1) {
    const [h, p] = s.split(":");
    if (/^\d+$/.test(p ?? "")) return { host: h as string, port: Number(p) };
  }
  return { host: s, port: 22 };
}

// ssh2 is CommonJS: its classes come through the default export.
const { Client, utils } = ssh2;

interface Session {
  client: SshClient;
  sftp: SFTPWrapper;
  /** Set when the connection is gone: every request on it fails. */
  dead: boolean;
  /** Called once when it dies (a write waiting on its body must not wait for it forever). */
  onDeath: Set<() => void>;
  /** Requests awaiting an answer: failed at once when the connection dies, so no timer outlives it. */
  pending: Set<(err: Error) => void>;
}

export class SftpReplicaClient implements ReplicaClient {
  readonly type = "sftp";
  readonly location: string;
  readonly operations: OperationCounts = newOperationCounts();
  readonly #o: SftpReplicaClientOptions;
  readonly #host: string;
  readonly #port: number;
  /** The remote root; "" for the login directory. */
  readonly #root: string;
  readonly #depth: number;
  readonly #requestTimeoutMs: number;
  #session: Promise<Session> | undefined;
  /** Directories known to exist (so a write does one round trip less). */
  readonly #dirs = new Set<string>();
  #warnedNoFsync = false;
  #closed = false;

  constructor(opts: SftpReplicaClientOptions) {
    if (!opts?.host) throw new WalshipError(ErrorCodes.CONFIG, "create sftp replica: host required");
    if (!opts.user) throw new WalshipError(ErrorCodes.CONFIG, "create sftp replica: user required");
    const { host, port } = splitHostPort(opts.host);
    if (!Number.isInteger(port) || port < 1 || port > 65535) {
      throw new WalshipError(
        ErrorCodes.CONFIG,
        `create sftp replica: bad port in host ${JSON.stringify(opts.host)}`,
      );
    }
    for (const line of opts.hostKeys ?? []) {
      if (!parsePublicKey(line)) {
        throw new WalshipError(
          ErrorCodes.CONFIG,
          `create sftp replica: host-key must be a public key line such as "ssh-ed25519 AAAA...", got ${JSON.stringify(line.slice(0, 40))}`,
          { details: { path: "host-key" } },
        );
      }
    }
    this.#o = opts;
    this.#host = host;
    this.#port = port;
    const p = opts.path ?? "";
    this.#root = p === "" ? "" : path.posix.normalize(p).replace(/\/+$/, "") || "/";
    this.#depth = opts.depth ?? DEFAULT_DEPTH;
    this.#requestTimeoutMs = opts.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
    const where = port === 22 ? host : `${host.includes(":") ? `[${host}]` : host}:${port}`;
    this.location = `sftp://${opts.user}@${where}${this.#root.startsWith("/") ? "" : "/"}${this.#root}`;
  }

  /**
   * Closes the connection for good: requests in flight fail at once and later calls are refused, so
   * nothing (a retry, a reconnect) keeps the process alive after shutdown.
   */
  close(): void {
    this.#closed = true;
    const s = this.#session;
    this.#session = undefined;
    s?.then((x) => this.#kill(x)).catch(() => {});
  }

  async generations(opts?: CallOptions): Promise<string[]> {
    const entries = await this.#readdir(keys.generations, "list generations", opts?.signal);
    return entries
      .filter((e) => isDir(e.mode) && isGenerationName(e.name))
      .map((e) => e.name)
      .sort();
  }

  async deleteGeneration(generation: string, opts?: CallOptions): Promise<void> {
    checkGeneration(generation, "delete generation");
    // Extras first: if we stop halfway the generation is still listed and the next retention pass
    // finishes the job; the other order could strand extras no listing ever finds again.
    for (const key of [keys.walshipGeneration(generation), keys.generation(generation)]) {
      await this.#removeTree(key, opts?.signal);
    }
  }

  async snapshots(generation: string, opts?: CallOptions): Promise<SnapshotInfo[]> {
    checkGeneration(generation, "list snapshots");
    const out: SnapshotInfo[] = [];
    for (const e of await this.#readdir(keys.snapshots(generation), "list snapshots", opts?.signal)) {
      const parsed = isFile(e.mode) ? parseSnapshotName(e.name) : undefined;
      if (parsed) out.push({ generation, index: parsed.index, size: e.size, createdAt: e.mtime });
    }
    return sortSnapshots(out);
  }

  async writeSnapshot(
    generation: string,
    index: number,
    body: Readable,
    opts?: CallOptions,
  ): Promise<SnapshotInfo> {
    checkSnapshot(generation, index, "write snapshot");
    const { size, mtime } = await this.#writeObject(
      keys.snapshot(generation, index),
      "write",
      body,
      opts?.signal,
    );
    return { generation, index, size, createdAt: mtime };
  }

  async snapshotReader(generation: string, index: number, opts?: CallOptions): Promise<Readable> {
    checkSnapshot(generation, index, "read snapshot");
    return this.#reader(keys.snapshot(generation, index), opts?.signal);
  }

  async deleteSnapshot(generation: string, index: number, opts?: CallOptions): Promise<void> {
    checkSnapshot(generation, index, "delete snapshot");
    await this.#unlinkAll([keys.snapshot(generation, index)], opts?.signal);
  }

  async walSegments(generation: string, opts?: CallOptions): Promise<WalSegmentInfo[]> {
    checkGeneration(generation, "list wal segments");
    const out: WalSegmentInfo[] = [];
    for (const e of await this.#readdir(keys.wal(generation), "list wal segments", opts?.signal)) {
      const parsed = isFile(e.mode) ? parseSegmentName(e.name) : undefined;
      if (parsed) {
        out.push({
          generation,
          index: parsed.index,
          offset: parsed.offset,
          size: e.size,
          createdAt: e.mtime,
        });
      }
    }
    return sortSegments(out);
  }

  async writeWalSegment(
    generation: string,
    index: number,
    offset: number,
    body: Readable | Uint8Array,
    opts?: CallOptions,
  ): Promise<WalSegmentInfo> {
    checkSegment(generation, index, offset, "write wal segment");
    const key = keys.segment(generation, index, offset);
    const { size, mtime } = await this.#writeObject(key, "write", body, opts?.signal);
    return { generation, index, offset, size, createdAt: mtime };
  }

  async walSegmentReader(
    generation: string,
    index: number,
    offset: number,
    opts?: CallOptions,
  ): Promise<Readable> {
    checkSegment(generation, index, offset, "read wal segment");
    return this.#reader(keys.segment(generation, index, offset), opts?.signal);
  }

  async deleteWalSegments(
    segments: ReadonlyArray<{ generation: string; index: number; offset: number }>,
    opts?: CallOptions,
  ): Promise<void> {
    const list = segmentKeys(segments, "delete wal segments");
    await this.#unlinkAll(list, opts?.signal);
  }

  async putExtra(key: string, body: Uint8Array, opts?: CallOptions): Promise<void> {
    checkKey(key, "put extra");
    await this.#writeObject(key, "put", body, opts?.signal);
  }

  async getExtra(key: string, opts?: CallOptions): Promise<Uint8Array> {
    checkKey(key, "get extra");
    const parts: Buffer[] = [];
    for await (const chunk of await this.#reader(key, opts?.signal)) parts.push(chunk as Buffer);
    return new Uint8Array(Buffer.concat(parts));
  }

  async listExtras(prefix: string, opts?: CallOptions): Promise<string[]> {
    checkPrefix(prefix, "list extras");
    // Start at the deepest directory the prefix names in full; its last part may be partial.
    const slash = prefix.lastIndexOf("/");
    const out: string[] = [];
    const pending = [slash < 0 ? "" : prefix.slice(0, slash)];
    for (let dir = pending.pop(); dir !== undefined; dir = pending.pop()) {
      for (const e of await this.#readdir(dir, "list extras", opts?.signal)) {
        const key = dir === "" ? e.name : `${dir}/${e.name}`;
        if (isDir(e.mode)) {
          if (`${key}/`.startsWith(prefix) || prefix.startsWith(`${key}/`)) pending.push(key);
        } else if (isFile(e.mode) && key.startsWith(prefix) && !e.name.endsWith(".tmp")) {
          out.push(key);
        }
      }
    }
    return out.sort();
  }

  async deleteExtras(list: readonly string[], opts?: CallOptions): Promise<void> {
    for (const key of list) checkKey(key, "delete extras");
    await this.#unlinkAll(list, opts?.signal);
  }

  // --- objects ---------------------------------------------------------------------------------

  /** `<key>.tmp`, written with requests in flight, fsynced, closed, renamed over `<key>`. */
  async #writeObject(
    key: string,
    verb: string,
    body: Readable | Uint8Array,
    signal: AbortSignal | undefined,
  ): Promise<{ size: number; mtime: Date }> {
    const file = this.#abs(key);
    const tmp = `${file}.tmp`;
    checkSignal(signal, verb, this.#url(key));
    if (signal && !(body instanceof Uint8Array)) addAbortSignal(signal, body);
    try {
      // A body given as bytes can be sent again on a fresh connection; a stream cannot.
      return await this.#run(verb, key, signal, body instanceof Uint8Array, async (s) => {
        await this.#mkdirs(s, path.posix.dirname(file));
        const handle = await this.#req<Buffer>(s, "open", (cb) => s.sftp.open(tmp, "w", cb));
        let open = true;
        const stopBody = () => {
          if (!(body instanceof Uint8Array))
            body.destroy(transportError("the sftp connection closed mid-upload"));
        };
        s.onDeath.add(stopBody);
        try {
          const size = await pipelinedWrite(
            s.sftp,
            (what, start) => this.#req(s, what, start),
            handle,
            body,
            this.#depth,
            () => checkSignal(signal, verb, this.#url(key)),
          );
          // fsync, fstat and close go out together; the server answers them in order.
          const [, st] = await Promise.all([
            this.#fsync(s, handle),
            this.#req<{ mtime: number }>(s, "fstat", (cb) => s.sftp.fstat(handle, cb)),
            this.#req<void>(s, "close", (cb) => s.sftp.close(handle, cb)).then(() => {
              open = false;
            }),
          ]);
          checkSignal(signal, verb, this.#url(key));
          await this.#rename(s, tmp, file);
          this.operations.PUT.count++;
          this.operations.PUT.bytes += size;
          return { size, mtime: new Date(st.mtime * 1000) };
        } catch (err) {
          // Best effort on a live connection; a leftover .tmp is ignored and overwritten next time.
          if (!s.dead) {
            if (open) s.sftp.close(handle, () => {});
            s.sftp.unlink(tmp, () => {});
          }
          throw err;
        } finally {
          s.onDeath.delete(stopBody);
        }
      });
    } finally {
      // A failed write stops what feeds it (Litestream's stuck-pipe hang, #524).
      if (!(body instanceof Uint8Array) && !body.readableEnded) body.destroy();
    }
  }

  async #fsync(s: Session, handle: Buffer): Promise<void> {
    if (!hasExtension(s.sftp, "fsync@openssh.com")) {
      if (!this.#warnedNoFsync) {
        this.#warnedNoFsync = true;
        this.#o.log?.warn(
          { replica: this.location },
          "sftp server offers no fsync@openssh.com; objects are not fsynced",
        );
      }
      return;
    }
    await this.#req<void>(s, "fsync", (cb) => s.sftp.ext_openssh_fsync(handle, (err) => cb(err)));
  }

  /** Replaces `to` atomically where the server offers posix-rename, else removes it first. */
  async #rename(s: Session, from: string, to: string): Promise<void> {
    if (hasExtension(s.sftp, "posix-rename@openssh.com")) {
      await this.#req<void>(s, "rename", (cb) => s.sftp.ext_openssh_rename(from, to, cb));
      return;
    }
    // Plain SFTPv3 rename refuses an existing target.
    await this.#req<void>(s, "remove", (cb) => s.sftp.unlink(to, cb)).catch((err: unknown) => {
      if (statusCode(err) !== NO_SUCH_FILE) throw err;
    });
    await this.#req<void>(s, "rename", (cb) => s.sftp.rename(from, to, cb));
  }

  /** Opens, stats and streams an object with reads in flight; NotFoundError before any byte. */
  async #reader(key: string, signal: AbortSignal | undefined): Promise<Readable> {
    const file = this.#abs(key);
    const opened = await this.#run("read", key, signal, true, async (s) => {
      const handle = await this.#req<Buffer>(s, "open", (cb) => s.sftp.open(file, "r", cb));
      try {
        const st = await this.#req<{ mode: number; size: number }>(s, "fstat", (cb) =>
          s.sftp.fstat(handle, cb),
        );
        if (!isFile(st.mode)) throw Object.assign(new Error("not a regular file"), { code: NO_SUCH_FILE });
        return { s, handle, size: st.size };
      } catch (err) {
        s.sftp.close(handle, () => {});
        throw err;
      }
    });
    this.operations.GET.count++;
    const { s, handle, size } = opened;
    const guard = <T>(what: string, start: (cb: (e?: Error | null, v?: T) => void) => void) =>
      this.#req<T>(s, what, start);
    const pieces = pipelinedRead(s.sftp, guard, handle, size, this.#depth);
    const checked = async function* () {
      for await (const piece of pieces) {
        if (signal?.aborted) throw abortedError("read", key, signal.reason);
        yield piece;
      }
    };
    return relayDownload(
      checked(),
      this.operations,
      (err) => this.#error("read", key, err, signal),
      () => {
        if (!s.dead) s.sftp.close(handle, () => {});
      },
    );
  }

  async #unlinkAll(list: readonly string[], signal: AbortSignal | undefined): Promise<void> {
    if (list.length === 0) {
      checkSignal(signal, "delete", this.location);
      return;
    }
    await this.#run("delete", list[0] as string, signal, true, (s) =>
      forEachLimited(
        list,
        IO_CONCURRENCY,
        async (key) => {
          try {
            await this.#req<void>(s, "remove", (cb) => s.sftp.unlink(this.#abs(key), cb));
            this.operations.DELETE.count++;
          } catch (err) {
            if (statusCode(err) !== NO_SUCH_FILE) throw err;
          }
        },
        () => checkSignal(signal, "delete", this.location),
      ),
    );
  }

  /** Removes a directory tree (files, then directories deepest first); a missing one is fine. */
  async #removeTree(key: string, signal: AbortSignal | undefined): Promise<void> {
    const files: string[] = [];
    const dirs: string[] = [];
    const pending = [key];
    for (let dir = pending.pop(); dir !== undefined; dir = pending.pop()) {
      dirs.push(dir);
      for (const e of await this.#readdir(dir, "delete generation", signal)) {
        const child = `${dir}/${e.name}`;
        if (isDir(e.mode)) pending.push(child);
        else files.push(child);
      }
    }
    await this.#unlinkAll(files, signal);
    for (const dir of dirs.sort((a, b) => b.length - a.length)) {
      await this.#run("delete", dir, signal, true, async (s) => {
        try {
          await this.#req<void>(s, "rmdir", (cb) => s.sftp.rmdir(this.#abs(dir), cb));
        } catch (err) {
          if (statusCode(err) !== NO_SUCH_FILE) throw err;
        }
      });
      const abs = this.#abs(dir);
      for (const d of this.#dirs) if (d === abs || d.startsWith(`${abs}/`)) this.#dirs.delete(d);
    }
  }

  /** A directory's entries with mode, size and mtime; a missing directory is empty. */
  async #readdir(
    key: string,
    verb: string,
    signal: AbortSignal | undefined,
  ): Promise<Array<{ name: string; mode: number; size: number; mtime: Date }>> {
    const dir = this.#abs(key);
    const list = await this.#run(verb, key, signal, true, async (s) => {
      try {
        return await this.#req<
          Array<{ filename: string; attrs: { mode: number; size: number; mtime: number } }>
        >(s, "readdir", (cb) => s.sftp.readdir(dir === "" ? "." : dir, cb));
      } catch (err) {
        if (statusCode(err) === NO_SUCH_FILE) return [];
        throw err;
      }
    });
    this.operations.LIST.count++;
    return list
      .filter((e) => e.filename !== "." && e.filename !== "..")
      .map((e) => ({
        name: e.filename,
        mode: e.attrs.mode,
        size: e.attrs.size,
        mtime: new Date(e.attrs.mtime * 1000),
      }));
  }

  /** mkdir -p, remembering what exists. Existing directories give a generic failure on OpenSSH. */
  async #mkdirs(s: Session, dir: string): Promise<void> {
    if (dir === "" || dir === "." || dir === "/" || this.#dirs.has(dir)) return;
    const stat = () =>
      this.#req<{ mode: number }>(s, "stat", (cb) => s.sftp.stat(dir, cb)).then(
        (st) => isDir(st.mode),
        (err: unknown) => {
          if (statusCode(err) === NO_SUCH_FILE) return false;
          throw err;
        },
      );
    if (!(await stat())) {
      await this.#mkdirs(s, path.posix.dirname(dir));
      try {
        await this.#req<void>(s, "mkdir", (cb) => s.sftp.mkdir(dir, cb));
      } catch (err) {
        if (statusCode(err) !== FAILURE || !(await stat())) throw err;
      }
    }
    this.#dirs.add(dir);
  }

  // --- connection ------------------------------------------------------------------------------

  /**
   * Runs `fn` on a live connection. A transport error drops the connection (the next call
   * reconnects); an idempotent call is then tried once more on a fresh one.
   */
  async #run<T>(
    verb: string,
    key: string,
    signal: AbortSignal | undefined,
    idempotent: boolean,
    fn: (s: Session) => Promise<T>,
  ): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      checkSignal(signal, verb, this.#url(key));
      let s: Session | undefined;
      try {
        s = await raceAbort(this.#connected(), signal);
        return await raceAbort(fn(s), signal);
      } catch (err) {
        if (err instanceof WalshipError && err.code !== ErrorCodes.STORAGE) throw err;
        const transport = s !== undefined && (s.dead || isTransportError(err));
        if (transport && s) this.#drop(s, err);
        if (transport && idempotent && attempt === 1 && !signal?.aborted) continue;
        throw this.#error(verb, key, err, signal);
      }
    }
  }

  /** One SFTP request; a request unanswered for the request timeout kills the connection. */
  #req<T>(
    s: Session,
    what: string,
    start: (cb: (err?: Error | null, value?: T) => void) => void,
  ): Promise<T> {
    if (s.dead) return Promise.reject(transportError("sftp connection closed"));
    return new Promise<T>((resolve, reject) => {
      const fail = (err: Error) => {
        clearTimeout(timer);
        s.pending.delete(fail);
        reject(err);
      };
      const timer = setTimeout(() => {
        const err = transportError(`${what}: no answer from the server in ${this.#requestTimeoutMs} ms`);
        fail(err);
        this.#drop(s, err);
      }, this.#requestTimeoutMs);
      s.pending.add(fail);
      try {
        start((err, value) => {
          if (!s.pending.has(fail)) return; // failed already (timeout, connection gone)
          clearTimeout(timer);
          s.pending.delete(fail);
          if (err) reject(err);
          else resolve(value as T);
        });
      } catch (err) {
        fail(err as Error);
      }
    });
  }

  #connected(): Promise<Session> {
    if (this.#closed) {
      return Promise.reject(
        new WalshipError(ErrorCodes.ABORTED, `sftp ${this.location}: the client was closed`),
      );
    }
    this.#session ??= this.#connect().catch((err: unknown) => {
      this.#session = undefined;
      throw err;
    });
    return this.#session;
  }

  #drop(s: Session, err: unknown): void {
    if (!s.dead)
      this.#o.log?.warn({ replica: this.location, err: describe(err) }, "sftp connection lost; reconnecting");
    this.#kill(s);
  }

  #kill(s: Session): void {
    if (!s.dead) {
      s.dead = true;
      for (const f of s.onDeath) f();
      const err = transportError("the sftp connection closed");
      for (const fail of [...s.pending]) fail(err);
    }
    // end() says goodbye and half-closes; a hung server never closes its side, and ssh2's destroy()
    // does nothing to a half-closed socket: destroy the socket itself soon after.
    s.client.end();
    const sock = (s.client as unknown as { _sock?: { destroy(): void; destroyed?: boolean } })._sock;
    setTimeout(() => {
      if (sock && !sock.destroyed) sock.destroy();
    }, 500).unref();
    void this.#session?.then(
      (cur) => {
        if (cur === s) this.#session = undefined;
      },
      () => {},
    );
  }

  async #connect(): Promise<Session> {
    const o = this.#o;
    const cfg: ConnectConfig = {
      host: this.#host,
      port: this.#port,
      username: o.user,
      readyTimeout: o.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS,
      keepaliveInterval: o.keepaliveIntervalMs ?? DEFAULT_KEEPALIVE_INTERVAL_MS,
      keepaliveCountMax: o.keepaliveCountMax ?? DEFAULT_KEEPALIVE_COUNT_MAX,
    };
    const password =
      o.password ?? (o.passwordFile ? await this.#readSecret(o.passwordFile, "password-file") : undefined);
    const passphrase =
      o.passphrase ??
      (o.passphraseFile ? await this.#readSecret(o.passphraseFile, "key-passphrase-file") : undefined);
    if (password) cfg.password = password;
    const key = o.privateKey ?? (o.keyPath ? await this.#readKey(o.keyPath) : undefined);
    if (key !== undefined) {
      const parsed = utils.parseKey(key, passphrase);
      if (parsed instanceof Error) {
        const encrypted = /passphrase|encrypted/i.test(parsed.message);
        throw new WalshipError(
          ErrorCodes.CONFIG,
          encrypted && !passphrase
            ? `sftp ${this.location}: the private key ${o.keyPath ?? "(inline)"} is passphrase-protected; set passphrase`
            : `sftp ${this.location}: cannot read the private key ${o.keyPath ?? "(inline)"}: ${parsed.message}`,
          { details: { path: o.keyPath ? "key-path" : "private-key" } },
        );
      }
      cfg.privateKey = key;
      if (passphrase) cfg.passphrase = passphrase;
    }
    if (cfg.password === undefined && cfg.privateKey === undefined) {
      throw new WalshipError(
        ErrorCodes.CONFIG,
        `sftp ${this.location}: set key-path (or password) to log in`,
        {
          details: { path: "key-path" },
        },
      );
    }
    let refused: string | undefined;
    if (!o.insecureIgnoreHostKey) {
      const known = await this.#knownKeys();
      const algorithms = hostKeyAlgorithms(known.keys);
      // Offer only the algorithms that prove a key we know; with none known, the default list (the
      // check then fails with the server's key in the message).
      if (algorithms.length > 0) cfg.algorithms = { serverHostKey: algorithms as never };
      cfg.hostVerifier = (presented: Buffer) => {
        const v = verifyHostKey(presented, known);
        if (v.ok) return true;
        refused = this.#explainHostKey(presented, v.reason);
        return false;
      };
    }
    const client = new Client();
    const s: Session = {
      client,
      sftp: undefined as unknown as SFTPWrapper,
      dead: false,
      onDeath: new Set(),
      pending: new Set(),
    };
    return new Promise<Session>((resolve, reject) => {
      let ready = false;
      const fail = (err: Error) => {
        if (ready) return;
        ready = true;
        client.destroy();
        reject(
          refused
            ? new WalshipError(ErrorCodes.STORAGE, refused, { cause: err, details: { host: o.host } })
            : err,
        );
      };
      client.on("error", (err: Error) => {
        if (!ready) return fail(err);
        this.#o.log?.warn({ replica: this.location, err: err.message }, "sftp connection error");
        this.#kill(s);
      });
      client.on("close", () => {
        if (!ready) return fail(new Error("connection closed during the handshake"));
        this.#kill(s);
      });
      client.on("ready", () => {
        client.sftp((err, sftp) => {
          if (err) return fail(err);
          sftp.on("error", () => this.#kill(s));
          sftp.on("close", () => this.#kill(s));
          s.sftp = sftp;
          if (this.#closed) return fail(new Error("the client was closed while connecting"));
          ready = true;
          resolve(s);
        });
      });
      client.connect(cfg);
      // Small SFTP requests must not wait for Nagle + delayed ACK (~40 ms a round trip); Go's
      // sockets, and so Litestream's, set TCP_NODELAY too.
      client.setNoDelay(true);
    });
  }

  async #readKey(file: string): Promise<Buffer> {
    try {
      return await readFile(file);
    } catch (err) {
      throw new WalshipError(
        ErrorCodes.CONFIG,
        `sftp ${this.location}: cannot read key-path ${file}: ${describe(err)}`,
        {
          cause: err,
          details: { path: "key-path" },
        },
      );
    }
  }

  /** A secret from a file, trailing newlines dropped; errors name the file, never the content. */
  async #readSecret(file: string, key: string): Promise<string> {
    try {
      return (await readFile(file, "utf8")).replace(/[\r\n]+$/, "");
    } catch (err) {
      throw new WalshipError(
        ErrorCodes.CONFIG,
        `sftp ${this.location}: cannot read ${key} ${file}: ${(err as NodeJS.ErrnoException).code ?? "error"}`,
        { details: { path: key, file } },
      );
    }
  }

  /** The pinned keys (host-key, host-key-file), else what the known_hosts files say about this host. */
  async #knownKeys(): Promise<{ keys: HostKey[]; revoked: HostKey[] }> {
    const fileText = this.#o.hostKeyFile
      ? await this.#readSecret(this.#o.hostKeyFile, "host-key-file")
      : undefined;
    const pinned = pinnedHostKeys(this.#o.hostKeys ?? [], fileText);
    if (pinned === "bad-line") {
      throw new WalshipError(
        ErrorCodes.CONFIG,
        `sftp ${this.location}: host-key-file ${this.#o.hostKeyFile} holds a line that is not a public key ("ssh-ed25519 AAAA...")`,
        { details: { path: "host-key-file" } },
      );
    }
    if (pinned.length > 0) return { keys: pinned, revoked: [] };
    return readKnownHosts(
      this.#o.knownHostsFiles ?? [path.join(homedir(), ".ssh", "known_hosts"), "/etc/ssh/ssh_known_hosts"],
      this.#host,
      this.#port,
    );
  }

  #explainHostKey(presented: Buffer, reason: "revoked" | "unknown" | "mismatch"): string {
    const pinned = Boolean(this.#o.hostKeys?.length || this.#o.hostKeyFile);
    return `sftp ${this.location}: ${explainHostKey(presented, reason, this.#host, this.#port, pinned)}`;
  }

  // --- names and errors ------------------------------------------------------------------------

  #abs(key: string): string {
    if (key === "") return this.#root;
    return this.#root === "" ? key : path.posix.join(this.#root, key);
  }

  #url(key: string): string {
    return `${this.location}/${key}`;
  }

  #error(verb: string, key: string, err: unknown, signal: AbortSignal | undefined): WalshipError {
    if (err instanceof WalshipError) return err;
    const url = this.#url(key);
    if (signal?.aborted || isAbortError(err)) return abortedError(verb, url, err);
    const code = statusCode(err);
    if (code === NO_SUCH_FILE && (verb === "read" || verb === "get"))
      return new NotFoundError(url, { cause: err });
    const raw = describe(err);
    const why = /All configured authentication methods failed/i.test(raw)
      ? `the server refused user ${JSON.stringify(this.#o.user)} (check key-path, the key's authorized_keys entry, or password): ${raw}`
      : code === 3
        ? `permission denied on ${this.#abs(key)}; the user must be able to write under path: ${raw}`
        : raw;
    return new WalshipError(ErrorCodes.STORAGE, `${verb} ${url}: ${why}`, {
      cause: err,
      details: { host: this.#o.host, key, ...(code !== undefined ? { sftpStatus: code } : {}) },
    });
  }
}

/** An error that means the connection is unusable (marked so that #run drops it). */
function transportError(message: string): Error {
  return Object.assign(new Error(message), { transport: true });
}

function isFile(mode: number): boolean {
  return (mode & S_IFMT) === S_IFREG;
}

function isDir(mode: number): boolean {
  return (mode & S_IFMT) === S_IFDIR;
}

function statusCode(err: unknown): number | undefined {
  const c = typeof err === "object" && err !== null ? (err as { code?: unknown }).code : undefined;
  return typeof c === "number" ? c : undefined;
}

/** The request never got an answer: connection lost or closed, a timeout, a socket error. */
function isTransportError(err: unknown): boolean {
  if (typeof err !== "object" || err === null) return false;
  if ((err as { transport?: unknown }).transport === true) return true;
  const code = statusCode(err);
  if (code === NO_CONNECTION || code === CONNECTION_LOST) return true;
  if (code !== undefined || err instanceof WalshipError) return false;
  const errno = (err as { code?: unknown }).code;
  if (typeof errno === "string" && /^E[A-Z]+$/.test(errno)) return true;
  return /No response from server|Not connected|No SFTP|Channel|socket|connection|Keepalive/i.test(
    describe(err),
  );
}

function hasExtension(sftp: SFTPWrapper, name: string): boolean {
  const ext = (sftp as unknown as { _extensions?: Record<string, string> })._extensions;
  return ext?.[name] !== undefined;
}

/** Settles with `p`, or rejects at once when the signal fires (the work goes on, unobserved). */
function raceAbort<T>(p: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return p;
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(abortedError("sftp", "request", signal.reason));
    if (signal.aborted) return onAbort();
    signal.addEventListener("abort", onAbort, { once: true });
    p.then(
      (v) => {
        signal.removeEventListener("abort", onAbort);
        resolve(v);
      },
      (err: unknown) => {
        signal.removeEventListener("abort", onAbort);
        reject(err);
      },
    );
  });
}
