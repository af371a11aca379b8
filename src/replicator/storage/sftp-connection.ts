/**
 * One SSH connection with its SFTP channel, for the SFTP destination (sftp.ts): connecting (keys,
 * passwords and passphrases read from their files at every connection, the host key verified),
 * keepalives, a timeout per request, and dropping a connection that failed so the next call
 * reconnects. A dropped or closed connection fails its pending requests at once.
 */
import { readFile } from "node:fs/promises";
import { homedir } from "node:os";
import path from "node:path";
import ssh2, { type ConnectConfig, type SFTPWrapper, type Client as SshClient } from "ssh2";
import { ErrorCodes, WalshipError } from "../../shared/errors.ts";
import { describe } from "./common.ts";
import type { SftpReplicaClientOptions } from "./sftp.ts";
import {
  explainHostKey,
  type HostKey,
  hostKeyAlgorithms,
  pinnedHostKeys,
  readKnownHosts,
  verifyHostKey,
} from "./ssh-host-keys.ts";

export const DEFAULT_CONNECT_TIMEOUT_MS = 30_000;
export const DEFAULT_REQUEST_TIMEOUT_MS = 60_000;
export const DEFAULT_KEEPALIVE_INTERVAL_MS = 15_000;
export const DEFAULT_KEEPALIVE_COUNT_MAX = 3;

/** SFTP status codes (draft-ietf-secsh-filexfer-02). */
export const NO_SUCH_FILE = 2;
export const FAILURE = 4;
export const PERMISSION_DENIED = 3;
const NO_CONNECTION = 6;
const CONNECTION_LOST = 7;

// ssh2 is CommonJS: its classes come through the default export.
const { Client, utils } = ssh2;

export interface Session {
  client: SshClient;
  sftp: SFTPWrapper;
  /** Set when the connection is gone: every request on it fails. */
  dead: boolean;
  /** Called once when it dies (a write waiting on its body must not wait for it forever). */
  onDeath: Set<() => void>;
  /** Requests awaiting an answer: failed at once when the connection dies, so no timer outlives it. */
  pending: Set<(err: Error) => void>;
}

export class SftpConnection {
  readonly #o: SftpReplicaClientOptions;
  readonly #host: string;
  readonly #port: number;
  /** The destination's URL, for messages. */
  readonly #location: string;
  readonly #requestTimeoutMs: number;
  #session: Promise<Session> | undefined;
  #closed = false;

  constructor(o: SftpReplicaClientOptions, where: { host: string; port: number; location: string }) {
    this.#o = o;
    this.#host = where.host;
    this.#port = where.port;
    this.#location = where.location;
    this.#requestTimeoutMs = o.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
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

  /** One SFTP request; a request unanswered for the request timeout kills the connection. */
  req<T>(s: Session, what: string, start: (cb: (err?: Error | null, value?: T) => void) => void): Promise<T> {
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
        this.drop(s, err);
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

  /** The live connection, connecting when there is none. */
  connected(): Promise<Session> {
    if (this.#closed) {
      return Promise.reject(
        new WalshipError(ErrorCodes.ABORTED, `sftp ${this.#location}: the client was closed`),
      );
    }
    this.#session ??= this.#connect().catch((err: unknown) => {
      this.#session = undefined;
      throw err;
    });
    return this.#session;
  }

  /** Drops a connection that failed (logged once); the next call reconnects. */
  drop(s: Session, err: unknown): void {
    if (!s.dead)
      this.#o.log?.warn(
        { replica: this.#location, err: describe(err) },
        "sftp connection lost; reconnecting",
      );
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
            ? `sftp ${this.#location}: the private key ${o.keyPath ?? "(inline)"} is passphrase-protected; set passphrase`
            : `sftp ${this.#location}: cannot read the private key ${o.keyPath ?? "(inline)"}: ${parsed.message}`,
          { details: { path: o.keyPath ? "key-path" : "private-key" } },
        );
      }
      cfg.privateKey = key;
      if (passphrase) cfg.passphrase = passphrase;
    }
    if (cfg.password === undefined && cfg.privateKey === undefined) {
      throw new WalshipError(
        ErrorCodes.CONFIG,
        `sftp ${this.#location}: set key-path (or password) to log in`,
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
        this.#o.log?.warn({ replica: this.#location, err: err.message }, "sftp connection error");
        this.#kill(s);
      });
      client.on("close", () => {
        if (!ready) return fail(new Error("connection closed during the handshake"));
        // Logged like any lost connection unless we closed it (then it is dead already): a server
        // or network that closes it cleanly sends no error event first.
        this.drop(s, new Error("closed by the server or the network"));
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
        `sftp ${this.#location}: cannot read key-path ${file}: ${describe(err)}`,
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
        `sftp ${this.#location}: cannot read ${key} ${file}: ${(err as NodeJS.ErrnoException).code ?? "error"}`,
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
        `sftp ${this.#location}: host-key-file ${this.#o.hostKeyFile} holds a line that is not a public key ("ssh-ed25519 AAAA...")`,
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
    return `sftp ${this.#location}: ${explainHostKey(presented, reason, this.#host, this.#port, pinned)}`;
  }
}

/** An error that means the connection is unusable (marked so that #run drops it). */
export function transportError(message: string): Error {
  return Object.assign(new Error(message), { transport: true });
}

export function statusCode(err: unknown): number | undefined {
  const c = typeof err === "object" && err !== null ? (err as { code?: unknown }).code : undefined;
  return typeof c === "number" ? c : undefined;
}

/** The request never got an answer: connection lost or closed, a timeout, a socket error. */
export function isTransportError(err: unknown): boolean {
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

export function hasExtension(sftp: SFTPWrapper, name: string): boolean {
  const ext = (sftp as unknown as { _extensions?: Record<string, string> })._extensions;
  return ext?.[name] !== undefined;
}
