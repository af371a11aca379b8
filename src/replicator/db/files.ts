/**
 * The Db's own descriptors of the database and -shm files, and the small file helpers of the shadow
 * WAL (ranges read, appended and written durably; local file errors named).
 */

import { type FileHandle, open, stat } from "node:fs/promises";
import { describeError, ErrorCodes, WalshipError } from "../../shared/errors.ts";
import { readWalIndexHeader, type WalIndexHeader } from "../sqlite/wal-index.ts";

/**
 * Our own descriptors of the database and -shm files, open until close() (the Db closes them last).
 * POSIX locks belong to the process, and closing any descriptor of a file drops every lock the
 * process holds on it: opening and closing the -shm or the database file next to our SQLite
 * connections would silently release their read marks and write lock (SQLite keeps its own
 * descriptors open for this reason).
 */
export class HeldFiles {
  #files: { db?: FileHandle; shm?: FileHandle; shmIno?: number } = {};

  readonly path: string;

  constructor(path: string) {
    this.path = path;
  }

  /** The database file, read through our long-lived descriptor (see HeldFiles). */
  async db(): Promise<FileHandle> {
    this.#files.db ??= await open(this.path, "r");
    return this.#files.db;
  }

  /**
   * The wal-index header, read through our long-lived descriptor of -shm (see HeldFiles). A -shm
   * recreated since (every connection gone at some point) is another inode: the old descriptor's
   * locks are on the old one, so it can be closed, and the new file opened.
   */
  async walIndex(): Promise<WalIndexHeader | undefined> {
    const shmPath = `${this.path}-shm`;
    const ino = (await stat(shmPath).catch(() => undefined))?.ino;
    if (ino === undefined) return undefined;
    if (this.#files.shm && this.#files.shmIno !== ino) {
      // Forgotten before the close: shmFd must never name a descriptor being closed (and reused).
      const old = this.#files.shm;
      this.#files.shm = undefined;
      await old.close();
    }
    if (!this.#files.shm) {
      try {
        const fh = await open(shmPath, "r");
        this.#files.shmIno = (await fh.stat()).ino;
        this.#files.shm = fh;
      } catch {
        return undefined;
      }
    }
    return readWalIndexHeader(this.#files.shm);
  }

  /** Our descriptor of -shm, once walIndex() has opened it (for the commit clock's cheap reads). */
  get shmFd(): number | undefined {
    return this.#files.shm?.fd;
  }

  /** Closes both descriptors: only once no SQLite connection of ours is left (see HeldFiles). */
  async close(): Promise<void> {
    const { db, shm } = this.#files;
    this.#files = {};
    await db?.close();
    await shm?.close();
  }
}

// --- small file helpers ----------------------------------------------------------------------------

export async function readRange(file: string, position: number, length: number): Promise<Buffer> {
  const fh = await open(file, "r");
  try {
    const buf = Buffer.alloc(length);
    const { bytesRead } = await fh.read(buf, 0, length, position);
    return buf.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
}

/**
 * Bytes [start, end) of `file` in chunks of up to `chunkSize`, every chunk a view of one buffer the
 * next step fills again (a consumer that keeps one must copy it). Calls `short(at)` and throws what
 * it returns when the file ends at `at`, before `end`.
 */
export async function* readChunks(
  file: string,
  start: number,
  end: number,
  chunkSize: number,
  short: (at: number) => Error,
): AsyncGenerator<Buffer> {
  const fh = await open(file, "r");
  try {
    const buf = Buffer.allocUnsafe(Math.min(chunkSize, Math.max(1, end - start)));
    for (let at = start; at < end; ) {
      const { bytesRead } = await fh.read(buf, 0, Math.min(buf.length, end - at), at);
      if (bytesRead === 0) throw short(at);
      yield buf.subarray(0, bytesRead);
      at += bytesRead;
    }
  } finally {
    await fh.close();
  }
}

/** Copies bytes [from, to) of `src` onto the end of `dst` (whose size is `from`), then fsyncs. */
export async function appendRange(
  src: FileHandle,
  dst: string,
  from: number,
  to: number,
  buf: Buffer,
): Promise<void> {
  try {
    const out = await open(dst, "r+");
    try {
      const st = await out.stat();
      if (st.size !== from) await out.truncate(from);
      let pos = from;
      while (pos < to) {
        const n = Math.min(buf.length, to - pos);
        const { bytesRead } = await src.read(buf, 0, n, pos);
        if (bytesRead !== n) throw new WalshipError(ErrorCodes.WAL, `copy wal: short read at offset ${pos}`);
        await out.write(buf, 0, n, pos);
        pos += n;
      }
      await out.sync();
    } finally {
      await out.close();
    }
  } catch (err) {
    // A full disk or a failing one: say which file (the next copy truncates the partial tail).
    throw fileError(`copy wal to shadow wal ${dst}`, dst, err);
  }
}

export async function writeDurable(file: string, data: Uint8Array): Promise<void> {
  try {
    const fh = await open(file, "w", 0o600);
    try {
      await fh.writeFile(data);
      await fh.sync();
    } finally {
      await fh.close();
    }
  } catch (err) {
    throw fileError(`write ${file}`, file, err);
  }
}

/** A local file error (ENOSPC, EIO, EACCES, ...) as a WAL error naming the file; ours pass through. */
function fileError(what: string, file: string, err: unknown): WalshipError {
  if (err instanceof WalshipError) return err;
  const errno = (err as NodeJS.ErrnoException).code;
  return new WalshipError(ErrorCodes.WAL, `${what}: ${describeError(err)}`, {
    cause: err,
    details: { path: file, ...(errno ? { errno } : {}) },
  });
}
