/**
 * age v1 files (age-encryption.org/v1), as streams, the way Litestream v0.3.13 stores each object
 * when `age:` is set: `header ‖ 16-byte nonce ‖ payload`, the payload cut into 64 KiB chunks each
 * sealed with ChaCha20-Poly1305 under a key derived (HKDF-SHA-256, info "payload") from the file key
 * and the nonce; chunk i's nonce is i as 11 big-endian bytes and a last-chunk flag byte.
 *
 * Who does what: the header (file key wrapping for each X25519 recipient, its MAC, and unwrapping with
 * the identities) is the `age-encryption` package's, by age's author; the payload is sealed here with
 * Node's native ChaCha20-Poly1305 (about 15 times faster than the package's JavaScript cipher, and the
 * payload is all the bytes). The file key reaches us through the package's documented `Recipient`
 * interface, and every new file checks that our payload key seals the package's own empty final chunk
 * to the same bytes, so a change in the package cannot go unnoticed.
 *
 * Reading fails closed, naming the object: a plaintext object (an LZ4 frame) where age is expected, an
 * object that is not an age file, one that no identity opens, a header whose MAC fails, a chunk that
 * does not authenticate, a truncated or extended payload. Nothing is passed on before the chunk that
 * holds it authenticates.
 */
import { createCipheriv, createDecipheriv, createSecretKey, hkdfSync, type KeyObject } from "node:crypto";
import { Transform, type TransformCallback } from "node:stream";
import type * as AgeLib from "age-encryption";
import { ErrorCodes, WalshipError } from "../../shared/errors.ts";

/** The first line of every age v1 file. */
let lib: Promise<typeof AgeLib> | undefined;

/**
 * The age library, loaded on the first header written or read: about 100 ms of start-up (it brings
 * @noble/curves) that a plaintext replica never needs. Only its header code is used here.
 */
function ageLib(): Promise<typeof AgeLib> {
  lib ??= import("age-encryption");
  return lib;
}

export const AGE_INTRO = Buffer.from("age-encryption.org/v1\n");
/** The LZ4 frame magic, little-endian: what a plaintext Litestream object starts with. */
export const LZ4_MAGIC = Buffer.from([0x04, 0x22, 0x4d, 0x18]);
const CHUNK = 64 * 1024;
const TAG = 16;
const NONCE = 16;
/** A header larger than this is refused (a few hundred recipients fit). */
const MAX_HEADER = 64 * 1024;
const HEADER_END = Buffer.from("\n--- ");

/** What the first bytes of an object say it is. */
export type Sniffed = "age" | "lz4" | "other" | "short";

/** Classifies an object by its first bytes (at least 22 to tell age apart, 4 for LZ4). Pure. */
export function sniff(head: Uint8Array): Sniffed {
  const b = Buffer.from(head.buffer, head.byteOffset, head.byteLength);
  const n = Math.min(b.length, AGE_INTRO.length);
  if (n > 0 && b.subarray(0, n).equals(AGE_INTRO.subarray(0, n)))
    return n === AGE_INTRO.length ? "age" : "short";
  const m = Math.min(b.length, LZ4_MAGIC.length);
  if (m > 0 && b.subarray(0, m).equals(LZ4_MAGIC.subarray(0, m)))
    return m === LZ4_MAGIC.length ? "lz4" : "short";
  return b.length === 0 ? "short" : "other";
}

function chunkNonce(counter: number, last: boolean): Buffer {
  // The counter as 11 big-endian bytes (2^53 chunks, 512 PiB, is far beyond any object), then the flag.
  const nonce = Buffer.alloc(12);
  nonce.writeUIntBE(Math.floor(counter / 2 ** 48), 0, 5);
  nonce.writeUIntBE(counter % 2 ** 48, 5, 6);
  nonce[11] = last ? 1 : 0;
  return nonce;
}

/**
 * Chunks are sealed and opened with the payload key as a key object, made once per file (the
 * transforms' `#secret`): Node 24.21 tells a key object from key bytes by catching an exception
 * (`isKeyObject`, `isCryptoKey` in its crypto/keys), so a cipher made from bytes cost about 19 µs
 * here against 1.7 µs from a key object; with one cipher per 64 KiB chunk that was about 0.27 s per
 * GiB sealed (docs/benchmarks.md, Encryption).
 */
function seal(key: KeyObject | Buffer, counter: number, last: boolean, plain: Uint8Array): Buffer {
  const c = createCipheriv("chacha20-poly1305", key, chunkNonce(counter, last), { authTagLength: TAG });
  const body = c.update(plain);
  c.final();
  return Buffer.concat([body, c.getAuthTag()]);
}

/** Opens one chunk, or returns undefined when it does not authenticate. */
function open(key: KeyObject, counter: number, last: boolean, sealed: Buffer): Buffer | undefined {
  const d = createDecipheriv("chacha20-poly1305", key, chunkNonce(counter, last), { authTagLength: TAG });
  d.setAuthTag(sealed.subarray(sealed.length - TAG));
  const body = d.update(sealed.subarray(0, sealed.length - TAG));
  try {
    d.final();
  } catch {
    return undefined;
  }
  return body;
}

function payloadKey(fileKey: Uint8Array, nonce: Uint8Array): Buffer {
  return Buffer.from(hkdfSync("sha256", fileKey, nonce, "payload", 32));
}

/**
 * A new age file for these recipients: its header and nonce (to send first) and its payload key.
 * One file key per file, as age requires.
 */
export async function newAgeFile(recipients: readonly string[]): Promise<{ prefix: Buffer; key: Buffer }> {
  if (recipients.length === 0) throw new Error("age: no recipients");
  const { Encrypter } = await ageLib();
  const e = new Encrypter();
  for (const r of recipients) e.addRecipient(r);
  let fileKey: Uint8Array | undefined;
  e.addRecipient({
    wrapFileKey(k: Uint8Array) {
      fileKey = Uint8Array.from(k);
      return [];
    },
  });
  // The empty file: header ‖ nonce ‖ the sealed empty final chunk (16 bytes).
  const empty = await e.encrypt(new Uint8Array(0));
  if (!fileKey) throw new Error("age: the encrypter never handed over the file key");
  const prefix = Buffer.from(empty.subarray(0, empty.length - TAG));
  const key = payloadKey(fileKey, prefix.subarray(prefix.length - NONCE));
  fileKey.fill(0);
  if (!seal(key, 0, true, new Uint8Array(0)).equals(Buffer.from(empty.subarray(empty.length - TAG)))) {
    throw new Error("age: the payload key does not match the age-encryption package's (format changed?)");
  }
  return { prefix, key };
}

/** Encrypts a stream into one age file. Create it with `ageEncryptor`. */
class AgeEncryptTransform extends Transform {
  #prefix: Buffer | undefined;
  readonly #key: Buffer;
  readonly #secret: KeyObject;
  readonly #buf = Buffer.alloc(CHUNK);
  #used = 0;
  #counter = 0;

  constructor(prefix: Buffer, key: Buffer) {
    super();
    this.#prefix = prefix;
    this.#key = key;
    this.#secret = createSecretKey(key);
  }

  #start(): void {
    if (this.#prefix) {
      this.push(this.#prefix);
      this.#prefix = undefined;
    }
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.#start();
    let data = chunk;
    while (data.length > 0) {
      // A full chunk is sealed only once more data follows: the last chunk carries the last flag.
      if (this.#used === CHUNK) {
        this.push(seal(this.#secret, this.#counter++, false, this.#buf));
        this.#used = 0;
      }
      const n = Math.min(CHUNK - this.#used, data.length);
      data.copy(this.#buf, this.#used, 0, n);
      this.#used += n;
      data = data.subarray(n);
    }
    cb();
  }

  override _flush(cb: TransformCallback): void {
    this.#start();
    this.push(seal(this.#secret, this.#counter++, true, this.#buf.subarray(0, this.#used)));
    this.#key.fill(0);
    cb();
  }
}

/** A transform that encrypts what passes through it into one age file for these recipients. */
export async function ageEncryptor(recipients: readonly string[]): Promise<Transform> {
  const { prefix, key } = await newAgeFile(recipients);
  return new AgeEncryptTransform(prefix, key);
}

/** How a decryptor names what it reads in its errors (an object key or path). */
export interface OpenOptions {
  identities: readonly string[];
  /** The object, for messages: `s3://bucket/path/generations/…/00000001_00000000.wal.lz4`. */
  what: string;
}

function decryptError(
  code: typeof ErrorCodes.ENCRYPTION | typeof ErrorCodes.CORRUPT,
  what: string,
  why: string,
) {
  return new WalshipError(code, `decrypt ${what}: ${why}`, { details: { object: what } });
}

/** A plaintext object where age is configured. */
export function plaintextInAgeError(what: string): WalshipError {
  return decryptError(
    ErrorCodes.ENCRYPTION,
    what,
    "a plaintext object in a replica configured with age (a replica mixing plaintext and encrypted objects cannot be restored)",
  );
}

/** An age file where no age keys are configured. */
export function encryptedInPlainError(what: string): WalshipError {
  return new WalshipError(
    ErrorCodes.ENCRYPTION,
    `read ${what}: an age-encrypted object, and the replica has no age keys configured (add its identities under age:)`,
    { details: { object: what } },
  );
}

/** The error for an object whose first bytes are not an age header. */
export function notAgeError(what: string, kind: Sniffed): WalshipError {
  return kind === "lz4"
    ? plaintextInAgeError(what)
    : decryptError(ErrorCodes.CORRUPT, what, "not an age-encrypted object (no age-encryption.org/v1 header)");
}

/** Passes a plaintext object through unchanged, and fails at once if it turns out to be an age file. */
class PlainGuardTransform extends Transform {
  readonly #what: string;
  #head: Buffer | undefined = Buffer.alloc(0);

  constructor(what: string) {
    super();
    this.#what = what;
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    if (this.#head === undefined) {
      cb(null, chunk);
      return;
    }
    const head = Buffer.concat([this.#head, chunk]);
    if (head.length < AGE_INTRO.length) {
      this.#head = head;
      cb();
      return;
    }
    this.#head = undefined;
    if (sniff(head) === "age") cb(encryptedInPlainError(this.#what));
    else cb(null, head);
  }

  override _flush(cb: TransformCallback): void {
    if (this.#head && this.#head.length > 0) this.push(this.#head);
    cb();
  }
}

/** A pass-through that refuses an age file (a replica read without age keys). */
export function plainGuard(what: string): Transform {
  return new PlainGuardTransform(what);
}

/** Decrypts one age file. Create it with `ageDecryptor`. */
class AgeDecryptTransform extends Transform {
  readonly #opts: OpenOptions;
  #head: Buffer | undefined = Buffer.alloc(0);
  #key: Buffer | undefined;
  #secret: KeyObject | undefined;
  /** Payload bytes not opened yet (at most one chunk and what follows it). */
  #parts: Buffer[] = [];
  #partsLen = 0;
  #counter = 0;

  constructor(opts: OpenOptions) {
    super();
    this.#opts = opts;
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    if (this.#head !== undefined) {
      this.#header(chunk)
        .then((rest) => {
          if (rest) this.#payload(rest);
        })
        .then(
          () => cb(),
          (err: unknown) => cb(err as Error),
        );
      return;
    }
    try {
      this.#payload(chunk);
      cb();
    } catch (err) {
      cb(err as Error);
    }
  }

  /** Gathers the header and nonce; returns the payload bytes that followed them once it has them. */
  async #header(chunk: Buffer): Promise<Buffer | undefined> {
    const head = Buffer.concat([this.#head as Buffer, chunk]);
    this.#head = head;
    const kind = sniff(head);
    if (kind !== "age" && kind !== "short") throw notAgeError(this.#opts.what, kind);
    const mark = head.indexOf(HEADER_END);
    const end = mark < 0 ? -1 : head.indexOf(0x0a, mark + HEADER_END.length);
    if (end < 0 || head.length < end + 1 + NONCE) {
      if (head.length > MAX_HEADER + NONCE)
        throw decryptError(ErrorCodes.CORRUPT, this.#opts.what, `age header longer than ${MAX_HEADER} bytes`);
      return undefined;
    }
    const { Decrypter } = await ageLib();
    const d = new Decrypter();
    for (const id of this.#opts.identities) d.addIdentity(id);
    let fileKey: Uint8Array;
    try {
      fileKey = await d.decryptHeader(head.subarray(0, end + 1));
    } catch (err) {
      const msg = err instanceof Error ? err.message : String(err);
      throw /no identity matched/.test(msg)
        ? decryptError(
            ErrorCodes.ENCRYPTION,
            this.#opts.what,
            "no configured age identity opens this object (it was encrypted for other recipients: add the identity of one of them)",
          )
        : decryptError(ErrorCodes.CORRUPT, this.#opts.what, `bad age header (${msg})`);
    }
    this.#key = payloadKey(fileKey, head.subarray(end + 1, end + 1 + NONCE));
    this.#secret = createSecretKey(this.#key);
    fileKey.fill(0);
    this.#head = undefined;
    return head.subarray(end + 1 + NONCE);
  }

  #payload(data: Buffer): void {
    this.#parts.push(data);
    this.#partsLen += data.length;
    // Keep at least one byte past a full chunk before opening it: the last chunk must be opened as last.
    if (this.#partsLen <= CHUNK + TAG) return;
    let buf = this.#parts.length === 1 ? data : Buffer.concat(this.#parts, this.#partsLen);
    while (buf.length > CHUNK + TAG) {
      const plain = open(this.#secret as KeyObject, this.#counter, false, buf.subarray(0, CHUNK + TAG));
      if (!plain) throw this.#corrupt();
      this.#counter++;
      this.push(plain);
      buf = buf.subarray(CHUNK + TAG);
    }
    this.#parts = [buf];
    this.#partsLen = buf.length;
  }

  #corrupt(): WalshipError {
    return decryptError(
      ErrorCodes.CORRUPT,
      this.#opts.what,
      `age payload chunk ${this.#counter} does not authenticate (the object was altered, truncated or extended)`,
    );
  }

  override _flush(cb: TransformCallback): void {
    if (this.#head !== undefined) {
      const kind = sniff(this.#head);
      cb(
        kind === "age" || kind === "short"
          ? decryptError(ErrorCodes.CORRUPT, this.#opts.what, "truncated age header")
          : notAgeError(this.#opts.what, kind),
      );
      return;
    }
    const last = Buffer.concat(this.#parts, this.#partsLen);
    if (last.length < TAG) {
      cb(decryptError(ErrorCodes.CORRUPT, this.#opts.what, "truncated age payload"));
      return;
    }
    const plain = open(this.#secret as KeyObject, this.#counter, true, last);
    if (!plain) {
      cb(this.#corrupt());
      return;
    }
    if (plain.length === 0 && this.#counter > 0) {
      cb(decryptError(ErrorCodes.CORRUPT, this.#opts.what, "empty last age chunk after others"));
      return;
    }
    this.#key?.fill(0);
    this.#secret = undefined;
    this.push(plain);
    cb();
  }
}

/** A transform that decrypts one age file with these identities. */
export function ageDecryptor(opts: OpenOptions): Transform {
  return new AgeDecryptTransform(opts);
}

/** Runs bytes through a transform and gathers the output. */
export async function transformBytes(t: Transform, input: Uint8Array): Promise<Buffer> {
  const out: Buffer[] = [];
  t.on("data", (c: Buffer) => out.push(c));
  const done = new Promise<void>((resolve, reject) => {
    t.once("end", resolve);
    t.once("error", reject);
  });
  t.end(Buffer.from(input.buffer, input.byteOffset, input.byteLength));
  await done;
  return Buffer.concat(out);
}
