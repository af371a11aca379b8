/**
 * The replicator's configuration: Litestream v0.3.13's `litestream.yml` as users write it, plus a few
 * Walship keys. Parsing is data in, data out: no I/O except in `loadConfig`, no logging.
 *
 * Reading follows Litestream, with one safety difference:
 * - Environment expansion (`$VAR`, `${VAR}`, unset = empty; off with `expandEnv: false`, Litestream's
 *   `-no-expand-env`) applies to each scalar value after the YAML is parsed, not to the file text
 *   before it as in Litestream. A value can therefore never change the file's structure: a secret
 *   holding a quote, a newline and `exec: ...` stays one string instead of adding an `exec:` key.
 *   A plain scalar that expands to an empty (or YAML null) value is "not set", as it would be in
 *   Litestream. Keys and comments are not expanded.
 * - YAML 1.1 scalars as gopkg.in/yaml.v2 reads them: `yes`/`no`/`on`/`off` are booleans, a string
 *   setting keeps its text as written (`password: 0123` is "0123"), an empty value is "not set".
 * - Unknown keys are ignored, but each one is reported in `warnings` so the CLI can print it.
 * - Durations are Go durations (see duration.ts); a bare integer is nanoseconds.
 *
 * Walship keys and extensions (Litestream v0.3.13 does not read them):
 * - `shutdown-sync-timeout` (global): how long the final sync on SIGTERM may take, default 10s.
 * - `truncate-page-count` (per db): WAL size in pages that forces a TRUNCATE checkpoint, default
 *   500000 (a constant in Litestream); 0 disables.
 * - `replica:` (per db, a single replica mapping): Litestream v0.5's spelling of a one-element
 *   `replicas:` list. v0.3.13 silently ignores it, leaving the database unreplicated.
 * - Durations accept a `d` (day) unit.
 * - S3 endpoints without a scheme get `https://` (as aws-sdk-go v1 does for Litestream).
 * - S3 region, when unset and an endpoint is set, comes from a known provider host in the endpoint
 *   (DigitalOcean Spaces, Hetzner, Cloudflare R2 = "auto", Backblaze, Scaleway, Linode, AWS);
 *   otherwise `us-east-1` as in Litestream. `s3://` URLs also recognise Hetzner
 *   (`B.R.your-objectstorage.com`) and R2 (`B.ACCOUNT.r2.cloudflarestorage.com`) hosts.
 * - `~` is expanded in `meta-path` and `key-path` too; `type:` is case-insensitive.
 * - Duplicate database paths are an error.
 * - `access-key-id-file`/`secret-access-key-file` (s3): files holding the keys, read by the S3 client
 *   each time it signs (so a rotated Kubernetes Secret mounted as files reaches a running
 *   replicator); the operator uses them so that no credential passes through the config text.
 * - Credentials lose trailing newlines (a Secret made from a file usually ends with one).
 * - Error messages and warnings never quote a value that came from the environment, nor the
 *   password of a URL.
 * - `age:` (client-side encryption, age/keys.ts) is strict where Litestream is lax: an unknown key
 *   under it (`recipient:`), an empty block, or a value that is not a list is an error, never a silent
 *   plaintext replica. Errors name the key's path and never quote a key (an identity is a secret).
 * - S3 server-side encryption (storage/s3-sse.ts): `server-side-encryption`, `sse-kms-key-id`,
 *   `sse-customer-key`, `sse-customer-key-path` (Litestream v0.5's names), checked together.
 */
import { readFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { type Document, isAlias, isMap, isScalar, isSeq, LineCounter, parseDocument } from "yaml";
import { z } from "zod";
import { ErrorCodes, WalshipError } from "../shared/errors.ts";
import type { AgeSettings } from "./age/keys.ts";
import { isBareIntegerDuration, tryParseGoDuration } from "./duration.ts";
import { type SseSettings, sseProblem } from "./storage/s3-sse.ts";

export type ReplicaType = "file" | "s3" | "gcs" | "abs" | "sftp";
export const REPLICA_TYPES: readonly ReplicaType[] = ["file", "s3", "gcs", "abs", "sftp"];

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
export interface FileSettings {
  /** Absolute, `~` expanded. */
  path: string;
}
export interface GcsSettings {
  bucket: string;
  path: string;
  /** Walship key `endpoint`, a URL's `?endpoint=`, else STORAGE_EMULATOR_HOST. Undefined = Google. */
  endpoint?: string;
  /** Send credentials to `endpoint` too. False for STORAGE_EMULATOR_HOST (the Go client sends none). */
  authWithEndpoint?: boolean;
  /** Walship key `credentials-file`; undefined = Application Default Credentials. */
  credentialsFile?: string;
}
export interface AbsSettings {
  accountName?: string;
  /** From `account-key`, else env `LITESTREAM_AZURE_ACCOUNT_KEY`. */
  accountKey?: string;
  /** The container. */
  bucket: string;
  path: string;
  /** Undefined = `https://<accountName>.blob.core.windows.net`. A URL's `?endpoint=` too. */
  endpoint?: string;
  /** Walship key `sas-token`, else env AZURE_STORAGE_SAS_TOKEN. */
  sasToken?: string;
  /** Walship keys: files holding the account key or the SAS token (a mounted Secret). */
  accountKeyFile?: string;
  sasTokenFile?: string;
}
export interface SftpSettings {
  /** `host` or `host:port` (port 22 when absent). */
  host: string;
  /** Required by Litestream; always set after parsing. */
  user?: string;
  password?: string;
  /** Private key file, `~` expanded. */
  keyPath?: string;
  /** Remote directory, verbatim (a URL's path is not cleaned). */
  path: string;
  /** Walship key `host-key`: pinned server public keys (`ssh-ed25519 AAAA...`). */
  hostKeys?: string[];
  /** Walship key `known-hosts-file`; undefined = ~/.ssh/known_hosts and /etc/ssh/ssh_known_hosts. */
  knownHostsFile?: string;
  /** Walship key `insecure-ignore-host-key`: skip the host-key check (Litestream v0.3.13 never checks). */
  insecureIgnoreHostKey?: boolean;
  /** Walship key `host-key-file`: a file of pinned public key lines (a mounted Secret). */
  hostKeyFile?: string;
  /** Walship key `password-file`: a file holding the password (a mounted Secret). */
  passwordFile?: string;
  /** Walship key `key-passphrase-file`: a file holding the private key's passphrase. */
  keyPassphraseFile?: string;
  /** The passphrase from env WALSHIP_SFTP_KEY_PASSPHRASE. */
  keyPassphrase?: string;
}

export interface ReplicaConfig {
  name: string;
  type: ReplicaType;
  /** How often the shadow WAL is shipped. Default 1s. */
  syncIntervalMs: number;
  /** Undefined = no scheduled snapshots (Litestream default; a snapshot is still taken per generation). */
  snapshotIntervalMs?: number;
  /** How long snapshots and WAL are kept. Default 24h; 0 disables retention (keep everything). */
  retentionMs: number;
  /** How often retention runs. Default 1h; 0 = never. */
  retentionCheckIntervalMs: number;
  /** Undefined = no validation. */
  validationIntervalMs?: number;
  file?: FileSettings;
  s3?: S3Settings;
  gcs?: GcsSettings;
  abs?: AbsSettings;
  sftp?: SftpSettings;
  /** Client-side encryption (`age:`); undefined = plaintext. */
  age?: AgeSettings;
}

export interface DbConfig {
  /** Absolute, `~` expanded. */
  path: string;
  /** Undefined = `<dir>/.<name>-litestream`. */
  metaPath?: string;
  /** How often the WAL is checked for changes. Default 1s; 0 = no background monitoring. */
  monitorIntervalMs: number;
  /** Time-based PASSIVE checkpoint. Default 1m; 0 disables. */
  checkpointIntervalMs: number;
  /** WAL pages that trigger a PASSIVE checkpoint. Default 1000; must be > 0. */
  minCheckpointPageCount: number;
  /** WAL pages that force a RESTART checkpoint. Default 10000; 0 disables. */
  maxCheckpointPageCount: number;
  /** WAL pages that force a TRUNCATE checkpoint. Default 500000; 0 disables. Walship key. */
  truncatePageCount: number;
  /** SQLite busy timeout, when the file sets `busy-timeout`. Undefined = the replicator's default. */
  busyTimeoutMs?: number;
  replicas: ReplicaConfig[];
}

export interface Config {
  /** HTTP listener for /metrics, /healthz, /readyz, /status, e.g. ":9090". Undefined = none. */
  addr?: string;
  /** A command to run as a child; replication stops when it exits. */
  exec?: string;
  logging: { level: "debug" | "info" | "warn" | "error"; type: "text" | "json"; stderr: boolean };
  /** The final sync on SIGTERM gets this long. Walship key `shutdown-sync-timeout`, default 10s. */
  shutdownSyncTimeoutMs: number;
  dbs: DbConfig[];
  /** One line per ignored or suspicious key, naming its path (`dbs[0].replicas[0].encryption: ...`). */
  warnings: string[];
  /** The file the config came from. */
  source?: string;
}

export const DEFAULT_CONFIG_PATH = "/etc/litestream.yml";
export const DEFAULT_SYNC_INTERVAL_MS = 1000;
export const DEFAULT_RETENTION_MS = 24 * 3600_000;
export const DEFAULT_RETENTION_CHECK_INTERVAL_MS = 3600_000;
export const DEFAULT_MONITOR_INTERVAL_MS = 1000;
export const DEFAULT_CHECKPOINT_INTERVAL_MS = 60_000;
export const DEFAULT_MIN_CHECKPOINT_PAGE_COUNT = 1000;
export const DEFAULT_MAX_CHECKPOINT_PAGE_COUNT = 10_000;
export const DEFAULT_TRUNCATE_PAGE_COUNT = 500_000;
export const DEFAULT_SHUTDOWN_SYNC_TIMEOUT_MS = 10_000;
/** Used for S3 when an endpoint is set but no region is, and no provider host says otherwise. */
export const DEFAULT_S3_REGION = "us-east-1";

// ---------------------------------------------------------------------------------------------------
// Environment, paths, URLs

/** The config file to read: `WALSHIP_CONFIG`, else `LITESTREAM_CONFIG`, else /etc/litestream.yml. */
export function defaultConfigPath(env: NodeJS.ProcessEnv = process.env): string {
  return env.WALSHIP_CONFIG || env.LITESTREAM_CONFIG || DEFAULT_CONFIG_PATH;
}

/** Copies `LITESTREAM_ACCESS_KEY_ID`/`LITESTREAM_SECRET_ACCESS_KEY` to `AWS_*` where those are unset. */
export function applyEnvCredentials(env: NodeJS.ProcessEnv): void {
  const pairs = [
    ["LITESTREAM_ACCESS_KEY_ID", "AWS_ACCESS_KEY_ID"],
    ["LITESTREAM_SECRET_ACCESS_KEY", "AWS_SECRET_ACCESS_KEY"],
  ] as const;
  for (const [from, to] of pairs) {
    const v = env[from];
    if (v !== undefined && env[to] === undefined) env[to] = v;
  }
}

/**
 * Expands `$NAME` and `${NAME}` from `env` as Go's `os.ExpandEnv` does: unset names become empty;
 * `$` followed by a shell special character (`*#$@!?-` or a digit) takes that one character as the
 * name; a malformed `${...` is dropped; a `$` before anything else is kept.
 */
export function expandEnvText(text: string, env: NodeJS.ProcessEnv): string {
  let out = "";
  let i = 0;
  while (i < text.length) {
    const c = text[i];
    if (c !== "$" || i + 1 >= text.length) {
      out += c;
      i++;
      continue;
    }
    const rest = text.slice(i + 1);
    if (rest[0] === "{") {
      const close = rest.indexOf("}");
      if (close === -1) {
        i += 2; // "${" with no closing brace: dropped
        continue;
      }
      const name = rest.slice(1, close);
      if (name !== "") out += env[name] ?? "";
      i += close + 2;
      continue;
    }
    if (/^[*#$@!?\-0-9]/.test(rest)) {
      out += env[rest[0]!] ?? "";
      i += 2;
      continue;
    }
    const name = /^[A-Za-z0-9_]*/.exec(rest)?.[0] ?? "";
    if (name === "") {
      out += "$";
      i++;
      continue;
    }
    out += env[name] ?? "";
    i += 1 + name.length;
  }
  return out;
}

/** `scheme://user:password@host` becomes `scheme://user:(password)@host` anywhere in `text`. */
export function redactUrlPasswords(text: string): string {
  return text.replace(/(\b\w+:\/\/[^\s/@:"]*):[^\s/@"]*@/g, "$1:(password)@");
}

/** A credential as read: trailing newlines dropped (a Secret made from a file usually ends with one). */
export function trimCredential(value: string): string {
  return value.replace(/[\r\n]+$/, "");
}

/** `^\w+://`, Litestream's test for "this argument is a URL". */
export function isUrl(s: string): boolean {
  return /^\w+:\/\//.test(s);
}

/** `~` and `~/x` become the home directory; the result is absolute (relative to `cwd`). */
function expandPath(p: string, cwd: string, homedir: string): string {
  if (p === "~") return homedir;
  if (p.startsWith("~/")) return path.join(homedir, p.slice(2));
  return path.resolve(cwd, p);
}

/** Go's `path.Clean`: no `.`/`..` segments, no doubled or trailing slashes; "" becomes ".". */
function cleanPath(p: string): string {
  const n = path.posix.normalize(p === "" ? "." : p);
  return n.length > 1 && n.endsWith("/") ? n.slice(0, -1) : n;
}

/** A URL path as Litestream keeps it for object stores: cleaned, no leading `/`, bucket root = "". */
function objectPrefixFromUrlPath(p: string): string {
  const c = cleanPath(p).replace(/^\/+/, "");
  return c === "." ? "" : c;
}

interface UrlParts {
  scheme: string;
  /** Host with port, as written. */
  host: string;
  username?: string;
  password?: string;
  /** Decoded path, verbatim (not cleaned). */
  path: string;
  /** Query parameters (gcs, abs and sftp URLs take their Walship keys there). */
  query: URLSearchParams;
}

function parseUrl(s: string): UrlParts | { problem: string } {
  const shown = JSON.stringify(redactUrlPasswords(s));
  if (!isUrl(s)) return { problem: `replica url needs a scheme (s3://, file://, ...): ${shown}` };
  let u: URL;
  try {
    u = new URL(s);
  } catch {
    return { problem: `invalid url ${shown}` };
  }
  try {
    const parts: UrlParts = {
      scheme: u.protocol.replace(/:$/, "").toLowerCase(),
      host: u.host,
      path: decodeURIComponent(u.pathname),
      query: u.searchParams,
    };
    if (u.username !== "") parts.username = decodeURIComponent(u.username);
    if (u.password !== "") parts.password = decodeURIComponent(u.password);
    return parts;
  } catch {
    return { problem: `invalid url ${shown}: bad percent-encoding` };
  }
}

interface S3HostParts {
  bucket: string;
  region?: string;
  endpoint?: string;
  forcePathStyle: boolean;
}

/** Provider host patterns: bucket in group 1 (optional), the rest decides region and endpoint. */
const S3_PROVIDERS: ReadonlyArray<{
  re: RegExp;
  region: (m: RegExpExecArray) => string | undefined;
  host: (m: RegExpExecArray) => string;
  scheme?: string;
}> = [
  { re: /^(?:(.+)\.)?localhost$/, region: () => "us-east-1", host: () => "localhost", scheme: "http" },
  {
    re: /^(?:(.+)\.)?s3\.([^.]+)\.backblazeb2\.com$/,
    region: (m) => m[2],
    host: (m) => `s3.${m[2]}.backblazeb2.com`,
  },
  { re: /^(?:(.+)\.)?s3\.filebase\.com$/, region: () => undefined, host: () => "s3.filebase.com" },
  {
    re: /^(?:(.+)\.)?([^.]+)\.digitaloceanspaces\.com$/,
    region: (m) => m[2],
    host: (m) => `${m[2]}.digitaloceanspaces.com`,
  },
  { re: /^(?:(.+)\.)?s3\.([^.]+)\.scw\.cloud$/, region: (m) => m[2], host: (m) => `s3.${m[2]}.scw.cloud` },
  {
    re: /^(?:(.+)\.)?([^.]+)\.linodeobjects\.com$/,
    region: (m) => m[2],
    host: (m) => `${m[2]}.linodeobjects.com`,
  },
  // Walship additions (v0.3.13 would take the whole host as a bucket name, which cannot work).
  {
    re: /^(?:(.+)\.)?([^.]+)\.your-objectstorage\.com$/,
    region: (m) => m[2],
    host: (m) => `${m[2]}.your-objectstorage.com`,
  },
  {
    re: /^(?:(.+)\.)?([0-9a-f]{32})((?:\.eu|\.fedramp)?)\.r2\.cloudflarestorage\.com$/,
    region: () => "auto",
    host: (m) => `${m[2]}${m[3]}.r2.cloudflarestorage.com`,
  },
];

/**
 * Splits an `s3://` URL host into bucket, region and endpoint, recognising provider host patterns
 * (those use path-style requests); any other host is the bucket name, virtual-host style, on AWS.
 */
export function parseS3Host(hostWithPort: string): S3HostParts {
  const m = /^(.+):(\d+)$/.exec(hostWithPort);
  const host = m ? m[1]! : hostWithPort;
  const port = m?.[2];
  for (const p of S3_PROVIDERS) {
    const hit = p.re.exec(host);
    if (!hit) continue;
    const endpoint = `${p.scheme ?? "https"}://${p.host(hit)}${port ? `:${port}` : ""}`;
    const parts: S3HostParts = { bucket: hit[1] ?? "", endpoint, forcePathStyle: true };
    const region = p.region(hit);
    if (region !== undefined) parts.region = region;
    return parts;
  }
  return { bucket: host, forcePathStyle: false };
}

/** The region a known provider's endpoint host implies, for an endpoint set without a region. */
function regionFromEndpointHost(host: string): string | undefined {
  const aws = /^(?:.+\.)?s3[.-]([a-z0-9-]+)\.amazonaws\.com$/.exec(host);
  if (aws) return aws[1];
  for (const p of S3_PROVIDERS.slice(1)) {
    const hit = p.re.exec(host);
    if (hit) return p.region(hit);
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------------
// YAML to plain data

type Plain = string | null | Plain[] | { [key: string]: Plain };
type Seg = string | number;

const YAML_NULLS = new Set(["", "~", "null", "Null", "NULL"]);
const YAML_TRUE = new Set(["y", "Y", "yes", "Yes", "YES", "on", "On", "ON", "true", "True", "TRUE"]);
const YAML_FALSE = new Set(["n", "N", "no", "No", "NO", "off", "Off", "OFF", "false", "False", "FALSE"]);
const MAX_NODES = 100_000;

/**
 * Turns the YAML document into plain data where every scalar is its text (or null), so each setting
 * decides its own type the way yaml.v2 does for a Go field. Aliases are resolved and `<<` merge keys
 * applied (explicit keys win).
 */
function toPlain(
  doc: Document,
  fail: (segs: Seg[], problem: string) => never,
  expand?: (value: string) => string,
): Plain {
  let count = 0;
  const walk = (node: unknown, segs: Seg[]): Plain => {
    if (++count > MAX_NODES) fail(segs, `document too large (more than ${MAX_NODES} nodes after aliases)`);
    if (node === null || node === undefined) return null;
    if (isAlias(node)) return walk(node.resolve(doc), segs);
    if (isScalar(node)) {
      const v = node.value;
      if (v === null || v === undefined) return null;
      const raw = String(v);
      const s = expand && raw.includes("$") ? expand(raw) : raw;
      return node.type === "PLAIN" && YAML_NULLS.has(s) ? null : s;
    }
    if (isSeq(node)) return node.items.map((item, i) => walk(item, [...segs, i]));
    if (isMap(node)) {
      const explicit: [string, Plain][] = [];
      const merged: [string, Plain][] = [];
      for (const pair of node.items) {
        const k = isAlias(pair.key) ? pair.key.resolve(doc) : pair.key;
        if (k !== null && k !== undefined && !isScalar(k)) fail(segs, "mapping keys must be plain strings");
        const key = k === null || k === undefined || k.value === null ? "" : String(k.value);
        if (key === "<<" && isScalar(k) && k.type === "PLAIN") {
          const src = walk(pair.value, [...segs, key]);
          const sources = Array.isArray(src) ? src : [src];
          for (const one of sources) {
            if (one === null || typeof one !== "object" || Array.isArray(one)) {
              fail([...segs, key], "a merge key (<<) takes a mapping or a list of mappings");
            }
            for (const e of Object.entries(one)) if (!merged.some(([mk]) => mk === e[0])) merged.push(e);
          }
          continue;
        }
        explicit.push([key, walk(pair.value, [...segs, key])]);
      }
      const keys = new Set(explicit.map(([k]) => k));
      return Object.fromEntries([...merged.filter(([k]) => !keys.has(k)), ...explicit]);
    }
    fail(segs, "unsupported YAML node");
  };
  return walk(doc.contents, []);
}

// ---------------------------------------------------------------------------------------------------
// Schemas (shape and scalar types; rules across keys come after)

const text = z
  .string({ error: "expected a string" })
  .nullish()
  .transform((v) => (v === null || v === undefined || v === "" ? undefined : v));

const flag = z
  .string({ error: "expected true or false" })
  .nullish()
  .transform((v, ctx) => {
    if (v === null || v === undefined) return undefined;
    if (YAML_TRUE.has(v)) return true;
    if (YAML_FALSE.has(v)) return false;
    ctx.addIssue({ code: "custom", message: `invalid boolean ${JSON.stringify(v)}` });
    return z.NEVER;
  });

const integer = z
  .string({ error: "expected an integer" })
  .nullish()
  .transform((v, ctx) => {
    if (v === null || v === undefined) return undefined;
    const n = parseYamlInt(v);
    if (n === undefined) {
      ctx.addIssue({ code: "custom", message: `invalid integer ${JSON.stringify(v)}` });
      return z.NEVER;
    }
    return n;
  });

const duration = z
  .string({ error: "expected a duration such as 1s, 500ms or 1h30m" })
  .nullish()
  .transform((v, ctx) => {
    if (v === null || v === undefined) return undefined;
    const r = tryParseGoDuration(v);
    if ("problem" in r) {
      ctx.addIssue({ code: "custom", message: r.problem });
      return z.NEVER;
    }
    if (r.ms < 0) {
      ctx.addIssue({
        code: "custom",
        message: `invalid duration ${JSON.stringify(v)}: must not be negative`,
      });
      return z.NEVER;
    }
    return r.ms;
  });

const replicaShape = {
  type: text,
  name: text,
  path: text,
  url: text,
  retention: duration,
  "retention-check-interval": duration,
  "sync-interval": duration,
  "snapshot-interval": duration,
  "validation-interval": duration,
  "access-key-id": text,
  "secret-access-key": text,
  "access-key-id-file": text,
  "secret-access-key-file": text,
  region: text,
  bucket: text,
  endpoint: text,
  "force-path-style": flag,
  "skip-verify": flag,
  "account-name": text,
  "account-key": text,
  host: text,
  user: text,
  password: text,
  "key-path": text,
  // Walship extensions (a Litestream config never needs them).
  "host-key": z
    .union([z.string(), z.array(z.string())], { error: "expected a public key line or a list of them" })
    .nullish()
    .transform((v) => (v === null || v === undefined ? undefined : Array.isArray(v) ? v : [v])),
  "known-hosts-file": text,
  "insecure-ignore-host-key": flag,
  "key-passphrase-file": text,
  "host-key-file": text,
  "password-file": text,
  "credentials-file": text,
  "sas-token": text,
  "account-key-file": text,
  "sas-token-file": text,
  age: z.unknown().optional(),
  "server-side-encryption": text,
  "sse-kms-key-id": text,
  "sse-customer-key": text,
  "sse-customer-key-path": text,
  "sse-customer-algorithm": text,
};

const keyList = z.array(
  z
    .string({ error: "expected a string" })
    .nullable()
    .transform((v) => v ?? ""),
  {
    error: "expected a list of strings",
  },
);
/** `age:`: Litestream's two lists, and Walship's key files and opt-in. Strict: see the head of this file. */
const ageSchema = z.strictObject(
  {
    identities: keyList.nullish(),
    recipients: keyList.nullish(),
    "identity-files": keyList.nullish(),
    "recipient-files": keyList.nullish(),
    "allow-plaintext-generations": flag,
  },
  {
    error: (iss) =>
      iss.code === "unrecognized_keys"
        ? `unknown key ${iss.keys.map((k) => JSON.stringify(k)).join(", ")} (age takes identities, recipients, identity-files, recipient-files, allow-plaintext-generations; Litestream would ignore it and write plaintext)`
        : "expected a mapping with identities and recipients",
  },
);
const replicaSchema = z.object(replicaShape, { error: "expected a mapping" });
const dbShape = {
  path: text,
  "meta-path": text,
  "monitor-interval": duration,
  "checkpoint-interval": duration,
  "busy-timeout": duration,
  "min-checkpoint-page-count": integer,
  "max-checkpoint-page-count": integer,
  "truncate-page-count": integer,
  replicas: z.array(replicaSchema, { error: "expected a list" }).nullish(),
  replica: replicaSchema.nullish(),
};
const loggingShape = { level: text, type: text, stderr: flag };
const rootShape = {
  addr: text,
  exec: text,
  "access-key-id": text,
  "secret-access-key": text,
  "shutdown-sync-timeout": duration,
  logging: z.object(loggingShape, { error: "expected a mapping" }).nullish(),
  dbs: z.array(z.object(dbShape, { error: "expected a mapping" }), { error: "expected a list" }).nullish(),
};
const rootSchema = z.object(rootShape, { error: "expected a mapping" });

type RawReplica = z.output<typeof replicaSchema>;
type RawDb = z.output<z.ZodObject<typeof dbShape>>;
type RawRoot = z.output<typeof rootSchema>;

const DURATION_KEYS = new Set(
  Object.entries({ ...replicaShape, ...dbShape, ...rootShape })
    .filter(([, s]) => s === duration)
    .map(([k]) => k),
);

/** Keys each replica type reads, beyond the common ones. */
const TYPE_KEYS: Record<ReplicaType, readonly string[]> = {
  file: [],
  s3: [
    "bucket",
    "region",
    "endpoint",
    "force-path-style",
    "skip-verify",
    "access-key-id",
    "secret-access-key",
    "access-key-id-file",
    "secret-access-key-file",
    "server-side-encryption",
    "sse-kms-key-id",
    "sse-customer-key",
    "sse-customer-key-path",
    "sse-customer-algorithm",
  ],
  gcs: ["bucket", "endpoint", "credentials-file"],
  abs: [
    "account-name",
    "account-key",
    "bucket",
    "endpoint",
    "sas-token",
    "account-key-file",
    "sas-token-file",
  ],
  sftp: [
    "host",
    "user",
    "password",
    "key-path",
    "host-key",
    "known-hosts-file",
    "insecure-ignore-host-key",
    "key-passphrase-file",
    "host-key-file",
    "password-file",
  ],
};
const COMMON_REPLICA_KEYS = [
  "type",
  "name",
  "path",
  "url",
  "retention",
  "retention-check-interval",
  "sync-interval",
  "snapshot-interval",
  "validation-interval",
  "age",
];

function parseYamlInt(v: string): number | undefined {
  const m = /^([-+]?)(0x[0-9a-fA-F_]+|0o[0-7_]+|0b[01_]+|[0-9][0-9_]*)$/.exec(v);
  if (!m) return undefined;
  const digits = m[2]!.replace(/_/g, "");
  let n: number;
  if (digits.startsWith("0x")) n = Number.parseInt(digits.slice(2), 16);
  else if (digits.startsWith("0o")) n = Number.parseInt(digits.slice(2), 8);
  else if (digits.startsWith("0b")) n = Number.parseInt(digits.slice(2), 2);
  else if (digits.length > 1 && digits.startsWith("0")) {
    // YAML 1.1 octal, as yaml.v2 reads it
    if (!/^[0-7]+$/.test(digits)) return undefined;
    n = Number.parseInt(digits, 8);
  } else n = Number(digits);
  if (m[1] === "-") n = -n;
  return Number.isSafeInteger(n) ? n : undefined;
}

export function formatKeyPath(segs: readonly Seg[]): string {
  let out = "";
  for (const s of segs) out += typeof s === "number" ? `[${s}]` : out === "" ? s : `.${s}`;
  return out === "" ? "(root)" : out;
}

// ---------------------------------------------------------------------------------------------------
// Building the config

interface Ctx {
  env: NodeJS.ProcessEnv;
  cwd: string;
  homedir: string;
  warnings: string[];
  fail: (segs: Seg[], problem: string) => never;
  globalAccessKeyId?: string;
  globalSecretAccessKey?: string;
}

/**
 * Parses litestream.yml text. Throws a CONFIG `WalshipError` naming the file and the key
 * (`details.path`, e.g. `dbs[0].replicas[1].sync-interval`, and `details.line` when known).
 */
export function parseConfig(
  textIn: string,
  opts: {
    source?: string;
    expandEnv?: boolean;
    env?: NodeJS.ProcessEnv;
    cwd?: string;
    homedir?: string;
  } = {},
): Config {
  const env = opts.env ?? process.env;
  const prefix = opts.source ? `parse config ${opts.source}` : "parse config";
  const source = opts.source !== undefined ? { source: opts.source } : {};
  // Values that came from the environment: never quoted back in an error or a warning.
  const fromEnv = new Set<string>();
  const expand =
    opts.expandEnv === false
      ? undefined
      : (value: string): string => {
          const out = expandEnvText(value, env);
          if (out !== value && out !== "") fromEnv.add(out);
          return out;
        };
  const redact = (message: string): string => {
    let out = redactUrlPasswords(message);
    for (const v of fromEnv) {
      out = out.split(JSON.stringify(v)).join("(a value from the environment)");
      if (v.length >= 8) out = out.split(v).join("(a value from the environment)");
    }
    return out;
  };

  const lineCounter = new LineCounter();
  const doc = parseDocument(textIn, { schema: "failsafe", version: "1.1", uniqueKeys: true, lineCounter });
  const first = doc.errors[0];
  if (first) {
    const pos = first.linePos?.[0];
    const where = pos ? `line ${pos.line}, column ${pos.col}` : "yaml";
    // The parser's first line only: the lines after it quote the source, which may hold a value.
    throw new WalshipError(
      ErrorCodes.CONFIG,
      `${prefix}: ${where}: ${first.message.split("\n")[0]?.replace(/ at line \d+, column \d+:?$/, "")}`,
      {
        details: { path: "(root)", ...(pos ? { line: pos.line } : {}), ...source },
        cause: first,
      },
    );
  }

  const lineOf = (segs: Seg[]): number | undefined => {
    for (let n = segs.length; n >= 0; n--) {
      try {
        const node = n === 0 ? doc.contents : doc.getIn(segs.slice(0, n), true);
        const range = (node as { range?: [number, number, number] } | null | undefined)?.range;
        if (range) return lineCounter.linePos(range[0]).line;
      } catch {
        // a path through an alias or a merge key: try the parent
      }
    }
    return undefined;
  };
  const fail: (segs: Seg[], problem: string) => never = (segs, problem) => {
    const keyPath = formatKeyPath(segs);
    const line = lineOf(segs);
    throw new WalshipError(ErrorCodes.CONFIG, `${prefix}: ${keyPath}: ${redact(problem)}`, {
      details: { path: keyPath, ...(line !== undefined ? { line } : {}), ...source },
    });
  };

  const plain = toPlain(doc, fail, expand) ?? {};
  const parsed = rootSchema.safeParse(plain);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const segs = issue.path.filter((p): p is Seg => typeof p === "string" || typeof p === "number");
    fail(segs, issue.message);
  }
  const raw = parsed.data;

  const warnings: string[] = [];
  collectWarnings(plain, warnings);
  const ctx: Ctx = {
    env,
    cwd: opts.cwd ?? process.cwd(),
    homedir: opts.homedir ?? os.homedir(),
    warnings,
    fail,
  };
  if (raw["access-key-id"] !== undefined) ctx.globalAccessKeyId = raw["access-key-id"];
  if (raw["secret-access-key"] !== undefined) ctx.globalSecretAccessKey = raw["secret-access-key"];

  const config: Config = {
    logging: buildLogging(raw, ctx),
    shutdownSyncTimeoutMs: raw["shutdown-sync-timeout"] ?? DEFAULT_SHUTDOWN_SYNC_TIMEOUT_MS,
    dbs: [],
    warnings,
  };
  if (raw.addr !== undefined) config.addr = checkAddr(raw.addr, ctx);
  if (raw.exec !== undefined) config.exec = raw.exec;
  if (opts.source !== undefined) config.source = opts.source;

  const seen = new Map<string, number>();
  (raw.dbs ?? []).forEach((rdb, i) => {
    const db = buildDb(rdb, ["dbs", i], ctx);
    const prev = seen.get(db.path);
    if (prev !== undefined) fail(["dbs", i, "path"], `database ${db.path} is already listed at dbs[${prev}]`);
    seen.set(db.path, i);
    config.dbs.push(db);
  });
  config.warnings = warnings.map(redact);
  return config;
}

/** Reads and parses a config file (`~` expanded). CONFIG error naming the file if it cannot be read. */
export async function loadConfig(
  file: string,
  opts: { expandEnv?: boolean; env?: NodeJS.ProcessEnv } = {},
): Promise<Config> {
  const resolved = expandPath(file, process.cwd(), os.homedir());
  let body: string;
  try {
    body = await readFile(resolved, "utf8");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why =
      code === "ENOENT" ? "file not found" : code === "EACCES" ? "permission denied" : "cannot read file";
    throw new WalshipError(ErrorCodes.CONFIG, `read config ${file}: ${why}`, {
      cause: err,
      details: { path: "(file)", file: resolved },
    });
  }
  const parseOpts: Parameters<typeof parseConfig>[1] = { source: file };
  if (opts.expandEnv !== undefined) parseOpts.expandEnv = opts.expandEnv;
  if (opts.env !== undefined) parseOpts.env = opts.env;
  return parseConfig(body, parseOpts);
}

function buildLogging(raw: RawRoot, ctx: Ctx): Config["logging"] {
  const lg = raw.logging;
  let level: Config["logging"]["level"] = "info";
  const rawLevel = lg?.level?.toLowerCase();
  if (rawLevel === "debug" || rawLevel === "info" || rawLevel === "warn" || rawLevel === "error")
    level = rawLevel;
  else if (rawLevel === "warning") level = "warn";
  else if (rawLevel !== undefined) {
    ctx.warnings.push(
      `logging.level: unknown level ${JSON.stringify(lg?.level)}, using info (as Litestream does)`,
    );
  }
  const rawType = lg?.type?.toLowerCase();
  if (rawType !== undefined && rawType !== "text" && rawType !== "json") {
    ctx.fail(["logging", "type"], `invalid log type ${JSON.stringify(lg?.type)}: use text or json`);
  }
  return { level, type: rawType === "json" ? "json" : "text", stderr: lg?.stderr ?? false };
}

function checkAddr(addr: string, ctx: Ctx): string {
  const m = /^(\[[^\]]*\]|[^:[\]]*):(\d{1,5})$/.exec(addr);
  if (!m || Number(m[2]) > 65535) {
    ctx.fail(
      ["addr"],
      `invalid listen address ${JSON.stringify(addr)}: write host:port or :port, e.g. ":9090"`,
    );
  }
  return addr;
}

function buildDb(rdb: RawDb, at: Seg[], ctx: Ctx): DbConfig {
  if (rdb.path === undefined) ctx.fail([...at, "path"], "database path required");
  const minPages = rdb["min-checkpoint-page-count"] ?? DEFAULT_MIN_CHECKPOINT_PAGE_COUNT;
  if (minPages <= 0)
    ctx.fail([...at, "min-checkpoint-page-count"], `must be greater than 0, got ${minPages}`);
  const nonNegative = (key: "max-checkpoint-page-count" | "truncate-page-count", dflt: number): number => {
    const v = rdb[key] ?? dflt;
    if (v < 0) ctx.fail([...at, key], `must not be negative, got ${v}`);
    return v;
  };
  const db: DbConfig = {
    path: expandPath(rdb.path, ctx.cwd, ctx.homedir),
    monitorIntervalMs: rdb["monitor-interval"] ?? DEFAULT_MONITOR_INTERVAL_MS,
    checkpointIntervalMs: rdb["checkpoint-interval"] ?? DEFAULT_CHECKPOINT_INTERVAL_MS,
    minCheckpointPageCount: minPages,
    maxCheckpointPageCount: nonNegative("max-checkpoint-page-count", DEFAULT_MAX_CHECKPOINT_PAGE_COUNT),
    truncatePageCount: nonNegative("truncate-page-count", DEFAULT_TRUNCATE_PAGE_COUNT),
    replicas: [],
  };
  if (rdb["meta-path"] !== undefined) db.metaPath = expandPath(rdb["meta-path"], ctx.cwd, ctx.homedir);
  if (rdb["busy-timeout"] !== undefined) db.busyTimeoutMs = rdb["busy-timeout"];

  let list: Array<{ raw: RawReplica; at: Seg[] }>;
  if (rdb.replica && rdb.replicas && rdb.replicas.length > 0) {
    ctx.fail([...at, "replica"], "cannot set both replica and replicas; move it into the replicas list");
  }
  if (rdb.replica) list = [{ raw: rdb.replica, at: [...at, "replica"] }];
  else list = (rdb.replicas ?? []).map((raw, j) => ({ raw, at: [...at, "replicas", j] }));

  const names = new Map<string, string>();
  for (const { raw, at: rat } of list) {
    const r = buildReplica(raw, rat, ctx);
    if (names.has(r.name) && (raw.name === undefined || raw.name === "")) {
      // Litestream v0.3.13 rejects two unnamed replicas of one type (both default to the type's name),
      // which turns away a common two-region setup. Walship names the later ones instead.
      let n = 2;
      while (names.has(`${r.name}-${n}`)) n++;
      ctx.warnings.push(
        `${formatKeyPath([...rat, "name"])}: no name given and ${JSON.stringify(r.name)} is taken by ${names.get(r.name)}; named ${JSON.stringify(`${r.name}-${n}`)} (Litestream would reject this file)`,
      );
      r.name = `${r.name}-${n}`;
    }
    const prev = names.get(r.name);
    if (prev !== undefined) {
      ctx.fail(
        [...rat, "name"],
        `duplicate replica name ${JSON.stringify(r.name)} (also ${prev}); give each replica a distinct name`,
      );
    }
    names.set(r.name, formatKeyPath(rat));
    db.replicas.push(r);
  }
  return db;
}

function buildReplica(rawIn: RawReplica, at: Seg[], ctx: Ctx): ReplicaConfig {
  let raw = rawIn;
  const key = (k: string): Seg[] => [...at, k];
  if (raw.path !== undefined && isUrl(raw.path)) {
    ctx.fail(key("path"), `replica path cannot be a URL, use the url key instead: ${raw.path}`);
  }
  if (raw.url !== undefined && raw.path !== undefined) ctx.fail(key("url"), "cannot set both url and path");

  let url: UrlParts | undefined;
  if (raw.url !== undefined) {
    const u = parseUrl(raw.url);
    if ("problem" in u) return ctx.fail(key("url"), u.problem);
    url = u;
  }
  // `gs` (gsutil's scheme) is an alias of `gcs`; Litestream v0.3.13 refuses it (#336).
  const declared = gcsAlias(raw.type?.toLowerCase());
  const typeName = gcsAlias(url?.scheme) ?? declared ?? "file";
  if (!(REPLICA_TYPES as readonly string[]).includes(typeName)) {
    ctx.fail(key(url ? "url" : "type"), `unknown replica type ${JSON.stringify(typeName)}`);
  }
  const type = typeName as ReplicaType;
  if (url) raw = withUrlQuery(raw, url, type, key, ctx);
  if (url && declared !== undefined && declared !== type) {
    ctx.warnings.push(
      `${formatKeyPath(key("type"))}: type ${JSON.stringify(raw.type)} ignored, the url scheme says ${type}`,
    );
  }
  const used = new Set([...COMMON_REPLICA_KEYS, ...TYPE_KEYS[type]]);
  for (const k of Object.keys(replicaShape)) {
    if (!used.has(k) && (raw as Record<string, unknown>)[k] !== undefined) {
      ctx.warnings.push(`${formatKeyPath(key(k))}: not used by ${type} replicas, ignored`);
    }
  }

  const r: ReplicaConfig = {
    name: raw.name ?? type,
    type,
    syncIntervalMs: raw["sync-interval"] ?? DEFAULT_SYNC_INTERVAL_MS,
    retentionMs: raw.retention ?? DEFAULT_RETENTION_MS,
    retentionCheckIntervalMs: raw["retention-check-interval"] ?? DEFAULT_RETENTION_CHECK_INTERVAL_MS,
  };
  if (raw["snapshot-interval"]) r.snapshotIntervalMs = raw["snapshot-interval"];
  if (raw["validation-interval"]) r.validationIntervalMs = raw["validation-interval"];
  if ("age" in raw) r.age = buildAge(raw.age, key, ctx);

  switch (type) {
    case "file":
      r.file = buildFile(raw, url, key, ctx);
      break;
    case "s3":
      r.s3 = buildS3(raw, url, key, ctx);
      break;
    case "gcs":
      r.gcs = buildGcs(raw, url, key, ctx);
      break;
    case "abs":
      r.abs = buildAbs(raw, url, key, ctx);
      break;
    case "sftp":
      r.sftp = buildSftp(raw, url, key, ctx);
      break;
  }
  return r;
}

type KeyFn = (k: string) => Seg[];

function buildAge(value: unknown, key: KeyFn, ctx: Ctx): AgeSettings {
  const parsed = ageSchema.safeParse(value ?? {});
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const segs = issue.path.filter((p): p is Seg => typeof p === "string" || typeof p === "number");
    return ctx.fail([...key("age"), ...segs], issue.message);
  }
  const a = parsed.data;
  const age: AgeSettings = {
    identities: a.identities ?? [],
    recipients: a.recipients ?? [],
    identityFiles: (a["identity-files"] ?? []).map((f) => expandPath(f, ctx.cwd, ctx.homedir)),
    recipientFiles: (a["recipient-files"] ?? []).map((f) => expandPath(f, ctx.cwd, ctx.homedir)),
    allowPlaintextGenerations: a["allow-plaintext-generations"] ?? false,
  };
  if (
    age.identities.length + age.identityFiles.length + age.recipients.length + age.recipientFiles.length ===
    0
  )
    ctx.fail(
      key("age"),
      "empty: set identities and recipients (an empty age block would replicate in plaintext)",
    );
  return age;
}

function buildSse(
  raw: RawReplica,
  endpoint: string | undefined,
  key: KeyFn,
  ctx: Ctx,
): SseSettings | undefined {
  const mode = raw["server-side-encryption"];
  if (mode !== undefined && mode !== "AES256" && mode !== "aws:kms")
    ctx.fail(key("server-side-encryption"), `invalid value ${JSON.stringify(mode)}: use AES256 or aws:kms`);
  const algorithm = raw["sse-customer-algorithm"];
  if (algorithm !== undefined && algorithm !== "AES256")
    ctx.fail(key("sse-customer-algorithm"), `invalid value ${JSON.stringify(algorithm)}: only AES256`);
  const sse: SseSettings = {};
  if (mode !== undefined) sse.serverSideEncryption = mode;
  if (raw["sse-kms-key-id"] !== undefined) sse.kmsKeyId = raw["sse-kms-key-id"];
  if (raw["sse-customer-key"] !== undefined) sse.customerKey = raw["sse-customer-key"];
  if (raw["sse-customer-key-path"] !== undefined)
    sse.customerKeyPath = expandPath(raw["sse-customer-key-path"], ctx.cwd, ctx.homedir);
  if (Object.keys(sse).length === 0) {
    if (algorithm !== undefined)
      ctx.fail(key("sse-customer-algorithm"), "set sse-customer-key or sse-customer-key-path with it");
    return undefined;
  }
  const problem = sseProblem(sse, endpoint);
  if (problem) ctx.fail(key(problem.key), problem.message);
  return sse;
}

function buildFile(raw: RawReplica, url: UrlParts | undefined, key: KeyFn, ctx: Ctx): FileSettings {
  let p = raw.path;
  if (url) p = cleanPath(`${url.host === "" ? "" : `/${url.host}`}${url.path}`);
  if (p === undefined || p === "") ctx.fail(key(url ? "url" : "path"), "file replica path required");
  return { path: expandPath(p, ctx.cwd, ctx.homedir) };
}

function buildS3(raw: RawReplica, url: UrlParts | undefined, key: KeyFn, ctx: Ctx): S3Settings {
  if (url && raw.bucket !== undefined) ctx.fail(key("bucket"), "cannot set both url and bucket");
  let bucket = raw.bucket;
  let prefix = raw.path ?? "";
  let region = raw.region;
  let endpoint = raw.endpoint;
  // An endpoint means a non-AWS store, and those want path-style requests.
  let forcePathStyle = raw["force-path-style"] ?? endpoint !== undefined;
  if (url) {
    const h = parseS3Host(url.host);
    prefix = objectPrefixFromUrlPath(url.path);
    bucket = h.bucket === "" ? undefined : h.bucket;
    region ??= h.region;
    endpoint ??= h.endpoint;
    // As in Litestream, a URL-derived "on" overrides an explicit force-path-style: false.
    if (!forcePathStyle) forcePathStyle = h.forcePathStyle;
  }
  if (bucket === undefined) ctx.fail(key(url ? "url" : "bucket"), "bucket required for s3 replica");

  let endpointHost: string | undefined;
  if (endpoint !== undefined) {
    if (!/^[a-z][a-z0-9+.-]*:\/\//i.test(endpoint)) endpoint = `https://${endpoint}`;
    try {
      const u = new URL(endpoint);
      if (u.protocol !== "http:" && u.protocol !== "https:") throw new Error("scheme");
      endpointHost = u.hostname;
    } catch {
      ctx.fail(
        key("endpoint"),
        `invalid endpoint ${JSON.stringify(raw.endpoint ?? endpoint)}: expected an http(s) URL`,
      );
    }
    region ??= regionFromEndpointHost(endpointHost ?? "") ?? DEFAULT_S3_REGION;
    if (forcePathStyle && endpointHost?.startsWith(`${bucket}.`)) {
      ctx.warnings.push(
        `${formatKeyPath(key("endpoint"))}: endpoint host ${endpointHost} starts with the bucket name; with ` +
          `path-style requests the provider stores objects under an extra "${bucket}/" prefix. Kept as ` +
          "written, as Litestream does, so existing replicas stay readable",
      );
    }
  }

  const s3: S3Settings = { bucket, path: prefix, forcePathStyle, skipVerify: raw["skip-verify"] ?? false };
  if (region !== undefined) s3.region = region;
  if (endpoint !== undefined) s3.endpoint = endpoint;
  const sse = buildSse(raw, endpoint, key, ctx);
  if (sse) s3.sse = sse;
  const idFile = raw["access-key-id-file"];
  const secretFile = raw["secret-access-key-file"];
  if (idFile !== undefined || secretFile !== undefined) {
    if (idFile === undefined || secretFile === undefined) {
      ctx.fail(
        key(idFile === undefined ? "access-key-id-file" : "secret-access-key-file"),
        "set access-key-id-file and secret-access-key-file together",
      );
    }
    if (raw["access-key-id"] !== undefined || raw["secret-access-key"] !== undefined) {
      ctx.fail(key("access-key-id-file"), "set the keys or the key files, not both");
    }
    s3.accessKeyIdFile = expandPath(idFile, ctx.cwd, ctx.homedir);
    s3.secretAccessKeyFile = expandPath(secretFile, ctx.cwd, ctx.homedir);
    return s3;
  }
  const accessKeyId = raw["access-key-id"] ?? ctx.globalAccessKeyId;
  const secretAccessKey = raw["secret-access-key"] ?? ctx.globalSecretAccessKey;
  if (accessKeyId !== undefined) s3.accessKeyId = trimCredential(accessKeyId);
  if (secretAccessKey !== undefined) s3.secretAccessKey = trimCredential(secretAccessKey);
  return s3;
}

function buildGcs(raw: RawReplica, url: UrlParts | undefined, key: KeyFn, ctx: Ctx): GcsSettings {
  if (url && raw.bucket !== undefined) ctx.fail(key("bucket"), "cannot set both url and bucket");
  const bucket = url ? url.host : raw.bucket;
  if (bucket === undefined || bucket === "")
    ctx.fail(key(url ? "url" : "bucket"), "bucket required for gcs replica");
  const gcs: GcsSettings = { bucket, path: url ? objectPrefixFromUrlPath(url.path) : (raw.path ?? "") };
  const emulator = ctx.env.STORAGE_EMULATOR_HOST;
  if (raw.endpoint !== undefined) {
    gcs.endpoint = httpUrl(raw.endpoint, key("endpoint"), ctx);
    gcs.authWithEndpoint = true;
  } else if (emulator) {
    // As the Go client: host:port or a URL; no credentials are sent to it.
    gcs.endpoint = httpUrl(
      /^\w+:\/\//.test(emulator) ? emulator : `http://${emulator}`,
      ["STORAGE_EMULATOR_HOST"],
      ctx,
    );
    gcs.authWithEndpoint = false;
  }
  if (raw["credentials-file"] !== undefined) {
    gcs.credentialsFile = expandPath(raw["credentials-file"], ctx.cwd, ctx.homedir);
  }
  return gcs;
}

/** An http(s) URL with its path kept; trailing slashes dropped. */
function httpUrl(v: string, at: Seg[], ctx: Ctx): string {
  try {
    const u = new URL(v);
    if (u.protocol !== "http:" && u.protocol !== "https:") throw new Error("scheme");
    return v.replace(/\/+$/, "");
  } catch {
    return ctx.fail(at, `invalid endpoint ${JSON.stringify(v)}: expected an http(s) URL`);
  }
}

function gcsAlias(t: string | undefined): string | undefined {
  return t === "gs" ? "gcs" : t;
}

/**
 * A gcs, abs or sftp URL's query parameters set that type's keys (a Walship extension, so that
 * `restore URL` can reach an emulator endpoint or name a key file): `?endpoint=...`,
 * `?key-path=...&host-key=...`. Keys set in YAML win; unknown parameters are an error.
 */
function withUrlQuery(raw: RawReplica, url: UrlParts, type: ReplicaType, key: KeyFn, ctx: Ctx): RawReplica {
  if (type !== "gcs" && type !== "abs" && type !== "sftp") return raw;
  const out: Record<string, unknown> = { ...raw };
  for (const [k, v] of url.query) {
    if (!TYPE_KEYS[type].includes(k) || k === "bucket" || k === "host" || k === "password") {
      ctx.fail(
        key("url"),
        `unknown query parameter ${JSON.stringify(k)} for a ${type} url (it takes: ${TYPE_KEYS[type].filter((t) => !["bucket", "host", "password"].includes(t)).join(", ")})`,
      );
    }
    if (out[k] !== undefined) continue;
    if (k === "insecure-ignore-host-key") {
      if (!YAML_TRUE.has(v) && !YAML_FALSE.has(v))
        ctx.fail(key("url"), `invalid boolean ${JSON.stringify(v)} for ${k}`);
      out[k] = YAML_TRUE.has(v);
    } else if (k === "host-key") {
      out[k] = [...((out[k] as string[] | undefined) ?? []), v];
    } else {
      out[k] = v;
    }
  }
  return out as RawReplica;
}

function buildAbs(raw: RawReplica, url: UrlParts | undefined, key: KeyFn, ctx: Ctx): AbsSettings {
  if (url && raw.bucket !== undefined) ctx.fail(key("bucket"), "cannot set both url and bucket");
  const bucket = url ? url.host : raw.bucket;
  if (bucket === undefined || bucket === "")
    ctx.fail(key(url ? "url" : "bucket"), "bucket required for abs replica");
  const abs: AbsSettings = { bucket, path: url ? objectPrefixFromUrlPath(url.path) : (raw.path ?? "") };
  const accountName = raw["account-name"] ?? url?.username ?? (ctx.env.AZURE_STORAGE_ACCOUNT || undefined);
  const rawKey =
    raw["account-key"] ??
    (ctx.env.LITESTREAM_AZURE_ACCOUNT_KEY || undefined) ??
    (ctx.env.AZURE_STORAGE_KEY || undefined);
  const accountKey = rawKey === undefined ? undefined : trimCredential(rawKey);
  const rawSas = raw["sas-token"] ?? (ctx.env.AZURE_STORAGE_SAS_TOKEN || undefined);
  const sasToken = rawSas === undefined ? undefined : trimCredential(rawSas);
  if (accountName !== undefined) abs.accountName = accountName;
  if (accountKey !== undefined) abs.accountKey = accountKey;
  if (sasToken !== undefined) abs.sasToken = sasToken;
  if (raw["account-key-file"] !== undefined) {
    abs.accountKeyFile = expandPath(raw["account-key-file"], ctx.cwd, ctx.homedir);
  }
  if (raw["sas-token-file"] !== undefined) {
    abs.sasTokenFile = expandPath(raw["sas-token-file"], ctx.cwd, ctx.homedir);
  }
  if (raw.endpoint !== undefined) abs.endpoint = httpUrl(raw.endpoint, key("endpoint"), ctx);
  if (url && !url.username && accountName !== undefined && accountName === bucket) {
    ctx.warnings.push(
      `${formatKeyPath(key("url"))}: abs://${bucket}/... names container ${JSON.stringify(bucket)} (the host is ` +
        "the container, as in Litestream); for account and container write abs://ACCOUNT@CONTAINER/path",
    );
  }
  if (accountName === undefined && raw.endpoint === undefined) {
    ctx.warnings.push(
      `${formatKeyPath(key(url ? "url" : "account-name"))}: abs replica has no account name, so it cannot ` +
        "connect; write abs://ACCOUNT@CONTAINER/path or set account-name",
    );
  }
  return abs;
}

function buildSftp(raw: RawReplica, url: UrlParts | undefined, key: KeyFn, ctx: Ctx): SftpSettings {
  if (url && raw.host !== undefined) ctx.fail(key("host"), "cannot set both url and host");
  const host = url ? url.host : raw.host;
  if (host === undefined || host === "")
    ctx.fail(key(url ? "url" : "host"), "host required for sftp replica");
  const user = raw.user ?? url?.username;
  if (user === undefined) ctx.fail(key(url ? "url" : "user"), "user required for sftp replica");
  const sftp: SftpSettings = { host, user, path: url ? url.path : (raw.path ?? "") };
  const password = raw.password ?? url?.password;
  if (password !== undefined) sftp.password = trimCredential(password);
  if (raw["key-path"] !== undefined) sftp.keyPath = expandPath(raw["key-path"], ctx.cwd, ctx.homedir);
  if (raw["host-key"] !== undefined) sftp.hostKeys = raw["host-key"];
  if (raw["known-hosts-file"] !== undefined) {
    sftp.knownHostsFile = expandPath(raw["known-hosts-file"], ctx.cwd, ctx.homedir);
  }
  if (raw["insecure-ignore-host-key"] !== undefined)
    sftp.insecureIgnoreHostKey = raw["insecure-ignore-host-key"];
  if (raw["host-key-file"] !== undefined) {
    sftp.hostKeyFile = expandPath(raw["host-key-file"], ctx.cwd, ctx.homedir);
  }
  if (raw["password-file"] !== undefined) {
    sftp.passwordFile = expandPath(raw["password-file"], ctx.cwd, ctx.homedir);
  }
  if (raw["key-passphrase-file"] !== undefined) {
    sftp.keyPassphraseFile = expandPath(raw["key-passphrase-file"], ctx.cwd, ctx.homedir);
  }
  if (ctx.env.WALSHIP_SFTP_KEY_PASSPHRASE) sftp.keyPassphrase = ctx.env.WALSHIP_SFTP_KEY_PASSPHRASE;
  return sftp;
}

/** Warnings for keys Walship does not read, and for bare-integer durations (nanoseconds). */
function collectWarnings(plain: Plain, out: string[]): void {
  const check = (
    obj: Plain | undefined,
    known: readonly string[],
    segs: Seg[],
  ): obj is { [k: string]: Plain } => {
    if (obj === null || obj === undefined || typeof obj !== "object" || Array.isArray(obj)) return false;
    for (const [k, v] of Object.entries(obj)) {
      if (!known.includes(k)) {
        const misplaced = segs.length === 2 && segs[0] === "dbs" && k in replicaShape;
        out.push(
          `${formatKeyPath([...segs, k])}: unknown key, ignored${misplaced ? " (a replica setting: move it into a replica)" : ""}`,
        );
      } else if (
        DURATION_KEYS.has(k) &&
        typeof v === "string" &&
        isBareIntegerDuration(v) &&
        Number(v) !== 0
      ) {
        out.push(
          `${formatKeyPath([...segs, k])}: bare number ${v} is read as nanoseconds (Go/yaml.v2 rule); add a unit such as s or h`,
        );
      }
    }
    return true;
  };
  const replica = (r: Plain | undefined, segs: Seg[]) => {
    check(r, Object.keys(replicaShape), segs);
  };
  if (!check(plain, Object.keys(rootShape), [])) return;
  check(plain.logging, Object.keys(loggingShape), ["logging"]);
  const dbs = plain.dbs;
  if (!Array.isArray(dbs)) return;
  dbs.forEach((db, i) => {
    if (!check(db, Object.keys(dbShape), ["dbs", i])) return;
    replica(db.replica, ["dbs", i, "replica"]);
    if (Array.isArray(db.replicas)) {
      db.replicas.forEach((r, j) => {
        replica(r, ["dbs", i, "replicas", j]);
      });
    }
  });
}

// ---------------------------------------------------------------------------------------------------
// Command-line forms

/**
 * A replica from a URL (`s3://`, `file://`, `gcs://`, `abs://`, `sftp://`), with defaults, as
 * `walship replicate DB URL` and the read commands build them. `base` supplies the common settings
 * (name, intervals); the URL decides type and backend settings.
 */
export function replicaFromUrl(url: string, base: Partial<ReplicaConfig> = {}): ReplicaConfig {
  const fail: Ctx["fail"] = (segs, problem) => {
    throw new WalshipError(ErrorCodes.CONFIG, `parse replica url: ${problem}`, {
      details: { path: formatKeyPath(segs), url: redactUrlPasswords(url) },
    });
  };
  const ctx: Ctx = { env: process.env, cwd: process.cwd(), homedir: os.homedir(), warnings: [], fail };
  return replicaFromUrlIn(url, base, ctx, ["url"]);
}

function replicaFromUrlIn(url: string, base: Partial<ReplicaConfig>, ctx: Ctx, at: Seg[]): ReplicaConfig {
  // For a bare URL every problem is the URL's, so errors name `at` itself.
  const urlFail: Ctx["fail"] = (_segs, problem) => ctx.fail(at, problem);
  const built = buildReplica({ url } as RawReplica, at, { ...ctx, fail: urlFail });
  const { type: _t, file: _f, s3: _s, gcs: _g, abs: _a, sftp: _sf, ...common } = base;
  return { ...built, ...common, name: base.name ?? built.name };
}

/** The config `walship replicate DB URL...` runs with: one database, one replica per URL, defaults. */
export function configFromArgs(dbPath: string, urls: string[], opts: { cwd?: string } = {}): Config {
  const cwd = opts.cwd ?? process.cwd();
  const fail: Ctx["fail"] = (segs, problem) => {
    throw new WalshipError(ErrorCodes.CONFIG, `parse arguments: ${formatKeyPath(segs)}: ${problem}`, {
      details: { path: formatKeyPath(segs) },
    });
  };
  const ctx: Ctx = { env: process.env, cwd, homedir: os.homedir(), warnings: [], fail };
  if (dbPath === "") fail(["args", 0], "database path required");
  const db: DbConfig = {
    path: expandPath(dbPath, cwd, ctx.homedir),
    monitorIntervalMs: DEFAULT_MONITOR_INTERVAL_MS,
    checkpointIntervalMs: DEFAULT_CHECKPOINT_INTERVAL_MS,
    minCheckpointPageCount: DEFAULT_MIN_CHECKPOINT_PAGE_COUNT,
    maxCheckpointPageCount: DEFAULT_MAX_CHECKPOINT_PAGE_COUNT,
    truncatePageCount: DEFAULT_TRUNCATE_PAGE_COUNT,
    replicas: [],
  };
  const names = new Map<string, number>();
  urls.forEach((u, i) => {
    const at: Seg[] = ["args", i + 1];
    if (!isUrl(u)) fail(at, `not a replica URL: ${JSON.stringify(redactUrlPasswords(u))}`);
    const r = replicaFromUrlIn(u, {}, ctx, at);
    const prev = names.get(r.name);
    if (prev !== undefined) {
      fail(
        at,
        `duplicate replica name ${JSON.stringify(r.name)} (also args[${prev}]); use a config file to name them`,
      );
    }
    names.set(r.name, i + 1);
    db.replicas.push(r);
  });
  return {
    logging: { level: "info", type: "text", stderr: false },
    shutdownSyncTimeoutMs: DEFAULT_SHUTDOWN_SYNC_TIMEOUT_MS,
    dbs: [db],
    warnings: ctx.warnings,
  };
}

/** The database entry for `dbPath` (`~` expanded, made absolute against `cwd`), if the config has it. */
export function findDb(config: Config, dbPath: string, opts: { cwd?: string } = {}): DbConfig | undefined {
  const want = expandPath(dbPath, opts.cwd ?? process.cwd(), os.homedir());
  return config.dbs.find((db) => db.path === want);
}
