/**
 * The Azure Blob Storage destination (the only importer of @azure/storage-blob), in Litestream
 * v0.3.13's layout under the replica's path in a container (see object-store.ts for the names).
 *
 * - Credentials, first that is set: the account key (shared key, as Litestream), a SAS token (each
 *   also from a file, re-read every 10 s so a rotated Secret is used), the pod's workload identity (a federated token exchanged for a Storage token). With none, a clear
 *   CONFIG error at construction.
 * - The endpoint: `endpoint` (an account URL, path-style for Azurite:
 *   http://127.0.0.1:10000/devstoreaccount1), else https://<account>.blob.core.windows.net.
 * - Bodies up to one block (default 4 MiB) go up as one Put Blob; larger ones stream up as blocks
 *   and one Put Block List, so a failed or aborted upload leaves the previous blob as it was.
 * - Object times are the blob's Creation-Time (whole seconds), as Litestream reads them; a listing
 *   without it falls back to Last-Modified rather than failing (Litestream dereferences it blindly).
 * - Deletes one blob per request (Delete Blob), 16 at once; a missing blob is success.
 */
import { readFileSync } from "node:fs";
import { Readable } from "node:stream";
import {
  AnonymousCredential,
  BlobServiceClient,
  type ContainerClient,
  StorageSharedKeyCredential,
} from "@azure/storage-blob";
import { ErrorCodes, NotFoundError, WalshipError } from "../../shared/errors.ts";
import { WorkloadIdentityCredential, type WorkloadIdentityOptions } from "./azure-token.ts";
import type { OperationCounts } from "./client.ts";
import {
  abortedError,
  checkSignal,
  describe,
  forEachLimited,
  isAbortError,
  newOperationCounts,
  readHead,
  relayDownload,
} from "./common.ts";
import { type ListedObject, type ObjectBackend, ObjectStoreClient } from "./object-store.ts";

export const DEFAULT_BLOCK_SIZE_BYTES = 4 * 1024 * 1024;
/** Blocks staged at once in a streamed upload (memory: this many blocks). */
const UPLOAD_CONCURRENCY = 2;
export const DEFAULT_MAX_ATTEMPTS = 4;
/** How long a key or SAS read from a file is used before the file is read again. */
const CREDENTIAL_REFRESH_MS = 10_000;
const DELETE_CONCURRENCY = 16;
const PAGE_SIZE = 5000;

export interface AbsReplicaClientOptions {
  /** The container (Litestream's `bucket`). */
  container: string;
  /** Key prefix; joined as Go's path.Join (Litestream's `path`). */
  path?: string;
  accountName?: string;
  /** Shared key (Litestream's account-key). */
  accountKey?: string;
  /** A SAS token (with or without the leading "?"). */
  sasToken?: string;
  /**
   * Files holding the key or the token (a mounted Secret), read again at most every 10 s before a
   * request, so a rotated Secret is used without a restart.
   */
  accountKeyFile?: string;
  sasTokenFile?: string;
  /** How often those files are read again; default 10 s. */
  credentialRefreshMs?: number;
  /** The pod's federated identity (Azure Workload Identity). */
  workloadIdentity?: WorkloadIdentityOptions;
  /** The account URL; default https://<account>.blob.core.windows.net. */
  endpoint?: string;
  /** Default DEFAULT_BLOCK_SIZE_BYTES. */
  blockSizeBytes?: number;
  /** Attempts per request, first included; default DEFAULT_MAX_ATTEMPTS. */
  maxAttempts?: number;
}

/** A ReplicaClient for `abs://account@container/path`. */
export class AbsReplicaClient extends ObjectStoreClient {
  constructor(opts: AbsReplicaClientOptions) {
    super(new AbsBackend(opts), opts.path ?? "");
  }
}

class AbsBackend implements ObjectBackend {
  readonly type = "abs";
  readonly base: string;
  readonly operations: OperationCounts = newOperationCounts();
  /** The container client, rebuilt when a credential file changed (checked at most every 10 s). */
  readonly #fresh: () => ContainerClient;
  readonly #name: string;
  readonly #blockSize: number;
  readonly #endpoint: string;

  constructor(opts: AbsReplicaClientOptions) {
    if (typeof opts?.container !== "string" || opts.container === "") {
      throw new WalshipError(ErrorCodes.CONFIG, "create abs replica: bucket (the container) required", {
        details: { bucket: opts?.container },
      });
    }
    const account = opts.accountName || accountFromEndpoint(opts.endpoint);
    if (!opts.endpoint && !account) {
      throw new WalshipError(
        ErrorCodes.CONFIG,
        "create abs replica: account-name required (or an endpoint naming the account)",
        { details: { path: "account-name" } },
      );
    }
    const endpoint = (opts.endpoint ?? `https://${account}.blob.core.windows.net`).replace(/\/+$/, "");
    const pipelineOptions = { retryOptions: { maxTries: opts.maxAttempts ?? DEFAULT_MAX_ATTEMPTS } };
    const keyFile = opts.accountKey ? undefined : opts.accountKeyFile;
    const sasFile = opts.accountKey || opts.sasToken || keyFile ? undefined : opts.sasTokenFile;
    if ((opts.accountKey || keyFile) && !account) {
      throw new WalshipError(ErrorCodes.CONFIG, "create abs replica: account-key needs account-name", {
        details: { path: "account-name" },
      });
    }
    /** A client for the current credential (a key or SAS from a file may change: see #fresh). */
    const make = (secret: { key?: string; sas?: string }): ContainerClient => {
      let service: BlobServiceClient;
      if (secret.key) {
        service = new BlobServiceClient(
          endpoint,
          new StorageSharedKeyCredential(account as string, secret.key),
          pipelineOptions,
        );
      } else if (secret.sas) {
        const sas = secret.sas.replace(/^\?/, "");
        service = new BlobServiceClient(`${endpoint}?${sas}`, new AnonymousCredential(), pipelineOptions);
      } else if (opts.workloadIdentity) {
        service = new BlobServiceClient(
          endpoint,
          new WorkloadIdentityCredential(opts.workloadIdentity),
          pipelineOptions,
        );
      } else {
        throw new WalshipError(
          ErrorCodes.CONFIG,
          `create abs replica: no credentials for account ${JSON.stringify(account ?? "")}: set account-key ` +
            "(or AZURE_STORAGE_KEY / LITESTREAM_AZURE_ACCOUNT_KEY), sas-token (or AZURE_STORAGE_SAS_TOKEN), " +
            "or run with Azure Workload Identity",
          { details: { path: "account-key" } },
        );
      }
      return service.getContainerClient(opts.container);
    };
    if (keyFile || sasFile) {
      const file = (keyFile ?? sasFile) as string;
      const configKey = keyFile ? "account-key-file" : "sas-token-file";
      const read = () => readSecretFile(file, configKey);
      let value = read();
      let at = Date.now();
      let current = make(keyFile ? { key: value } : { sas: value });
      this.#fresh = () => {
        if (Date.now() - at >= (opts.credentialRefreshMs ?? CREDENTIAL_REFRESH_MS)) {
          at = Date.now();
          const next = read();
          if (next !== value) {
            value = next;
            current = make(keyFile ? { key: value } : { sas: value });
          }
        }
        return current;
      };
    } else {
      const fixed = make({
        ...(opts.accountKey ? { key: opts.accountKey } : {}),
        ...(opts.sasToken ? { sas: opts.sasToken } : {}),
      });
      this.#fresh = () => fixed;
    }
    this.#name = opts.container;
    this.#endpoint = endpoint;
    this.#blockSize = opts.blockSizeBytes ?? DEFAULT_BLOCK_SIZE_BYTES;
    this.base = `abs://${account ? `${account}@` : ""}${opts.container}`;
  }

  async list(
    prefix: string,
    delimiter: boolean,
    signal: AbortSignal | undefined,
    onPage: (objects: ListedObject[], prefixes: string[]) => void | Promise<void>,
  ): Promise<void> {
    const pages = delimiter
      ? this.#fresh()
          .listBlobsByHierarchy("/", { prefix, abortSignal: signal })
          .byPage({ maxPageSize: PAGE_SIZE })
      : this.#fresh().listBlobsFlat({ prefix, abortSignal: signal }).byPage({ maxPageSize: PAGE_SIZE });
    try {
      for await (const page of pages) {
        this.operations.LIST.count++;
        const seg = page.segment as {
          blobItems?: Array<{
            name: string;
            properties: { contentLength?: number; createdOn?: Date; lastModified?: Date };
          }>;
          blobPrefixes?: Array<{ name: string }>;
        };
        await onPage(
          (seg.blobItems ?? []).map((b) => ({
            key: b.name,
            size: b.properties.contentLength ?? 0,
            createdAt: blobTime(b.properties),
          })),
          (seg.blobPrefixes ?? []).map((p) => p.name),
        );
        checkSignal(signal, "list", this.#url(prefix));
      }
    } catch (err) {
      throw this.#error("list", prefix, err, signal);
    }
  }

  async put(
    key: string,
    body: Readable | Uint8Array,
    signal: AbortSignal | undefined,
  ): Promise<{ size: number; createdAt: Date }> {
    const blob = this.#fresh().getBlockBlobClient(key);
    const headers = { blobHTTPHeaders: { blobContentType: "application/octet-stream" } };
    try {
      if (body instanceof Uint8Array) {
        const out = await blob.upload(body, body.byteLength, { ...headers, abortSignal: signal });
        this.#countPut(body.byteLength);
        return { size: body.byteLength, createdAt: out.lastModified ?? new Date() };
      }
      const head = await readHead(body, this.#blockSize);
      if (head.ended) {
        const bytes = head.bytes();
        const out = await blob.upload(bytes, bytes.byteLength, { ...headers, abortSignal: signal });
        this.#countPut(bytes.byteLength);
        return { size: bytes.byteLength, createdAt: out.lastModified ?? new Date() };
      }
      let size = 0;
      const counted = async function* () {
        for await (const c of head.rest()) {
          size += c.byteLength;
          yield c;
        }
      };
      const out = await blob.uploadStream(
        Readable.from(counted(), { objectMode: false }),
        this.#blockSize,
        UPLOAD_CONCURRENCY,
        { ...headers, abortSignal: signal },
      );
      this.#countPut(size);
      return { size, createdAt: out.lastModified ?? new Date() };
    } catch (err) {
      throw this.#error("write", key, err, signal);
    }
  }

  async reader(key: string, signal: AbortSignal | undefined): Promise<Readable> {
    let stream: NodeJS.ReadableStream | undefined;
    try {
      const res = await this.#fresh()
        .getBlobClient(key)
        .download(0, undefined, { abortSignal: signal, maxRetryRequests: DEFAULT_MAX_ATTEMPTS });
      stream = res.readableStreamBody;
    } catch (err) {
      throw this.#error("read", key, err, signal, true);
    }
    this.operations.GET.count++;
    if (!stream) return Readable.from([], { objectMode: false });
    return relayDownload(stream, this.operations, (err) => this.#error("read", key, err, signal));
  }

  async bytes(key: string, signal: AbortSignal | undefined): Promise<Uint8Array> {
    try {
      const buf = await this.#fresh()
        .getBlobClient(key)
        .downloadToBuffer(0, undefined, { abortSignal: signal });
      this.operations.GET.count++;
      this.operations.GET.bytes += buf.length;
      return new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
    } catch (err) {
      throw this.#error("get", key, err, signal, true);
    }
  }

  async delete(keys: readonly string[], signal: AbortSignal | undefined): Promise<void> {
    await forEachLimited(
      keys,
      DELETE_CONCURRENCY,
      async (key) => {
        try {
          await this.#fresh().getBlobClient(key).deleteIfExists({ abortSignal: signal });
        } catch (err) {
          throw this.#error("delete", key, err, signal);
        }
        this.operations.DELETE.count++;
      },
      () => checkSignal(signal, "delete", this.base),
    );
  }

  #countPut(bytes: number): void {
    this.operations.PUT.count++;
    this.operations.PUT.bytes += bytes;
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
    const { status, code } = restError(err);
    if (notFound && status === 404 && code !== "ContainerNotFound")
      return new NotFoundError(url, { cause: err });
    const details: Record<string, unknown> = { container: this.#name, key, endpoint: this.#endpoint };
    if (status !== undefined) details.httpStatus = status;
    if (code !== undefined) details.azureCode = code;
    return new WalshipError(ErrorCodes.STORAGE, `${verb} ${url}: ${this.#explain(err, code)}`, {
      cause: err,
      details,
    });
  }

  #explain(err: unknown, code: string | undefined): string {
    const c = JSON.stringify(this.#name);
    const raw = describe(err).split("\n")[0] ?? "";
    // Azure says AuthenticationFailed for a bad signature; Azurite says AuthorizationFailure.
    if (code === "AuthenticationFailed" || /failed to authenticate/i.test(raw)) {
      return `the credentials were refused; check account-name and account-key or the SAS token (${code ?? "HTTP 403"}): ${raw}`;
    }
    switch (code) {
      case "ContainerNotFound":
        return `container ${c} does not exist at ${this.#endpoint} (ContainerNotFound)`;
      case "AuthorizationPermissionMismatch":
      case "AuthorizationFailure":
      case "AuthorizationResourceTypeMismatch":
        return `access denied to container ${c}; the identity needs the Storage Blob Data Contributor role, or a SAS with read, write, delete and list (${code}): ${raw}`;
      default:
        return code !== undefined && !raw.startsWith(code) ? `${code}: ${raw}` : raw;
    }
  }

  #url(key: string): string {
    return `${this.base}/${key}`;
  }
}

/** Creation-Time, else Last-Modified (a listing may lack the first; Litestream would crash). */
export function blobTime(p: { createdOn?: Date | undefined; lastModified?: Date | undefined }): Date {
  if (p.createdOn instanceof Date && !Number.isNaN(p.createdOn.getTime())) return p.createdOn;
  if (p.lastModified instanceof Date && !Number.isNaN(p.lastModified.getTime())) return p.lastModified;
  return new Date(0);
}

/** The account in an account URL: the first label of *.blob.core.* hosts, else the first path part. */
export function accountFromEndpoint(endpoint: string | undefined): string | undefined {
  if (!endpoint) return undefined;
  try {
    const u = new URL(endpoint);
    const m = /^([a-z0-9]+)\.blob\./.exec(u.hostname);
    if (m) return m[1];
    const first = u.pathname.split("/").filter(Boolean)[0];
    return first || undefined;
  } catch {
    return undefined;
  }
}

/** A secret from a file, trailing newlines dropped; errors name the file, never the content. */
function readSecretFile(file: string, key: string): string {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    throw new WalshipError(
      ErrorCodes.CONFIG,
      `read ${key} ${file}: ${(err as NodeJS.ErrnoException).code ?? "error"}`,
      {
        details: { path: key, file },
      },
    );
  }
  const value = text.replace(/[\r\n]+$/, "");
  if (value === "") {
    throw new WalshipError(ErrorCodes.CONFIG, `read ${key} ${file}: the file is empty`, {
      details: { path: key, file },
    });
  }
  return value;
}

function restError(err: unknown): { status: number | undefined; code: string | undefined } {
  if (typeof err !== "object" || err === null) return { status: undefined, code: undefined };
  const e = err as { statusCode?: unknown; code?: unknown; details?: { errorCode?: unknown } };
  const status = typeof e.statusCode === "number" ? e.statusCode : undefined;
  const code =
    typeof e.details?.errorCode === "string"
      ? e.details.errorCode
      : typeof e.code === "string"
        ? e.code
        : undefined;
  return { status, code };
}
