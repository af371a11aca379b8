/**
 * The credentials each destination takes from Secrets, in one place: the spec field (for messages),
 * the Secret key reference, the file the projected volume `walship-creds-<dest>` puts it in, and the
 * config key that names that file. The volumes, the mounts, the rendered config and the Secret checks
 * all come from this list, so a credential only ever travels Secret -> kubelet -> read-only file ->
 * the replicator, never through the config text or the environment. Pure.
 */
import type { Destination } from "../../api/v1alpha1/index.ts";
import { CREDENTIALS_DIR } from "./names.ts";

export interface SecretKeyRef {
  name: string;
  key: string;
}

export interface CredentialFile {
  /** The spec field, relative to the destination (`s3.credentials.accessKeyId`). */
  field: string;
  ref: SecretKeyRef;
  /** The file name inside the destination's credentials directory. */
  file: string;
  /**
   * The replicator's config key that names the file: `key` (a scalar), or `parent.key[]` (an item of
   * a list under a mapping, as `age.identity-files[]`).
   */
  configKey: string;
}

/** What a destination takes from Secrets (nothing for workload identity or a file destination). */
export function destinationCredentials(d: Destination): CredentialFile[] {
  const out: CredentialFile[] = [];
  const add = (field: string, ref: SecretKeyRef | undefined, file: string, configKey: string) => {
    if (ref) out.push({ field, ref, file, configKey });
  };
  if (d.s3 && d.s3.credentials.fromServiceAccount !== true) {
    add("s3.credentials.accessKeyId", d.s3.credentials.accessKeyId, "access-key-id", "access-key-id-file");
    add(
      "s3.credentials.secretAccessKey",
      d.s3.credentials.secretAccessKey,
      "secret-access-key",
      "secret-access-key-file",
    );
  }
  if (d.sftp) {
    add("sftp.privateKey", d.sftp.privateKey, "private-key", "key-path");
    add("sftp.passphrase", d.sftp.passphrase, "passphrase", "key-passphrase-file");
    add("sftp.password", d.sftp.password, "password", "password-file");
    add("sftp.hostKey", d.sftp.hostKey, "host-key", "host-key-file");
  }
  if (d.gcs && d.gcs.credentials.fromServiceAccount !== true) {
    add(
      "gcs.credentials.serviceAccountKey",
      d.gcs.credentials.serviceAccountKey,
      "service-account-key",
      "credentials-file",
    );
  }
  if (d.s3?.serverSideEncryption?.customerKey) {
    add(
      "s3.serverSideEncryption.customerKey",
      d.s3.serverSideEncryption.customerKey,
      "sse-customer-key",
      "sse-customer-key-path",
    );
  }
  d.age?.identities.forEach((ref, i) => {
    add(`age.identities[${i}]`, ref, `age-identity-${i}`, "age.identity-files[]");
  });
  d.age?.recipients.forEach((ref, i) => {
    add(`age.recipients[${i}]`, ref, `age-recipient-${i}`, "age.recipient-files[]");
  });
  if (d.abs && d.abs.credentials.fromServiceAccount !== true) {
    add("abs.credentials.accountKey", d.abs.credentials.accountKey, "account-key", "account-key-file");
    add("abs.credentials.sasToken", d.abs.credentials.sasToken, "sas-token", "sas-token-file");
  }
  return out;
}

/** Sets a credential's config key (`key`, or `parent.key[]`, see CredentialFile) in a replica's config. */
export function setConfigKey(replica: Record<string, unknown>, configKey: string, value: string): void {
  const dot = configKey.indexOf(".");
  if (dot < 0) {
    replica[configKey] = value;
    return;
  }
  const name = configKey.slice(0, dot);
  const parent = (replica[name] ?? {}) as Record<string, unknown>;
  replica[name] = parent;
  const key = configKey.slice(dot + 1).replace(/\[\]$/, "");
  parent[key] = configKey.endsWith("[]") ? [...((parent[key] as unknown[] | undefined) ?? []), value] : value;
}

/** The absolute path of one credential file in the pod. */
export function credentialPath(destinationName: string, file: string): string {
  return `${CREDENTIALS_DIR}/${destinationName}/${file}`;
}
