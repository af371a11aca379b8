/**
 * The storage client a destination's config asks for: each client takes its own options, and this
 * maps the config's settings onto them (storage/ never reads the config). Each kind's module (and its
 * SDK: the AWS SDK takes about 70 ms to load and make its client, even from the compile cache) is
 * imported only when a destination of that kind is used, so a command on a file replica starts
 * without any cloud SDK.
 */
import { ErrorCodes, WalshipError } from "../../shared/errors.ts";
import type { Logger } from "../../shared/log.ts";
import type { AbsReplicaClientOptions } from "../storage/abs.ts";
import type { ReplicaClient } from "../storage/client.ts";
import { SealedReplicaClient, sealingFor } from "../storage/sealed.ts";
import type { SftpReplicaClientOptions } from "../storage/sftp.ts";
import type { AbsSettings, ReplicaConfig, SftpSettings } from "./types.ts";

/**
 * The client for a destination, inside the sealing layer (sealed.ts): age-encrypted with `age:`,
 * plaintext otherwise, and either way refusing objects of the other form. `writing`: for the
 * replicator, whose age keys must include recipients. An S3 destination gets the client of
 * s3-http.ts when it fits (keys given in the config, as files or as AWS_* variables; region known)
 * and `WALSHIP_S3_CLIENT` is not `sdk`, else the AWS SDK's (s3-sdk.ts).
 */
export async function createReplicaClient(
  cfg: ReplicaConfig,
  where: string,
  opts: { log?: Logger; env?: NodeJS.ProcessEnv; writing?: boolean } = {},
): Promise<SealedReplicaClient> {
  // The sealing is checked first: a key problem is reported before any SDK loads.
  const sealing = sealingFor(cfg.age, where, opts.writing ?? false);
  return new SealedReplicaClient(await destinationClient(cfg, where, opts), sealing);
}

async function destinationClient(
  cfg: ReplicaConfig,
  where: string,
  opts: { log?: Logger; env?: NodeJS.ProcessEnv },
): Promise<ReplicaClient> {
  const env = opts.env ?? process.env;
  switch (cfg.type) {
    case "file": {
      if (!cfg.file?.path) throw new WalshipError(ErrorCodes.CONFIG, `${where}: file replica needs a path`);
      const { FileReplicaClient } = await import("../storage/file.ts");
      return new FileReplicaClient(cfg.file.path);
    }
    case "s3": {
      if (!cfg.s3?.bucket) {
        throw new WalshipError(ErrorCodes.CONFIG, `${where}: s3 replica needs a bucket`, {
          details: { path: `${where}.bucket` },
        });
      }
      if (env.WALSHIP_S3_CLIENT !== "sdk") {
        // Keys given and the region known: our own requests, no AWS SDK (s3-http.ts).
        const { httpFits, S3HttpReplicaClient } = await import("../storage/s3-http.ts");
        if (httpFits(cfg.s3, env)) {
          opts.log?.debug({ replica: where, bucket: cfg.s3.bucket }, "s3: requests without the AWS SDK");
          return new S3HttpReplicaClient(cfg.s3, { ...(opts.log ? { log: opts.log } : {}), env });
        }
      }
      const { S3ReplicaClient } = await import("../storage/s3-sdk.ts");
      return new S3ReplicaClient(cfg.s3);
    }
    case "gcs": {
      const g = cfg.gcs;
      if (!g?.bucket) throw needs(where, "gcs", "bucket");
      const { GcsReplicaClient } = await import("../storage/gcs.ts");
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
      const [{ AbsReplicaClient }, { workloadIdentityFromEnv }] = await Promise.all([
        import("../storage/abs.ts"),
        import("../storage/azure-token.ts"),
      ]);
      return new AbsReplicaClient({
        ...absCredentials(a, env, workloadIdentityFromEnv),
        container: a.bucket,
        path: a.path,
      });
    }
    case "sftp": {
      const s = cfg.sftp;
      if (!s?.host) throw needs(where, "sftp", "host");
      if (!s.user) throw needs(where, "sftp", "user");
      const { SftpReplicaClient } = await import("../storage/sftp.ts");
      return new SftpReplicaClient(sftpOptions(s, opts.log));
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
  env: NodeJS.ProcessEnv,
  workloadIdentityFromEnv: (env: NodeJS.ProcessEnv) => AbsReplicaClientOptions["workloadIdentity"],
): Omit<AbsReplicaClientOptions, "container" | "path"> {
  const out: Omit<AbsReplicaClientOptions, "container" | "path"> = {};
  if (a.accountName !== undefined) out.accountName = a.accountName;
  if (a.endpoint !== undefined) out.endpoint = a.endpoint;
  if (a.accountKey) out.accountKey = a.accountKey;
  else if (a.accountKeyFile) out.accountKeyFile = a.accountKeyFile;
  else if (a.sasToken) out.sasToken = a.sasToken;
  else if (a.sasTokenFile) out.sasTokenFile = a.sasTokenFile;
  else {
    const wi = workloadIdentityFromEnv(env);
    if (wi) out.workloadIdentity = wi;
  }
  return out;
}

function sftpOptions(s: SftpSettings, log: Logger | undefined): SftpReplicaClientOptions {
  return {
    host: s.host,
    user: s.user as string,
    path: s.path,
    ...(s.password !== undefined ? { password: s.password } : {}),
    ...(s.passwordFile !== undefined ? { passwordFile: s.passwordFile } : {}),
    ...(s.keyPath !== undefined ? { keyPath: s.keyPath } : {}),
    ...(s.keyPassphrase !== undefined ? { passphrase: s.keyPassphrase } : {}),
    ...(s.keyPassphraseFile !== undefined ? { passphraseFile: s.keyPassphraseFile } : {}),
    ...(s.hostKeys !== undefined ? { hostKeys: s.hostKeys } : {}),
    ...(s.hostKeyFile !== undefined ? { hostKeyFile: s.hostKeyFile } : {}),
    ...(s.knownHostsFile !== undefined ? { knownHostsFiles: [s.knownHostsFile] } : {}),
    ...(s.insecureIgnoreHostKey ? { insecureIgnoreHostKey: true } : {}),
    ...(log !== undefined ? { log } : {}),
  };
}
