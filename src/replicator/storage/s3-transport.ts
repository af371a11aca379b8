/**
 * The S3 requests an S3 destination makes, as one interface with two implementations: s3-sdk.ts
 * (the AWS SDK's client: the default credential chain, the bucket's region looked up) and
 * s3-http.ts (node:http(s) and our own SigV4, used when the keys are given and the region known:
 * it loads in a few milliseconds and holds about 19 MiB less than the SDK). s3.ts builds the
 * destination's behaviour (listings, uploads, deletes, resumed downloads, errors) on either.
 *
 * Every method sends one request (retried as the SDK's standard mode retries) and throws the
 * store's or the network's error as it is, shaped as the SDK's errors are (`name` the code,
 * `$metadata.httpStatusCode` and `.attempts`), for s3-errors.ts to explain. Server-side encryption
 * is the transport's: it adds the settings' SSE parameters where each request takes them.
 */
import type { Readable } from "node:stream";
import type { OperationCounts } from "./client.ts";
import type { ListedObject } from "./object-store.ts";

export interface ListPage {
  objects: ListedObject[];
  prefixes: string[];
  truncated: boolean;
  /** NextContinuationToken. */
  token: string | undefined;
}

/** A GetObject's answer: the body (unread), its length and version. */
export interface ObjectBody {
  Body: Readable | undefined;
  ContentLength: number | undefined;
  ETag: string | undefined;
}

export interface S3Transport {
  /** Calls and bytes by Litestream's operation names (GET/PUT/DELETE/LIST), for its metrics. */
  readonly operations: OperationCounts;
  /** Attempts per request, first try included. */
  readonly maxAttempts: number;
  /** The region requests are signed for, once known (for error messages). */
  readonly region: string | undefined;
  listPage(
    q: { prefix: string; delimiter: boolean; token: string | undefined; startAfter: string | undefined },
    signal: AbortSignal | undefined,
  ): Promise<ListPage>;
  /** The whole object, or the rest of it from `range.from` if it is still version `range.etag`. */
  getObject(
    key: string,
    signal: AbortSignal | undefined,
    range?: { from: number; etag: string },
  ): Promise<ObjectBody>;
  putObject(key: string, body: Uint8Array, signal: AbortSignal | undefined): Promise<void>;
  /** CreateMultipartUpload, under no signal (s3-upload.ts says why); the upload id. */
  createUpload(key: string): Promise<string | undefined>;
  /** UploadPart; the part's ETag. */
  uploadPart(
    key: string,
    uploadId: string,
    partNumber: number,
    body: Uint8Array,
    signal: AbortSignal | undefined,
  ): Promise<string | undefined>;
  completeUpload(
    key: string,
    uploadId: string,
    parts: ReadonlyArray<{ PartNumber: number; ETag: string }>,
    signal: AbortSignal | undefined,
  ): Promise<void>;
  /** AbortMultipartUpload, under no signal. */
  abortUpload(key: string, uploadId: string): Promise<void>;
  /** DeleteObjects of at most 1000 keys (quiet); the keys the store refused. */
  deleteObjects(
    keys: readonly string[],
    signal: AbortSignal | undefined,
  ): Promise<Array<{ Key?: string | undefined; Code?: string | undefined; Message?: string | undefined }>>;
  /** Releases connections; the transport must not be used afterwards. */
  close(): void;
}
