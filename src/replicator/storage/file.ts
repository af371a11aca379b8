/**
 * The file destination: Litestream v0.3.13's layout under an absolute directory.
 *
 *   <root>/generations/<GEN>/snapshots/<IIIIIIII>.snapshot.lz4
 *   <root>/generations/<GEN>/wal/<IIIIIIII>_<OOOOOOOO>.wal.lz4
 *   <root>/walship/...                                  (Walship's extras)
 *
 * Every write goes to `<name>.tmp` in the same directory, is fsynced, renamed over the final name,
 * and the directory is fsynced: a reader sees the old object or the new one, never a part. A failed
 * or aborted write removes its temp file. Names outside the layout (and `.tmp` files) are ignored
 * by the listings; a missing directory lists as empty.
 */
import { constants as fsConstants } from "node:fs";
import fs, { type FileHandle } from "node:fs/promises";
import path from "node:path";
import type { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { ErrorCodes, NotFoundError, WalshipError } from "../../shared/errors.ts";
import { syncDir } from "../fs.ts";
import { isGenerationName, keys, parseSegmentName, parseSnapshotName } from "../layout.ts";
import type { SnapshotInfo, WalSegmentInfo } from "../types.ts";
import { type CallOptions, type ReplicaClient, sortSegments, sortSnapshots } from "./client.ts";
import { abortedError, checkSignal, describe, isAbortError, toBytes } from "./common.ts";
import { checkGeneration, checkKey, checkPrefix, checkSegment, checkSnapshot, segmentKeys } from "./names.ts";

/** Mode of the files we create (Litestream copies the database file's mode; 0600 without one). */
export const DEFAULT_FILE_MODE = 0o600;
/** Mode of the directories we create (Litestream copies the parent's mode; 0700 without one). */
export const DEFAULT_DIR_MODE = 0o700;

/** How many file system calls a listing or a bulk delete keeps in flight. */
const IO_CONCURRENCY = 32;

export interface FileReplicaClientOptions {
  /** Mode for new object files; undefined means DEFAULT_FILE_MODE (before the umask). */
  fileMode?: number;
  /** Mode for new directories; undefined means DEFAULT_DIR_MODE (before the umask). */
  dirMode?: number;
}

export class FileReplicaClient implements ReplicaClient {
  readonly type = "file";
  readonly location: string;
  readonly #root: string;
  readonly #fileMode: number;
  readonly #dirMode: number;

  /** `root` must be an absolute directory; it is created on the first write. */
  constructor(root: string, opts: FileReplicaClientOptions = {}) {
    if (typeof root !== "string" || root === "" || !path.isAbsolute(root)) {
      throw new WalshipError(
        ErrorCodes.CONFIG,
        `create file replica: path must be absolute, got ${JSON.stringify(root)}`,
        {
          details: { path: root },
        },
      );
    }
    this.#root = path.resolve(root);
    this.location = this.#root;
    this.#fileMode = opts.fileMode ?? DEFAULT_FILE_MODE;
    this.#dirMode = opts.dirMode ?? DEFAULT_DIR_MODE;
  }

  async generations(opts?: CallOptions): Promise<string[]> {
    checkSignal(opts?.signal, "list generations", keys.generations);
    const entries = await this.#readdir(keys.generations, "list generations");
    return entries
      .filter((e) => e.isDirectory() && isGenerationName(e.name))
      .map((e) => e.name)
      .sort();
  }

  async deleteGeneration(generation: string, opts?: CallOptions): Promise<void> {
    checkGeneration(generation, "delete generation");
    checkSignal(opts?.signal, "delete generation", keys.generation(generation));
    // Extras first: if we stop halfway the generation is still listed and the next retention pass
    // finishes the job; the other order could strand extras no listing ever finds again.
    for (const key of [keys.walshipGeneration(generation), keys.generation(generation)]) {
      try {
        await fs.rm(this.#path(key), { recursive: true, force: true });
      } catch (err) {
        throw this.#storageError("delete", key, err);
      }
    }
  }

  async snapshots(generation: string, opts?: CallOptions): Promise<SnapshotInfo[]> {
    checkGeneration(generation, "list snapshots");
    const dir = keys.snapshots(generation);
    checkSignal(opts?.signal, "list snapshots", dir);
    const found = await this.#listFiles(dir, "list snapshots", parseSnapshotName, opts?.signal);
    return sortSnapshots(
      found.map(({ parsed, size, createdAt }) => ({ generation, index: parsed.index, size, createdAt })),
    );
  }

  async writeSnapshot(
    generation: string,
    index: number,
    body: Readable,
    opts?: CallOptions,
  ): Promise<SnapshotInfo> {
    checkSnapshot(generation, index, "write snapshot");
    const key = keys.snapshot(generation, index);
    const st = await this.#writeObject(key, "write", body, opts?.signal);
    return { generation, index, size: st.size, createdAt: st.mtime };
  }

  async snapshotReader(generation: string, index: number, opts?: CallOptions): Promise<Readable> {
    checkSnapshot(generation, index, "read snapshot");
    return this.#openReader(keys.snapshot(generation, index), opts?.signal);
  }

  async deleteSnapshot(generation: string, index: number, opts?: CallOptions): Promise<void> {
    checkSnapshot(generation, index, "delete snapshot");
    const key = keys.snapshot(generation, index);
    checkSignal(opts?.signal, "delete", key);
    await this.#unlink(key);
  }

  async walSegments(generation: string, opts?: CallOptions): Promise<WalSegmentInfo[]> {
    checkGeneration(generation, "list wal segments");
    const dir = keys.wal(generation);
    checkSignal(opts?.signal, "list wal segments", dir);
    const found = await this.#listFiles(dir, "list wal segments", parseSegmentName, opts?.signal);
    return sortSegments(
      found.map(({ parsed, size, createdAt }) => ({
        generation,
        index: parsed.index,
        offset: parsed.offset,
        size,
        createdAt,
      })),
    );
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
    const st = await this.#writeObject(key, "write", body, opts?.signal);
    return { generation, index, offset, size: st.size, createdAt: st.mtime };
  }

  async walSegmentReader(
    generation: string,
    index: number,
    offset: number,
    opts?: CallOptions,
  ): Promise<Readable> {
    checkSegment(generation, index, offset, "read wal segment");
    return this.#openReader(keys.segment(generation, index, offset), opts?.signal);
  }

  async deleteWalSegments(
    segments: ReadonlyArray<{ generation: string; index: number; offset: number }>,
    opts?: CallOptions,
  ): Promise<void> {
    const list = segmentKeys(segments, "delete wal segments");
    await this.#forEachLimited(list, opts?.signal, "delete", (key) => this.#unlink(key));
  }

  async putExtra(key: string, body: Uint8Array, opts?: CallOptions): Promise<void> {
    checkKey(key, "put extra");
    await this.#writeObject(key, "put", body, opts?.signal);
  }

  async getExtra(key: string, opts?: CallOptions): Promise<Uint8Array> {
    checkKey(key, "get extra");
    checkSignal(opts?.signal, "get", key);
    const file = this.#path(key);
    try {
      const st = await fs.stat(file);
      if (!st.isFile()) throw new NotFoundError(key);
      return new Uint8Array(await fs.readFile(file, { signal: opts?.signal }));
    } catch (err) {
      if (err instanceof WalshipError) throw err;
      if (isMissing(err) || errno(err) === "EISDIR") throw new NotFoundError(key, { cause: err });
      if (opts?.signal?.aborted) throw abortedError("get", key, err);
      throw this.#storageError("get", key, err);
    }
  }

  async listExtras(prefix: string, opts?: CallOptions): Promise<string[]> {
    checkPrefix(prefix, "list extras");
    checkSignal(opts?.signal, "list extras", prefix);
    // Start at the deepest directory the prefix names in full; its last part may be a partial name,
    // as with an object store's prefix.
    const slash = prefix.lastIndexOf("/");
    const start = slash < 0 ? "" : prefix.slice(0, slash);
    const out: string[] = [];
    const pending = [start];
    for (let dir = pending.pop(); dir !== undefined; dir = pending.pop()) {
      checkSignal(opts?.signal, "list extras", prefix);
      for (const e of await this.#readdir(dir, "list extras")) {
        const key = dir === "" ? e.name : `${dir}/${e.name}`;
        if (e.isDirectory()) {
          if (`${key}/`.startsWith(prefix) || prefix.startsWith(`${key}/`)) pending.push(key);
        } else if (e.isFile() && key.startsWith(prefix) && !e.name.endsWith(".tmp")) {
          out.push(key);
        }
      }
    }
    return out.sort();
  }

  async deleteExtras(list: readonly string[], opts?: CallOptions): Promise<void> {
    for (const key of list) checkKey(key, "delete extras");
    await this.#forEachLimited(list, opts?.signal, "delete", (key) => this.#unlink(key));
  }

  /** The absolute path of a key (already checked to stay under the root). */
  #path(key: string): string {
    return key === "" ? this.#root : path.join(this.#root, ...key.split("/"));
  }

  /** Streams a body to `<key>.tmp`, fsyncs, renames over `<key>`, fsyncs the directory. */
  async #writeObject(
    key: string,
    verb: string,
    body: Readable | Uint8Array,
    signal: AbortSignal | undefined,
  ): Promise<{ size: number; mtime: Date }> {
    checkSignal(signal, verb, key);
    const file = this.#path(key);
    const dir = path.dirname(file);
    const tmp = `${file}.tmp`;
    let fh: FileHandle | undefined;
    let created = false;
    try {
      await fs.mkdir(dir, { recursive: true, mode: this.#dirMode });
      fh = await fs.open(tmp, "w", this.#fileMode);
      created = true;
      const out = fh;
      if (body instanceof Uint8Array) {
        await writeAll(out, body);
      } else {
        await pipeline(
          body,
          async (source: AsyncIterable<unknown>) => {
            for await (const chunk of source) await writeAll(out, toBytes(chunk));
          },
          { signal },
        );
      }
      await out.sync();
      const st = await out.stat();
      fh = undefined;
      await out.close();
      checkSignal(signal, verb, key);
      await fs.rename(tmp, file);
      created = false;
      await syncDir(dir);
      return { size: st.size, mtime: st.mtime };
    } catch (err) {
      await fh?.close().catch(() => {});
      if (created) await fs.rm(tmp, { force: true }).catch(() => {});
      if (err instanceof WalshipError) throw err;
      if (signal?.aborted || isAbortError(err)) throw abortedError(verb, key, err);
      throw this.#storageError(verb, key, err);
    }
  }

  /** Opens the object first, so a missing one is a NotFoundError here rather than a stream error. */
  async #openReader(key: string, signal: AbortSignal | undefined): Promise<Readable> {
    checkSignal(signal, "read", key);
    let fh: FileHandle | undefined;
    try {
      fh = await fs.open(this.#path(key), fsConstants.O_RDONLY);
      const st = await fh.stat();
      if (!st.isFile()) throw new NotFoundError(key);
      checkSignal(signal, "read", key);
      const out = fh;
      fh = undefined;
      return out.createReadStream({ signal });
    } catch (err) {
      await fh?.close().catch(() => {});
      if (err instanceof WalshipError) throw err;
      if (isMissing(err)) throw new NotFoundError(key, { cause: err });
      throw this.#storageError("read", key, err);
    }
  }

  async #unlink(key: string): Promise<void> {
    try {
      await fs.unlink(this.#path(key));
    } catch (err) {
      if (isMissing(err)) return;
      throw this.#storageError("delete", key, err);
    }
  }

  /** Directory entries of a key; a missing directory is empty. */
  async #readdir(dirKey: string, verb: string) {
    try {
      return await fs.readdir(this.#path(dirKey), { withFileTypes: true });
    } catch (err) {
      if (isMissing(err)) return [];
      throw this.#storageError(verb, dirKey, err);
    }
  }

  /** The regular files in a directory whose names parse, with their size and mtime. */
  async #listFiles<T>(
    dirKey: string,
    verb: string,
    parse: (name: string) => T | undefined,
    signal: AbortSignal | undefined,
  ): Promise<Array<{ parsed: T; size: number; createdAt: Date }>> {
    const named: Array<{ key: string; parsed: T }> = [];
    for (const e of await this.#readdir(dirKey, verb)) {
      if (!e.isFile()) continue;
      const parsed = parse(e.name);
      if (parsed !== undefined) named.push({ key: `${dirKey}/${e.name}`, parsed });
    }
    const out: Array<{ parsed: T; size: number; createdAt: Date }> = [];
    await this.#forEachLimited(named, signal, verb, async ({ key, parsed }) => {
      try {
        const st = await fs.stat(this.#path(key));
        out.push({ parsed, size: st.size, createdAt: st.mtime });
      } catch (err) {
        if (isMissing(err)) return; // deleted since the readdir
        throw this.#storageError(verb, key, err);
      }
    });
    return out;
  }

  /** Runs `fn` over the items with bounded concurrency, stopping early on abort or the first error. */
  async #forEachLimited<T>(
    items: readonly T[],
    signal: AbortSignal | undefined,
    verb: string,
    fn: (item: T) => Promise<void>,
  ): Promise<void> {
    let next = 0;
    let failed = false;
    const worker = async () => {
      while (!failed && next < items.length) {
        const item = items[next++] as T;
        checkSignal(signal, verb, this.location);
        try {
          await fn(item);
        } catch (err) {
          failed = true;
          throw err;
        }
      }
    };
    const workers = Array.from({ length: Math.min(IO_CONCURRENCY, items.length) }, worker);
    const results = await Promise.allSettled(workers);
    const rejected = results.find((r): r is PromiseRejectedResult => r.status === "rejected");
    if (rejected) throw rejected.reason;
  }

  #storageError(verb: string, key: string, err: unknown): WalshipError {
    const file = this.#path(key);
    return new WalshipError(ErrorCodes.STORAGE, `${verb} ${key}: ${describe(err)}`, {
      cause: err,
      details: { key, path: file },
    });
  }
}

async function writeAll(fh: FileHandle, bytes: Uint8Array): Promise<void> {
  let done = 0;
  while (done < bytes.byteLength) {
    const { bytesWritten } = await fh.write(bytes, done, bytes.byteLength - done);
    done += bytesWritten;
  }
}

function errno(err: unknown): string | undefined {
  return typeof err === "object" && err !== null && "code" in err && typeof err.code === "string"
    ? err.code
    : undefined;
}

/** ENOENT, or a path part that is a file where a directory should be: no object at that key. */
function isMissing(err: unknown): boolean {
  const code = errno(err);
  return code === "ENOENT" || code === "ENOTDIR";
}
