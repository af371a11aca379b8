/**
 * The sealing layer: a ReplicaClient around any destination's client that keeps every object of a
 * replica in one form, age-encrypted (Litestream v0.3.13's `age:`) or plaintext, and refuses to read
 * or write the other. Everything above it (sync, snapshots, retention, restore, validation, listings)
 * is unchanged: it writes and reads LZ4 frames, and this layer turns them into age(LZ4(data)) on the
 * way out and back on the way in. Object names are unchanged; listed sizes are the stored sizes.
 *
 * Rules it keeps:
 * - age mode: snapshots, WAL segments and Walship's side objects (`walship/…`: commit times and
 *   snapshot positions) are written encrypted to the recipients in force, each a separate age file;
 *   every read must be an age file that one identity opens. Anything else fails, naming the object:
 *   a plaintext object (ENCRYPTION), one no identity opens (ENCRYPTION), a damaged one (CORRUPT).
 * - plain mode: a read that meets an age file fails (ENCRYPTION) instead of an LZ4 error.
 * - Before its first write, the layer looks at what the path holds (`inspect`: the first bytes of
 *   one object per generation). A generation in the other form stops every write (ENCRYPTION), since
 *   a replica mixing forms cannot be restored, except in age mode with `allowPlaintextGenerations`,
 *   where only writes into those generations are refused. A failed look is tried again at the next
 *   write; nothing is written before it succeeds.
 */
import type { Readable, Transform } from "node:stream";
import { ErrorCodes, isNotFound, WalshipError } from "../../shared/errors.ts";
import type { AgeKeyring, AgeSettings } from "../age/keys.ts";
import {
  ageDecryptor,
  ageEncryptor,
  encryptedInPlainError,
  plainGuard,
  plaintextInAgeError,
  type Sniffed,
  sniff,
  transformBytes,
} from "../age/stream.ts";
import { keys } from "../layout.ts";
import type { SnapshotInfo, WalSegmentInfo } from "../types.ts";
import type { CallOptions, ReplicaClient } from "./client.ts";

export type Sealing =
  | { mode: "plain" }
  | {
      mode: "age";
      /** The keys in force; called for each object, so a rotated key file is picked up. */
      keys: () => Promise<AgeKeyring>;
      allowPlaintextGenerations?: boolean;
    };

/**
 * The sealing a replica's `age:` block asks for. `writing`: the replicator (recipients required and
 * checked against the identities); restores and listings need identities only.
 */
export function sealingFor(age: AgeSettings | undefined, where: string, writing: boolean): Sealing {
  if (!age) return { mode: "plain" };
  // keys.ts (and the age library it loads) only for a replica with age: (start-up, docs/benchmarks.md).
  let source: Promise<() => Promise<AgeKeyring>> | undefined;
  return {
    mode: "age",
    keys: async () => {
      source ??= import("../age/keys.ts").then((m) => m.ageKeySource(age, `${where}.age`, { writing }));
      return (await source)();
    },
    allowPlaintextGenerations: age.allowPlaintextGenerations,
  };
}

/** What one generation of a path holds, judged by one of its objects. */
export interface GenerationForm {
  generation: string;
  /** The object looked at, relative to the root. */
  object: string;
  form: "age" | "plain" | "unknown";
}

const HEAD_BYTES = 22;

function formOf(kind: Sniffed): GenerationForm["form"] {
  return kind === "age" ? "age" : kind === "lz4" ? "plain" : "unknown";
}

/** Reads the first bytes of a stream and closes it. */
async function head(body: Readable, n: number): Promise<Buffer> {
  const got: Buffer[] = [];
  let len = 0;
  try {
    for await (const c of body) {
      got.push(c as Buffer);
      len += (c as Buffer).length;
      if (len >= n) break;
    }
  } finally {
    body.destroy();
  }
  return Buffer.concat(got).subarray(0, n);
}

/** Pipes `src` into `t`, passing errors forward and an early close of `t` back to `src`. */
function chain(src: Readable, t: Transform): Readable {
  src.once("error", (err) => t.destroy(err));
  t.once("close", () => {
    if (!src.destroyed) src.destroy();
  });
  return src.pipe(t);
}

/** The generation a side object belongs to (`walship/generations/<gen>/…`), if any. */
function extraGeneration(key: string): string | undefined {
  return /^walship\/generations\/([0-9a-f]{16})\//.exec(key)?.[1];
}

export class SealedReplicaClient implements ReplicaClient {
  readonly inner: ReplicaClient;
  readonly sealing: Sealing;
  #checked: Promise<void> | undefined;
  /** Generations in the other form, left alone (age mode with allowPlaintextGenerations). */
  #foreign = new Set<string>();

  readonly checkAccess?: (opts?: CallOptions) => Promise<void>;

  constructor(inner: ReplicaClient, sealing: Sealing) {
    this.inner = inner;
    this.sealing = sealing;
    const check = inner.checkAccess?.bind(inner);
    if (check) this.checkAccess = check;
  }

  get type(): string {
    return this.inner.type;
  }
  get location(): string {
    return this.inner.location;
  }
  get operations() {
    return this.inner.operations;
  }

  #where(key: string): string {
    return `${this.inner.location.replace(/\/+$/, "")}/${key}`;
  }

  /**
   * The form of each generation of the path, from the first bytes of its newest snapshot (else its
   * first segment). An object deleted meanwhile (retention) is passed over.
   */
  async inspect(opts?: CallOptions): Promise<GenerationForm[]> {
    const out: GenerationForm[] = [];
    const look = async (generation: string, object: string, open: () => Promise<Readable>) => {
      try {
        out.push({ generation, object, form: formOf(sniff(await head(await open(), HEAD_BYTES))) });
      } catch (err) {
        if (!isNotFound(err)) throw err;
      }
    };
    for (const generation of await this.inner.generations(opts)) {
      const snap = (await this.inner.snapshots(generation, opts)).at(-1);
      const seg = snap ? undefined : (await this.inner.walSegments(generation, opts))[0];
      if (snap)
        await look(generation, keys.snapshot(generation, snap.index), () =>
          this.inner.snapshotReader(generation, snap.index, opts),
        );
      else if (seg)
        await look(generation, keys.segment(generation, seg.index, seg.offset), () =>
          this.inner.walSegmentReader(generation, seg.index, seg.offset, opts),
        );
    }
    return out;
  }

  /**
   * Checks the path before the first write (see the head of this file); at start, the replicator
   * calls it itself so that a refusal stops the start. Returns the generations left alone.
   */
  check(opts?: CallOptions): Promise<ReadonlySet<string>> {
    this.#checked ??= this.#check(opts).catch((err: unknown) => {
      this.#checked = undefined;
      throw err;
    });
    return this.#checked.then(() => this.#foreign);
  }

  async #check(opts?: CallOptions): Promise<void> {
    const age = this.sealing.mode === "age";
    const other = (await this.inspect(opts)).filter((g) => g.form === (age ? "plain" : "age"));
    const first = other[0];
    if (!first) return;
    const list = other.map((g) => g.generation).join(", ");
    if (this.sealing.mode === "age" && this.sealing.allowPlaintextGenerations) {
      for (const g of other) this.#foreign.add(g.generation);
      return;
    }
    throw new WalshipError(
      ErrorCodes.ENCRYPTION,
      age
        ? `replica ${this.inner.location} holds plaintext generations (${list}; ${this.#where(first.object)} is an LZ4 frame), and age is configured: a replica mixing plaintext and encrypted objects cannot be restored; use an empty path, or set age.allow-plaintext-generations to encrypt new generations beside them`
        : `replica ${this.inner.location} holds age-encrypted generations (${list}; ${this.#where(first.object)}), and no age keys are configured: configure the replica's age identities and recipients, or use another path`,
      { details: { object: this.#where(first.object), generations: other.map((g) => g.generation) } },
    );
  }

  async #beforeWrite(generation: string | undefined, opts?: CallOptions): Promise<void> {
    const foreign = await this.check(opts);
    if (generation !== undefined && foreign.has(generation)) {
      throw new WalshipError(
        ErrorCodes.ENCRYPTION,
        `replica ${this.inner.location}: generation ${generation} holds plaintext objects; encrypted objects are never added to it (restart to begin a new generation)`,
        { details: { generation } },
      );
    }
  }

  async #sealStream(body: Readable): Promise<Readable> {
    if (this.sealing.mode === "plain") return body;
    const k = await this.sealing.keys();
    return chain(body, await ageEncryptor(k.recipients));
  }

  async #sealBytes(body: Uint8Array): Promise<Uint8Array> {
    if (this.sealing.mode === "plain") return body;
    const k = await this.sealing.keys();
    return transformBytes(await ageEncryptor(k.recipients), body);
  }

  async #openStream(body: Readable, key: string): Promise<Readable> {
    const what = this.#where(key);
    if (this.sealing.mode === "plain") return chain(body, plainGuard(what));
    const k = await this.sealing.keys().catch((err: unknown) => {
      body.destroy();
      throw err;
    });
    return chain(body, ageDecryptor({ identities: k.identities, what }));
  }

  async #openBytes(body: Uint8Array, key: string): Promise<Uint8Array> {
    const what = this.#where(key);
    const kind = sniff(body.subarray(0, HEAD_BYTES));
    if (this.sealing.mode === "plain") {
      if (kind === "age") throw encryptedInPlainError(what);
      return body;
    }
    // Side objects are JSON: anything but an age file is plaintext here.
    if (kind === "lz4" || kind === "other") throw plaintextInAgeError(what);
    const k = await this.sealing.keys();
    return transformBytes(ageDecryptor({ identities: k.identities, what }), body);
  }

  // --- listings and deletes: names and sizes only, passed through -----------------------------------

  generations(opts?: CallOptions): Promise<string[]> {
    return this.inner.generations(opts);
  }
  deleteGeneration(generation: string, opts?: CallOptions): Promise<void> {
    return this.inner.deleteGeneration(generation, opts);
  }
  snapshots(generation: string, opts?: CallOptions): Promise<SnapshotInfo[]> {
    return this.inner.snapshots(generation, opts);
  }
  deleteSnapshot(generation: string, index: number, opts?: CallOptions): Promise<void> {
    return this.inner.deleteSnapshot(generation, index, opts);
  }
  walSegments(generation: string, opts?: CallOptions): Promise<WalSegmentInfo[]> {
    return this.inner.walSegments(generation, opts);
  }
  deleteWalSegments(
    segments: ReadonlyArray<{ generation: string; index: number; offset: number }>,
    opts?: CallOptions,
  ): Promise<void> {
    return this.inner.deleteWalSegments(segments, opts);
  }
  listExtras(prefix: string, opts?: CallOptions): Promise<string[]> {
    return this.inner.listExtras(prefix, opts);
  }
  deleteExtras(list: readonly string[], opts?: CallOptions): Promise<void> {
    return this.inner.deleteExtras(list, opts);
  }

  // --- writes: checked, then sealed -------------------------------------------------------------------

  async writeSnapshot(
    generation: string,
    index: number,
    body: Readable,
    opts?: CallOptions,
  ): Promise<SnapshotInfo> {
    try {
      await this.#beforeWrite(generation, opts);
      return await this.inner.writeSnapshot(generation, index, await this.#sealStream(body), opts);
    } catch (err) {
      body.destroy();
      throw err;
    }
  }

  async writeWalSegment(
    generation: string,
    index: number,
    offset: number,
    body: Readable | Uint8Array,
    opts?: CallOptions,
  ): Promise<WalSegmentInfo> {
    try {
      await this.#beforeWrite(generation, opts);
      const sealed = body instanceof Uint8Array ? await this.#sealBytes(body) : await this.#sealStream(body);
      return await this.inner.writeWalSegment(generation, index, offset, sealed, opts);
    } catch (err) {
      if (!(body instanceof Uint8Array)) body.destroy();
      throw err;
    }
  }

  async putExtra(key: string, body: Uint8Array, opts?: CallOptions): Promise<void> {
    await this.#beforeWrite(extraGeneration(key), opts);
    await this.inner.putExtra(key, await this.#sealBytes(body), opts);
  }

  // --- reads: opened --------------------------------------------------------------------------------

  async snapshotReader(generation: string, index: number, opts?: CallOptions): Promise<Readable> {
    return this.#openStream(
      await this.inner.snapshotReader(generation, index, opts),
      keys.snapshot(generation, index),
    );
  }

  async walSegmentReader(
    generation: string,
    index: number,
    offset: number,
    opts?: CallOptions,
  ): Promise<Readable> {
    return this.#openStream(
      await this.inner.walSegmentReader(generation, index, offset, opts),
      keys.segment(generation, index, offset),
    );
  }

  async getExtra(key: string, opts?: CallOptions): Promise<Uint8Array> {
    return this.#openBytes(await this.inner.getExtra(key, opts), key);
  }

  close(): void {
    this.inner.close?.();
  }
}
