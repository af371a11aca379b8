/**
 * The keys a replica mapping takes, by type, with no schema library: build.ts uses them on the path a
 * bare replica URL takes, which loads no zod. schema.ts's replicaShape has exactly these keys
 * (test/unit/config-keys.test.ts).
 */
import type { ReplicaType } from "./types.ts";

/** Keys each replica type reads, beyond the common ones. */
export const TYPE_KEYS: Record<ReplicaType, readonly string[]> = {
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
export const COMMON_REPLICA_KEYS = [
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

/** Every key of a replica mapping. */
export const REPLICA_KEYS: readonly string[] = [
  ...new Set([...COMMON_REPLICA_KEYS, ...Object.values(TYPE_KEYS).flat()]),
];
