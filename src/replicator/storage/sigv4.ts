/**
 * AWS Signature Version 4 for S3 requests (the `Authorization` header form), as AWS documents it:
 * a canonical request (method, URI, sorted query, sorted lower-case headers, the signed header names,
 * the payload's hash), a string to sign over its SHA-256, and an HMAC-SHA256 chain from the secret
 * key through the day, region, service and `aws4_request`. Used by s3-read.ts; the AWS SDK signs
 * everything else. Pure but for the clock the caller passes in.
 */
import { createHash, createHmac } from "node:crypto";

/** The SHA-256 of an empty body, in hex: what a GET's `x-amz-content-sha256` carries. */
export const EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

export interface Credentials {
  accessKeyId: string;
  secretAccessKey: string;
  /** Temporary credentials' token: sent and signed as `x-amz-security-token`. */
  sessionToken?: string;
}

export interface SignableRequest {
  method: string;
  /** The URI's path, already encoded as S3 wants it (`encodePath`). */
  path: string;
  /** Query parameters, not encoded; order does not matter. */
  query: ReadonlyArray<readonly [string, string]>;
  /** Headers to send and sign, `host` included; names in any case. */
  headers: Record<string, string>;
  /** Hex SHA-256 of the body, or `UNSIGNED-PAYLOAD`. */
  payloadHash: string;
}

export interface Scope {
  region: string;
  service: string;
  date: Date;
}

/** RFC 3986 encoding as SigV4 wants it: only A-Z a-z 0-9 - _ . ~ stay; `/` too when `keepSlash`. */
export function uriEncode(text: string, keepSlash = false): string {
  const out = encodeURIComponent(text).replace(
    /[!'()*]/g,
    (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`,
  );
  return keepSlash ? out.replace(/%2F/g, "/") : out;
}

/** An object key (or `bucket/key`) as a URI path: `/` kept, everything else encoded once. */
export function encodePath(path: string): string {
  return `/${uriEncode(path, true)}`;
}

/** `key=value` pairs, each encoded, sorted by key then value, joined by `&`. */
export function canonicalQuery(query: SignableRequest["query"]): string {
  return query
    .map(([k, v]) => [uriEncode(k), uriEncode(v)] as const)
    .sort(([a, x], [b, y]) => (a < b ? -1 : a > b ? 1 : x < y ? -1 : x > y ? 1 : 0))
    .map(([k, v]) => `${k}=${v}`)
    .join("&");
}

/** `20130524T000000Z`. */
export function amzDate(date: Date): string {
  return date
    .toISOString()
    .replace(/[-:]/g, "")
    .replace(/\.\d{3}/, "");
}

/** The canonical request and the signed header names. */
export function canonicalRequest(req: SignableRequest): { text: string; signedHeaders: string } {
  const headers = Object.entries(req.headers)
    .map(([k, v]) => [k.toLowerCase(), v.replace(/[ \t]+/g, " ").replace(/^ | $/g, "")] as const)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const signedHeaders = headers.map(([k]) => k).join(";");
  const text = [
    req.method,
    req.path,
    canonicalQuery(req.query),
    headers.map(([k, v]) => `${k}:${v}\n`).join(""),
    signedHeaders,
    req.payloadHash,
  ].join("\n");
  return { text, signedHeaders };
}

/** The last signing key made: one secret, day and region at a time is all a client needs. */
let lastKey: { id: string; key: Buffer } | undefined;

function signingKey(secret: string, day: string, region: string, service: string): Buffer {
  const id = `${day}/${region}/${service}/${secret}`;
  if (lastKey?.id === id) return lastKey.key;
  const kDate = createHmac("sha256", `AWS4${secret}`).update(day).digest();
  const kRegion = createHmac("sha256", kDate).update(region).digest();
  const kService = createHmac("sha256", kRegion).update(service).digest();
  const key = createHmac("sha256", kService).update("aws4_request").digest();
  lastKey = { id, key };
  return key;
}

/**
 * The headers to add to `req` to sign it: `x-amz-date`, `x-amz-security-token` (with a session
 * token) and `authorization`. `req.headers` should already hold `host` and `x-amz-content-sha256`.
 */
export function sign(req: SignableRequest, creds: Credentials, scope: Scope): Record<string, string> {
  const when = amzDate(scope.date);
  const day = when.slice(0, 8);
  const added: Record<string, string> = { "x-amz-date": when };
  if (creds.sessionToken) added["x-amz-security-token"] = creds.sessionToken;
  const { text, signedHeaders } = canonicalRequest({ ...req, headers: { ...req.headers, ...added } });
  const credentialScope = `${day}/${scope.region}/${scope.service}/aws4_request`;
  const toSign = [
    "AWS4-HMAC-SHA256",
    when,
    credentialScope,
    createHash("sha256").update(text).digest("hex"),
  ].join("\n");
  const signature = createHmac("sha256", signingKey(creds.secretAccessKey, day, scope.region, scope.service))
    .update(toSign)
    .digest("hex");
  added.authorization =
    `AWS4-HMAC-SHA256 Credential=${creds.accessKeyId}/${credentialScope}, ` +
    `SignedHeaders=${signedHeaders}, Signature=${signature}`;
  return added;
}
