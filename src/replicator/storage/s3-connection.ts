/**
 * The AWS SDK client of an S3 destination (s3.ts): its settings (standard retries, the idle timeout
 * that notices a half-open connection, checksums only where an API requires one, TLS checks that can
 * be skipped), the credentials (keys, key files re-read while running, else the SDK's default chain),
 * the bucket's region (looked up as Litestream does when neither a region nor an endpoint is set),
 * the calls and bytes counted by Litestream's operation names for its metrics, and object bodies left
 * out of the signature over TLS.
 */
import { createHash } from "node:crypto";
import { Agent as HttpsAgent } from "node:https";
import {
  type DeleteObjectsCommand,
  GetBucketLocationCommand,
  S3Client,
  type S3ClientConfig,
} from "@aws-sdk/client-s3";
import { ErrorCodes, WalshipError } from "../../shared/errors.ts";
import type { Logger } from "../../shared/log.ts";
import type { Operation, OperationCounts } from "./client.ts";
import { describe, newOperationCounts } from "./common.ts";
import { fileKeyProvider } from "./credential-file.ts";
import type { S3Settings } from "./s3.ts";
import { s3Code } from "./s3-errors.ts";
import { checkRequestOptions } from "./s3-shared.ts";

/**
 * The commands whose body the signature may leave out: over TLS their `x-amz-content-sha256` is
 * `UNSIGNED-PAYLOAD` instead of the body's SHA-256, as botocore (boto3, the AWS CLI) sends S3 bodies
 * over https. TLS already guards the body in transit and the LZ4 frame carries its own checksum;
 * hashing it once more made a snapshot over https 11-22 % slower (docs/benchmarks.md). Over plain
 * http the body stays signed: there nothing else guards it.
 */
const UNSIGNED_OVER_TLS = new Set(["PutObjectCommand", "UploadPartCommand"]);
/** The SigV4 header that carries the body's hash, or UNSIGNED-PAYLOAD. */
const CONTENT_SHA256_HEADER = "x-amz-content-sha256";

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

export interface S3ConnectionOptions {
  log?: Logger | undefined;
  /** Attempts per request, first try included; undefined = DEFAULT_MAX_ATTEMPTS. */
  maxAttempts?: number | undefined;
  /** Socket idle timeout per request; undefined = DEFAULT_REQUEST_TIMEOUT_MS; 0 = none. */
  requestTimeoutMs?: number | undefined;
  /** Key files are read again after this long; undefined = DEFAULT_CREDENTIAL_REFRESH_MS. */
  credentialRefreshMs?: number | undefined;
}

/** The SDK client for one bucket, made at once, or on first use when the region must be looked up. */
export class S3Connection {
  /** Calls and bytes by Litestream's operation names (GET/PUT/DELETE/LIST), for its metrics. */
  readonly operations: OperationCounts = newOperationCounts();
  readonly maxAttempts: number;
  readonly #bucket: string;
  readonly #config: S3ClientConfig;
  readonly #log: Logger | undefined;
  #client: Promise<S3Client> | undefined;
  #made: S3Client | undefined;
  #region: string | undefined;

  /** Checks the attempts, the timeout and the keys (CONFIG errors), and makes the SDK's settings. */
  constructor(settings: S3Settings, opts: S3ConnectionOptions = {}) {
    const { maxAttempts, timeoutMs, connectMs } = checkRequestOptions(opts);
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
    this.maxAttempts = maxAttempts;
    this.#bucket = settings.bucket;
    this.#log = opts.log;

    const config: S3ClientConfig = {
      forcePathStyle: settings.forcePathStyle,
      maxAttempts,
      retryMode: "standard",
      // Only the checksums an API requires: several S3-compatibles reject the SDK's newer defaults.
      requestChecksumCalculation: "WHEN_REQUIRED",
      responseChecksumValidation: "WHEN_REQUIRED",
      requestHandler: {
        connectionTimeout: connectMs,
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
      this.#made = this.#newClient({ ...config, region: this.#region });
      this.#client = Promise.resolve(this.#made);
    }
  }

  /** The region requests are signed for, once known. */
  get region(): string | undefined {
    return this.#region;
  }

  /** Closes the SDK client and its connections; it must not be used afterwards. */
  close(): void {
    this.#made?.destroy();
  }

  /** The SDK client, made on first use when the bucket's region has to be looked up first. */
  client(): Promise<S3Client> {
    if (this.#client === undefined) {
      const made = this.#lookUpRegion().then((r) => {
        this.#region = r.region;
        this.#made = this.#newClient({ ...this.#config, region: r.region, followRegionRedirects: r.guessed });
        return this.#made;
      });
      this.#client = made;
    }
    return this.#client;
  }

  /** The SDK client for `config`, with bodies unsigned over TLS and its commands counted. */
  #newClient(config: S3ClientConfig): S3Client {
    return this.#counted(unsignedBodiesOverTls(new S3Client(config)));
  }

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
}

/** Marks the bodies of UNSIGNED_OVER_TLS commands as UNSIGNED-PAYLOAD when they go over https. */
function unsignedBodiesOverTls(client: S3Client): S3Client {
  client.middlewareStack.add(
    (next, context) => async (args) => {
      const req = args.request as { protocol?: string; headers?: Record<string, string> };
      if (req.protocol === "https:" && req.headers && UNSIGNED_OVER_TLS.has(context.commandName ?? "")) {
        req.headers[CONTENT_SHA256_HEADER] = "UNSIGNED-PAYLOAD";
      }
      return next(args);
    },
    // After serialization (the request exists), before signing (finalizeRequest): the signer keeps
    // a hash header already set and signs it as it is.
    { step: "build", name: "walshipUnsignedPayloadOverTls" },
  );
  return client;
}

/** Adds Content-MD5 to a DeleteObjects request (older stores require it) in place of newer checksums. */
export function addContentMd5(command: DeleteObjectsCommand): void {
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
