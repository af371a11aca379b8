/** Each destination type's settings, from its keys or its URL, checked; and a replica's `age:`. */
import type { AgeSettings } from "../age/keys.ts";
import { type SseSettings, sseProblem } from "../storage/s3-sse.ts";
import type { Ctx } from "./build.ts";
import { trimCredential } from "./env.ts";
import { formatKeyPath, type Seg } from "./keypath.ts";
import { DEFAULT_S3_REGION, parseS3Host, regionFromEndpointHost } from "./providers.ts";
import type { RawReplica } from "./schema.ts";
import type { AbsSettings, FileSettings, GcsSettings, S3Settings, SftpSettings } from "./types.ts";
import { cleanPath, expandPath, objectPrefixFromUrlPath, type UrlParts } from "./url.ts";

export type KeyFn = (k: string) => Seg[];

/** `age:` checked (schema.ts) and its key files made absolute; an empty block is an error. */
export function buildAge(value: unknown, key: KeyFn, ctx: Ctx): AgeSettings {
  if (!ctx.checkAge) return ctx.fail(key("age"), "age: is read only from a config file");
  const checked = ctx.checkAge(value ?? {});
  if (!checked.ok) return ctx.fail([...key("age"), ...checked.path], checked.message);
  const a = checked.data;
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

export function buildFile(raw: RawReplica, url: UrlParts | undefined, key: KeyFn, ctx: Ctx): FileSettings {
  let p = raw.path;
  if (url) p = cleanPath(`${url.host === "" ? "" : `/${url.host}`}${url.path}`);
  if (p === undefined || p === "") ctx.fail(key(url ? "url" : "path"), "file replica path required");
  return { path: expandPath(p, ctx.cwd, ctx.homedir) };
}

export function buildS3(raw: RawReplica, url: UrlParts | undefined, key: KeyFn, ctx: Ctx): S3Settings {
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

export function buildGcs(raw: RawReplica, url: UrlParts | undefined, key: KeyFn, ctx: Ctx): GcsSettings {
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

export function buildAbs(raw: RawReplica, url: UrlParts | undefined, key: KeyFn, ctx: Ctx): AbsSettings {
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

export function buildSftp(raw: RawReplica, url: UrlParts | undefined, key: KeyFn, ctx: Ctx): SftpSettings {
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
