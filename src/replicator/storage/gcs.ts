/**
 * The Google Cloud Storage destination (the only importer of @google-cloud/storage), in Litestream
 * v0.3.13's layout under the replica's path in a bucket (see object-store.ts for the names).
 *
 * - Credentials: `credentialsFile` (a service-account key, exchanged at its token_uri; or any other
 *   Application Default Credentials file), else ADC: GOOGLE_APPLICATION_CREDENTIALS, gcloud's well-known file, then the metadata
 *   server (GKE Workload Identity, Cloud Run, GCE). With a custom `endpoint` (an emulator) no
 *   credentials are sent unless `authWithEndpoint`, as the Go client does with STORAGE_EMULATOR_HOST.
 * - Bodies up to `resumableThresholdBytes` (16 MiB, the Go client's chunk size) go up in one
 *   multipart request; larger ones stream up as a resumable upload. A failed or aborted upload leaves
 *   the previous object as it was (GCS replaces an object only when an upload completes).
 * - Every upload is checked against the MD5 GCS reports for the stored object (UPLOAD_VALIDATION):
 *   a body changed on the way fails the write, and the client deletes what was stored.
 * - Object times are GCS's `timeCreated` (microseconds), as Litestream reads them.
 * - Retries: the client's own, for every request (our writes replace an object with the same bytes,
 *   so they are idempotent); a missing object on delete is success.
 * - `checkAccess()` writes and deletes one probe object under `walship/`, so credentials that
 *   cannot delete (retention needs storage.objects.delete) fail at start with a clear error.
 */
import { randomBytes } from "node:crypto";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { type File, IdempotencyStrategy, Storage, type StorageOptions } from "@google-cloud/storage";
import { OAuth2Client } from "google-auth-library";
import { ErrorCodes, NotFoundError, WalshipError } from "../../shared/errors.ts";
import type { CallOptions, OperationCounts } from "./client.ts";
import {
  abortedError,
  checkSignal,
  describe,
  forEachLimited,
  isAbortError,
  newOperationCounts,
  raceAbort,
  readHead,
  relayDownload,
} from "./common.ts";
import { exchangeServiceAccountKey, readCredentialsFile } from "./gcs-credentials.ts";
import { type ListedObject, type ObjectBackend, ObjectStoreClient } from "./object-store.ts";

/** Bodies up to this size go in one request (the Go client's default chunk size). */
export const DEFAULT_RESUMABLE_THRESHOLD_BYTES = 16 * 1024 * 1024;
/**
 * How the client checks an upload against the object GCS stored: MD5, hashed by Node's native crypto.
 * The library's default, CRC32C, is computed in JavaScript at about 15 ms per MiB here (MD5: 1.5):
 * it made Walship's replicator to GCS use 1.7 times the CPU of the same workload to S3
 * (`make bench-destinations`, docs/benchmarks.md). GCS reports both hashes of every object that is not
 * composed, and Walship never composes objects.
 */
export const UPLOAD_VALIDATION = "md5";
/** Per HTTP request. */
export const DEFAULT_REQUEST_TIMEOUT_MS = 60_000;
export const DEFAULT_MAX_ATTEMPTS = 4;
/** Deletes in flight at once (GCS's JSON API deletes one object per request). */
const DELETE_CONCURRENCY = 16;
const PAGE_SIZE = 1000;

export interface GcsReplicaClientOptions {
  bucket: string;
  /** Key prefix; joined as Go's path.Join (Litestream's `path`). */
  path?: string;
  /** The JSON API endpoint (e.g. an emulator's http://127.0.0.1:4443); default Google's. */
  endpoint?: string;
  /** Send credentials to a custom endpoint too (default: not, as for an emulator). */
  authWithEndpoint?: boolean;
  /** A credentials file (service-account key, or any ADC JSON); default: ADC. */
  credentialsFile?: string;
  /** Per HTTP request; default DEFAULT_REQUEST_TIMEOUT_MS. */
  requestTimeoutMs?: number;
  /** Attempts per request, first included; default DEFAULT_MAX_ATTEMPTS. */
  maxAttempts?: number;
  /** Default DEFAULT_RESUMABLE_THRESHOLD_BYTES. */
  resumableThresholdBytes?: number;
}

/** A ReplicaClient for `gcs://bucket/path`. */
export class GcsReplicaClient extends ObjectStoreClient {
  readonly #backend: GcsBackend;

  constructor(opts: GcsReplicaClientOptions) {
    const backend = new GcsBackend(opts);
    super(backend, opts.path ?? "");
    this.#backend = backend;
  }

  /**
   * Writes and deletes a probe object under `walship/`: credentials that cannot create or delete
   * fail here with a STORAGE error saying which permission is missing.
   */
  async checkAccess(opts?: CallOptions): Promise<void> {
    const probe = `walship/access-check/${randomBytes(8).toString("hex")}`;
    try {
      await this.putExtra(probe, new Uint8Array(0), opts);
    } catch (err) {
      throw this.#backend.explainAccess(err, "storage.objects.create", "write");
    }
    try {
      await this.deleteExtras([probe], opts);
    } catch (err) {
      throw this.#backend.explainAccess(err, "storage.objects.delete", "delete");
    }
  }
}

class GcsBackend implements ObjectBackend {
  readonly type = "gcs";
  readonly base: string;
  readonly operations: OperationCounts = newOperationCounts();
  readonly #bucketName: string;
  readonly #storage: Storage;
  readonly #threshold: number;
  readonly #endpoint: string | undefined;
  readonly #apiEndpoint: string;
  /** Whether requests carry credentials (not to a custom endpoint unless asked). */
  readonly #auth: boolean;
  readonly #timeoutMs: number;
  readonly #attempts: number;

  constructor(opts: GcsReplicaClientOptions) {
    if (typeof opts?.bucket !== "string" || opts.bucket === "") {
      throw new WalshipError(ErrorCodes.CONFIG, "create gcs replica: bucket required", {
        details: { bucket: opts?.bucket },
      });
    }
    const threshold = opts.resumableThresholdBytes ?? DEFAULT_RESUMABLE_THRESHOLD_BYTES;
    const attempts = opts.maxAttempts ?? DEFAULT_MAX_ATTEMPTS;
    if (!Number.isInteger(attempts) || attempts < 1) {
      throw new WalshipError(
        ErrorCodes.CONFIG,
        `create gcs replica: max attempts must be >= 1, got ${attempts}`,
      );
    }
    this.#bucketName = opts.bucket;
    this.base = `gs://${opts.bucket}`;
    this.#threshold = threshold;
    this.#endpoint = opts.endpoint;
    const options: StorageOptions = {
      timeout: opts.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS,
      retryOptions: {
        autoRetry: attempts > 1,
        maxRetries: attempts - 1,
        idempotencyStrategy: IdempotencyStrategy.RetryAlways,
      },
    };
    if (opts.endpoint !== undefined) options.apiEndpoint = opts.endpoint;
    if (opts.authWithEndpoint) options.useAuthWithCustomEndpoint = true;
    if (opts.credentialsFile) {
      const creds = readCredentialsFile(opts.credentialsFile);
      if ("serviceAccount" in creds) {
        // Tokens from the key's own token_uri (see gcs-credentials.ts).
        const auth = new OAuth2Client();
        // The file is read again at every refresh (about hourly), so a rotated Secret is used.
        const file = opts.credentialsFile;
        auth.refreshHandler = () => {
          const now = readCredentialsFile(file);
          return exchangeServiceAccountKey(
            "serviceAccount" in now ? now.serviceAccount : creds.serviceAccount,
          );
        };
        options.authClient = auth;
      } else {
        options.credentials = creds.other;
      }
    }
    this.#storage = withoutEmulatorEnv(() => new Storage(options));
    this.#apiEndpoint = this.#storage.apiEndpoint;
    this.#auth = opts.endpoint === undefined || opts.authWithEndpoint === true;
    this.#timeoutMs = opts.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
    this.#attempts = attempts;
  }

  #bucket() {
    return this.#storage.bucket(this.#bucketName);
  }

  async list(
    prefix: string,
    delimiter: boolean,
    signal: AbortSignal | undefined,
    onPage: (objects: ListedObject[], prefixes: string[]) => void | Promise<void>,
  ): Promise<void> {
    let pageToken: string | undefined;
    for (;;) {
      checkSignal(signal, "list", this.#url(prefix));
      const [files, , response] = await this.#call("list", prefix, signal, () =>
        this.#bucket().getFiles({
          prefix,
          autoPaginate: false,
          maxResults: PAGE_SIZE,
          ...(delimiter ? { delimiter: "/" } : {}),
          ...(pageToken ? { pageToken } : {}),
        }),
      );
      this.operations.LIST.count++;
      const page = (response ?? {}) as { prefixes?: string[]; nextPageToken?: string };
      await onPage(
        files.map((f) => ({ key: f.name, size: Number(f.metadata.size ?? 0), createdAt: objectTime(f) })),
        page.prefixes ?? [],
      );
      if (!page.nextPageToken) return;
      pageToken = page.nextPageToken;
    }
  }

  async put(
    key: string,
    body: Readable | Uint8Array,
    signal: AbortSignal | undefined,
  ): Promise<{ size: number; createdAt: Date }> {
    const file = this.#bucket().file(key);
    if (body instanceof Uint8Array) return this.#putBytes(file, key, body, signal);
    let head: Awaited<ReturnType<typeof readHead>>;
    try {
      head = await readHead(body, this.#threshold);
    } catch (err) {
      throw this.#error("write", key, err, signal);
    }
    if (head.ended) return this.#putBytes(file, key, head.bytes(), signal);

    let sent = 0;
    const counted = async function* (source: AsyncIterable<Uint8Array>) {
      for await (const c of source) {
        sent += c.byteLength;
        yield c;
      }
    };
    try {
      await pipeline(
        Readable.from(head.rest(), { objectMode: false }),
        counted,
        file.createWriteStream({
          resumable: true,
          contentType: "application/octet-stream",
          validation: UPLOAD_VALIDATION,
        }),
        signal ? { signal } : {},
      );
    } catch (err) {
      throw this.#error("write", key, err, signal);
    }
    this.operations.PUT.count++;
    this.operations.PUT.bytes += sent;
    return { size: sent, createdAt: objectTime(file) };
  }

  async #putBytes(
    file: File,
    key: string,
    bytes: Uint8Array,
    signal: AbortSignal | undefined,
  ): Promise<{ size: number; createdAt: Date }> {
    await this.#call("write", key, signal, () =>
      file.save(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength), {
        resumable: false,
        contentType: "application/octet-stream",
        validation: UPLOAD_VALIDATION,
      }),
    );
    this.operations.PUT.count++;
    this.operations.PUT.bytes += bytes.byteLength;
    return { size: bytes.byteLength, createdAt: objectTime(file) };
  }

  async reader(key: string, signal: AbortSignal | undefined): Promise<Readable> {
    const res = await this.#media("read", key, signal);
    this.operations.GET.count++;
    const body = res.body
      ? Readable.fromWeb(res.body as import("node:stream/web").ReadableStream)
      : Readable.from([]);
    return relayDownload(
      body,
      this.operations,
      (err) => this.#error("read", key, err, signal),
      () => body.destroy(),
    );
  }

  async bytes(key: string, signal: AbortSignal | undefined): Promise<Uint8Array> {
    const res = await this.#media("get", key, signal);
    let buf: ArrayBuffer;
    try {
      buf = await res.arrayBuffer();
    } catch (err) {
      throw this.#error("get", key, err, signal);
    }
    this.operations.GET.count++;
    this.operations.GET.bytes += buf.byteLength;
    return new Uint8Array(buf);
  }

  /**
   * GET of an object's bytes (JSON API, alt=media) with the client's credentials, straight through
   * fetch: a real abort signal, and none of the SDK's stream layers (which stack more than ten
   * listeners on one stream per download and warn about it). Retries the request (not the body) on
   * 429, 5xx and network errors; a 404 is a NotFoundError.
   */
  async #media(verb: string, key: string, signal: AbortSignal | undefined): Promise<Response> {
    const url = `${this.#apiEndpoint}/storage/v1/b/${encodeURIComponent(this.#bucketName)}/o/${encodeURIComponent(key)}?alt=media`;
    for (let attempt = 1; ; attempt++) {
      checkSignal(signal, verb, this.#url(key));
      const timeout = AbortSignal.timeout(this.#timeoutMs);
      try {
        const headers = this.#auth ? await this.#storage.authClient.getRequestHeaders(url) : new Headers();
        const res = await fetch(url, {
          headers,
          signal: signal ? AbortSignal.any([signal, timeout]) : timeout,
        });
        if (res.ok) return res;
        const text = await res.text().catch(() => "");
        const err = Object.assign(new Error(gcsMessage(text) || `HTTP ${res.status}`), { code: res.status });
        if (res.status === 404) throw new NotFoundError(this.#url(key), { cause: err });
        if ((res.status === 429 || res.status >= 500) && attempt < this.#attempts) {
          await sleep(backoffMs(attempt), signal);
          continue;
        }
        throw err;
      } catch (err) {
        if (err instanceof WalshipError) throw err;
        if (signal?.aborted) throw abortedError(verb, this.#url(key), err);
        const network = httpStatus(err) === undefined;
        if (network && attempt < this.#attempts) {
          await sleep(backoffMs(attempt), signal);
          continue;
        }
        throw this.#error(verb, key, err, signal);
      }
    }
  }

  async delete(keys: readonly string[], signal: AbortSignal | undefined): Promise<void> {
    await forEachLimited(
      keys,
      DELETE_CONCURRENCY,
      async (key) => {
        await this.#call("delete", key, signal, () =>
          this.#bucket().file(key).delete({ ignoreNotFound: true }),
        );
        this.operations.DELETE.count++;
      },
      () => checkSignal(signal, "delete", this.base),
    );
  }

  /** A failure of the access probe, naming the permission retention needs. */
  explainAccess(err: unknown, permission: string, verb: string): WalshipError {
    if (!(err instanceof WalshipError) || err.code !== ErrorCodes.STORAGE) return err as WalshipError;
    const status = err.details.httpStatus;
    if (status !== 401 && status !== 403) return err;
    return new WalshipError(
      ErrorCodes.STORAGE,
      `check access to ${this.base}: the credentials cannot ${verb} objects (${permission} denied, HTTP ${status}); ` +
        "Walship writes snapshots and WAL segments and deletes old ones (retention), so it needs " +
        "roles/storage.objectAdmin on the bucket (or create, get, list and delete on objects)",
      { cause: err, details: { ...err.details, permission } },
    );
  }

  /** Runs one SDK call; its errors become ours (a 404 a NotFoundError when `notFound`). */
  async #call<T>(
    verb: string,
    key: string,
    signal: AbortSignal | undefined,
    fn: () => Promise<T>,
    notFound = false,
  ): Promise<T> {
    checkSignal(signal, verb, this.#url(key));
    try {
      return await raceAbort(fn(), signal, abortError);
    } catch (err) {
      throw this.#error(verb, key, err, signal, notFound);
    }
  }

  #error(
    verb: string,
    key: string,
    err: unknown,
    signal: AbortSignal | undefined,
    notFound = false,
  ): WalshipError {
    if (err instanceof WalshipError) return err;
    const url = this.#url(key);
    if (signal?.aborted || isAbortError(err)) return abortedError(verb, url, err);
    const status = httpStatus(err);
    if (notFound && status === 404) return new NotFoundError(url, { cause: err });
    const details: Record<string, unknown> = { bucket: this.#bucketName, key };
    if (status !== undefined) details.httpStatus = status;
    if (this.#endpoint !== undefined) details.endpoint = this.#endpoint;
    return new WalshipError(ErrorCodes.STORAGE, `${verb} ${url}: ${this.#explain(err, status)}`, {
      cause: err,
      details,
    });
  }

  #explain(err: unknown, status: number | undefined): string {
    const b = JSON.stringify(this.#bucketName);
    const raw = describe(err);
    if (status === 404) return `bucket ${b} does not exist (HTTP 404): ${raw}`;
    if (status === 401) return `the credentials were refused (HTTP 401): ${raw}`;
    if (status === 403) return `access denied to bucket ${b} (HTTP 403): ${raw}`;
    if (/Could not load the default credentials|Unable to detect a Project Id/i.test(raw)) {
      return (
        `no credentials for bucket ${b}: set credentials-file, GOOGLE_APPLICATION_CREDENTIALS, ` +
        `or run where a metadata server gives them (GKE Workload Identity): ${raw}`
      );
    }
    return raw;
  }

  #url(key: string): string {
    return `${this.base}/${key}`;
  }
}

/** GCS's own creation time of an object (timeCreated); the epoch if the service gave none. */
function objectTime(f: File): Date {
  const t = f.metadata?.timeCreated ?? f.metadata?.updated;
  const d = typeof t === "string" ? new Date(t) : undefined;
  return d && !Number.isNaN(d.getTime()) ? d : new Date(0);
}

function httpStatus(err: unknown): number | undefined {
  if (typeof err !== "object" || err === null) return undefined;
  const e = err as { code?: unknown; status?: unknown; response?: { status?: unknown } };
  if (typeof e.code === "number") return e.code;
  if (typeof e.status === "number") return e.status;
  if (typeof e.response?.status === "number") return e.response.status;
  return undefined;
}

/** The message of a JSON API error body, if it is one. */
function gcsMessage(text: string): string {
  try {
    const m = (JSON.parse(text) as { error?: { message?: unknown } }).error?.message;
    return typeof m === "string" ? m : text.slice(0, 200);
  } catch {
    return text.slice(0, 200);
  }
}

/** Exponential backoff with jitter: ~0.25 s, 0.5 s, 1 s, ... capped at 8 s. */
function backoffMs(attempt: number): number {
  const base = Math.min(8_000, 250 * 2 ** (attempt - 1));
  return base / 2 + Math.random() * (base / 2);
}

function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal?.removeEventListener("abort", done);
      resolve();
    }
    signal?.addEventListener("abort", done, { once: true });
  });
}

/** An AbortError, as the SDK's own calls reject with on an abort. */
function abortError(): Error {
  const e = new Error("aborted");
  e.name = "AbortError";
  return e;
}

/**
 * Constructs the SDK client with STORAGE_EMULATOR_HOST hidden: the Node client would use that
 * variable verbatim as its JSON base URL (a Go-client setting that does not work for it); Walship
 * turns it into `endpoint` itself.
 */
function withoutEmulatorEnv<T>(make: () => T): T {
  const saved = process.env.STORAGE_EMULATOR_HOST;
  if (saved === undefined) return make();
  delete process.env.STORAGE_EMULATOR_HOST;
  try {
    return make();
  } finally {
    process.env.STORAGE_EMULATOR_HOST = saved;
  }
}
