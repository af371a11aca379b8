/**
 * The SFTP destination: Litestream v0.3.13's layout under a directory on an SSH server, usually a
 * chrooted sftp-only account. This file maps the layout onto keys; sftp-files.ts is the remote file
 * system (the objects, listings and deletes), sftp-connection.ts the connection, sftp-transfer.ts the
 * pipelined reads and writes (these are the only importers of ssh2).
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
import path from "node:path";
import type { Readable } from "node:stream";
import { ErrorCodes, WalshipError } from "../../shared/errors.ts";
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
import { newOperationCounts } from "./common.ts";
import { checkGeneration, checkKey, checkPrefix, checkSegment, checkSnapshot, segmentKeys } from "./names.ts";
import { SftpConnection } from "./sftp-connection.ts";
import { isDir, isFile, SftpFiles } from "./sftp-files.ts";
import { parsePublicKey } from "./ssh-host-keys.ts";

/** Requests in flight per transfer (as ssh2's fastPut). */
export const DEFAULT_DEPTH = 64;

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

export class SftpReplicaClient implements ReplicaClient {
  readonly type = "sftp";
  readonly location: string;
  readonly operations: OperationCounts = newOperationCounts();
  readonly #conn: SftpConnection;
  readonly #files: SftpFiles;

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
    const p = opts.path ?? "";
    const root = p === "" ? "" : path.posix.normalize(p).replace(/\/+$/, "") || "/";
    const where = port === 22 ? host : `${host.includes(":") ? `[${host}]` : host}:${port}`;
    this.location = `sftp://${opts.user}@${where}${root.startsWith("/") ? "" : "/"}${root}`;
    this.#conn = new SftpConnection(opts, { host, port, location: this.location });
    this.#files = new SftpFiles({
      conn: this.#conn,
      root,
      location: this.location,
      user: opts.user,
      host: opts.host,
      depth: opts.depth ?? DEFAULT_DEPTH,
      operations: this.operations,
      log: opts.log,
    });
  }

  /**
   * Closes the connection for good: requests in flight fail at once and later calls are refused, so
   * nothing (a retry, a reconnect) keeps the process alive after shutdown.
   */
  close(): void {
    this.#conn.close();
  }

  async generations(opts?: CallOptions): Promise<string[]> {
    const entries = await this.#files.readdir(keys.generations, "list generations", opts?.signal);
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
      await this.#files.removeTree(key, opts?.signal);
    }
  }

  async snapshots(generation: string, opts?: CallOptions): Promise<SnapshotInfo[]> {
    checkGeneration(generation, "list snapshots");
    const out: SnapshotInfo[] = [];
    for (const e of await this.#files.readdir(keys.snapshots(generation), "list snapshots", opts?.signal)) {
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
    const { size, mtime } = await this.#files.writeObject(
      keys.snapshot(generation, index),
      "write",
      body,
      opts?.signal,
    );
    return { generation, index, size, createdAt: mtime };
  }

  async snapshotReader(generation: string, index: number, opts?: CallOptions): Promise<Readable> {
    checkSnapshot(generation, index, "read snapshot");
    return this.#files.reader(keys.snapshot(generation, index), opts?.signal);
  }

  async deleteSnapshot(generation: string, index: number, opts?: CallOptions): Promise<void> {
    checkSnapshot(generation, index, "delete snapshot");
    await this.#files.unlinkAll([keys.snapshot(generation, index)], opts?.signal);
  }

  async walSegments(generation: string, opts?: CallOptions): Promise<WalSegmentInfo[]> {
    checkGeneration(generation, "list wal segments");
    const out: WalSegmentInfo[] = [];
    for (const e of await this.#files.readdir(keys.wal(generation), "list wal segments", opts?.signal)) {
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
    const { size, mtime } = await this.#files.writeObject(key, "write", body, opts?.signal);
    return { generation, index, offset, size, createdAt: mtime };
  }

  async walSegmentReader(
    generation: string,
    index: number,
    offset: number,
    opts?: CallOptions,
  ): Promise<Readable> {
    checkSegment(generation, index, offset, "read wal segment");
    return this.#files.reader(keys.segment(generation, index, offset), opts?.signal);
  }

  async deleteWalSegments(
    segments: ReadonlyArray<{ generation: string; index: number; offset: number }>,
    opts?: CallOptions,
  ): Promise<void> {
    const list = segmentKeys(segments, "delete wal segments");
    await this.#files.unlinkAll(list, opts?.signal);
  }

  async putExtra(key: string, body: Uint8Array, opts?: CallOptions): Promise<void> {
    checkKey(key, "put extra");
    await this.#files.writeObject(key, "put", body, opts?.signal);
  }

  async getExtra(key: string, opts?: CallOptions): Promise<Uint8Array> {
    checkKey(key, "get extra");
    const parts: Buffer[] = [];
    for await (const chunk of await this.#files.reader(key, opts?.signal)) parts.push(chunk as Buffer);
    return new Uint8Array(Buffer.concat(parts));
  }

  async listExtras(prefix: string, opts?: CallOptions): Promise<string[]> {
    checkPrefix(prefix, "list extras");
    // Start at the deepest directory the prefix names in full; its last part may be partial.
    const slash = prefix.lastIndexOf("/");
    const out: string[] = [];
    const pending = [slash < 0 ? "" : prefix.slice(0, slash)];
    for (let dir = pending.pop(); dir !== undefined; dir = pending.pop()) {
      for (const e of await this.#files.readdir(dir, "list extras", opts?.signal)) {
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
    await this.#files.unlinkAll(list, opts?.signal);
  }
}
