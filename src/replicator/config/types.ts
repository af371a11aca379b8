/**
 * What a parsed config is: the databases, each with its destinations, and the process settings.
 * Every duration is in milliseconds, every path absolute.
 */

import type { AgeSettings } from "../age/keys.ts";
import type { S3Settings } from "../storage/s3.ts";

export type { S3Settings } from "../storage/s3.ts";

export type ReplicaType = "file" | "s3" | "gcs" | "abs" | "sftp";
export const REPLICA_TYPES: readonly ReplicaType[] = ["file", "s3", "gcs", "abs", "sftp"];

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
  /** How often the shadow WAL is shipped. Undefined = the Replica's default (replica.ts), 1s. */
  syncIntervalMs?: number;
  /** Undefined = no scheduled snapshots (Litestream default; a snapshot is still taken per generation). */
  snapshotIntervalMs?: number;
  /** How long snapshots and WAL are kept; 0 disables retention. Undefined = the Replica's, 24h. */
  retentionMs?: number;
  /** How often retention runs; 0 = never. Undefined = the Replica's default, 1h. */
  retentionCheckIntervalMs?: number;
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
  /*
   * Each of the following is what the file sets; undefined = the Db's default (db.ts DbOptions says
   * what each is and what 0 means).
   */
  monitorIntervalMs?: number;
  checkpointIntervalMs?: number;
  /** Must be > 0 when set. */
  minCheckpointPageCount?: number;
  maxCheckpointPageCount?: number;
  /** Walship key `truncate-page-count`. */
  truncatePageCount?: number;
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
  /**
   * The final sync on SIGTERM gets this long. Walship key `shutdown-sync-timeout`; undefined = the
   * replication's default (run.ts), 10s.
   */
  shutdownSyncTimeoutMs?: number;
  /**
   * Walship key `probe-interval`: how often a destination's failed self-test (probe.ts) is tried
   * again; 0 turns the self-test off. Undefined = the probe's default, 1m.
   */
  probeIntervalMs?: number;
  /**
   * How long a destination's single-writer claim lasts unless renewed (fence.ts). Walship key
   * `claim-ttl`; undefined = DEFAULT_CLAIM_TTL_MS (30s); 0 = no claim (no fencing).
   */
  claimTtlMs?: number;
  dbs: DbConfig[];
  /** One line per ignored or suspicious key, naming its path (`dbs[0].replicas[0].encryption: ...`). */
  warnings: string[];
  /** The file the config came from. */
  source?: string;
}

export const DEFAULT_CONFIG_PATH = "/etc/litestream.yml";
