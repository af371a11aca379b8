/**
 * The S3 destination: AWS S3 and the S3-compatible stores (MinIO, R2, B2, Spaces, Hetzner, Scaleway,
 * Linode, Filebase), in Litestream v0.3.13's layout under the replica's path in a bucket:
 *
 *   <path>/generations/<GEN>/snapshots/<IIIIIIII>.snapshot.lz4
 *   <path>/generations/<GEN>/wal/<IIIIIIII>_<OOOOOOOO>.wal.lz4
 *   <path>/walship/...                                  (Walship's extras)
 *
 * The path is joined the way Litestream joins it (Go's path.Join: cleaned, a trailing "/" dropped, a
 * leading "/" kept), so both tools find the same keys. An empty path puts `generations/` at the
 * bucket root.
 *
 * This file maps the layout onto S3 requests, made by a transport (s3-transport.ts): our own over
 * node:http(s) when the keys are given and the region is known (s3-http.ts: `S3HttpReplicaClient`),
 * else the AWS SDK's (s3-sdk.ts and s3-connection.ts: `S3ReplicaClient`; createReplicaClient picks).
 * Around it: s3-upload.ts (uploads), s3-download.ts (downloads resumed after a broken connection),
 * s3-errors.ts (errors naming the object), s3-sse.ts (SSE). This module loads no SDK: the SDK's
 * client is made by the `S3ReplicaClient` of s3-sdk.ts.
 *
 * - Credentials: the configured keys, or the key files (credential-file.ts: re-read while running),
 *   or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, else the AWS SDK's default chain (web identity token
 *   file as IRSA sets it, EKS Pod Identity / container credentials, shared profile, instance metadata).
 * - Bodies of up to one part (default 8 MiB) go up in one PutObject; larger ones stream up as a
 *   multipart upload (s3-upload.ts) with 2 parts in flight at once, in at most 4 part buffers (32
 *   MiB with the defaults) the client reuses from one upload to the next, aborted on any failure or
 *   abort.
 * - Both transports retry as the SDK's standard retry mode does: 5xx, 429/throttling, timeouts and
 *   dropped connections, with exponential backoff and jitter; every part is an in-memory buffer, so
 *   every request can be retried.
 * - Every listing is sorted here: stores do not all return keys in order.
 * - Deletes go in DeleteObjects batches of at most 1000 keys; keys a store refuses become one error.
 * - Checksums only where the API requires one (some compatibles reject the SDK's newer headers), and
 *   DeleteObjects carries a Content-MD5, which older stores demand.
 */
import { addAbortSignal, Readable } from "node:stream";
import { ErrorCodes, NotFoundError, WalshipError } from "../../shared/errors.ts";
import type { Logger } from "../../shared/log.ts";
import type { OperationCounts } from "./client.ts";
import { abortedError, checkSignal, describe, isAbortError } from "./common.ts";
import type { ListedObject, ObjectBackend } from "./object-store.ts";
import { resumableBody } from "./s3-download.ts";
import { isMissingKey, s3Error } from "./s3-errors.ts";
import { nextListStart } from "./s3-shared.ts";
import type { SseSettings } from "./s3-sse.ts";
import type { S3Transport } from "./s3-transport.ts";
import { DEFAULT_UPLOAD_QUEUE_SIZE, PartPool, uploadBody } from "./s3-upload.ts";

export { rootPrefix } from "./common.ts";
export {
  DEFAULT_CONNECT_TIMEOUT_MS,
  DEFAULT_MAX_ATTEMPTS,
  DEFAULT_REQUEST_TIMEOUT_MS,
} from "./s3-shared.ts";
export { DEFAULT_UPLOAD_QUEUE_SIZE, MAX_PARTS } from "./s3-upload.ts";

/** Default multipart part size: also the largest body sent as one PutObject. */
export const DEFAULT_PART_SIZE_BYTES = 8 * 1024 * 1024;
/** S3's smallest part (every part but the last must be at least this big). */
export const MIN_PART_SIZE_BYTES = 5 * 1024 * 1024;
/** S3's largest part. */
export const MAX_PART_SIZE_BYTES = 5 * 1024 * 1024 * 1024;
/** S3's most keys per DeleteObjects request. */
export const DELETE_BATCH_KEYS = 1000;

/** How many failed keys a delete error names in its message (all of them are in `details`). */
const FAILED_KEYS_IN_MESSAGE = 10;

/** Where and how to reach the bucket (the config's `s3` settings map onto it one to one). */
export interface S3Settings {
  bucket: string;
  /** Key prefix. From a URL: cleaned, no leading `/`. From YAML: as written. "" = bucket root. */
  path: string;
  /** Undefined = look the bucket's region up (only when no endpoint is set). */
  region?: string;
  /** Full URL with scheme, e.g. `https://nyc3.digitaloceanspaces.com`. Undefined = AWS. */
  endpoint?: string;
  forcePathStyle: boolean;
  /** Skip TLS certificate checks. */
  skipVerify: boolean;
  /** Undefined = the AWS default credential chain (env, files, instance roles). */
  accessKeyId?: string;
  secretAccessKey?: string;
  /** Files holding the keys instead (both or neither; not with the keys themselves). Walship keys. */
  accessKeyIdFile?: string;
  secretAccessKeyFile?: string;
  /** Server-side encryption (Walship keys; Litestream v0.5's names). Undefined = none asked. */
  sse?: SseSettings;
}
export interface S3ReplicaClientOptions {
  /** For the few events that are not thrown (a region lookup fallback, an upload left unaborted). */
  log?: Logger;
  /** Attempts per request, first try included; undefined = DEFAULT_MAX_ATTEMPTS; 1 = no retries. */
  maxAttempts?: number;
  /** Multipart part size, 5 MiB to 5 GiB; undefined = DEFAULT_PART_SIZE_BYTES. */
  partSizeBytes?: number;
  /** Parts of one upload in flight at once; undefined = DEFAULT_UPLOAD_QUEUE_SIZE; 1 = one at a time. */
  uploadQueueSize?: number;
  /** Socket idle timeout per request; undefined = DEFAULT_REQUEST_TIMEOUT_MS; 0 = none. */
  requestTimeoutMs?: number;
  /** Key files are read again after this long; undefined = DEFAULT_CREDENTIAL_REFRESH_MS. */
  credentialRefreshMs?: number;
}

/**
 * The S3 destination's behaviour on a transport (`makeTransport` gets the settings and the request
 * options); the layout and name checks are object-store.ts's. Made by `S3ReplicaClient` (s3-sdk.ts)
 * or `S3HttpReplicaClient` (s3-http.ts).
 */
export class S3Backend implements ObjectBackend {
  readonly type = "s3";
  readonly base: string;
  readonly #settings: S3Settings;
  readonly #bucket: string;
  readonly #partSize: number;
  readonly #queueSize: number;
  /** Part buffers for multipart uploads, reused from one upload to the next (s3-upload.ts). */
  readonly #pool: PartPool;
  readonly #t: S3Transport;
  readonly #log: Logger | undefined;

  constructor(
    settings: S3Settings,
    opts: S3ReplicaClientOptions,
    makeTransport: (settings: S3Settings, opts: S3ReplicaClientOptions) => S3Transport,
  ) {
    if (typeof settings?.bucket !== "string" || settings.bucket === "") {
      throw new WalshipError(ErrorCodes.CONFIG, "create s3 replica: bucket required", {
        details: { bucket: settings?.bucket },
      });
    }
    const partSize = opts.partSizeBytes ?? DEFAULT_PART_SIZE_BYTES;
    if (!Number.isInteger(partSize) || partSize < MIN_PART_SIZE_BYTES || partSize > MAX_PART_SIZE_BYTES) {
      throw new WalshipError(
        ErrorCodes.CONFIG,
        `create s3 replica: part size must be an integer from 5 MiB to 5 GiB, got ${partSize}`,
        { details: { partSizeBytes: partSize } },
      );
    }
    const queueSize = opts.uploadQueueSize ?? DEFAULT_UPLOAD_QUEUE_SIZE;
    if (!Number.isInteger(queueSize) || queueSize < 1) {
      throw new WalshipError(
        ErrorCodes.CONFIG,
        `create s3 replica: upload queue size must be a positive integer, got ${queueSize}`,
        { details: { uploadQueueSize: queueSize } },
      );
    }
    this.#settings = settings;
    this.#bucket = settings.bucket;
    this.base = `s3://${this.#bucket}`;
    this.#partSize = partSize;
    this.#queueSize = queueSize;
    this.#pool = new PartPool(partSize, queueSize + 2);
    this.#log = opts.log;
    this.#t = makeTransport(settings, opts);
  }

  /** Calls and bytes by Litestream's operation names (GET/PUT/DELETE/LIST), for its metrics. */
  get operations(): OperationCounts {
    return this.#t.operations;
  }

  /** Closes the transport and its connections; the client must not be used afterwards. */
  close(): void {
    this.#t.close();
    this.#pool.clear();
  }

  async list(
    prefix: string,
    delimiter: boolean,
    signal: AbortSignal | undefined,
    onPage: (objects: ListedObject[], prefixes: string[]) => void | Promise<void>,
    verb = "list",
  ): Promise<void> {
    let token: string | undefined;
    let startAfter: string | undefined;
    for (;;) {
      const q = { prefix, delimiter, token, startAfter };
      const page = await this.#send(verb, prefix, signal, () => this.#t.listPage(q, signal));
      await onPage(page.objects, page.prefixes);
      if (!page.truncated) return;
      checkSignal(signal, verb, this.#url(prefix));
      ({ token, startAfter } = nextListStart(
        page.token,
        () => [...page.objects.map((o) => o.key), ...page.prefixes],
        startAfter,
        { verb, url: this.#url(prefix), bucket: this.#bucket, key: prefix },
      ));
    }
  }

  put(
    key: string,
    body: Readable | Uint8Array,
    signal: AbortSignal | undefined,
    verb = "write",
  ): Promise<{ size: number; createdAt: Date }> {
    return this.#put(key, verb, body, signal);
  }

  reader(key: string, signal: AbortSignal | undefined): Promise<Readable> {
    return this.#reader(key, signal);
  }

  async bytes(key: string, signal: AbortSignal | undefined): Promise<Uint8Array> {
    const out = await this.#send("get", key, signal, () => this.#t.getObject(key, signal), true);
    if (out.Body === undefined) return new Uint8Array(0);
    const chunks: Buffer[] = [];
    try {
      for await (const c of out.Body) chunks.push(c as Buffer);
    } catch (err) {
      throw this.#error("get", key, err, signal);
    }
    return Buffer.concat(chunks);
  }

  delete(keys: readonly string[], signal: AbortSignal | undefined): Promise<void> {
    return this.#deleteKeys(keys, signal);
  }

  // -------------------------------------------------------------------------------------------------

  #url(key: string): string {
    return `s3://${this.#bucket}/${key}`;
  }

  /** Sends one request; its error becomes ours, a missing key a NotFoundError when `notFound`. */
  async #send<T>(
    verb: string,
    key: string,
    signal: AbortSignal | undefined,
    send: () => Promise<T>,
    notFound = false,
  ): Promise<T> {
    checkSignal(signal, verb, this.#url(key));
    try {
      return await send();
    } catch (err) {
      if (notFound && isMissingKey(err) && !signal?.aborted) {
        throw new NotFoundError(this.#url(key), { cause: err });
      }
      throw this.#error(verb, key, err, signal);
    }
  }

  /** DeleteObjects in batches of at most 1000 keys; keys the store refused become one STORAGE error. */
  async #deleteKeys(list: readonly string[], signal: AbortSignal | undefined): Promise<void> {
    for (let at = 0; at < list.length; at += DELETE_BATCH_KEYS) {
      const batch = list.slice(at, at + DELETE_BATCH_KEYS);
      const label = batch.length === 1 ? (batch[0] ?? "") : `${batch[0]} and ${batch.length - 1} more`;
      const errors = await this.#send("delete", label, signal, () => this.#t.deleteObjects(batch, signal));
      // A key that is already gone is what we wanted; some stores still report it.
      const failed = errors.filter((e) => e.Code !== "NoSuchKey");
      if (failed.length > 0) {
        const shown = failed
          .slice(0, FAILED_KEYS_IN_MESSAGE)
          .map((e) => `${e.Key} (${e.Code ?? "unknown"}${e.Message ? `: ${e.Message}` : ""})`)
          .join(", ");
        const more =
          failed.length > FAILED_KEYS_IN_MESSAGE ? ` and ${failed.length - FAILED_KEYS_IN_MESSAGE} more` : "";
        throw new WalshipError(
          ErrorCodes.STORAGE,
          `delete s3://${this.#bucket}/: ${failed.length} of ${batch.length} objects not deleted: ${shown}${more}`,
          {
            details: {
              bucket: this.#bucket,
              s3Code: failed[0]?.Code,
              failed: failed.map((e) => ({ key: e.Key, code: e.Code, message: e.Message })),
            },
          },
        );
      }
    }
  }

  /**
   * Stores a body: a Uint8Array that fits in a part as one PutObject, anything else through
   * s3-upload.ts (one PutObject, or a multipart upload with parts in parallel).
   */
  async #put(
    key: string,
    verb: string,
    body: Readable | Uint8Array,
    signal: AbortSignal | undefined,
  ): Promise<{ size: number; createdAt: Date }> {
    const url = this.#url(key);
    checkSignal(signal, verb, url);
    if (body instanceof Uint8Array && body.byteLength <= this.#partSize) {
      await this.#putObject(key, verb, body, signal);
      return { size: body.byteLength, createdAt: new Date() };
    }
    const source = body instanceof Uint8Array ? Readable.from([body], { objectMode: false }) : body;
    if (signal) addAbortSignal(signal, source);
    try {
      const size = await uploadBody(
        {
          transport: this.#t,
          bucket: this.#bucket,
          key,
          pool: this.#pool,
          queueSize: this.#queueSize,
          signal,
          what: `${verb} ${url}`,
          log: this.#log,
          toError: (err, from) => {
            if (err instanceof WalshipError || from === "request") return this.#error(verb, key, err, signal);
            if (signal?.aborted || isAbortError(err)) return abortedError(verb, url, err);
            return new WalshipError(ErrorCodes.STORAGE, `${verb} ${url}: read body: ${describe(err)}`, {
              cause: err,
              details: { bucket: this.#bucket, key },
            });
          },
        },
        source,
      );
      return { size, createdAt: new Date() };
    } finally {
      // Stop the body if we leave early; after a full read this does nothing.
      if (!source.readableEnded) source.destroy();
    }
  }

  async #putObject(
    key: string,
    verb: string,
    bytes: Uint8Array,
    signal: AbortSignal | undefined,
  ): Promise<void> {
    await this.#send(verb, key, signal, () => this.#t.putObject(key, bytes, signal));
  }

  /**
   * Opens an object; a missing one is a NotFoundError here, not a stream error later. A body that
   * breaks off (a connection reset or dropped mid-download) is resumed where it stopped with a ranged
   * GET of the same version (If-Match on its ETag), up to the attempts a request gets: the SDK retries
   * a request only until its headers arrive, and one lost connection must not fail a whole restore.
   */
  async #reader(key: string, signal: AbortSignal | undefined): Promise<Readable> {
    const get = (range?: { from: number; etag: string }) =>
      this.#send("read", key, signal, () => this.#t.getObject(key, signal, range), true);
    return resumableBody(await get(), {
      url: this.#url(key),
      bucket: this.#bucket,
      key,
      rest: get,
      maxAttempts: this.#t.maxAttempts,
      signal,
      log: this.#log,
      toError: (err) => this.#error("read", key, err, signal),
    });
  }

  /** An SDK, network or body failure as a WalshipError naming the object (`s3://bucket/key`). */
  #error(verb: string, key: string, err: unknown, signal: AbortSignal | undefined): WalshipError {
    const at = { bucket: this.#bucket, endpoint: this.#settings.endpoint, region: this.#t.region };
    return s3Error(at, verb, key, err, signal);
  }
}
