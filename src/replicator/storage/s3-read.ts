/**
 * An S3 client that only reads, for `walship restore` and the listing commands: ListObjectsV2 and
 * GetObject over node:http(s), signed with SigV4 (sigv4.ts). The AWS SDK takes about 50 ms to load
 * even from the compile cache, a third of a restore's start at a pod's first start; this client loads
 * in a few. It is used only where it does exactly what the SDK client would (`readerFits`): keys given
 * (in the config, as key files, or as AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY), and the region known;
 * otherwise the rest of the SDK's default credential chain (IRSA, profiles, container credentials,
 * instance metadata) or its region lookup is needed.
 *
 * What it keeps from the SDK client (s3.ts, s3-connection.ts), so a restore behaves the same either way:
 * - the same URLs: path-style when asked (always with an endpoint, unless `force-path-style: false`),
 *   else the bucket as a host name (`bucket.s3.region.amazonaws.com`, or `bucket.` before the endpoint's
 *   host);
 * - the standard retry mode's rules: up to DEFAULT_MAX_ATTEMPTS attempts for 5xx, 429, throttling and
 *   timeout codes, and dropped or refused connections, with exponential backoff and full jitter;
 * - the socket idle timeout (DEFAULT_REQUEST_TIMEOUT_MS) and connect timeout, TLS checks skipped with
 *   `skip-verify`, SSE-C keys on every GET, key files re-read while running;
 * - errors through s3-errors.ts (the store's code, the HTTP status, the attempts; never a secret);
 * - bodies resumed where they broke off (s3-download.ts), the operation counts for the metrics.
 * It refuses to write: `put` and `delete` throw.
 */
import { createHash } from "node:crypto";
import type * as Http from "node:http";
import type * as Https from "node:https";
import type { Readable } from "node:stream";
import { ErrorCodes, NotFoundError, WalshipError } from "../../shared/errors.ts";
import type { Logger } from "../../shared/log.ts";
import type { OperationCounts } from "./client.ts";
import { checkSignal, newOperationCounts } from "./common.ts";
import { fileKeyProvider } from "./credential-file.ts";
import { type ListedObject, type ObjectBackend, ObjectStoreClient } from "./object-store.ts";
import type { S3Settings } from "./s3.ts";
import { resumableBody } from "./s3-download.ts";
import { isMissingKey, s3Error } from "./s3-errors.ts";
import {
  DEFAULT_CONNECT_TIMEOUT_MS,
  DEFAULT_MAX_ATTEMPTS,
  DEFAULT_REQUEST_TIMEOUT_MS,
  nextListStart,
} from "./s3-shared.ts";
import { sseSource } from "./s3-sse.ts";
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
export class S3ResponseError extends Error {
  readonly $metadata: { httpStatusCode?: number; attempts: number };
  constructor(code: string, message: string, status: number | undefined, attempts: number) {
    super(message);
    this.name = code;
    this.$metadata = { ...(status !== undefined ? { httpStatusCode: status } : {}), attempts };
  }
}

/**
 * Whether this client reads `s` exactly as the SDK client would: keys given (in the config, as key
 * files, or in the environment as AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, which the SDK's default
 * chain takes first), a region, and a URL form it builds the same way (path-style, or a bucket that is
 * a plain DNS label).
 */
export function readerFits(s: S3Settings, env: NodeJS.ProcessEnv = process.env): boolean {
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

export interface S3ReaderOptions {
  log?: Logger | undefined;
  /** Attempts per request, first try included; undefined = DEFAULT_MAX_ATTEMPTS. */
  maxAttempts?: number | undefined;
  /** Socket idle timeout per request; undefined = DEFAULT_REQUEST_TIMEOUT_MS; 0 = none. */
  requestTimeoutMs?: number | undefined;
  /** Key files are read again after this long; undefined = the key files' default. */
  credentialRefreshMs?: number | undefined;
  /** Where AWS_ACCESS_KEY_ID and the rest are read when the settings hold no keys; default process.env. */
  env?: NodeJS.ProcessEnv | undefined;
}

/** A read-only ReplicaClient for `s3://bucket/path` (settings that `readerFits`). */
export class S3ReaderClient extends ObjectStoreClient {
  constructor(settings: S3Settings, opts: S3ReaderOptions = {}) {
    super(new S3ReadBackend(settings, opts), settings.path ?? "");
  }
}

class S3ReadBackend implements ObjectBackend {
  readonly type = "s3";
  readonly base: string;
  readonly operations: OperationCounts = newOperationCounts();
  readonly #s: S3Settings;
  readonly #region: string;
  readonly #maxAttempts: number;
  readonly #timeoutMs: number;
  readonly #log: Logger | undefined;
  readonly #keys: () => Promise<Credentials>;
  readonly #sse: ReturnType<typeof sseSource>;
  readonly #http: typeof Http | typeof Https;
  readonly #agent: Http.Agent;
  /** Scheme and host, and the path before the key ("/bucket/" path-style, "/" virtual-hosted). */
  readonly #origin: { protocol: string; host: string; hostname: string; port: string; base: string };

  constructor(settings: S3Settings, opts: S3ReaderOptions) {
    const env = opts.env ?? process.env;
    if (!readerFits(settings, env)) {
      throw new WalshipError(ErrorCodes.CONFIG, "create s3 reader: these settings need the AWS SDK client", {
        details: { bucket: settings.bucket },
      });
    }
    this.#s = settings;
    this.#region = settings.region as string;
    this.base = `s3://${settings.bucket}`;
    this.#maxAttempts = opts.maxAttempts ?? DEFAULT_MAX_ATTEMPTS;
    this.#timeoutMs = opts.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
    this.#log = opts.log;
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
    const url = new URL(settings.endpoint ?? `https://s3.${this.#region}.amazonaws.com`);
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
    const https = url.protocol === "https:";
    this.#http = process.getBuiltinModule(https ? "node:https" : "node:http") as typeof Https;
    this.#agent = new this.#http.Agent({
      keepAlive: true,
      maxSockets: 50,
      ...(https && settings.skipVerify ? { rejectUnauthorized: false } : {}),
    });
  }

  close(): void {
    this.#agent.destroy();
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
      const query: Array<[string, string]> = [
        ["list-type", "2"],
        ["prefix", prefix],
      ];
      if (delimiter) query.push(["delimiter", "/"]);
      if (token !== undefined) query.push(["continuation-token", token]);
      else if (startAfter !== undefined) query.push(["start-after", startAfter]);
      const res = await this.#request(verb, prefix, "", query, {}, signal);
      const page = await this.#listing(verb, prefix, res, signal);
      this.operations.LIST.count++;
      await onPage(page.objects, page.prefixes);
      if (!page.truncated) return;
      checkSignal(signal, verb, this.#url(prefix));
      ({ token, startAfter } = nextListStart(
        page.token,
        () => [...page.objects.map((o) => o.key), ...page.prefixes],
        startAfter,
        { verb, url: this.#url(prefix), bucket: this.#s.bucket, key: prefix },
      ));
    }
  }

  put(key: string): Promise<{ size: number; createdAt: Date }> {
    return Promise.reject(this.#readOnly("write", key));
  }

  delete(keys: readonly string[]): Promise<void> {
    return Promise.reject(this.#readOnly("delete", keys[0] ?? ""));
  }

  async reader(key: string, signal: AbortSignal | undefined): Promise<Readable> {
    const get = async (range?: { from: number; etag: string }) => {
      const res = await this.#get("read", key, signal, range);
      return {
        Body: res,
        ContentLength: contentLength(res),
        ETag: header(res, "etag"),
      } as unknown as Parameters<typeof resumableBody>[0];
    };
    return resumableBody(await get(), {
      url: this.#url(key),
      bucket: this.#s.bucket,
      key,
      rest: get,
      maxAttempts: this.#maxAttempts,
      signal,
      log: this.#log,
      toError: (err) => this.#error("read", key, err, signal),
    });
  }

  async bytes(key: string, signal: AbortSignal | undefined): Promise<Uint8Array> {
    const res = await this.#get("get", key, signal);
    const chunks: Buffer[] = [];
    try {
      for await (const c of res) chunks.push(c as Buffer);
    } catch (err) {
      throw this.#error("get", key, err, signal);
    }
    return Buffer.concat(chunks);
  }

  // -------------------------------------------------------------------------------------------------

  #url(key: string): string {
    return `s3://${this.#s.bucket}/${key}`;
  }

  #readOnly(verb: string, key: string): WalshipError {
    return new WalshipError(
      ErrorCodes.STORAGE,
      `${verb} ${this.#url(key)}: this S3 client only reads (restore and listings)`,
      { details: { bucket: this.#s.bucket, key } },
    );
  }

  #error(verb: string, key: string, err: unknown, signal: AbortSignal | undefined): WalshipError {
    const at = { bucket: this.#s.bucket, endpoint: this.#s.endpoint, region: this.#region };
    return s3Error(at, verb, key, err, signal);
  }

  /** A GetObject; a missing key is a NotFoundError. Counted as Litestream's GET with its length. */
  async #get(
    verb: string,
    key: string,
    signal: AbortSignal | undefined,
    range?: { from: number; etag: string },
  ): Promise<Http.IncomingMessage> {
    const headers: Record<string, string> = {};
    const sse = (await this.#sse()).read;
    if (sse.SSECustomerKey !== undefined) {
      headers["x-amz-server-side-encryption-customer-algorithm"] = "AES256";
      headers["x-amz-server-side-encryption-customer-key"] = sse.SSECustomerKey;
      headers["x-amz-server-side-encryption-customer-key-md5"] = createHash("md5")
        .update(Buffer.from(sse.SSECustomerKey, "base64"))
        .digest("base64");
    }
    if (range) {
      headers.range = `bytes=${range.from}-`;
      headers["if-match"] = range.etag;
    }
    const res = await this.#request(verb, key, key, [], headers, signal, true);
    this.operations.GET.count++;
    this.operations.GET.bytes += contentLength(res) ?? 0;
    return res;
  }

  /**
   * One signed GET, retried as the SDK's standard mode retries; resolves with a 2xx response whose
   * body is unread. `notFound`: a missing key becomes a NotFoundError.
   */
  async #request(
    verb: string,
    what: string,
    key: string,
    query: Array<[string, string]>,
    extra: Record<string, string>,
    signal: AbortSignal | undefined,
    notFound = false,
  ): Promise<Http.IncomingMessage> {
    checkSignal(signal, verb, this.#url(what));
    for (let attempt = 1; ; attempt++) {
      let failure: unknown;
      try {
        const res = await this.#send(key, query, extra, signal);
        const status = res.statusCode ?? 0;
        if (status >= 200 && status < 300) return res;
        failure = await this.#answerError(res, attempt);
      } catch (err) {
        failure = err instanceof S3ResponseError ? err : networkError(err, attempt);
      }
      const e = failure as S3ResponseError;
      const retry =
        !signal?.aborted &&
        attempt < this.#maxAttempts &&
        (RETRY_CODES.has(e.name) || RETRY_STATUS.has(e.$metadata?.httpStatusCode ?? 0));
      if (!retry) {
        if (notFound && isMissingKey(e) && !signal?.aborted) {
          throw new NotFoundError(this.#url(what), { cause: e });
        }
        throw this.#error(verb, what, e, signal);
      }
      const wait = Math.floor(Math.random() * Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** attempt));
      await new Promise((r) => setTimeout(r, wait));
    }
  }

  /** The store's error answer (`<Error><Code>…<Message>…`) as an S3ResponseError; the body is read. */
  async #answerError(res: Http.IncomingMessage, attempts: number): Promise<S3ResponseError> {
    const status = res.statusCode ?? 0;
    let text = "";
    try {
      text = await readText(res, 64 * 1024);
    } catch {
      // the status is enough
    }
    const code = xmlValue(text, "Code") ?? statusCode(status);
    const message = xmlValue(text, "Message") ?? `HTTP ${status}`;
    return new S3ResponseError(code, message, status, attempts);
  }

  /** A listing page read and parsed; a failure while reading it, or a page that is not one, as our error. */
  async #listing(
    verb: string,
    what: string,
    res: Http.IncomingMessage,
    signal: AbortSignal | undefined,
  ): Promise<ReturnType<typeof parseListing>> {
    try {
      return parseListing(await readText(res, MAX_XML_BYTES));
    } catch (err) {
      throw this.#error(verb, what, err instanceof S3ResponseError ? err : networkError(err, 1), signal);
    }
  }

  /** Sends one signed GET and resolves with the response (any status), its body unread. */
  async #send(
    key: string,
    query: Array<[string, string]>,
    extra: Record<string, string>,
    signal: AbortSignal | undefined,
  ): Promise<Http.IncomingMessage> {
    const o = this.#origin;
    const path = encodePath(`${o.base}${key}`.slice(1));
    const headers: Record<string, string> = {
      host: o.host,
      "x-amz-content-sha256": EMPTY_SHA256,
      ...extra,
    };
    const auth = sign(
      { method: "GET", path, query, headers, payloadHash: EMPTY_SHA256 },
      await this.#keys(),
      {
        region: this.#region,
        service: "s3",
        date: new Date(),
      },
    );
    const search = query.length ? `?${canonicalQuery(query)}` : "";
    return new Promise((resolve, reject) => {
      const req = this.#http.request({
        protocol: o.protocol,
        hostname: o.hostname,
        port: o.port || undefined,
        path: path + search,
        method: "GET",
        headers: { ...headers, ...auth },
        agent: this.#agent,
        ...(signal ? { signal } : {}),
      });
      const fail = (code: string, message: string) => {
        const err = new Error(message) as NodeJS.ErrnoException;
        err.name = "TimeoutError";
        err.code = code;
        req.destroy(err);
      };
      if (this.#timeoutMs > 0) {
        req.setTimeout(this.#timeoutMs, () =>
          fail("TimeoutError", `no data for ${this.#timeoutMs} ms (socket idle timeout)`),
        );
      }
      const connectMs =
        this.#timeoutMs === 0
          ? DEFAULT_CONNECT_TIMEOUT_MS
          : Math.min(this.#timeoutMs, DEFAULT_CONNECT_TIMEOUT_MS);
      req.once("socket", (socket) => {
        if (!socket.connecting) return;
        const timer = setTimeout(
          () => fail("TimeoutError", `not connected within ${connectMs} ms`),
          connectMs,
        );
        socket.once("connect", () => clearTimeout(timer));
        socket.once("close", () => clearTimeout(timer));
      });
      req.once("response", resolve);
      req.on("error", reject);
      req.end();
    });
  }
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

async function readText(res: Readable, limit: number): Promise<string> {
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
export function unescapeXml(text: string): string {
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
export function parseListing(xml: string): {
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
