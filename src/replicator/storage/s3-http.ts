/**
 * The S3 requests over node:http(s), signed with our own SigV4 (sigv4.ts), for an S3 destination
 * whose keys are given and whose region is known (`httpFits`); otherwise s3-sdk.ts. The AWS SDK
 * takes about 50 ms to load even from the compile cache and holds about 19 MiB more: a third of a
 * small restore's start, and a quarter of an idle replicator's memory.
 *
 * What it keeps from the SDK client, so that a destination behaves the same on either:
 * - the same URLs: path-style when asked (always with an endpoint, unless `force-path-style: false`),
 *   else the bucket as a host name (`bucket.s3.region.amazonaws.com`, or `bucket.` before the
 *   endpoint's host);
 * - the standard retry mode's rules: up to DEFAULT_MAX_ATTEMPTS attempts for 5xx, 429, throttling and
 *   timeout codes, and dropped or refused connections, with exponential backoff and full jitter; a
 *   body is a buffer, so every request can be sent again;
 * - the socket idle timeout (DEFAULT_REQUEST_TIMEOUT_MS) and connect timeout, TLS checks skipped with
 *   `skip-verify`, key files re-read while running;
 * - the SSE parameters on the requests that take them (SSE-S3 and SSE-KMS on PutObject and
 *   CreateMultipartUpload; SSE-C on every request that reads or writes a body, and the completion);
 * - bodies of PutObject and UploadPart left out of the signature over https (`UNSIGNED-PAYLOAD`),
 *   signed with their SHA-256 over http; DeleteObjects with a Content-MD5 and no newer checksums;
 * - the operation counts by Litestream's names, each request counted once when it succeeds;
 * - errors shaped as the SDK's (the code as the name, the HTTP status, the attempts) for s3-errors.ts,
 *   including CompleteMultipartUpload's error inside a 200 answer.
 */
import { createHash } from "node:crypto";
import type * as Http from "node:http";
import type * as Https from "node:https";
import type { Readable } from "node:stream";
import { ErrorCodes, WalshipError } from "../../shared/errors.ts";
import type { OperationCounts } from "./client.ts";
import { newOperationCounts } from "./common.ts";
import { fileKeyProvider } from "./credential-file.ts";
import { type ListedObject, ObjectStoreClient } from "./object-store.ts";
import { S3Backend, type S3ReplicaClientOptions, type S3Settings } from "./s3.ts";
import { checkRequestOptions } from "./s3-shared.ts";
import { type SseParams, sseSource } from "./s3-sse.ts";
import type { ListPage, ObjectBody, S3Transport } from "./s3-transport.ts";
import { type Credentials, canonicalQuery, EMPTY_SHA256, encodePath, sign } from "./sigv4.ts";

/** Codes the SDK's standard retry mode retries (throttling, transient and timeout errors). */
const RETRY_CODES = new Set([
  "Throttling",
  "ThrottlingException",
  "ThrottledException",
  "RequestThrottledException",
  "TooManyRequestsException",
  "RequestLimitExceeded",
  "BandwidthLimitExceeded",
  "LimitExceededException",
  "RequestThrottled",
  "SlowDown",
  "PriorRequestNotComplete",
  "RequestTimeout",
  "RequestTimeoutException",
  "InternalError",
  "TimeoutError",
  "ECONNRESET",
  "ECONNREFUSED",
  "EPIPE",
  "ETIMEDOUT",
]);
const RETRY_STATUS = new Set([429, 500, 502, 503, 504]);
/** Backoff: a random wait up to base * 2^attempt, at most 20 s (the SDK's standard mode). */
const BACKOFF_BASE_MS = 100;
const BACKOFF_MAX_MS = 20_000;
/** An error or listing body larger than this is refused (a listing page of 1000 keys is ~250 KiB). */
const MAX_XML_BYTES = 16 * 1024 * 1024;

/** A store's error answer (or a network failure), shaped as s3-errors.ts reads the SDK's errors. */
class S3ResponseError extends Error {
  readonly $metadata: { httpStatusCode?: number; attempts: number };
  constructor(code: string, message: string, status: number | undefined, attempts: number) {
    super(message);
    this.name = code;
    this.$metadata = { ...(status !== undefined ? { httpStatusCode: status } : {}), attempts };
  }
}

/**
 * Whether these requests go to `s` exactly as the SDK client sends them: keys given (in the config, as key
 * files, or in the environment as AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, which the SDK's default
 * chain takes first), a region, and a URL form it builds the same way (path-style, or a bucket that is
 * a plain DNS label).
 */
export function httpFits(s: S3Settings, env: NodeJS.ProcessEnv = process.env): boolean {
  if (!givenKeys(s) && !envKeys(env)) return false;
  if (!s.region) return false;
  if (s.forcePathStyle) return true;
  if (!/^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$/.test(s.bucket)) return false;
  if (s.endpoint === undefined) return true;
  const host = new URL(s.endpoint).hostname;
  // An IP address cannot take the bucket as a sub-domain; the SDK goes path-style there.
  return !/^\d+\.\d+\.\d+\.\d+$/.test(host) && !host.startsWith("[");
}

function givenKeys(s: S3Settings): boolean {
  return Boolean((s.accessKeyId && s.secretAccessKey) || (s.accessKeyIdFile && s.secretAccessKeyFile));
}

/** The SDK's environment credentials (its chain's first link), if both keys are set. */
function envKeys(env: NodeJS.ProcessEnv): Credentials | undefined {
  const accessKeyId = env.AWS_ACCESS_KEY_ID;
  const secretAccessKey = env.AWS_SECRET_ACCESS_KEY;
  if (!accessKeyId || !secretAccessKey) return undefined;
  return {
    accessKeyId,
    secretAccessKey,
    ...(env.AWS_SESSION_TOKEN ? { sessionToken: env.AWS_SESSION_TOKEN } : {}),
  };
}

/** A ReplicaClient for `s3://bucket/path` without the AWS SDK (settings that `httpFits`). */
export class S3HttpReplicaClient extends ObjectStoreClient {
  constructor(settings: S3Settings, opts: S3ReplicaClientOptions & { env?: NodeJS.ProcessEnv } = {}) {
    super(new S3Backend(settings, opts, (s, o) => new HttpTransport(s, o)), settings?.path ?? "");
  }
}

export interface HttpTransportOptions {
  /** Attempts per request, first try included; undefined = DEFAULT_MAX_ATTEMPTS (s3-shared.ts). */
  maxAttempts?: number | undefined;
  /** Socket idle timeout per request; undefined = DEFAULT_REQUEST_TIMEOUT_MS; 0 = none. */
  requestTimeoutMs?: number | undefined;
  /** Key files are read again after this long; undefined = the key files' default. */
  credentialRefreshMs?: number | undefined;
  /** Where AWS_ACCESS_KEY_ID and the rest are read when the settings hold no keys; default process.env. */
  env?: NodeJS.ProcessEnv | undefined;
}

/** One request: the object's key ("" for the bucket), and what goes with it. */
interface Call {
  method: "GET" | "PUT" | "POST" | "DELETE";
  key: string;
  query?: Array<[string, string]>;
  headers?: Record<string, string>;
  body?: Uint8Array;
  /** Over https, leave the body out of the signature (PutObject, UploadPart). */
  unsignedOverTls?: boolean;
}

const XML_NS = "http://s3.amazonaws.com/doc/2006-03-01/";

export class HttpTransport implements S3Transport {
  readonly operations: OperationCounts = newOperationCounts();
  readonly maxAttempts: number;
  readonly region: string;
  readonly #timeoutMs: number;
  readonly #connectMs: number;
  readonly #keys: () => Promise<Credentials>;
  readonly #sse: () => Promise<SseParams>;
  readonly #http: typeof Http | typeof Https;
  readonly #tls: boolean;
  readonly #agent: Http.Agent;
  /** Scheme and host, and the path before the key ("/bucket/" path-style, "/" virtual-hosted). */
  readonly #origin: { protocol: string; host: string; hostname: string; port: string; base: string };

  constructor(settings: S3Settings, opts: HttpTransportOptions = {}) {
    const env = opts.env ?? process.env;
    if (!httpFits(settings, env)) {
      throw new WalshipError(ErrorCodes.CONFIG, "create s3 replica: these settings need the AWS SDK client", {
        details: { bucket: settings.bucket },
      });
    }
    const { maxAttempts, timeoutMs, connectMs } = checkRequestOptions(opts);
    this.region = settings.region as string;
    this.maxAttempts = maxAttempts;
    this.#timeoutMs = timeoutMs;
    this.#connectMs = connectMs;
    const { accessKeyId, secretAccessKey } = settings;
    const fixed = accessKeyId && secretAccessKey ? { accessKeyId, secretAccessKey } : undefined;
    if (fixed || !(settings.accessKeyIdFile && settings.secretAccessKeyFile)) {
      const pair = fixed ?? (envKeys(env) as Credentials);
      this.#keys = async () => pair;
    } else {
      this.#keys = fileKeyProvider(
        {
          accessKeyIdFile: settings.accessKeyIdFile as string,
          secretAccessKeyFile: settings.secretAccessKeyFile as string,
        },
        opts.credentialRefreshMs,
      );
    }
    this.#sse = sseSource(settings.sse);
    const url = new URL(settings.endpoint ?? `https://s3.${this.region}.amazonaws.com`);
    const endpointPath = url.pathname.replace(/\/+$/, "");
    const pathStyle = settings.forcePathStyle;
    const hostname = pathStyle ? url.hostname : `${settings.bucket}.${url.hostname}`;
    this.#origin = {
      protocol: url.protocol,
      hostname,
      port: url.port,
      host: url.port ? `${hostname}:${url.port}` : hostname,
      base: `${endpointPath}/${pathStyle ? `${settings.bucket}/` : ""}`,
    };
    // node:http through getBuiltinModule: an ESM import of it loads undici (about 30 ms).
    this.#tls = url.protocol === "https:";
    this.#http = process.getBuiltinModule(this.#tls ? "node:https" : "node:http") as typeof Https;
    this.#agent = new this.#http.Agent({
      keepAlive: true,
      maxSockets: 50,
      ...(this.#tls && settings.skipVerify ? { rejectUnauthorized: false } : {}),
    });
  }

  close(): void {
    this.#agent.destroy();
  }

  async listPage(
    q: { prefix: string; delimiter: boolean; token: string | undefined; startAfter: string | undefined },
    signal: AbortSignal | undefined,
  ): Promise<ListPage> {
    const query: Array<[string, string]> = [
      ["list-type", "2"],
      ["prefix", q.prefix],
    ];
    if (q.delimiter) query.push(["delimiter", "/"]);
    if (q.token !== undefined) query.push(["continuation-token", q.token]);
    else if (q.startAfter !== undefined) query.push(["start-after", q.startAfter]);
    const page = parseListing(await this.#text({ method: "GET", key: "", query }, signal));
    this.operations.LIST.count++;
    return page;
  }

  async getObject(
    key: string,
    signal: AbortSignal | undefined,
    range?: { from: number; etag: string },
  ): Promise<ObjectBody> {
    const headers = customerKeyHeaders((await this.#sse()).read);
    if (range) {
      headers.range = `bytes=${range.from}-`;
      headers["if-match"] = range.etag;
    }
    const res = await this.#call({ method: "GET", key, headers }, signal);
    const length = contentLength(res);
    this.operations.GET.count++;
    this.operations.GET.bytes += length ?? 0;
    return { Body: res, ContentLength: length, ETag: header(res, "etag") };
  }

  async putObject(key: string, body: Uint8Array, signal: AbortSignal | undefined): Promise<void> {
    const headers = writeHeaders((await this.#sse()).write);
    const res = await this.#call({ method: "PUT", key, headers, body, unsignedOverTls: true }, signal);
    res.resume();
    this.operations.PUT.count++;
    this.operations.PUT.bytes += body.byteLength;
  }

  async createUpload(key: string): Promise<string | undefined> {
    const headers = writeHeaders((await this.#sse()).write);
    const text = await this.#text({ method: "POST", key, query: [["uploads", ""]], headers }, undefined);
    this.operations.PUT.count++;
    return xmlValue(text, "UploadId");
  }

  async uploadPart(
    key: string,
    uploadId: string,
    partNumber: number,
    body: Uint8Array,
    signal: AbortSignal | undefined,
  ): Promise<string | undefined> {
    const headers = customerKeyHeaders((await this.#sse()).read);
    const query: Array<[string, string]> = [
      ["partNumber", String(partNumber)],
      ["uploadId", uploadId],
    ];
    const res = await this.#call({ method: "PUT", key, query, headers, body, unsignedOverTls: true }, signal);
    res.resume();
    this.operations.PUT.count++;
    this.operations.PUT.bytes += body.byteLength;
    return header(res, "etag");
  }

  async completeUpload(
    key: string,
    uploadId: string,
    parts: ReadonlyArray<{ PartNumber: number; ETag: string }>,
    signal: AbortSignal | undefined,
  ): Promise<void> {
    const headers = { ...customerKeyHeaders((await this.#sse()).read), "content-type": "application/xml" };
    const xml =
      `<?xml version="1.0" encoding="UTF-8"?><CompleteMultipartUpload xmlns="${XML_NS}">` +
      parts
        .map((p) => `<Part><ETag>${escapeXml(p.ETag)}</ETag><PartNumber>${p.PartNumber}</PartNumber></Part>`)
        .join("") +
      "</CompleteMultipartUpload>";
    await this.#text(
      { method: "POST", key, query: [["uploadId", uploadId]], headers, body: Buffer.from(xml) },
      signal,
    );
    this.operations.PUT.count++;
  }

  async abortUpload(key: string, uploadId: string): Promise<void> {
    (await this.#call({ method: "DELETE", key, query: [["uploadId", uploadId]] }, undefined)).resume();
  }

  async deleteObjects(
    keys: readonly string[],
    signal: AbortSignal | undefined,
  ): Promise<Array<{ Key?: string; Code?: string; Message?: string }>> {
    const xml =
      `<?xml version="1.0" encoding="UTF-8"?><Delete xmlns="${XML_NS}">` +
      keys.map((k) => `<Object><Key>${escapeXml(k)}</Key></Object>`).join("") +
      "<Quiet>true</Quiet></Delete>";
    const body = Buffer.from(xml);
    const headers = {
      "content-md5": createHash("md5").update(body).digest("base64"),
      "content-type": "application/xml",
    };
    const text = await this.#text(
      { method: "POST", key: "", query: [["delete", ""]], headers, body },
      signal,
    );
    this.operations.DELETE.count++;
    const refused: Array<{ Key?: string; Code?: string; Message?: string }> = [];
    for (const m of text.matchAll(/<Error>([\s\S]*?)<\/Error>/g)) {
      const e = m[1] ?? "";
      refused.push({ Key: xmlValue(e, "Key"), Code: xmlValue(e, "Code"), Message: xmlValue(e, "Message") });
    }
    return refused;
  }

  // -------------------------------------------------------------------------------------------------

  /** A call whose answer is XML: its text, an `<Error>` in a 200 answer thrown as the store's error. */
  async #text(call: Call, signal: AbortSignal | undefined): Promise<string> {
    return this.#call(call, signal, true);
  }

  /**
   * One signed request, retried as the SDK's standard mode retries. Resolves with the 2xx response,
   * its body unread, or with `readText` its body as text (a 200 carrying an `<Error>` is a failure,
   * retried as any).
   */
  #call(call: Call, signal: AbortSignal | undefined): Promise<Http.IncomingMessage>;
  #call(call: Call, signal: AbortSignal | undefined, readText: true): Promise<string>;
  async #call(
    call: Call,
    signal: AbortSignal | undefined,
    readText = false,
  ): Promise<Http.IncomingMessage | string> {
    for (let attempt = 1; ; attempt++) {
      let failure: S3ResponseError | unknown;
      try {
        const res = await this.#send(call, signal);
        const status = res.statusCode ?? 0;
        if (status < 200 || status >= 300) {
          failure = await answerError(res, attempt);
        } else if (!readText) {
          return res;
        } else {
          const text = await readAll(res, MAX_XML_BYTES);
          if (!/^(<\?xml[^>]*\?>)?\s*<Error>/.test(text)) return text;
          failure = new S3ResponseError(
            xmlValue(text, "Code") ?? "InternalError",
            xmlValue(text, "Message") ?? "an error in a 200 answer",
            status,
            attempt,
          );
        }
      } catch (err) {
        failure = networkError(err, attempt);
      }
      const e = failure as S3ResponseError;
      const retry =
        !signal?.aborted &&
        attempt < this.maxAttempts &&
        (RETRY_CODES.has(e.name) || RETRY_STATUS.has(e.$metadata?.httpStatusCode ?? 0));
      if (!retry) throw failure;
      const wait = Math.floor(Math.random() * Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** attempt));
      await new Promise((r) => setTimeout(r, wait));
    }
  }

  /** Sends one signed request and resolves with the response (any status), its body unread. */
  async #send(call: Call, signal: AbortSignal | undefined): Promise<Http.IncomingMessage> {
    const o = this.#origin;
    const path = encodePath(`${o.base}${call.key}`.slice(1));
    const query = call.query ?? [];
    const body = call.body;
    const payloadHash =
      body === undefined
        ? EMPTY_SHA256
        : this.#tls && call.unsignedOverTls
          ? "UNSIGNED-PAYLOAD"
          : createHash("sha256").update(body).digest("hex");
    const headers: Record<string, string> = {
      host: o.host,
      "x-amz-content-sha256": payloadHash,
      ...call.headers,
    };
    const auth = sign({ method: call.method, path, query, headers, payloadHash }, await this.#keys(), {
      region: this.region,
      service: "s3",
      date: new Date(),
    });
    const search = query.length ? `?${canonicalQuery(query)}` : "";
    const length = call.method === "GET" ? {} : { "content-length": String(body?.byteLength ?? 0) };
    return new Promise((resolve, reject) => {
      const req = this.#http.request({
        protocol: o.protocol,
        hostname: o.hostname,
        port: o.port || undefined,
        path: path + search,
        method: call.method,
        headers: { ...headers, ...auth, ...length },
        agent: this.#agent,
        ...(signal ? { signal } : {}),
      });
      const fail = (message: string) => {
        const err = new Error(message);
        err.name = "TimeoutError";
        req.destroy(err);
      };
      if (this.#timeoutMs > 0) {
        req.setTimeout(this.#timeoutMs, () =>
          fail(`no data for ${this.#timeoutMs} ms (socket idle timeout)`),
        );
      }
      req.once("socket", (socket) => {
        if (!socket.connecting) return;
        const timer = setTimeout(() => fail(`not connected within ${this.#connectMs} ms`), this.#connectMs);
        socket.once("connect", () => clearTimeout(timer));
        socket.once("close", () => clearTimeout(timer));
      });
      req.once("response", resolve);
      req.on("error", reject);
      req.end(body);
    });
  }
}

/** The headers of SSE-C (a customer key), for every request that reads or writes a body. */
function customerKeyHeaders(p: { SSECustomerKey?: string }): Record<string, string> {
  if (p.SSECustomerKey === undefined) return {};
  return {
    "x-amz-server-side-encryption-customer-algorithm": "AES256",
    "x-amz-server-side-encryption-customer-key": p.SSECustomerKey,
    "x-amz-server-side-encryption-customer-key-md5": createHash("md5")
      .update(Buffer.from(p.SSECustomerKey, "base64"))
      .digest("base64"),
  };
}

/** The SSE headers of PutObject and CreateMultipartUpload. */
function writeHeaders(p: SseParams["write"]): Record<string, string> {
  const out = customerKeyHeaders(p);
  if (p.ServerSideEncryption !== undefined) out["x-amz-server-side-encryption"] = p.ServerSideEncryption;
  if (p.SSEKMSKeyId !== undefined) out["x-amz-server-side-encryption-aws-kms-key-id"] = p.SSEKMSKeyId;
  return out;
}

/** The store's error answer (`<Error><Code>…<Message>…`) as an S3ResponseError; the body is read. */
async function answerError(res: Http.IncomingMessage, attempts: number): Promise<S3ResponseError> {
  const status = res.statusCode ?? 0;
  let text = "";
  try {
    text = await readAll(res, 64 * 1024);
  } catch {
    // the status is enough
  }
  const code = xmlValue(text, "Code") ?? statusCode(status);
  const message = xmlValue(text, "Message") ?? `HTTP ${status}`;
  return new S3ResponseError(code, message, status, attempts);
}

function escapeXml(text: string): string {
  return text.replace(/[&<>]/g, (c) => (c === "&" ? "&amp;" : c === "<" ? "&lt;" : "&gt;"));
}

/** A network failure (refused, reset, timed out) with its code as the name, for the retry rules. */
function networkError(err: unknown, attempts: number): unknown {
  if (typeof err !== "object" || err === null) return err;
  const e = err as NodeJS.ErrnoException;
  if (e.name === "AbortError") return err;
  const code = e.name === "TimeoutError" ? "TimeoutError" : (e.code ?? e.name ?? "Error");
  const out = new S3ResponseError(code, e.message, undefined, attempts);
  out.cause = err;
  return out;
}

function statusCode(status: number): string {
  if (status === 404) return "NotFound";
  if (status === 403) return "Forbidden";
  if (status === 301) return "PermanentRedirect";
  return `HTTP${status}`;
}

function header(res: Http.IncomingMessage, name: string): string | undefined {
  const v = res.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

function contentLength(res: Http.IncomingMessage): number | undefined {
  const v = header(res, "content-length");
  return v === undefined ? undefined : Number(v);
}

async function readAll(res: Readable, limit: number): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of res) {
    size += (c as Buffer).length;
    if (size > limit) {
      res.destroy();
      throw new Error(`the answer is larger than ${limit} bytes`);
    }
    chunks.push(c as Buffer);
  }
  return Buffer.concat(chunks).toString("utf8");
}

const ENTITIES: Record<string, string> = { amp: "&", lt: "<", gt: ">", quot: '"', apos: "'" };

/** XML text with its entity and character references replaced. */
function unescapeXml(text: string): string {
  return text.replace(/&(#x[0-9a-fA-F]+|#[0-9]+|[a-z]+);/g, (all, ref: string) => {
    if (ref[0] === "#") {
      const n = ref[1] === "x" ? Number.parseInt(ref.slice(2), 16) : Number.parseInt(ref.slice(1), 10);
      return Number.isFinite(n) && n <= 0x10ffff ? String.fromCodePoint(n) : all;
    }
    return ENTITIES[ref] ?? all;
  });
}

function xmlValue(xml: string, tag: string): string | undefined {
  const m = new RegExp(`<${tag}>([\\s\\S]*?)</${tag}>`).exec(xml);
  return m?.[1] === undefined ? undefined : unescapeXml(m[1]);
}

/** One ListObjectsV2 page: the objects, the common prefixes, and whether (and how) it goes on. */
function parseListing(xml: string): {
  objects: ListedObject[];
  prefixes: string[];
  truncated: boolean;
  token: string | undefined;
} {
  if (!/<ListBucketResult[\s>]/.test(xml)) {
    throw new S3ResponseError("MalformedListing", "the listing answer is not a ListBucketResult", 200, 1);
  }
  const objects: ListedObject[] = [];
  for (const m of xml.matchAll(/<Contents>([\s\S]*?)<\/Contents>/g)) {
    const body = m[1] ?? "";
    const key = xmlValue(body, "Key");
    if (key === undefined) continue;
    const time = xmlValue(body, "LastModified");
    const at = time === undefined ? new Date(0) : new Date(time);
    objects.push({
      key,
      size: Number(xmlValue(body, "Size") ?? 0),
      createdAt: Number.isNaN(at.getTime()) ? new Date(0) : at,
    });
  }
  const prefixes: string[] = [];
  for (const m of xml.matchAll(/<CommonPrefixes>([\s\S]*?)<\/CommonPrefixes>/g)) {
    const p = xmlValue(m[1] ?? "", "Prefix");
    if (p !== undefined) prefixes.push(p);
  }
  return {
    objects,
    prefixes,
    truncated: xmlValue(xml, "IsTruncated") === "true",
    token: xmlValue(xml, "NextContinuationToken") || undefined,
  };
}
