/**
 * The remote file system of an SFTP destination, over one connection (sftp-connection.ts): objects
 * written to `<name>.tmp`, fsynced and renamed into place, read with requests in flight, directory
 * listings, `mkdir -p`, deletes; a transport error drops the connection and an idempotent call is
 * retried once on a fresh one. Errors name the object's URL (sftp.ts maps the layout onto keys).
 */
import path from "node:path";
import { addAbortSignal, type Readable } from "node:stream";
import { ErrorCodes, NotFoundError, WalshipError } from "../../shared/errors.ts";
import type { Logger } from "../../shared/log.ts";
import type { OperationCounts } from "./client.ts";
import {
  abortedError,
  checkSignal,
  describe,
  forEachLimited,
  isAbortError,
  raceAbort,
  relayDownload,
} from "./common.ts";
import {
  FAILURE,
  hasExtension,
  isTransportError,
  NO_SUCH_FILE,
  PERMISSION_DENIED,
  type Session,
  type SftpConnection,
  statusCode,
  transportError,
} from "./sftp-connection.ts";
import { pipelinedRead, pipelinedWrite } from "./sftp-transfer.ts";

/** Listing stats / deletes in flight. */
const IO_CONCURRENCY = 32;

const S_IFMT = 0o170000;
const S_IFREG = 0o100000;
const S_IFDIR = 0o040000;

export interface SftpFilesOptions {
  conn: SftpConnection;
  /** The remote root; "" for the login directory. */
  root: string;
  /** The destination's URL, for messages. */
  location: string;
  user: string;
  /** As configured (`host:port`), for error details. */
  host: string;
  /** Requests in flight per transfer. */
  depth: number;
  /** The destination's counters (litestream_replica_operation_total and _bytes). */
  operations: OperationCounts;
  log: Logger | undefined;
}

export class SftpFiles {
  readonly #conn: SftpConnection;
  readonly #root: string;
  readonly #location: string;
  readonly #user: string;
  readonly #host: string;
  readonly #depth: number;
  readonly #operations: OperationCounts;
  readonly #log: Logger | undefined;
  /** Directories known to exist (so a write does one round trip less). */
  readonly #dirs = new Set<string>();
  #warnedNoFsync = false;

  constructor(o: SftpFilesOptions) {
    this.#conn = o.conn;
    this.#root = o.root;
    this.#location = o.location;
    this.#user = o.user;
    this.#host = o.host;
    this.#depth = o.depth;
    this.#operations = o.operations;
    this.#log = o.log;
  }

  // --- objects ---------------------------------------------------------------------------------

  /** `<key>.tmp`, written with requests in flight, fsynced, closed, renamed over `<key>`. */
  async writeObject(
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
        const handle = await this.#conn.req<Buffer>(s, "open", (cb) => s.sftp.open(tmp, "w", cb));
        let open = true;
        const stopBody = () => {
          if (!(body instanceof Uint8Array))
            body.destroy(transportError("the sftp connection closed mid-upload"));
        };
        s.onDeath.add(stopBody);
        try {
          const size = await pipelinedWrite(
            s.sftp,
            (what, start) => this.#conn.req(s, what, start),
            handle,
            body,
            this.#depth,
            () => checkSignal(signal, verb, this.#url(key)),
          );
          // fsync, fstat and close go out together; the server answers them in order.
          const [, st] = await Promise.all([
            this.#fsync(s, handle),
            this.#conn.req<{ mtime: number }>(s, "fstat", (cb) => s.sftp.fstat(handle, cb)),
            this.#conn
              .req<void>(s, "close", (cb) => s.sftp.close(handle, cb))
              .then(() => {
                open = false;
              }),
          ]);
          checkSignal(signal, verb, this.#url(key));
          await this.#rename(s, tmp, file);
          this.#operations.PUT.count++;
          this.#operations.PUT.bytes += size;
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
        this.#log?.warn(
          { replica: this.#location },
          "sftp server offers no fsync@openssh.com; objects are not fsynced",
        );
      }
      return;
    }
    await this.#conn.req<void>(s, "fsync", (cb) => s.sftp.ext_openssh_fsync(handle, (err) => cb(err)));
  }

  /** Replaces `to` atomically where the server offers posix-rename, else removes it first. */
  async #rename(s: Session, from: string, to: string): Promise<void> {
    if (hasExtension(s.sftp, "posix-rename@openssh.com")) {
      await this.#conn.req<void>(s, "rename", (cb) => s.sftp.ext_openssh_rename(from, to, cb));
      return;
    }
    // Plain SFTPv3 rename refuses an existing target.
    await this.#conn
      .req<void>(s, "remove", (cb) => s.sftp.unlink(to, cb))
      .catch((err: unknown) => {
        if (statusCode(err) !== NO_SUCH_FILE) throw err;
      });
    await this.#conn.req<void>(s, "rename", (cb) => s.sftp.rename(from, to, cb));
  }

  /** Opens, stats and streams an object with reads in flight; NotFoundError before any byte. */
  async reader(key: string, signal: AbortSignal | undefined): Promise<Readable> {
    const file = this.#abs(key);
    const opened = await this.#run("read", key, signal, true, async (s) => {
      const handle = await this.#conn.req<Buffer>(s, "open", (cb) => s.sftp.open(file, "r", cb));
      try {
        const st = await this.#conn.req<{ mode: number; size: number }>(s, "fstat", (cb) =>
          s.sftp.fstat(handle, cb),
        );
        if (!isFile(st.mode)) throw Object.assign(new Error("not a regular file"), { code: NO_SUCH_FILE });
        return { s, handle, size: st.size };
      } catch (err) {
        s.sftp.close(handle, () => {});
        throw err;
      }
    });
    this.#operations.GET.count++;
    const { s, handle, size } = opened;
    const guard = <T>(what: string, start: (cb: (e?: Error | null, v?: T) => void) => void) =>
      this.#conn.req<T>(s, what, start);
    const pieces = pipelinedRead(s.sftp, guard, handle, size, this.#depth);
    const checked = async function* () {
      for await (const piece of pieces) {
        if (signal?.aborted) throw abortedError("read", key, signal.reason);
        yield piece;
      }
    };
    return relayDownload(
      checked(),
      this.#operations,
      (err) => this.#error("read", key, err, signal),
      () => {
        if (!s.dead) s.sftp.close(handle, () => {});
      },
    );
  }

  async unlinkAll(list: readonly string[], signal: AbortSignal | undefined): Promise<void> {
    if (list.length === 0) {
      checkSignal(signal, "delete", this.#location);
      return;
    }
    await this.#run("delete", list[0] as string, signal, true, (s) =>
      forEachLimited(
        list,
        IO_CONCURRENCY,
        async (key) => {
          try {
            await this.#conn.req<void>(s, "remove", (cb) => s.sftp.unlink(this.#abs(key), cb));
            this.#operations.DELETE.count++;
          } catch (err) {
            if (statusCode(err) !== NO_SUCH_FILE) throw err;
          }
        },
        () => checkSignal(signal, "delete", this.#location),
      ),
    );
  }

  /** Removes a directory tree (files, then directories deepest first); a missing one is fine. */
  async removeTree(key: string, signal: AbortSignal | undefined): Promise<void> {
    const files: string[] = [];
    const dirs: string[] = [];
    const pending = [key];
    for (let dir = pending.pop(); dir !== undefined; dir = pending.pop()) {
      dirs.push(dir);
      for (const e of await this.readdir(dir, "delete generation", signal)) {
        const child = `${dir}/${e.name}`;
        if (isDir(e.mode)) pending.push(child);
        else files.push(child);
      }
    }
    await this.unlinkAll(files, signal);
    for (const dir of dirs.sort((a, b) => b.length - a.length)) {
      await this.#run("delete", dir, signal, true, async (s) => {
        try {
          await this.#conn.req<void>(s, "rmdir", (cb) => s.sftp.rmdir(this.#abs(dir), cb));
        } catch (err) {
          if (statusCode(err) !== NO_SUCH_FILE) throw err;
        }
      });
      const abs = this.#abs(dir);
      for (const d of this.#dirs) if (d === abs || d.startsWith(`${abs}/`)) this.#dirs.delete(d);
    }
  }

  /** A directory's entries with mode, size and mtime; a missing directory is empty. */
  async readdir(
    key: string,
    verb: string,
    signal: AbortSignal | undefined,
  ): Promise<Array<{ name: string; mode: number; size: number; mtime: Date }>> {
    const dir = this.#abs(key);
    const list = await this.#run(verb, key, signal, true, async (s) => {
      try {
        return await this.#conn.req<
          Array<{ filename: string; attrs: { mode: number; size: number; mtime: number } }>
        >(s, "readdir", (cb) => s.sftp.readdir(dir === "" ? "." : dir, cb));
      } catch (err) {
        if (statusCode(err) === NO_SUCH_FILE) return [];
        throw err;
      }
    });
    this.#operations.LIST.count++;
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
      this.#conn
        .req<{ mode: number }>(s, "stat", (cb) => s.sftp.stat(dir, cb))
        .then(
          (st) => isDir(st.mode),
          (err: unknown) => {
            if (statusCode(err) === NO_SUCH_FILE) return false;
            throw err;
          },
        );
    if (!(await stat())) {
      await this.#mkdirs(s, path.posix.dirname(dir));
      try {
        await this.#conn.req<void>(s, "mkdir", (cb) => s.sftp.mkdir(dir, cb));
      } catch (err) {
        if (statusCode(err) !== FAILURE || !(await stat())) throw err;
      }
    }
    this.#dirs.add(dir);
  }

  // --- connection (sftp-connection.ts) ----------------------------------------------------------

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
        const aborted = (reason: unknown) => abortedError("sftp", "request", reason);
        s = await raceAbort(this.#conn.connected(), signal, aborted);
        return await raceAbort(fn(s), signal, aborted);
      } catch (err) {
        if (err instanceof WalshipError && err.code !== ErrorCodes.STORAGE) throw err;
        const transport = s !== undefined && (s.dead || isTransportError(err));
        if (transport && s) this.#conn.drop(s, err);
        if (transport && idempotent && attempt === 1 && !signal?.aborted) continue;
        throw this.#error(verb, key, err, signal);
      }
    }
  }

  // --- names and errors ------------------------------------------------------------------------

  #abs(key: string): string {
    if (key === "") return this.#root;
    return this.#root === "" ? key : path.posix.join(this.#root, key);
  }

  #url(key: string): string {
    return `${this.#location}/${key}`;
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
      ? `the server refused user ${JSON.stringify(this.#user)} (check key-path, the key's authorized_keys entry, or password): ${raw}`
      : code === PERMISSION_DENIED
        ? `permission denied on ${this.#abs(key)}; the user must be able to write under path: ${raw}`
        : raw;
    return new WalshipError(ErrorCodes.STORAGE, `${verb} ${url}: ${why}`, {
      cause: err,
      details: { host: this.#host, key, ...(code !== undefined ? { sftpStatus: code } : {}) },
    });
  }
}

export function isFile(mode: number): boolean {
  return (mode & S_IFMT) === S_IFREG;
}

export function isDir(mode: number): boolean {
  return (mode & S_IFMT) === S_IFDIR;
}
