/**
 * The shadow WAL under `.<db>-litestream`: the generation file, the current generation's shadow files
 * and where they end (ShadowState), new generations and indexes, and the copy of the real WAL's
 * committed frames. The Db decides when (under which lock) each step runs.
 */

import { randomBytes } from "node:crypto";
import fs from "node:fs";
import { mkdir, open, readdir, readFile, rename, rm } from "node:fs/promises";
import path from "node:path";
import type { Logger } from "../../shared/log.ts";
import { isGenerationName, parseShadowName, shadow } from "../layout.ts";
import { frameSize, parseWalHeader, scanFrames, WAL_HEADER_SIZE } from "../sqlite/wal.ts";
import type { CommitClock } from "./commit-clock.ts";
import { appendedIntact, chainFrom, tailInDatabase, verifyShadow } from "./continuity.ts";
import { appendRange, type HeldFiles, writeDurable } from "./files.ts";
import type { CommitRecord, DbMetrics, DbOptions } from "./options.ts";
import { COPY_CHUNK_BYTES, type ShadowState } from "./state.ts";

export class ShadowWal {
  state: ShadowState | undefined;
  readonly #pageSize: () => number;
  readonly #metrics: DbMetrics;
  readonly #commitListeners: Set<(c: CommitRecord[]) => void>;
  readonly #log: Logger;
  readonly #testHooks: DbOptions["testHooks"];
  readonly #clock: CommitClock | undefined;

  readonly metaPath: string;
  readonly walPath: string;
  readonly files: HeldFiles;

  constructor(
    metaPath: string,
    walPath: string,
    files: HeldFiles,
    opts: {
      /** The database's page size, from the Db's connection. */
      pageSize: () => number;
      metrics: DbMetrics;
      commitListeners: Set<(c: CommitRecord[]) => void>;
      log: Logger;
      testHooks: DbOptions["testHooks"];
      /** When commits were published, for their stamps (see commit-clock.ts). */
      clock?: CommitClock;
    },
  ) {
    this.metaPath = metaPath;
    this.walPath = walPath;
    this.files = files;
    this.#pageSize = opts.pageSize;
    this.#metrics = opts.metrics;
    this.#commitListeners = opts.commitListeners;
    this.#log = opts.log;
    this.#testHooks = opts.testHooks;
    this.#clock = opts.clock;
  }

  /** Path of the shadow WAL file for an index of a generation. */
  walFile(generation: string, index: number): string {
    return shadow.walFile(this.metaPath, generation, index);
  }

  /** Shadow indexes present for a generation, sorted. */
  async indexes(generation: string): Promise<number[]> {
    const names = await readdir(shadow.walDir(this.metaPath, generation)).catch(() => [] as string[]);
    return names
      .map((n) => parseShadowName(n)?.index)
      .filter((i): i is number => i !== undefined)
      .sort((a, b) => a - b);
  }

  async readGenerationFile(): Promise<string | undefined> {
    const text = await readFile(shadow.generationFile(this.metaPath), "utf8").catch(() => "");
    const gen = text.trim();
    return isGenerationName(gen) ? gen : undefined;
  }

  async removeOtherGenerations(keep: string | undefined): Promise<void> {
    const dir = shadow.generationsDir(this.metaPath);
    const names = await readdir(dir).catch(() => [] as string[]);
    for (const name of names) {
      if (name !== keep) await rm(path.join(dir, name), { recursive: true, force: true });
    }
  }

  async load(): Promise<ShadowState | undefined> {
    const gen = await this.readGenerationFile();
    if (!gen) return undefined;
    const indexes = await this.indexes(gen);
    const index = indexes.at(-1);
    if (index === undefined) return undefined;
    const file = this.walFile(gen, index);
    const buf = await readFile(file);
    if (buf.length < WAL_HEADER_SIZE) return undefined;
    const header = buf.subarray(0, WAL_HEADER_SIZE);
    const hdr = parseWalHeader(header);
    // Re-scan the shadow to find its last committed frame and the running checksum there.
    const scan = scanFrames(buf.subarray(WAL_HEADER_SIZE), {
      pageSize: hdr.pageSize,
      bigEndian: hdr.bigEndianChecksums,
      salt1: hdr.salt1,
      salt2: hdr.salt2,
      seed: [hdr.checksum1, hdr.checksum2],
      startOffset: WAL_HEADER_SIZE,
    });
    if (scan.lastCommitEnd !== buf.length) {
      // A crash between append and fsync can leave a torn tail: cut it back to the last commit.
      await fs.promises.truncate(file, scan.lastCommitEnd);
      this.#log.warn({ index, size: buf.length, kept: scan.lastCommitEnd }, "shadow wal tail trimmed");
    }
    return {
      generation: gen,
      index,
      size: scan.lastCommitEnd,
      checksum: scan.lastCommitChecksum,
      header: Uint8Array.from(header),
    };
  }

  async verifyAndCopyUnlocked(
    realHeader: Buffer,
    realSize: number,
    opts: { deferNewGeneration?: boolean } = {},
  ): Promise<boolean> {
    let { reason, restart } = await verifyShadow(
      this.state,
      this.#pageSize(),
      this.metaPath,
      this.walPath,
      realHeader,
      realSize,
    );
    this.#testHooks?.afterVerify?.();
    if (
      restart &&
      !(await tailInDatabase(this.state!, this.walPath, this.files, (n) => this.#copyBuffer(n), realHeader))
    ) {
      reason = "wal restarted with frames after ours that the database does not hold";
    }
    if (reason) {
      await this.newGeneration(reason, realHeader);
      if (!opts.deferNewGeneration) await this.copy();
      return true;
    }
    let changed = await this.copy();
    if (restart) {
      // The WAL restarted under its header while our last frame survived: nothing was overwritten.
      await this.startIndex(realHeader);
      await this.copy();
      changed = true;
    }
    return changed;
  }

  async newGeneration(reason: string, realHeader: Uint8Array): Promise<void> {
    const gen = randomBytes(8).toString("hex");
    const hdr = parseWalHeader(realHeader);
    const dir = shadow.walDir(this.metaPath, gen);
    await mkdir(dir, { recursive: true, mode: 0o700 });
    await writeDurable(this.walFile(gen, 0), realHeader);
    const genFile = shadow.generationFile(this.metaPath);
    await writeDurable(`${genFile}.tmp`, Buffer.from(`${gen}\n`));
    await rename(`${genFile}.tmp`, genFile);
    await this.removeOtherGenerations(gen);
    this.state = {
      generation: gen,
      index: 0,
      size: WAL_HEADER_SIZE,
      checksum: [hdr.checksum1, hdr.checksum2],
      header: Uint8Array.from(realHeader),
    };
    this.#log.info({ generation: gen, reason }, "new generation");
  }

  /** Opens the next shadow index from the real WAL's new header. */
  async startIndex(realHeader: Uint8Array): Promise<void> {
    const s = this.state!;
    const hdr = parseWalHeader(realHeader);
    const index = s.index + 1;
    await writeDurable(this.walFile(s.generation, index), realHeader);
    this.state = {
      generation: s.generation,
      index,
      size: WAL_HEADER_SIZE,
      checksum: [hdr.checksum1, hdr.checksum2],
      header: Uint8Array.from(realHeader),
    };
    this.#log.debug({ index }, "new shadow index");
  }

  #buf: Buffer | undefined;

  /** One read buffer, reused by every copy (copies run one at a time): no 4 MiB garbage per commit. */
  #copyBuffer(size: number): Buffer {
    if (!this.#buf || this.#buf.length < size) this.#buf = Buffer.allocUnsafe(size);
    return this.#buf.subarray(0, size);
  }

  /**
   * Appends the real WAL's new committed frames (same salts, checksums chaining) to the current
   * shadow file. Two passes in bounded memory: scan for the last commit, then copy bytes up to it.
   * The second pass re-reads the WAL, which is safe while our read transaction or the write lock
   * pins it; with `recheck` (nothing pins it), the appended bytes are verified in the shadow and cut
   * off again if the WAL changed between the passes. With `onlyIndexed`, nothing is copied unless the
   * wal-index describes this WAL (and so bounds the copy to what SQLite committed).
   */
  async copy(opts: { recheck?: boolean; onlyIndexed?: boolean } = {}): Promise<boolean> {
    const s = this.state!;
    const hdr = parseWalHeader(s.header);
    const F = frameSize(hdr.pageSize);
    const commits: CommitRecord[] = [];
    let end = s.size;
    let checksum = s.checksum;
    // Only what SQLite counts as committed: a transaction whose writer died before publishing it in
    // the wal-index is complete in the file but not committed, and is written over next (see
    // sqlite/wal-index.ts). The wal-index bounds the copy when it describes this WAL.
    const idx = await this.files.walIndex();
    const indexed = idx?.salts.equals(Buffer.from(s.header.subarray(16, 24))) === true;
    // Without that bound (the WAL has moved on), frames past ours need other proof (tailInDatabase, continuity.ts).
    if (!indexed && opts.onlyIndexed) return false;
    const committed = indexed ? WAL_HEADER_SIZE + idx!.mxFrame * F : Number.POSITIVE_INFINITY;
    const salts = s.header.subarray(16, 24);
    const stamp = this.#clock?.stamper(salts);
    const real = await open(this.walPath, "r");
    try {
      const chunkFrames = Math.max(1, Math.floor(COPY_CHUNK_BYTES / F));
      const buf = this.#copyBuffer(chunkFrames * F);
      let offset = s.size;
      let seed = s.checksum;
      for (;;) {
        const want = Math.min(buf.length, committed - offset);
        if (want <= 0) break;
        const { bytesRead } = await real.read(buf, 0, want, offset);
        // Stamped after the read returned: every commit it saw happened no later than this.
        // Date.now() truncates to the millisecond: + 1 keeps the stamp after a commit made within it.
        const seenAt = Date.now() + 1;
        const whole = bytesRead - (bytesRead % F);
        if (whole === 0) break;
        const scan = scanFrames(buf.subarray(0, whole), chainFrom(hdr, seed, offset));
        for (const c of scan.commits) {
          // Published no later than the copy read it, and perhaps seen published earlier.
          const time = stamp ? stamp((c.end - WAL_HEADER_SIZE) / F, seenAt) : seenAt;
          commits.push({ generation: s.generation, index: s.index, end: c.end, time });
        }
        if (scan.lastCommitEnd > end) {
          end = scan.lastCommitEnd;
          checksum = scan.lastCommitChecksum;
        }
        if (scan.validEnd < offset + whole) break;
        offset += whole;
        // Seed the next chunk from the running checksum of the last valid frame.
        seed = [buf.readUInt32BE(whole - F + 16), buf.readUInt32BE(whole - F + 20)];
      }
      if (end === s.size) return false;
      const shadowFile = this.walFile(s.generation, s.index);
      await appendRange(real, shadowFile, s.size, end, buf);
      if (opts.recheck && !(await appendedIntact(s, shadowFile, end, checksum, buf))) {
        await fs.promises.truncate(shadowFile, s.size);
        return false;
      }
    } finally {
      await real.close();
    }
    this.#clock?.copied(salts, (end - WAL_HEADER_SIZE) / F);
    this.#metrics.totalWalBytes += end - s.size;
    s.size = end;
    s.checksum = checksum;
    if (commits.length > 0) for (const fn of this.#commitListeners) fn(commits);
    return true;
  }

  /** Removes shadow files no destination still needs (`replicaIndexes`: per destination, the lowest index it needs). */
  async clean(replicaIndexes: Map<string, { generation: string; index: number } | undefined>): Promise<void> {
    const s = this.state;
    if (!s) return;
    let min = Number.POSITIVE_INFINITY;
    for (const p of replicaIndexes.values()) {
      if (!p || p.generation !== s.generation) return;
      min = Math.min(min, p.index);
    }
    if (!Number.isFinite(min)) return;
    for (const index of await this.indexes(s.generation)) {
      if (index < min - 1) await rm(this.walFile(s.generation, index), { force: true });
    }
  }
}
