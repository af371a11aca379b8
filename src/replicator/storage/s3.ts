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
 * - Credentials: the configured keys, or the key files (credential-file.ts: re-read while running),
 *   else the AWS SDK's default chain (environment, web identity token file as IRSA sets it, EKS Pod
 *   Identity / container credentials, shared profile, instance metadata).
 * - Bodies of up to one part (default 8 MiB) go up in one PutObject; larger ones stream up as a
 *   multipart upload (@aws-sdk/lib-storage's Upload, s3-upload.ts) with 2 parts in flight at once,
 *   at most 48 MiB in memory, aborted on any failure or abort.
 * - The SDK's standard retry mode retries 5xx, 429/throttling, timeouts and dropped connections with
 *   exponential backoff and jitter; every part is an in-memory buffer, so every request can be retried.
 * - Every listing is sorted here: stores do not all return keys in order.
 * - Deletes go in DeleteObjects batches of at most 1000 keys; keys a store refuses become one error.
 * - Checksums only where the API requires one (some compatibles reject the SDK's newer headers), and
 *   DeleteObjects carries a Content-MD5, which older stores demand.
 */
import { createHash } from "node:crypto";
import { Agent as HttpsAgent } from "node:https";
import { addAbortSignal, Readable } from "node:stream";
import {
  DeleteObjectsCommand,
  GetBucketLocationCommand,
  GetObjectCommand,
  ListObjectsV2Command,
  type ListObjectsV2CommandOutput,
  PutObjectCommand,
  S3Client,
  type S3ClientConfig,
} from "@aws-sdk/client-s3";
import { ErrorCodes, NotFoundError, WalshipError } from "../../shared/errors.ts";
import type { Logger } from "../../shared/log.ts";
import type { Operation, OperationCounts } from "./client.ts";
import { abortedError, checkSignal, describe, isAbortError, newOperationCounts } from "./common.ts";
import { fileKeyProvider } from "./credential-file.ts";
import { type ListedObject, type ObjectBackend, ObjectStoreClient } from "./object-store.ts";
import { type SseParams, type SseSettings, sseSource } from "./s3-sse.ts";
import { DEFAULT_UPLOAD_QUEUE_SIZE, uploadBody } from "./s3-upload.ts";

export { rootPrefix } from "./common.ts";
export { DEFAULT_UPLOAD_QUEUE_SIZE, MAX_PARTS } from "./s3-upload.ts";

/** Default multipart part size: also the largest body sent as one PutObject. */
export const DEFAULT_PART_SIZE_BYTES = 8 * 1024 * 1024;
/** S3's smallest part (every part but the last must be at least this big). */
export const MIN_PART_SIZE_BYTES = 5 * 1024 * 1024;
/** S3's largest part. */
export const MAX_PART_SIZE_BYTES = 5 * 1024 * 1024 * 1024;
/** Attempts per request (first try included) before an error is returned. */
export const DEFAULT_MAX_ATTEMPTS = 5;
/**
 * A request whose socket stays idle this long fails with a timeout (and is retried). It is the only
 * way a half-open connection (the peer gone without a FIN or RST) is noticed, so it bounds how long
 * replication stalls on one: measured with toxiproxy (a 60 s half-open fault), lag was back to normal
 * 13.5 s after it at 30 s, and not within 45 s at 60 s. Data flowing (a slow upload) keeps the
 * socket from idling.
 */
export const DEFAULT_REQUEST_TIMEOUT_MS = 30_000;
/** Connecting gets at most this long (or the request timeout, if shorter). */
export const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;
/** S3's most keys per DeleteObjects request. */
export const DELETE_BATCH_KEYS = 1000;

/** SDK command → Litestream's operation label. */
const OPERATION_OF: Record<string, Operation> = {
  GetObjectCommand: "GET",
  PutObjectCommand: "PUT",
  CreateMultipartUploadCommand: "PUT",
  UploadPartCommand: "PUT",
  CompleteMultipartUploadCommand: "PUT",
  DeleteObjectCommand: "DELETE",
  DeleteObjectsCommand: "DELETE",
  ListObjectsV2Command: "LIST",
};

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

/** A ReplicaClient for `s3://bucket/path` (the layout and name checks: object-store.ts). */
export class S3ReplicaClient extends ObjectStoreClient {
  constructor(settings: S3Settings, opts: S3ReplicaClientOptions = {}) {
    super(new S3Backend(settings, opts), settings?.path ?? "");
  }
}

class S3Backend implements ObjectBackend {
  readonly type = "s3";
  readonly base: string;
  readonly #settings: S3Settings;
  readonly #bucket: string;
  readonly #partSize: number;
  readonly #queueSize: number;
  readonly #config: S3ClientConfig;
  readonly #log: Logger | undefined;
  /** Server-side encryption parameters for each request (s3-sse.ts). */
  readonly #sse: () => Promise<SseParams>;
  readonly #maxAttempts: number;
  #client: Promise<S3Client> | undefined;
  #made: S3Client | undefined;
  /** The region requests are signed for, once known. */
  #region: string | undefined;

  constructor(settings: S3Settings, opts: S3ReplicaClientOptions = {}) {
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
    const maxAttempts = opts.maxAttempts ?? DEFAULT_MAX_ATTEMPTS;
    if (!Number.isInteger(maxAttempts) || maxAttempts < 1) {
      throw new WalshipError(
        ErrorCodes.CONFIG,
        `create s3 replica: max attempts must be a positive integer, got ${maxAttempts}`,
        { details: { maxAttempts } },
      );
    }
    const timeoutMs = opts.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
    if (!Number.isFinite(timeoutMs) || timeoutMs < 0) {
      throw new WalshipError(
        ErrorCodes.CONFIG,
        `create s3 replica: request timeout must be >= 0 ms, got ${timeoutMs}`,
        { details: { requestTimeoutMs: timeoutMs } },
      );
    }
    // Empty strings come from unset variables in `${VAR}` expansion: treat them as not set.
    const accessKeyId = settings.accessKeyId || undefined;
    const secretAccessKey = settings.secretAccessKey || undefined;
    if ((accessKeyId === undefined) !== (secretAccessKey === undefined)) {
      const missing = accessKeyId === undefined ? "access-key-id" : "secret-access-key";
      throw new WalshipError(
        ErrorCodes.CONFIG,
        `create s3 replica: ${missing} is empty while the other key is set; set both, or neither to use the AWS default credential chain`,
        { details: { bucket: settings.bucket, path: missing } },
      );
    }

    this.#settings = settings;
    this.#sse = sseSource(settings.sse);
    this.#bucket = settings.bucket;
    this.base = `s3://${this.#bucket}`;
    this.#partSize = partSize;
    this.#queueSize = queueSize;
    this.#log = opts.log;
    this.#maxAttempts = maxAttempts;

    const config: S3ClientConfig = {
      forcePathStyle: settings.forcePathStyle,
      maxAttempts,
      retryMode: "standard",
      // Only the checksums an API requires: several S3-compatibles reject the SDK's newer defaults.
      requestChecksumCalculation: "WHEN_REQUIRED",
      responseChecksumValidation: "WHEN_REQUIRED",
      requestHandler: {
        connectionTimeout:
          timeoutMs === 0 ? DEFAULT_CONNECT_TIMEOUT_MS : Math.min(timeoutMs, DEFAULT_CONNECT_TIMEOUT_MS),
        socketTimeout: timeoutMs,
        ...(settings.skipVerify
          ? { httpsAgent: new HttpsAgent({ keepAlive: true, maxSockets: 50, rejectUnauthorized: false }) }
          : {}),
      },
    };
    if (settings.endpoint !== undefined) config.endpoint = settings.endpoint;
    // Without keys the SDK's default provider chain is used (credentials left unset on purpose).
    if (accessKeyId !== undefined && secretAccessKey !== undefined) {
      config.credentials = { accessKeyId, secretAccessKey };
    } else if (settings.accessKeyIdFile && settings.secretAccessKeyFile) {
      config.credentials = fileKeyProvider(
        { accessKeyIdFile: settings.accessKeyIdFile, secretAccessKeyFile: settings.secretAccessKeyFile },
        opts.credentialRefreshMs,
      );
    }
    this.#config = config;
    if (settings.region || settings.endpoint !== undefined) {
      this.#region = settings.region || "us-east-1";
      this.#made = this.#counted(new S3Client({ ...config, region: this.#region }));
      this.#client = Promise.resolve(this.#made);
    }
  }

  /** Closes the SDK client and its connections; the client must not be used afterwards. */
  close(): void {
    this.#made?.destroy();
  }

  async list(
    prefix: string,
    delimiter: boolean,
    signal: AbortSignal | undefined,
    onPage: (objects: ListedObject[], prefixes: string[]) => void | Promise<void>,
    verb = "list",
  ): Promise<void> {
    await this.#list(verb, prefix, delimiter, signal, (page) =>
      onPage(
        (page.Contents ?? []).flatMap((o) =>
          o.Key === undefined ? [] : [{ key: o.Key, size: o.Size ?? 0, createdAt: objectTime(o) }],
        ),
        (page.CommonPrefixes ?? []).flatMap((p) => (p.Prefix === undefined ? [] : [p.Prefix])),
      ),
    );
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
    const sse = await this.#sse();
    const out = await this.#send(
      "get",
      key,
      signal,
      (s3, o) => s3.send(new GetObjectCommand({ Bucket: this.#bucket, Key: key, ...sse.read }), o),
      true,
    );
    try {
      const body = out.Body;
      if (body === undefined) return new Uint8Array(0);
      return await body.transformToByteArray();
    } catch (err) {
      throw this.#error("get", key, err, signal);
    }
  }

  delete(keys: readonly string[], signal: AbortSignal | undefined): Promise<void> {
    return this.#deleteKeys(keys, signal);
  }

  // -------------------------------------------------------------------------------------------------

  #url(key: string): string {
    return `s3://${this.#bucket}/${key}`;
  }

  /** Calls and bytes by Litestream's operation names (GET/PUT/DELETE/LIST), for its metrics. */
  readonly operations: OperationCounts = newOperationCounts();

  /** Counts each command that succeeds (once, however many attempts the SDK made). */
  #counted(client: S3Client): S3Client {
    client.middlewareStack.add(
      (next, context) => async (args) => {
        const op = OPERATION_OF[context.commandName ?? ""];
        const out = await next(args);
        if (op) {
          const c = this.operations[op];
          c.count++;
          const input = args.input as { ContentLength?: number; Body?: unknown };
          if (op === "PUT") {
            c.bytes += input.ContentLength ?? (input.Body instanceof Uint8Array ? input.Body.length : 0);
          } else if (op === "GET") {
            c.bytes += (out.output as { ContentLength?: number }).ContentLength ?? 0;
          }
        }
        return out;
      },
      { step: "initialize", name: "walshipOperationCounter" },
    );
    return client;
  }

  /** The SDK client, made on first use when the bucket's region has to be looked up first. */
  #s3(): Promise<S3Client> {
    if (this.#client === undefined) {
      const made = this.#lookUpRegion().then((r) => {
        this.#region = r.region;
        this.#made = this.#counted(
          new S3Client({ ...this.#config, region: r.region, followRegionRedirects: r.guessed }),
        );
        return this.#made;
      });
      this.#client = made;
    }
    return this.#client;
  }

  /**
   * No region and no endpoint: ask AWS where the bucket lives (GetBucketLocation through us-east-1),
   * as Litestream does. Without permission for that call, fall back to AWS_REGION (or us-east-1) and
   * let the SDK follow the store's region redirects.
   */
  async #lookUpRegion(): Promise<{ region: string; guessed: boolean }> {
    const probe = new S3Client({ ...this.#config, region: "us-east-1" });
    try {
      const out = await probe.send(new GetBucketLocationCommand({ Bucket: this.#bucket }));
      const loc = out.LocationConstraint as string | undefined;
      return { region: !loc ? "us-east-1" : loc === "EU" ? "eu-west-1" : loc, guessed: false };
    } catch (err) {
      const region = process.env.AWS_REGION || process.env.AWS_DEFAULT_REGION || "us-east-1";
      this.#log?.warn(
        { bucket: this.#bucket, region, err: describe(err), s3Code: s3Code(err) },
        "s3 bucket region lookup failed; set region to skip it",
      );
      return { region, guessed: true };
    } finally {
      probe.destroy();
    }
  }

  /** Sends one command; SDK errors become our errors, a missing key a NotFoundError when `notFound`. */
  async #send<T>(
    verb: string,
    key: string,
    signal: AbortSignal | undefined,
    send: (s3: S3Client, o: { abortSignal?: AbortSignal }) => Promise<T>,
    notFound = false,
  ): Promise<T> {
    checkSignal(signal, verb, this.#url(key));
    const s3 = await this.#s3();
    try {
      return await send(s3, signal ? { abortSignal: signal } : {});
    } catch (err) {
      if (notFound && isMissingKey(err) && !signal?.aborted) {
        throw new NotFoundError(this.#url(key), { cause: err });
      }
      throw this.#error(verb, key, err, signal);
    }
  }

  /** Pages through ListObjectsV2 under `prefix` (one level when `oneLevel`), handing each page on. */
  async #list(
    verb: string,
    prefix: string,
    oneLevel: boolean,
    signal: AbortSignal | undefined,
    onPage: (page: ListObjectsV2CommandOutput) => void | Promise<void>,
  ): Promise<void> {
    let token: string | undefined;
    let startAfter: string | undefined;
    for (;;) {
      const page = await this.#send(verb, prefix, signal, (s3, o) =>
        s3.send(
          new ListObjectsV2Command({
            Bucket: this.#bucket,
            Prefix: prefix,
            Delimiter: oneLevel ? "/" : undefined,
            ContinuationToken: token,
            StartAfter: token === undefined ? startAfter : undefined,
          }),
          o,
        ),
      );
      await onPage(page);
      if (!page.IsTruncated) return;
      checkSignal(signal, verb, this.#url(prefix));
      if (page.NextContinuationToken) {
        token = page.NextContinuationToken;
      } else {
        // A store that truncates without a token: go on after the last name it gave, if any.
        const names = [
          ...(page.Contents ?? []).map((o) => o.Key ?? ""),
          ...(page.CommonPrefixes ?? []).map((p) => p.Prefix ?? ""),
        ].sort();
        const last = names.at(-1);
        if (!last || last === startAfter) {
          throw new WalshipError(
            ErrorCodes.STORAGE,
            `${verb} ${this.#url(prefix)}: the store truncated a listing without a way to continue`,
            { details: { bucket: this.#bucket, key: prefix } },
          );
        }
        token = undefined;
        startAfter = last;
      }
    }
  }

  /** DeleteObjects in batches of at most 1000 keys; keys the store refused become one STORAGE error. */
  async #deleteKeys(list: readonly string[], signal: AbortSignal | undefined): Promise<void> {
    for (let at = 0; at < list.length; at += DELETE_BATCH_KEYS) {
      const batch = list.slice(at, at + DELETE_BATCH_KEYS);
      const command = new DeleteObjectsCommand({
        Bucket: this.#bucket,
        Delete: { Objects: batch.map((Key) => ({ Key })), Quiet: true },
      });
      addContentMd5(command);
      const label = batch.length === 1 ? (batch[0] ?? "") : `${batch[0]} and ${batch.length - 1} more`;
      const out = await this.#send("delete", label, signal, (s3, o) => s3.send(command, o));
      // A key that is already gone is what we wanted; some stores still report it.
      const failed = (out.Errors ?? []).filter((e) => e.Code !== "NoSuchKey");
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
      const sse = await this.#sse();
      const s3 = await this.#s3();
      const size = await uploadBody(
        {
          s3,
          bucket: this.#bucket,
          key,
          params: sse.write,
          partSize: this.#partSize,
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
    const sse = await this.#sse();
    await this.#send(verb, key, signal, (s3, o) =>
      s3.send(
        new PutObjectCommand({
          Bucket: this.#bucket,
          Key: key,
          Body: bytes,
          ContentLength: bytes.byteLength,
          ...sse.write,
        }),
        o,
      ),
    );
  }

  /**
   * Opens an object; a missing one is a NotFoundError here, not a stream error later. A body that
   * breaks off (a connection reset or dropped mid-download) is resumed where it stopped with a ranged
   * GET of the same version (If-Match on its ETag), up to the attempts a request gets: the SDK retries
   * a request only until its headers arrive, and one lost connection must not fail a whole restore.
   */
  async #reader(key: string, signal: AbortSignal | undefined): Promise<Readable> {
    const sse = await this.#sse();
    const get = (range?: { from: number; etag: string }) =>
      this.#send(
        "read",
        key,
        signal,
        (s3, o) =>
          s3.send(
            new GetObjectCommand({
              Bucket: this.#bucket,
              Key: key,
              ...sse.read,
              ...(range ? { Range: `bytes=${range.from}-`, IfMatch: range.etag } : {}),
            }),
            o,
          ),
        true,
      );
    const out = await get();
    const first = out.Body;
    if (first === undefined) return Readable.from([], { objectMode: false });
    const nodeBody = (body: unknown): Readable => {
      if (!(body instanceof Readable)) {
        throw new WalshipError(ErrorCodes.STORAGE, `read ${this.#url(key)}: the SDK gave no Node stream`, {
          details: { bucket: this.#bucket, key },
        });
      }
      if (signal) addAbortSignal(signal, body);
      return body;
    };
    let body = nodeBody(first);
    const total = out.ContentLength;
    const etag = out.ETag;
    const maxAttempts = this.#maxAttempts;
    const log = this.#log;
    const url = this.#url(key);
    const bucket = this.#bucket;
    // Relay through a generator so a failure mid-stream arrives as our error (STORAGE or ABORTED).
    const toError = (err: unknown) => this.#error("read", key, err, signal);
    const relay = async function* () {
      let received = 0;
      for (let attempt = 1; ; attempt++) {
        try {
          for await (const chunk of body) {
            received += (chunk as Buffer).length;
            yield chunk as Buffer;
          }
          if (total === undefined || received >= total) return;
          throw new WalshipError(
            ErrorCodes.STORAGE,
            `read ${url}: the body ended after ${received} of ${total} bytes`,
            { details: { bucket, key, received, total } },
          );
        } catch (err) {
          // Broke off after the last byte: nothing is missing.
          if (total !== undefined && received >= total && !signal?.aborted) return;
          const resumable =
            !signal?.aborted &&
            !isAbortError(err) &&
            etag !== undefined &&
            total !== undefined &&
            attempt < maxAttempts;
          if (!resumable) throw toError(err);
          log?.warn(
            { object: url, received, total, attempt, err: describe(err) },
            "s3 download broke off; resuming it",
          );
          await new Promise((r) => setTimeout(r, Math.min(100 * 2 ** attempt, 2000)));
          try {
            body = nodeBody((await get({ from: received, etag })).Body);
          } catch (again) {
            throw toError(again);
          }
        }
      }
    };
    return Readable.from(relay(), { objectMode: false });
  }

  /** An SDK, network or body failure as a WalshipError naming the object (`s3://bucket/key`). */
  #error(verb: string, key: string, err: unknown, signal: AbortSignal | undefined): WalshipError {
    if (err instanceof WalshipError) return err;
    const url = this.#url(key);
    if (signal?.aborted || isAbortError(err)) return abortedError(verb, url, err);
    const code = s3Code(err);
    const meta = metadata(err);
    const details: Record<string, unknown> = { bucket: this.#bucket, key };
    if (code !== undefined) details.s3Code = code;
    if (meta.httpStatusCode !== undefined) details.httpStatus = meta.httpStatusCode;
    if (meta.attempts !== undefined) details.attempts = meta.attempts;
    if (this.#settings.endpoint !== undefined) details.endpoint = this.#settings.endpoint;
    const tries =
      meta.attempts !== undefined && meta.attempts > 1 ? ` (after ${meta.attempts} attempts)` : "";
    return new WalshipError(ErrorCodes.STORAGE, `${verb} ${url}: ${this.#explain(err, code)}${tries}`, {
      cause: err,
      details,
    });
  }

  #explain(err: unknown, code: string | undefined): string {
    const b = JSON.stringify(this.#bucket);
    const where = this.#settings.endpoint ? ` at ${this.#settings.endpoint}` : "";
    const raw = describe(err);
    switch (code) {
      case "NoSuchBucket":
        return `bucket ${b} does not exist${where} (NoSuchBucket)`;
      case "InvalidAccessKeyId":
        return `the access key id is not known${where}; check access-key-id for bucket ${b} (InvalidAccessKeyId)`;
      case "SignatureDoesNotMatch":
        return `the secret access key does not match the access key id; check secret-access-key for bucket ${b} (SignatureDoesNotMatch)`;
      case "AccessDenied":
      case "Forbidden":
        return `access denied to bucket ${b}; check the credentials and the bucket policy (${code}): ${raw}`;
      case "PermanentRedirect":
      case "AuthorizationHeaderMalformed":
      case "IllegalLocationConstraintException":
        return `bucket ${b} is not in region ${JSON.stringify(this.#region ?? "")}; set region (${code}): ${raw}`;
      case "CredentialsProviderError":
        return (
          `no credentials for bucket ${b}: set access-key-id and secret-access-key, or provide them ` +
          `through the AWS default chain (AWS_* env, IRSA web identity, EKS Pod Identity, profile, instance role): ${raw}`
        );
      default:
        return code !== undefined && !raw.startsWith(code) ? `${code}: ${raw}` : raw;
    }
  }
}

/** Adds Content-MD5 to a DeleteObjects request (older stores require it) in place of newer checksums. */
function addContentMd5(command: DeleteObjectsCommand): void {
  type Middleware = Parameters<typeof command.middlewareStack.addRelativeTo>[0];
  const middleware = ((next: (args: { request: unknown }) => Promise<unknown>) =>
    async (args: { request: unknown }) => {
      const req = args.request as { headers?: Record<string, string>; body?: unknown };
      if (req.headers && (typeof req.body === "string" || req.body instanceof Uint8Array)) {
        for (const h of Object.keys(req.headers)) {
          if (/^x-amz-(checksum-|sdk-checksum-algorithm$)/i.test(h)) delete req.headers[h];
        }
        req.headers["content-md5"] = createHash("md5").update(req.body).digest("base64");
      }
      return next(args);
    }) as unknown as Middleware;
  command.middlewareStack.addRelativeTo(middleware, {
    name: "walshipContentMd5",
    relation: "after",
    toMiddleware: "flexibleChecksumsMiddleware",
  });
}

function objectTime(o: { LastModified?: Date | undefined }): Date {
  return o.LastModified instanceof Date ? o.LastModified : new Date(0);
}

/** The S3 error code (NoSuchBucket, AccessDenied, ...) or the Node error code (ECONNREFUSED, ...). */
function s3Code(err: unknown): string | undefined {
  if (typeof err !== "object" || err === null) return undefined;
  const e = err as { name?: unknown; Code?: unknown; code?: unknown; $metadata?: unknown };
  if (typeof e.Code === "string") return e.Code;
  if (e.$metadata !== undefined && typeof e.name === "string" && e.name !== "Error") return e.name;
  if (typeof e.name === "string" && e.name === "CredentialsProviderError") return e.name;
  if (typeof e.code === "string") return e.code;
  return undefined;
}

function metadata(err: unknown): { httpStatusCode?: number; attempts?: number } {
  if (typeof err !== "object" || err === null || !("$metadata" in err)) return {};
  const m = (err as { $metadata?: { httpStatusCode?: unknown; attempts?: unknown } }).$metadata;
  const out: { httpStatusCode?: number; attempts?: number } = {};
  if (typeof m?.httpStatusCode === "number") out.httpStatusCode = m.httpStatusCode;
  if (typeof m?.attempts === "number") out.attempts = m.attempts;
  return out;
}

function isMissingKey(err: unknown): boolean {
  const code = s3Code(err);
  return code === "NoSuchKey" || (code === "NotFound" && metadata(err).httpStatusCode === 404);
}
