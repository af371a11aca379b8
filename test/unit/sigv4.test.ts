/**
 * SigV4 for S3 (src/replicator/storage/sigv4.ts). Held to the signatures the S3 API reference publishes
 * for its worked examples, and to the AWS SDK's own signer (@smithy/signature-v4, configured as the S3
 * client configures it; it comes with @aws-sdk/client-s3 and is the oracle here) on generated requests:
 * odd keys, list queries, conditional and SSE-C headers in any case and spacing, session tokens,
 * regions and dates, the headers it adds byte for byte. Percent-encoding is checked against a
 * reference that encodes UTF-8 bytes one by one; query order, the date stamp and the empty hash
 * on their own.
 */
import assert from "node:assert/strict";
import { createHash, createHmac, type Hash, type Hmac } from "node:crypto";
import { describe, it } from "node:test";
import { SignatureV4 } from "@smithy/signature-v4";
import type { Checksum, HttpRequest, SourceData } from "@smithy/types";
import {
  amzDate,
  type Credentials,
  canonicalQuery,
  canonicalRequest,
  EMPTY_SHA256,
  encodePath,
  type SignableRequest,
  sign,
  uriEncode,
} from "../../src/replicator/storage/sigv4.ts";
import { rng } from "../helpers/rng.ts";

const sha256hex = (data: string | Uint8Array) => createHash("sha256").update(data).digest("hex");

/** The SDK's hash over node:crypto: SHA-256, or HMAC-SHA256 when given a secret. */
class Sha256 implements Checksum {
  readonly #secret: SourceData | undefined;
  #hash!: Hash | Hmac;
  constructor(secret?: SourceData) {
    this.#secret = secret;
    this.reset();
  }
  reset(): void {
    const s = this.#secret;
    if (s === undefined) this.#hash = createHash("sha256");
    else if (typeof s === "string") this.#hash = createHmac("sha256", s);
    else if (ArrayBuffer.isView(s))
      this.#hash = createHmac("sha256", new Uint8Array(s.buffer, s.byteOffset, s.byteLength));
    else this.#hash = createHmac("sha256", new Uint8Array(s));
  }
  update(data: Uint8Array): void {
    this.#hash.update(data);
  }
  async digest(): Promise<Uint8Array> {
    return new Uint8Array(this.#hash.digest());
  }
}

/** The SDK's signer as the S3 client sets it up: paths signed as sent, the payload hash from the header. */
function sdkSigner(creds: Credentials, region: string): SignatureV4 {
  return new SignatureV4({
    service: "s3",
    region,
    credentials: creds,
    sha256: Sha256,
    uriEscapePath: false,
    applyChecksum: false,
  });
}

/** Our request as the SDK takes it: the same encoded path, the query raw (it encodes it itself). */
function sdkRequest(req: SignableRequest): HttpRequest {
  const query: Record<string, string | string[]> = {};
  for (const [k, v] of req.query) {
    const had = query[k];
    query[k] = had === undefined ? v : [...(Array.isArray(had) ? had : [had]), v];
  }
  const host = Object.entries(req.headers).find(([k]) => k.toLowerCase() === "host")?.[1] ?? "";
  return {
    method: req.method,
    protocol: "https:",
    hostname: host.trim(),
    path: req.path,
    query,
    headers: { ...req.headers },
  };
}

// The S3 API reference's worked examples ("Signature Calculations for the Authorization Header:
// Transferring Payload in a Single Chunk"): one key pair, one instant, one bucket.
const DOC_CREDS: Credentials = {
  accessKeyId: "AKIAIOSFODNN7EXAMPLE",
  secretAccessKey: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
};
const DOC_SCOPE = { region: "us-east-1", service: "s3", date: new Date("2013-05-24T00:00:00Z") };
const DOC_HOST = "examplebucket.s3.amazonaws.com";
const DOC_CREDENTIAL = "Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request";

/** AWS prints the header with no space after its commas; we (as the SDK) write `, `. */
function asDocumented(authorization: string): string {
  assert.match(
    authorization,
    /^AWS4-HMAC-SHA256 Credential=[^ ,]+, SignedHeaders=[^ ,]+, Signature=[0-9a-f]{64}$/,
  );
  return authorization.replaceAll(", ", ",");
}

describe("SigV4: the S3 API reference's examples", () => {
  it("GET Object (a ranged read): the documented canonical request, its hash and the Authorization header", () => {
    const req: SignableRequest = {
      method: "GET",
      path: encodePath("test.txt"),
      query: [],
      headers: { Host: DOC_HOST, Range: " bytes=0-9 ", "x-amz-content-sha256": EMPTY_SHA256 },
      payloadHash: EMPTY_SHA256,
    };
    const canonical = canonicalRequest({
      ...req,
      headers: { ...req.headers, "x-amz-date": "20130524T000000Z" },
    });
    assert.equal(
      canonical.text,
      [
        "GET",
        "/test.txt",
        "",
        `host:${DOC_HOST}`,
        "range:bytes=0-9",
        "x-amz-content-sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "x-amz-date:20130524T000000Z",
        "",
        "host;range;x-amz-content-sha256;x-amz-date",
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
      ].join("\n"),
    );
    assert.equal(
      sha256hex(canonical.text),
      "7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972",
    );
    const added = sign(req, DOC_CREDS, DOC_SCOPE);
    assert.deepEqual(Object.keys(added).sort(), ["authorization", "x-amz-date"]);
    assert.equal(added["x-amz-date"], "20130524T000000Z");
    assert.equal(
      asDocumented(added.authorization as string),
      `AWS4-HMAC-SHA256 ${DOC_CREDENTIAL},SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,` +
        "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41",
    );
  });

  it("GET Bucket (List Objects) with ?max-keys=2&prefix=J, the query given out of order", () => {
    const added = sign(
      {
        method: "GET",
        path: "/",
        query: [
          ["prefix", "J"],
          ["max-keys", "2"],
        ],
        headers: { host: DOC_HOST, "x-amz-content-sha256": EMPTY_SHA256 },
        payloadHash: EMPTY_SHA256,
      },
      DOC_CREDS,
      DOC_SCOPE,
    );
    assert.equal(
      asDocumented(added.authorization as string),
      `AWS4-HMAC-SHA256 ${DOC_CREDENTIAL},SignedHeaders=host;x-amz-content-sha256;x-amz-date,` +
        "Signature=34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7",
    );
  });

  it("GET Bucket Lifecycle: ?lifecycle, a parameter with no value, signed as `lifecycle=`", () => {
    const added = sign(
      {
        method: "GET",
        path: "/",
        query: [["lifecycle", ""]],
        headers: { host: DOC_HOST, "x-amz-content-sha256": EMPTY_SHA256 },
        payloadHash: EMPTY_SHA256,
      },
      DOC_CREDS,
      DOC_SCOPE,
    );
    assert.equal(
      asDocumented(added.authorization as string),
      `AWS4-HMAC-SHA256 ${DOC_CREDENTIAL},SignedHeaders=host;x-amz-content-sha256;x-amz-date,` +
        "Signature=fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543",
    );
  });

  it("PUT Object to test$file.text: `$` encoded in the path, a body's hash, a Date header signed", () => {
    const body = sha256hex("Welcome to Amazon S3.");
    const path = encodePath("test$file.text");
    assert.equal(path, "/test%24file.text");
    const added = sign(
      {
        method: "PUT",
        path,
        query: [],
        headers: {
          Host: DOC_HOST,
          Date: "Fri, 24 May 2013 00:00:00 GMT",
          "x-amz-storage-class": "REDUCED_REDUNDANCY",
          "x-amz-content-sha256": body,
        },
        payloadHash: body,
      },
      DOC_CREDS,
      DOC_SCOPE,
    );
    assert.equal(
      asDocumented(added.authorization as string),
      `AWS4-HMAC-SHA256 ${DOC_CREDENTIAL},` +
        "SignedHeaders=date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class," +
        "Signature=98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd",
    );
  });
});

const pick = <T>(r: () => number, xs: readonly T[]): T => xs[Math.floor(r() * xs.length)] as T;
const int = (r: () => number, n: number) => Math.floor(r() * n);

const KEY_PIECES = [
  "db",
  "app.db",
  "generations",
  "0123456789abcdef",
  "wal",
  "00000001.wal.lz4",
  "/",
  "/",
  "//",
  " ",
  "  ",
  "+",
  "%",
  "%2F",
  "%20",
  "~",
  "!",
  "*",
  "'",
  "(",
  ")",
  "!*'()",
  "é",
  "ü",
  "日本",
  "😀",
  "\u00a0",
  "=",
  "&",
  "?",
  "#",
  "$",
  ":",
  "@",
  ",",
  ";",
  "-",
  "_",
  ".",
  "..",
  "\\",
  "[]",
  "{}",
  "^",
  "`",
  "|",
  "<>",
  '"',
];

function key(r: () => number): string {
  let s = "";
  for (let n = 1 + int(r, 8); n > 0; n--) s += pick(r, KEY_PIECES);
  return s;
}

const B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

function b64(r: () => number, n: number): string {
  let s = "";
  for (let i = 0; i < n; i++) s += B64[int(r, 64)];
  return s + "=".repeat(int(r, 3));
}

function hex(r: () => number, n: number): string {
  let s = "";
  for (let i = 0; i < n; i++) s += "0123456789abcdef"[int(r, 16)];
  return s;
}

/** A name in mixed case: `Range`, `X-AMZ-Server-Side-...`. */
function anyCase(r: () => number, name: string): string {
  const c = int(r, 4);
  if (c === 0) return name;
  if (c === 1) return name.toUpperCase();
  if (c === 2) return name.replace(/(^|-)([a-z])/g, (_, d: string, ch: string) => d + ch.toUpperCase());
  return [...name].map((ch) => (r() < 0.5 ? ch.toUpperCase() : ch)).join("");
}

const SPACE = [" ", "  ", "\t", " \t ", ""];

/** A value with spaces and tabs around it and runs of them inside: all signed as single spaces. */
function spaced(r: () => number, v: string): string {
  const inner = v.replace(/ /g, () => pick(r, [" ", "  ", "\t", " \t  "]));
  return r() < 0.5 ? inner : pick(r, SPACE) + inner + pick(r, SPACE);
}

/** The query parameters an S3 client sends: listings, uploads, versions; odd names too. */
const QUERY: ReadonlyArray<(r: () => number) => [string, string]> = [
  () => ["list-type", "2"],
  (r) => ["prefix", key(r)],
  (r) => ["delimiter", pick(r, ["/", "|", "é", " "])],
  (r) => ["continuation-token", b64(r, 8 + int(r, 60))],
  (r) => ["start-after", key(r)],
  (r) => ["max-keys", String(int(r, 1001))],
  () => ["encoding-type", "url"],
  () => ["fetch-owner", "true"],
  (r) => [pick(r, ["uploads", "versions", "lifecycle", "acl", "tagging", "versioning"]), ""],
  (r) => ["versionId", b64(r, 32)],
  (r) => ["partNumber", String(1 + int(r, 10000))],
  (r) => ["uploadId", b64(r, 40)],
  (r) => [pick(r, ["a b", "é", "~x", "X", "x!", "Z*", "(k)", "a+b", "%"]), key(r)],
];

/** Headers S3 reads and both signers sign (the SDK never signs user-agent, cache-control and the like). */
const HEADERS: ReadonlyArray<(r: () => number) => [string, string]> = [
  (r) => ["range", r() < 0.5 ? `bytes=${int(r, 1e9)}-` : `bytes=0-${int(r, 1e6)}`],
  (r) => ["if-match", `"${hex(r, 32)}"`],
  (r) => ["if-none-match", `"${hex(r, 32)}-${1 + int(r, 99)}"`],
  () => ["if-modified-since", "Fri, 24 May 2013 00:00:00 GMT"],
  () => ["x-amz-server-side-encryption-customer-algorithm", "AES256"],
  (r) => ["x-amz-server-side-encryption-customer-key", b64(r, 43)],
  (r) => ["x-amz-server-side-encryption-customer-key-md5", b64(r, 22)],
  (r) => ["content-type", pick(r, ["application/octet-stream", "text/plain; charset=utf-8"])],
  (r) => ["x-amz-meta-note", pick(r, ["two words", "a  b   c", "x", "", "é ü", 'k=v; q="r s"'])],
  () => ["x-amz-request-payer", "requester"],
  () => ["x-amz-checksum-mode", "ENABLED"],
  (r) => ["x-amz-expected-bucket-owner", String(1e11 + int(r, 9e11))],
  (r) => ["content-md5", b64(r, 22)],
  (r) => ["x-amz-storage-class", pick(r, ["STANDARD", "REDUCED_REDUNDANCY", "GLACIER_IR"])],
];

const HOSTS = [
  "examplebucket.s3.amazonaws.com",
  "s3.eu-central-1.amazonaws.com",
  "bucket.s3.us-west-2.amazonaws.com",
  "localhost:9000",
  "127.0.0.1:9000",
  "0123abcd.r2.cloudflarestorage.com",
];
const REGIONS = [
  "us-east-1",
  "us-west-2",
  "eu-central-1",
  "ap-southeast-2",
  "cn-north-1",
  "us-gov-west-1",
  "auto",
];
const PAYLOADS = (r: () => number) =>
  pick(r, [
    EMPTY_SHA256,
    EMPTY_SHA256,
    "UNSIGNED-PAYLOAD",
    sha256hex(key(r)),
    "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
  ]);
// A few days again and again (the signing key is cached per day) and any instant at all.
const DAYS = [Date.UTC(2013, 4, 24), Date.UTC(2024, 1, 29), Date.UTC(1999, 11, 31), Date.UTC(2038, 0, 19)];

function credentials(r: () => number, session: boolean): Credentials {
  const pool = int(r, 3);
  const creds: Credentials = {
    accessKeyId: `AKIA${"EXAMPLE".repeat(3).slice(0, 15)}${pool}`,
    // Three secrets, so consecutive requests share one (and its cached key) or do not.
    secretAccessKey: `${["wJalrXUtnFEMI/K7MDENG", "Zm9v+YmFy/", "s3cr3t"][pool]}/${"x".repeat(pool * 7)}+KEY`,
  };
  if (session) creds.sessionToken = b64(r, 100 + int(r, 300));
  return creds;
}

interface Case {
  req: SignableRequest;
  creds: Credentials;
  region: string;
  service: string;
  date: Date;
}

/** A request; now and then with the previous one's secret, day, region and service (the cached key). */
function generate(r: () => number, prev?: Case): Case {
  const method = pick(r, ["GET", "GET", "GET", "HEAD", "PUT", "DELETE", "POST"]);
  const bucketInPath = r() < 0.4;
  const path = r() < 0.15 ? "/" : encodePath(bucketInPath ? `bucket/${key(r)}` : key(r));
  const query: Array<[string, string]> = [];
  for (let n = int(r, 6); n > 0; n--) query.push(pick(r, QUERY)(r));
  // The same name twice now and then: signed sorted by value.
  if (query.length && r() < 0.2) {
    const [k] = pick(r, query);
    query.push([k, r() < 0.3 ? "" : key(r)]);
  }
  const payloadHash = PAYLOADS(r);
  const headers: Record<string, string> = { [anyCase(r, "host")]: pick(r, HOSTS) };
  // With no x-amz-content-sha256 the SDK signs the empty body's hash, so only an empty payload may omit it.
  if (payloadHash !== EMPTY_SHA256 || r() < 0.9) headers[anyCase(r, "x-amz-content-sha256")] = payloadHash;
  const names = new Set(Object.keys(headers).map((k) => k.toLowerCase()));
  for (let n = int(r, 6); n > 0; n--) {
    const [name, value] = pick(r, HEADERS)(r);
    if (names.has(name)) continue;
    names.add(name);
    headers[anyCase(r, name)] = spaced(r, value);
  }
  const date =
    r() < 0.5
      ? new Date(pick(r, DAYS) + int(r, 86_400_000))
      : new Date(Date.UTC(1971, 0, 1) + Math.floor(r() * (Date.UTC(2099, 11, 31) - Date.UTC(1971, 0, 1))));
  const c: Case = {
    req: { method, path, query, headers, payloadHash },
    creds: credentials(r, r() < 0.4),
    region: pick(r, REGIONS),
    service: r() < 0.9 ? "s3" : pick(r, ["s3-outposts", "s3express", "s3-object-lambda"]),
    date,
  };
  if (!prev || r() < 0.7) return c;
  // The same key, or all but one of what makes it.
  const day = Math.floor(prev.date.getTime() / 86_400_000) * 86_400_000;
  const same: Case = { ...prev, req: c.req, date: new Date(day + int(r, 86_400_000)) };
  const change = int(r, 6);
  if (change === 0) same.creds = { ...c.creds, secretAccessKey: prev.creds.secretAccessKey };
  if (change === 1) same.region = c.region;
  if (change === 2) same.service = c.service;
  if (change === 3) same.date = c.date;
  if (change === 4) same.creds = c.creds;
  return same;
}

const lower = (headers: Record<string, string>) =>
  Object.fromEntries(Object.entries(headers).map(([k, v]) => [k.toLowerCase(), v]));

/** Signs `c` both ways; asserts the headers we add are the SDK's, byte for byte. */
async function compare(c: Case, label: string): Promise<void> {
  const ours = sign(c.req, c.creds, { region: c.region, service: c.service, date: c.date });
  const theirs = await sdkSigner(c.creds, c.region).sign(sdkRequest(c.req), {
    signingDate: c.date,
    signingService: c.service,
  });
  const expected = ["authorization", "x-amz-date", ...(c.creds.sessionToken ? ["x-amz-security-token"] : [])];
  assert.deepEqual(Object.keys(ours).sort(), expected, label);
  for (const name of expected) assert.equal(ours[name], theirs.headers[name], `${label}: ${name}`);
}

describe("SigV4: the same headers as the AWS SDK's signer", () => {
  it("on 600 generated requests: keys, list queries, headers in any case and spacing, tokens, dates", async () => {
    const seen: Record<string, number> = {};
    const count = (what: string, yes: boolean) => {
      seen[what] = (seen[what] ?? 0) + (yes ? 1 : 0);
    };
    let last = "";
    for (const seed of [1, 2, 3]) {
      const r = rng(seed);
      let prev: Case | undefined;
      for (let i = 0; i < 200; i++) {
        const c = generate(r, prev);
        prev = c;
        const names = new Set(c.req.query.map(([k]) => k));
        const values = Object.values(c.req.headers);
        const keyId = `${c.creds.secretAccessKey} ${amzDate(c.date).slice(0, 8)} ${c.region} ${c.service}`;
        count("query", c.req.query.length > 0);
        count("repeated query name", names.size < c.req.query.length);
        count("repeated slash", c.req.path.includes("//"));
        count("!*'() in the key", /[!*'()]/.test(decodeURIComponent(c.req.path)));
        count(
          "header name not lower case",
          Object.keys(c.req.headers).some((k) => k !== k.toLowerCase()),
        );
        count(
          "header value spaced",
          values.some((v) => /^[ \t]|[ \t]$|[ \t]{2}|\t/.test(v)),
        );
        count("SSE-C", "x-amz-server-side-encryption-customer-key" in lower(c.req.headers));
        count("session token", c.creds.sessionToken !== undefined);
        count("signing key as before", keyId === last);
        last = keyId;
        await compare(c, `seed ${seed} request ${i}: ${JSON.stringify(c)}`);
      }
    }
    // The generator did cover what it is for.
    for (const [what, n] of Object.entries(seen)) assert.ok(n >= 20, `${what}: ${n} of 600`);
  });

  it("the cached signing key: a new one when the secret, day, region or service changes", async () => {
    const base: Case = {
      req: {
        method: "GET",
        path: encodePath("bucket/db/generations/0/wal/00000001.wal.lz4"),
        query: [],
        headers: { host: "localhost:9000", "x-amz-content-sha256": EMPTY_SHA256, range: "bytes=0-" },
        payloadHash: EMPTY_SHA256,
      },
      creds: { accessKeyId: "AKID", secretAccessKey: "one" },
      region: "us-east-1",
      service: "s3",
      date: new Date("2024-02-29T23:59:59.999Z"),
    };
    const steps: Case[] = [
      base,
      { ...base, region: "eu-west-1" },
      { ...base, service: "s3express" },
      { ...base, date: new Date("2024-03-01T00:00:00.000Z") },
      { ...base, creds: { accessKeyId: "AKID", secretAccessKey: "two" } },
      { ...base, creds: { accessKeyId: "AKID", secretAccessKey: "one", sessionToken: "tok/+=" } },
      // Back to the first after all the others: not the last key made.
      base,
    ];
    const seen = new Set<string>();
    for (const [i, c] of steps.entries()) {
      await compare(c, `step ${i}`);
      seen.add(
        sign(c.req, c.creds, { region: c.region, service: c.service, date: c.date }).authorization ?? "",
      );
    }
    assert.equal(seen.size, steps.length - 1);
  });
});

/** RFC 3986 as SigV4 wants it, one UTF-8 byte at a time: A-Z a-z 0-9 - _ . ~ (and `/` if kept) as is. */
function referenceEncode(text: string, keepSlash: boolean): string {
  let out = "";
  for (const ch of text) {
    if (/^[A-Za-z0-9\-_.~]$/.test(ch) || (keepSlash && ch === "/")) out += ch;
    else for (const b of Buffer.from(ch, "utf8")) out += `%${b.toString(16).toUpperCase().padStart(2, "0")}`;
  }
  return out;
}

describe("SigV4: encoding, query order, the date stamp", () => {
  it("uriEncode: every ASCII character, multi-byte ones and generated keys, per UTF-8 byte", () => {
    const chars = Array.from({ length: 128 }, (_, i) => String.fromCharCode(i));
    chars.push(
      "é",
      "ü",
      "\u00a0",
      "\u07ff",
      "\u0800",
      "日",
      "\u2028",
      "\ufeff",
      "\uffff",
      "😀",
      "\u{10ffff}",
    );
    for (const keep of [false, true]) {
      for (const ch of chars)
        assert.equal(uriEncode(ch, keep), referenceEncode(ch, keep), JSON.stringify(ch));
      const r = rng(7);
      for (let i = 0; i < 500; i++) {
        const k = key(r);
        assert.equal(uriEncode(k, keep), referenceEncode(k, keep), JSON.stringify(k));
      }
    }
    // The characters encodeURIComponent leaves alone but SigV4 does not.
    assert.equal(uriEncode("!*'()"), "%21%2A%27%28%29");
    assert.equal(uriEncode("a b+c~d/e"), "a%20b%2Bc~d%2Fe");
    assert.equal(uriEncode("%2F"), "%252F");
  });

  it("encodePath: one leading slash added, every slash kept, repeated ones too, the rest encoded once", () => {
    assert.equal(encodePath(""), "/");
    assert.equal(encodePath("a//b/"), "/a//b/");
    assert.equal(encodePath("/lead"), "//lead");
    assert.equal(encodePath("bucket/db/a b+é!.wal"), "/bucket/db/a%20b%2B%C3%A9%21.wal");
    const r = rng(8);
    for (let i = 0; i < 300; i++) {
      const k = key(r);
      assert.equal(
        encodePath(k),
        `/${k
          .split("/")
          .map((s) => referenceEncode(s, false))
          .join("/")}`,
      );
    }
  });

  it("canonicalQuery: sorted by encoded name, then by encoded value when a name repeats", () => {
    assert.equal(canonicalQuery([]), "");
    assert.equal(
      canonicalQuery([
        ["b", "2"],
        ["a", "z"],
        ["a", "y"],
        ["a", ""],
        ["A", "1"],
      ]),
      "A=1&a=&a=y&a=z&b=2",
    );
    // Encoded, `é` (%C3%A9) sorts before `a` and `~` stays after it; unencoded it would sort last.
    assert.equal(
      canonicalQuery([
        ["~", "1"],
        ["é", "2"],
        ["a", "é"],
        ["a", "b"],
      ]),
      "%C3%A9=2&a=%C3%A9&a=b&~=1",
    );
    assert.equal(
      canonicalQuery([
        ["continuation-token", "1a/b+c=="],
        ["prefix", "db/a b"],
        ["list-type", "2"],
      ]),
      "continuation-token=1a%2Fb%2Bc%3D%3D&list-type=2&prefix=db%2Fa%20b",
    );
  });

  it("amzDate: yyyyMMdd'T'HHmmss'Z' in UTC, the milliseconds dropped, not rounded", () => {
    assert.equal(amzDate(new Date("2013-05-24T00:00:00Z")), "20130524T000000Z");
    assert.equal(amzDate(new Date("1999-12-31T23:59:59.999Z")), "19991231T235959Z");
    const pad = (n: number, w = 2) => String(n).padStart(w, "0");
    const r = rng(9);
    for (let i = 0; i < 300; i++) {
      const d = new Date(Math.floor(r() * Date.UTC(2200, 0, 1)));
      const want =
        `${pad(d.getUTCFullYear(), 4)}${pad(d.getUTCMonth() + 1)}${pad(d.getUTCDate())}T` +
        `${pad(d.getUTCHours())}${pad(d.getUTCMinutes())}${pad(d.getUTCSeconds())}Z`;
      assert.equal(amzDate(d), want, d.toISOString());
    }
  });

  it("EMPTY_SHA256 is the SHA-256 of nothing", () => {
    assert.equal(EMPTY_SHA256, sha256hex(""));
  });

  it("header names lower-cased and sorted, values trimmed and their runs of spaces and tabs made one", () => {
    const { text, signedHeaders } = canonicalRequest({
      method: "GET",
      path: "/k",
      query: [],
      headers: { "X-Amz-Meta-B": "\t two \t  words ", Host: "h", "x-amz-meta-a": "" },
      payloadHash: EMPTY_SHA256,
    });
    assert.equal(signedHeaders, "host;x-amz-meta-a;x-amz-meta-b");
    assert.equal(
      text,
      `GET\n/k\n\nhost:h\nx-amz-meta-a:\nx-amz-meta-b:two words\n\n${signedHeaders}\n${EMPTY_SHA256}`,
    );
  });
});
