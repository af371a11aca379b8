/**
 * The destinations of a SqliteReplica (walship.dev/v1alpha1): S3 and the S3-compatibles, SFTP, GCS,
 * Azure Blob Storage and a file path, each with its credentials, and client-side encryption (age).
 * Part of the SqliteReplica schema (sqlitereplica.ts, which re-exports all of this), so the single
 * source of spec.destinations in crds/walship.dev_sqlitereplicas.yaml.
 */
import { z } from "zod";
import { ConfigText, cel, DnsLabel, DnsSubdomain, SecretKeyRef } from "./common.ts";

export const S3Credentials = cel(
  z
    .object({
      accessKeyId: SecretKeyRef.optional().describe("The access key id, from a Secret."),
      secretAccessKey: SecretKeyRef.optional().describe("The secret access key, from a Secret."),
      fromServiceAccount: z
        .boolean()
        .optional()
        .describe(
          "Use the pod's service-account identity (IRSA, EKS Pod Identity, or any AWS SDK default " +
            "credential source) instead of keys.",
        ),
    })
    .describe("Either both key references, or fromServiceAccount: true."),
  [
    {
      rule:
        "has(self.fromServiceAccount) && self.fromServiceAccount ? " +
        "!has(self.accessKeyId) && !has(self.secretAccessKey) : " +
        "has(self.accessKeyId) && has(self.secretAccessKey)",
      message: "set both accessKeyId and secretAccessKey, or fromServiceAccount: true (not both)",
      check: (c) =>
        c.fromServiceAccount === true
          ? c.accessKeyId === undefined && c.secretAccessKey === undefined
          : c.accessKeyId !== undefined && c.secretAccessKey !== undefined,
    },
  ],
);

export const S3ServerSideEncryption = cel(
  z.object({
    mode: z
      .enum(["SSE-S3", "SSE-KMS", "SSE-C"])
      .describe(
        "SSE-S3: the store's own keys; SSE-KMS: a KMS key (kmsKeyId, else the store's default); " +
          "SSE-C: a customer key from a Secret, sent with every request (needs an https endpoint; " +
          "Litestream v0.3.13 cannot read such objects).",
      ),
    kmsKeyId: ConfigText.min(1).max(2048).optional().describe("The KMS key id or ARN, with SSE-KMS."),
    customerKey: SecretKeyRef.optional().describe(
      "With SSE-C: a Secret key holding the 256-bit key in base64 (openssl rand -base64 32).",
    ),
  }),
  [
    {
      rule: "!has(self.kmsKeyId) || self.mode == 'SSE-KMS'",
      message: "kmsKeyId goes with mode SSE-KMS",
      fieldPath: ".kmsKeyId",
      check: (e) => e.kmsKeyId === undefined || e.mode === "SSE-KMS",
    },
    {
      rule: "has(self.customerKey) == (self.mode == 'SSE-C')",
      message: "customerKey is required with mode SSE-C, and only with it",
      check: (e) => (e.customerKey !== undefined) === (e.mode === "SSE-C"),
    },
  ],
);

export const S3Destination = z.object({
  bucket: z
    .string()
    .min(3)
    .max(63)
    .regex(/^[a-z0-9][a-z0-9.-]*[a-z0-9]$/, "must be an S3 bucket name")
    .describe("The bucket."),
  path: ConfigText.max(1024)
    .regex(/^[^/]/, "must not start with '/' (object stores that clean paths would hide the objects)")
    .optional()
    .describe("Key prefix in the bucket. Each pod replicates under <path>/<pod name>."),
  endpoint: ConfigText.min(1)
    .max(1024)
    .optional()
    .describe("The store's URL for anything that is not AWS, e.g. http://minio.storage:9000."),
  region: ConfigText.min(1)
    .max(128)
    .optional()
    .describe("The region; looked up (AWS) or us-east-1 when unset."),
  forcePathStyle: z
    .boolean()
    .optional()
    .describe("Path-style requests; on by default when an endpoint is set."),
  skipVerify: z.boolean().optional().describe("Skip TLS certificate checks (self-signed stores only)."),
  credentials: S3Credentials,
  serverSideEncryption: S3ServerSideEncryption.optional().describe(
    "Encryption by the store of what it keeps on disk (it sees the data). For encryption the store " +
      "cannot read, use the destination's age.",
  ),
});

/** An object-store prefix: relative, as for S3. */
const ObjectPath = ConfigText.max(1024)
  .regex(/^[^/]/, "must not start with '/' (object stores that clean paths would hide the objects)")
  .optional()
  .describe("Key prefix. Each pod replicates under <path>/<pod name>.");

export const SftpDestination = cel(
  z.object({
    host: ConfigText.min(1)
      .max(260)
      .regex(/^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)(:[0-9]{1,5})?$/, "must be host or host:port")
      .describe("The SSH server, host or host:port (22 when absent)."),
    user: ConfigText.min(1).max(64).describe("The login user."),
    path: ConfigText.max(1024)
      .optional()
      .describe(
        "The remote directory (relative to the login directory unless it starts with '/'). Each pod " +
          "replicates under <path>/<pod name>.",
      ),
    privateKey: SecretKeyRef.optional().describe("The private key (OpenSSH or PEM), from a Secret."),
    passphrase: SecretKeyRef.optional().describe("The private key's passphrase, from a Secret."),
    password: SecretKeyRef.optional().describe("A password instead of a key, from a Secret."),
    hostKey: SecretKeyRef.optional().describe(
      "The server's public host key(s), one 'ssh-ed25519 AAAA...' line each, from a Secret.",
    ),
    insecureIgnoreHostKey: z
      .boolean()
      .optional()
      .describe("Accept any host key (Litestream v0.3.13's behaviour); instead of hostKey."),
  }),
  [
    {
      rule: "has(self.privateKey) != has(self.password)",
      message: "set exactly one of privateKey or password",
      check: (d) => (d.privateKey !== undefined) !== (d.password !== undefined),
    },
    {
      rule: "!has(self.passphrase) || has(self.privateKey)",
      message: "passphrase needs privateKey",
      fieldPath: ".passphrase",
      check: (d) => d.passphrase === undefined || d.privateKey !== undefined,
    },
    {
      rule: "has(self.hostKey) != (has(self.insecureIgnoreHostKey) && self.insecureIgnoreHostKey)",
      message: "set hostKey, or insecureIgnoreHostKey: true (not both)",
      check: (d) => (d.hostKey !== undefined) !== (d.insecureIgnoreHostKey === true),
    },
  ],
);

/** Keys from a Secret, or the pod's own cloud identity (workload identity). */
const fromServiceAccount = z
  .boolean()
  .optional()
  .describe(
    "Use the pod's workload identity (GKE Workload Identity, Azure Workload Identity) instead of a key.",
  );

export const GcsDestination = z.object({
  bucket: ConfigText.min(3)
    .max(222)
    .regex(/^[a-z0-9][a-z0-9._-]*[a-z0-9]$/, "must be a GCS bucket name"),
  path: ObjectPath,
  endpoint: ConfigText.min(1).max(1024).optional().describe("Another JSON API endpoint (an emulator)."),
  credentials: cel(
    z.object({
      serviceAccountKey: SecretKeyRef.optional().describe("A service-account key (JSON), from a Secret."),
      fromServiceAccount,
    }),
    [
      {
        rule: "has(self.serviceAccountKey) != (has(self.fromServiceAccount) && self.fromServiceAccount)",
        message: "set serviceAccountKey, or fromServiceAccount: true (not both)",
        check: (c) => (c.serviceAccountKey !== undefined) !== (c.fromServiceAccount === true),
      },
    ],
  ),
});

export const AbsDestination = z.object({
  accountName: ConfigText.min(3)
    .max(24)
    .regex(/^[a-z0-9]+$/, "must be a storage account name"),
  container: ConfigText.min(3)
    .max(63)
    .regex(/^[a-z0-9][a-z0-9-]*[a-z0-9]$/, "must be a container name"),
  path: ObjectPath,
  endpoint: ConfigText.min(1)
    .max(1024)
    .optional()
    .describe("The account URL; default https://<accountName>.blob.core.windows.net."),
  credentials: cel(
    z.object({
      accountKey: SecretKeyRef.optional().describe("The account's shared key, from a Secret."),
      sasToken: SecretKeyRef.optional().describe("A SAS token for the container, from a Secret."),
      fromServiceAccount,
    }),
    [
      {
        rule:
          "(has(self.accountKey) ? 1 : 0) + (has(self.sasToken) ? 1 : 0) + " +
          "(has(self.fromServiceAccount) && self.fromServiceAccount ? 1 : 0) == 1",
        message: "set exactly one of accountKey, sasToken or fromServiceAccount: true",
        check: (c) =>
          (c.accountKey ? 1 : 0) + (c.sasToken ? 1 : 0) + (c.fromServiceAccount === true ? 1 : 0) === 1,
      },
    ],
  ),
});

export const FileDestination = cel(
  z.object({
    claimName: DnsSubdomain.describe("A PersistentVolumeClaim in the namespace, mounted into the sidecar."),
    path: ConfigText.max(1024)
      .regex(/^[^/]/, "must be a relative path")
      .optional()
      .describe("A directory inside the claim. Each pod replicates under <path>/<pod name>."),
  }),
  [
    {
      rule: "!has(self.path) || !self.path.matches('(^|/)[.][.](/|$)')",
      message: "path must not contain '..'",
      fieldPath: ".path",
      check: (f) => f.path === undefined || !/(^|\/)\.\.(\/|$)/.test(f.path),
    },
  ],
);

/** Client-side encryption of a destination, as Litestream v0.3.13's age: (X25519 keys only). */
export const AgeEncryption = z.object({
  identities: z
    .array(SecretKeyRef)
    .min(1)
    .max(16)
    .describe(
      "Secret keys holding age identities (AGE-SECRET-KEY-1..., an age-keygen file): what opens the " +
        "replica. Keep the old identity here after a rotation until its backups are gone.",
    ),
  recipients: z
    .array(SecretKeyRef)
    .min(1)
    .max(16)
    .describe(
      "Secret keys holding age recipients (age1..., one per line): what new objects are encrypted " +
        "to. At least one must belong to an identity above.",
    ),
  allowPlaintextGenerations: z
    .boolean()
    .optional()
    .describe(
      "Start encrypting on a path that already holds plaintext backups (kept beside, readable only " +
        "without age). Off: such a path is refused, as a replica mixing both cannot be restored.",
    ),
});

export const Destination = cel(
  z.object({
    name: DnsLabel.max(40).describe(
      "Unique among the destinations; names the replica in status and metrics.",
    ),
    s3: S3Destination.optional().describe("An S3 or S3-compatible bucket."),
    file: FileDestination.optional().describe("A directory on a PersistentVolumeClaim."),
    sftp: SftpDestination.optional().describe("A directory on an SSH server (SFTP)."),
    gcs: GcsDestination.optional().describe("A Google Cloud Storage bucket."),
    abs: AbsDestination.optional().describe("An Azure Blob Storage container."),
    age: AgeEncryption.optional().describe(
      "Encrypt every object with age before it leaves the pod (Litestream v0.3.13 compatible); keys " +
        "from Secrets, never in the ConfigMap.",
    ),
  }),
  [
    {
      rule:
        "(has(self.s3) ? 1 : 0) + (has(self.file) ? 1 : 0) + (has(self.sftp) ? 1 : 0) + " +
        "(has(self.gcs) ? 1 : 0) + (has(self.abs) ? 1 : 0) == 1",
      message: "set exactly one of s3, file, sftp, gcs or abs",
      check: (d) =>
        (d.s3 ? 1 : 0) + (d.file ? 1 : 0) + (d.sftp ? 1 : 0) + (d.gcs ? 1 : 0) + (d.abs ? 1 : 0) === 1,
    },
  ],
);

export type Destination = z.output<typeof Destination>;
export type S3Destination = z.output<typeof S3Destination>;
export type FileDestination = z.output<typeof FileDestination>;
