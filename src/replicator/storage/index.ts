/** Builds the storage client a destination's config asks for. */
import { readFileSync } from "node:fs";
import { ErrorCodes, WalshipError } from "../../shared/errors.ts";
import type { Logger } from "../../shared/log.ts";
import type { AbsSettings, ReplicaConfig, SftpSettings } from "../config.ts";
import { AbsReplicaClient, type AbsReplicaClientOptions } from "./abs.ts";
import { workloadIdentityFromEnv } from "./azure-token.ts";
import type { ReplicaClient } from "./client.ts";
import { FileReplicaClient } from "./file.ts";
import { GcsReplicaClient } from "./gcs.ts";
import { S3ReplicaClient } from "./s3.ts";
import { SftpReplicaClient, type SftpReplicaClientOptions } from "./sftp.ts";

export function createReplicaClient(
  cfg: ReplicaConfig,
  where: string,
  opts: { log?: Logger; env?: NodeJS.ProcessEnv } = {},
): ReplicaClient {
  const env = opts.env ?? process.env;
  switch (cfg.type) {
    case "file": {
      if (!cfg.file?.path) throw new WalshipError(ErrorCodes.CONFIG, `${where}: file replica needs a path`);
      return new FileReplicaClient(cfg.file.path);
    }
    case "s3": {
      if (!cfg.s3?.bucket) {
        throw new WalshipError(ErrorCodes.CONFIG, `${where}: s3 replica needs a bucket`, {
          details: { path: `${where}.bucket` },
        });
      }
      return new S3ReplicaClient(cfg.s3);
    }
    case "gcs": {
      const g = cfg.gcs;
      if (!g?.bucket) throw needs(where, "gcs", "bucket");
      return new GcsReplicaClient({
        bucket: g.bucket,
        path: g.path,
        ...(g.endpoint !== undefined
          ? { endpoint: g.endpoint, authWithEndpoint: g.authWithEndpoint === true }
          : {}),
        ...(g.credentialsFile !== undefined ? { credentialsFile: g.credentialsFile } : {}),
      });
    }
    case "abs": {
      const a = cfg.abs;
      if (!a?.bucket) throw needs(where, "abs", "bucket");
      return new AbsReplicaClient({ ...absCredentials(a, where, env), container: a.bucket, path: a.path });
    }
    case "sftp": {
      const s = cfg.sftp;
      if (!s?.host) throw needs(where, "sftp", "host");
      if (!s.user) throw needs(where, "sftp", "user");
      return new SftpReplicaClient(sftpOptions(s, where, opts.log));
    }
    default:
      throw new WalshipError(
        ErrorCodes.CONFIG,
        `${where}: replica type "${String(cfg.type)}" is not supported`,
        {
          details: { path: `${where}.type` },
        },
      );
  }
}

function needs(where: string, type: string, key: string): WalshipError {
  return new WalshipError(ErrorCodes.CONFIG, `${where}: ${type} replica needs ${key}`, {
    details: { path: `${where}.${key}` },
  });
}

/** The first credential that is set: account key (key, file), SAS (token, file), workload identity. */
function absCredentials(
  a: AbsSettings,
  where: string,
  env: NodeJS.ProcessEnv,
): Omit<AbsReplicaClientOptions, "container" | "path"> {
  const out: Omit<AbsReplicaClientOptions, "container" | "path"> = {};
  if (a.accountName !== undefined) out.accountName = a.accountName;
  if (a.endpoint !== undefined) out.endpoint = a.endpoint;
  const accountKey = a.accountKey ?? secretFile(a.accountKeyFile, `${where}.account-key-file`);
  const sasToken = a.sasToken ?? secretFile(a.sasTokenFile, `${where}.sas-token-file`);
  if (accountKey) out.accountKey = accountKey;
  else if (sasToken) out.sasToken = sasToken;
  else {
    const wi = workloadIdentityFromEnv(env);
    if (wi) out.workloadIdentity = wi;
  }
  return out;
}

function sftpOptions(s: SftpSettings, where: string, log: Logger | undefined): SftpReplicaClientOptions {
  const passphrase = s.keyPassphrase ?? secretFile(s.keyPassphraseFile, `${where}.key-passphrase-file`);
  const password = s.password ?? secretFile(s.passwordFile, `${where}.password-file`);
  const pinned = [
    ...(s.hostKeys ?? []),
    ...(secretFile(s.hostKeyFile, `${where}.host-key-file`) ?? "")
      .split("\n")
      .map((l) => l.trim())
      .filter((l) => l !== "" && !l.startsWith("#")),
  ];
  return {
    host: s.host,
    user: s.user as string,
    path: s.path,
    ...(password !== undefined ? { password } : {}),
    ...(s.keyPath !== undefined ? { keyPath: s.keyPath } : {}),
    ...(passphrase !== undefined ? { passphrase } : {}),
    ...(pinned.length > 0 ? { hostKeys: pinned } : {}),
    ...(s.knownHostsFile !== undefined ? { knownHostsFiles: [s.knownHostsFile] } : {}),
    ...(s.insecureIgnoreHostKey ? { insecureIgnoreHostKey: true } : {}),
    ...(log !== undefined ? { log } : {}),
  };
}

/** A secret kept in a file (a mounted Secret), trimmed; a CONFIG error naming the key if unreadable. */
function secretFile(file: string | undefined, key: string): string | undefined {
  if (file === undefined) return undefined;
  try {
    return readFileSync(file, "utf8").trim();
  } catch (err) {
    throw new WalshipError(ErrorCodes.CONFIG, `${key}: cannot read ${file}: ${(err as Error).message}`, {
      cause: err,
      details: { path: key },
    });
  }
}
