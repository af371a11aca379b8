/**
 * The S3 destination through the AWS SDK's client (s3-connection.ts: its settings, credentials from
 * the keys, key files or the SDK's default chain, the bucket's region looked up when unknown):
 * `S3ReplicaClient`. createReplicaClient uses it when s3-http.ts cannot do what this does (no keys
 * given: IRSA, EKS Pod Identity, profiles, instance roles; or no region), or when told to
 * (`WALSHIP_S3_CLIENT=sdk`).
 */
import type { Readable } from "node:stream";
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  type S3Client,
  UploadPartCommand,
} from "@aws-sdk/client-s3";
import type { Logger } from "../../shared/log.ts";
import type { OperationCounts } from "./client.ts";
import { ObjectStoreClient } from "./object-store.ts";
import { S3Backend, type S3ReplicaClientOptions, type S3Settings } from "./s3.ts";
import { addContentMd5, S3Connection } from "./s3-connection.ts";
import { type SseParams, sseSource } from "./s3-sse.ts";
import type { ListPage, ObjectBody, S3Transport } from "./s3-transport.ts";

/** A ReplicaClient for `s3://bucket/path` through the AWS SDK. */
export class S3ReplicaClient extends ObjectStoreClient {
  constructor(settings: S3Settings, opts: S3ReplicaClientOptions = {}) {
    super(new S3Backend(settings, opts, (s, o) => new SdkTransport(s, o)), settings?.path ?? "");
  }
}

export interface SdkTransportOptions {
  log?: Logger | undefined;
  maxAttempts?: number | undefined;
  requestTimeoutMs?: number | undefined;
  credentialRefreshMs?: number | undefined;
}

export class SdkTransport implements S3Transport {
  readonly operations: OperationCounts;
  readonly maxAttempts: number;
  readonly #bucket: string;
  readonly #connection: S3Connection;
  readonly #sse: () => Promise<SseParams>;

  constructor(settings: S3Settings, opts: SdkTransportOptions = {}) {
    this.#bucket = settings.bucket;
    this.#sse = sseSource(settings.sse);
    this.#connection = new S3Connection(settings, opts);
    this.operations = this.#connection.operations;
    this.maxAttempts = this.#connection.maxAttempts;
  }

  get region(): string | undefined {
    return this.#connection.region;
  }

  close(): void {
    this.#connection.close();
  }

  #s3(): Promise<S3Client> {
    return this.#connection.client();
  }

  async listPage(
    q: { prefix: string; delimiter: boolean; token: string | undefined; startAfter: string | undefined },
    signal: AbortSignal | undefined,
  ): Promise<ListPage> {
    const page = await (await this.#s3()).send(
      new ListObjectsV2Command({
        Bucket: this.#bucket,
        Prefix: q.prefix,
        Delimiter: q.delimiter ? "/" : undefined,
        ContinuationToken: q.token,
        StartAfter: q.token === undefined ? q.startAfter : undefined,
      }),
      signal ? { abortSignal: signal } : {},
    );
    return {
      objects: (page.Contents ?? []).flatMap((o) =>
        o.Key === undefined
          ? []
          : [
              {
                key: o.Key,
                size: o.Size ?? 0,
                createdAt: o.LastModified instanceof Date ? o.LastModified : new Date(0),
              },
            ],
      ),
      prefixes: (page.CommonPrefixes ?? []).flatMap((p) => (p.Prefix === undefined ? [] : [p.Prefix])),
      truncated: page.IsTruncated === true,
      token: page.NextContinuationToken || undefined,
    };
  }

  async getObject(
    key: string,
    signal: AbortSignal | undefined,
    range?: { from: number; etag: string },
  ): Promise<ObjectBody> {
    const sse = await this.#sse();
    const out = await (await this.#s3()).send(
      new GetObjectCommand({
        Bucket: this.#bucket,
        Key: key,
        ...sse.read,
        ...(range ? { Range: `bytes=${range.from}-`, IfMatch: range.etag } : {}),
      }),
      signal ? { abortSignal: signal } : {},
    );
    return { Body: out.Body as Readable | undefined, ContentLength: out.ContentLength, ETag: out.ETag };
  }

  async putObject(key: string, body: Uint8Array, signal: AbortSignal | undefined): Promise<void> {
    const sse = await this.#sse();
    await (await this.#s3()).send(
      new PutObjectCommand({
        Bucket: this.#bucket,
        Key: key,
        Body: body,
        ContentLength: body.byteLength,
        ...sse.write,
      }),
      signal ? { abortSignal: signal } : {},
    );
  }

  async createUpload(key: string): Promise<string | undefined> {
    const sse = await this.#sse();
    const out = await (await this.#s3()).send(
      new CreateMultipartUploadCommand({ Bucket: this.#bucket, Key: key, ...sse.write }),
    );
    return out.UploadId;
  }

  async uploadPart(
    key: string,
    uploadId: string,
    partNumber: number,
    body: Uint8Array,
    signal: AbortSignal | undefined,
  ): Promise<string | undefined> {
    const sse = await this.#sse();
    const out = await (await this.#s3()).send(
      new UploadPartCommand({
        Bucket: this.#bucket,
        Key: key,
        UploadId: uploadId,
        PartNumber: partNumber,
        Body: body,
        ...sse.read,
      }),
      signal ? { abortSignal: signal } : {},
    );
    return out.ETag;
  }

  async completeUpload(
    key: string,
    uploadId: string,
    parts: ReadonlyArray<{ PartNumber: number; ETag: string }>,
    signal: AbortSignal | undefined,
  ): Promise<void> {
    const sse = await this.#sse();
    await (await this.#s3()).send(
      new CompleteMultipartUploadCommand({
        Bucket: this.#bucket,
        Key: key,
        UploadId: uploadId,
        MultipartUpload: { Parts: [...parts] },
        ...sse.read,
      }),
      signal ? { abortSignal: signal } : {},
    );
  }

  async abortUpload(key: string, uploadId: string): Promise<void> {
    await (await this.#s3()).send(
      new AbortMultipartUploadCommand({ Bucket: this.#bucket, Key: key, UploadId: uploadId }),
    );
  }

  async deleteObjects(
    keys: readonly string[],
    signal: AbortSignal | undefined,
  ): Promise<Array<{ Key?: string; Code?: string; Message?: string }>> {
    const command = new DeleteObjectsCommand({
      Bucket: this.#bucket,
      Delete: { Objects: keys.map((Key) => ({ Key })), Quiet: true },
    });
    addContentMd5(command);
    const out = await (await this.#s3()).send(command, signal ? { abortSignal: signal } : {});
    return out.Errors ?? [];
  }
}
