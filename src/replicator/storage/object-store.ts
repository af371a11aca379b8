/**
 * The ReplicaClient of a flat object store (GCS, Azure Blob), in Litestream v0.3.13's layout under the
 * replica's path:
 *
 *   <path>/generations/<GEN>/snapshots/<IIIIIIII>.snapshot.lz4
 *   <path>/generations/<GEN>/wal/<IIIIIIII>_<OOOOOOOO>.wal.lz4
 *   <path>/walship/...                                  (Walship's extras)
 *
 * Everything about names lives here (checks, the root joined as Go's path.Join joins it, parsing,
 * sorting every listing); a backend supplies only the five object verbs of `ObjectBackend` in terms of
 * full keys, and turns its SDK's failures into WalshipErrors (NotFoundError for a missing object).
 */
import { addAbortSignal, type Readable } from "node:stream";
import { isGenerationName, keys, parseSegmentName, parseSnapshotName } from "../layout.ts";
import type { SnapshotInfo, WalSegmentInfo } from "../types.ts";
import {
  type CallOptions,
  type OperationCounts,
  type ReplicaClient,
  sortSegments,
  sortSnapshots,
} from "./client.ts";
import { checkSignal, rootPrefix } from "./common.ts";
import { checkGeneration, checkKey, checkPrefix, checkSegment, checkSnapshot, segmentKeys } from "./names.ts";

/** One object of a listing. */
export interface ListedObject {
  key: string;
  size: number;
  /** The time the service gives for the object (GCS timeCreated, Azure Creation-Time). */
  createdAt: Date;
}

/** What a flat object store must offer, in full keys. Every method honours the signal. */
export interface ObjectBackend {
  /** "gcs", "abs" (Litestream's replica type names). */
  readonly type: string;
  /** `gs://bucket`, `abs://account@container`, for messages: a full key is appended after "/". */
  readonly base: string;
  readonly operations: OperationCounts;
  /**
   * Hands each page of objects under `prefix` to `onPage`; with `delimiter`, one level only, and the
   * sub-prefixes (ending in "/") as well. Order within pages does not matter.
   */
  list(
    prefix: string,
    delimiter: boolean,
    signal: AbortSignal | undefined,
    onPage: (objects: ListedObject[], prefixes: string[]) => void | Promise<void>,
    /** For messages: "list snapshots", ... */
    verb?: string,
  ): Promise<void>;
  /** Stores a body (replacing), or rejects leaving any previous object as it was. */
  put(
    key: string,
    body: Readable | Uint8Array,
    signal: AbortSignal | undefined,
    /** For messages: "write" (layout objects) or "put" (extras). */
    verb?: string,
  ): Promise<{ size: number; createdAt: Date }>;
  /** A stream of the stored bytes; NotFoundError before any byte when missing. */
  reader(key: string, signal: AbortSignal | undefined): Promise<Readable>;
  /** The stored bytes; NotFoundError when missing. */
  bytes(key: string, signal: AbortSignal | undefined): Promise<Uint8Array>;
  /** Deletes the keys; a missing key is success. */
  delete(keys: readonly string[], signal: AbortSignal | undefined): Promise<void>;
  /** Releases connections. */
  close?(): void;
}

export class ObjectStoreClient implements ReplicaClient {
  readonly type: string;
  readonly location: string;
  readonly #b: ObjectBackend;
  /** "" or ending in "/". */
  readonly #root: string;

  constructor(backend: ObjectBackend, path: string) {
    this.#b = backend;
    this.type = backend.type;
    this.#root = rootPrefix(path);
    this.location = `${backend.base}${this.#root === "" ? "" : `/${this.#root.replace(/\/$/, "")}`}`;
  }

  get operations(): OperationCounts {
    return this.#b.operations;
  }

  close(): void {
    this.#b.close?.();
  }

  async generations(opts?: CallOptions): Promise<string[]> {
    const prefix = this.#key(`${keys.generations}/`);
    checkSignal(opts?.signal, "list generations", this.#url(prefix));
    const found = new Set<string>();
    await this.#b.list(
      prefix,
      true,
      opts?.signal,
      (_objects, prefixes) => {
        for (const p of prefixes) {
          const name = p.slice(prefix.length).replace(/\/$/, "");
          if (isGenerationName(name)) found.add(name);
        }
      },
      "list generations",
    );
    return [...found].sort();
  }

  async deleteGeneration(generation: string, opts?: CallOptions): Promise<void> {
    checkGeneration(generation, "delete generation");
    checkSignal(opts?.signal, "delete generation", this.#url(this.#key(keys.generation(generation))));
    // Extras first: if we stop halfway the generation is still listed and the next retention pass
    // finishes the job; the other order could strand extras no listing ever finds again.
    for (const dir of [keys.walshipGeneration(generation), keys.generation(generation)]) {
      const found: string[] = [];
      await this.#b.list(
        this.#key(`${dir}/`),
        false,
        opts?.signal,
        (objects) => {
          for (const o of objects) found.push(o.key);
        },
        "delete generation",
      );
      await this.#b.delete(found, opts?.signal);
    }
  }

  async snapshots(generation: string, opts?: CallOptions): Promise<SnapshotInfo[]> {
    checkGeneration(generation, "list snapshots");
    const prefix = this.#key(`${keys.snapshots(generation)}/`);
    checkSignal(opts?.signal, "list snapshots", this.#url(prefix));
    const out: SnapshotInfo[] = [];
    await this.#b.list(
      prefix,
      true,
      opts?.signal,
      (objects) => {
        for (const o of objects) {
          const parsed = parseSnapshotName(o.key.slice(prefix.length));
          if (parsed) out.push({ generation, index: parsed.index, size: o.size, createdAt: o.createdAt });
        }
      },
      "list snapshots",
    );
    return sortSnapshots(out);
  }

  async writeSnapshot(
    generation: string,
    index: number,
    body: Readable,
    opts?: CallOptions,
  ): Promise<SnapshotInfo> {
    checkSnapshot(generation, index, "write snapshot");
    const key = this.#key(keys.snapshot(generation, index));
    const { size, createdAt } = await this.#put(key, "write", body, opts?.signal);
    return { generation, index, size, createdAt };
  }

  async snapshotReader(generation: string, index: number, opts?: CallOptions): Promise<Readable> {
    checkSnapshot(generation, index, "read snapshot");
    const key = this.#key(keys.snapshot(generation, index));
    checkSignal(opts?.signal, "read", this.#url(key));
    return this.#b.reader(key, opts?.signal);
  }

  async deleteSnapshot(generation: string, index: number, opts?: CallOptions): Promise<void> {
    checkSnapshot(generation, index, "delete snapshot");
    const key = this.#key(keys.snapshot(generation, index));
    checkSignal(opts?.signal, "delete", this.#url(key));
    await this.#b.delete([key], opts?.signal);
  }

  async walSegments(generation: string, opts?: CallOptions): Promise<WalSegmentInfo[]> {
    checkGeneration(generation, "list wal segments");
    const prefix = this.#key(`${keys.wal(generation)}/`);
    checkSignal(opts?.signal, "list wal segments", this.#url(prefix));
    const out: WalSegmentInfo[] = [];
    await this.#b.list(
      prefix,
      true,
      opts?.signal,
      (objects) => {
        for (const o of objects) {
          const parsed = parseSegmentName(o.key.slice(prefix.length));
          if (parsed) {
            out.push({
              generation,
              index: parsed.index,
              offset: parsed.offset,
              size: o.size,
              createdAt: o.createdAt,
            });
          }
        }
      },
      "list wal segments",
    );
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
    const key = this.#key(keys.segment(generation, index, offset));
    const { size, createdAt } = await this.#put(key, "write", body, opts?.signal);
    return { generation, index, offset, size, createdAt };
  }

  async walSegmentReader(
    generation: string,
    index: number,
    offset: number,
    opts?: CallOptions,
  ): Promise<Readable> {
    checkSegment(generation, index, offset, "read wal segment");
    const key = this.#key(keys.segment(generation, index, offset));
    checkSignal(opts?.signal, "read", this.#url(key));
    return this.#b.reader(key, opts?.signal);
  }

  async deleteWalSegments(
    segments: ReadonlyArray<{ generation: string; index: number; offset: number }>,
    opts?: CallOptions,
  ): Promise<void> {
    const list = segmentKeys(segments, "delete wal segments").map((k) => this.#key(k));
    checkSignal(opts?.signal, "delete wal segments", this.location);
    await this.#b.delete(list, opts?.signal);
  }

  async putExtra(key: string, body: Uint8Array, opts?: CallOptions): Promise<void> {
    checkKey(key, "put extra");
    await this.#put(this.#key(key), "put", body, opts?.signal);
  }

  async getExtra(key: string, opts?: CallOptions): Promise<Uint8Array> {
    checkKey(key, "get extra");
    const full = this.#key(key);
    checkSignal(opts?.signal, "get", this.#url(full));
    return this.#b.bytes(full, opts?.signal);
  }

  async listExtras(prefix: string, opts?: CallOptions): Promise<string[]> {
    checkPrefix(prefix, "list extras");
    const full = this.#key(prefix);
    checkSignal(opts?.signal, "list extras", this.#url(full));
    const out: string[] = [];
    await this.#b.list(
      full,
      false,
      opts?.signal,
      (objects) => {
        for (const o of objects) if (o.key.startsWith(this.#root)) out.push(o.key.slice(this.#root.length));
      },
      "list extras",
    );
    return out.sort();
  }

  async deleteExtras(list: readonly string[], opts?: CallOptions): Promise<void> {
    for (const key of list) checkKey(key, "delete extras");
    checkSignal(opts?.signal, "delete extras", this.location);
    await this.#b.delete(
      list.map((k) => this.#key(k)),
      opts?.signal,
    );
  }

  async #put(
    key: string,
    verb: string,
    body: Readable | Uint8Array,
    signal: AbortSignal | undefined,
  ): Promise<{ size: number; createdAt: Date }> {
    try {
      checkSignal(signal, verb, this.#url(key));
      // An abort also fails a body that is still being read.
      if (signal && !(body instanceof Uint8Array)) addAbortSignal(signal, body);
      return await this.#b.put(key, body, signal, verb);
    } finally {
      // A failed or aborted upload stops what feeds it (Litestream's stuck-pipe hang, #524); after a
      // full read this does nothing.
      if (!(body instanceof Uint8Array) && !body.readableEnded) body.destroy();
    }
  }

  #key(rel: string): string {
    return this.#root + rel;
  }

  #url(key: string): string {
    return `${this.#b.base}/${key}`;
  }
}
