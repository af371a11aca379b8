/**
 * What to check when a destination's self-test (probe.ts) fails: the store's own error reduced to a
 * code and an HTTP status (`errorFacts`), and a hint for the usual mistakes (`probeHint`): a missing
 * bucket, wrong credentials, no permission for a step (delete is what retention needs), the wrong
 * region, a skewed clock, an endpoint that cannot be reached. Pure: no I/O, tested with literal
 * errors (test/unit/probe-hints.test.ts). A hint names the bucket and endpoint, never a credential.
 */
import { WalshipError } from "../shared/errors.ts";

/** The four steps of a probe, in order. */
export const PROBE_STEPS = ["write", "read", "list", "delete"] as const;
export type ProbeStep = (typeof PROBE_STEPS)[number];

/** The facts a hint is chosen from. */
export interface ErrorFacts {
  /** The store's or the network's code: NoSuchBucket, AccessDenied, ECONNREFUSED, ... */
  code?: string;
  httpStatus?: number;
  /** The bucket or container, when the error names it. */
  bucket?: string;
  /** The endpoint, when not the provider's default. */
  endpoint?: string;
}

/**
 * The code and status of a failure, from a WalshipError's details (`s3Code`, `azureCode`,
 * `httpStatus`, `sftpStatus`) or, down the cause chain, a Node or SDK error's `code`/`Code`.
 */
export function errorFacts(err: unknown): ErrorFacts {
  const out: ErrorFacts = {};
  let cur: unknown = err;
  for (let depth = 0; cur !== null && typeof cur === "object" && depth < 6; depth++) {
    if (cur instanceof WalshipError) {
      const d = cur.details;
      const code = azureAuthentication(d.azureCode, cur.message) ?? d.s3Code ?? d.azureCode;
      if (out.code === undefined && typeof code === "string") out.code = code;
      // A token endpoint (a service-account key's token_uri, Entra) that answered refused the key;
      // one that did not answer is the endpoint to name.
      if (typeof d.tokenUrl === "string") {
        if (out.code === undefined && typeof d.httpStatus === "number") out.code = "TokenRefused";
        if (out.endpoint === undefined) out.endpoint = d.tokenUrl;
      }
      if (out.code === undefined && typeof d.sftpStatus === "number") out.code = sftpCode(d.sftpStatus);
      if (out.httpStatus === undefined && typeof d.httpStatus === "number") out.httpStatus = d.httpStatus;
      const bucket = d.bucket ?? d.container;
      if (out.bucket === undefined && typeof bucket === "string") out.bucket = bucket;
      if (out.endpoint === undefined && typeof d.endpoint === "string") out.endpoint = d.endpoint;
    } else {
      const e = cur as { code?: unknown; Code?: unknown; name?: unknown; level?: unknown; message?: unknown };
      const code = typeof e.Code === "string" ? e.Code : typeof e.code === "string" ? e.code : undefined;
      if (out.code === undefined && code !== undefined) out.code = code;
      if (out.code === undefined) {
        const ssh = sshCode(e.level, e.message);
        if (ssh !== undefined) out.code = ssh;
      }
      if (out.code === undefined && (e.name === "TimeoutError" || e.name === "CredentialsProviderError"))
        out.code = e.name;
    }
    cur = (cur as { cause?: unknown }).cause;
  }
  return out;
}

/**
 * Azurite answers a bad signature with AuthorizationFailure ("Server failed to authenticate the
 * request"), the code Azure keeps for a refused operation (a firewall rule); Azure itself says
 * AuthenticationFailed. The message tells them apart.
 */
function azureAuthentication(code: unknown, message: string): string | undefined {
  return code === "AuthorizationFailure" && /failed to authenticate/i.test(message)
    ? "AuthenticationFailed"
    : undefined;
}

/**
 * ssh2's errors carry no code: a refused login has `level: "client-authentication"`, a host key our
 * hostVerifier refused the message "Host denied (verification failed)".
 */
function sshCode(level: unknown, message: unknown): string | undefined {
  if (level === "client-authentication") return "SSH_AUTH_FAILED";
  if (typeof message === "string" && /^Host denied \(verification failed\)/.test(message))
    return "SSH_HOST_KEY_REJECTED";
  return undefined;
}

/** SFTP status codes (draft-ietf-secsh-filexfer-02) as names. */
function sftpCode(status: number): string {
  return status === 2 ? "NO_SUCH_FILE" : status === 3 ? "PERMISSION_DENIED" : `SFTP_STATUS_${status}`;
}

/** What each step needs, by destination type: the permission to grant. */
const NEEDS: Record<string, Record<ProbeStep, string>> = {
  s3: { write: "s3:PutObject", read: "s3:GetObject", list: "s3:ListBucket", delete: "s3:DeleteObject" },
  gcs: {
    write: "storage.objects.create",
    read: "storage.objects.get",
    list: "storage.objects.list",
    delete: "storage.objects.delete",
  },
  abs: {
    write: "write (SAS permission w, or a Storage Blob Data Contributor role)",
    read: "read (SAS permission r)",
    list: "list (SAS permission l)",
    delete: "delete (SAS permission d)",
  },
};

/** What to check when a key is refused, by destination type. */
const CHECK_KEY: Record<string, string> = {
  s3: "check the destination's Secret (key id and secret belong together, no stray characters)",
  gcs: "check credentials-file or GOOGLE_APPLICATION_CREDENTIALS: the service-account key may be deleted or rotated, or the Workload Identity binding missing",
  abs: "check account-name with its account-key (or account-key-file), or the SAS token and its expiry; with Workload Identity, the client id and its federated credential",
  sftp: "check user and key-path (or password): the key's public half must be in the user's authorized_keys on the server",
};

/** Why a step is needed, for the permission hints. */
const WHY: Record<ProbeStep, string> = {
  write: "every sync and snapshot writes",
  read: "restore and validation read",
  list: "sync and restore list the layout",
  delete:
    "retention deletes old snapshots and WAL; grant it, or set retention to 0s to keep everything (the bucket then grows without bound)",
};

const CODES = {
  missingBucket: ["NoSuchBucket", "ContainerNotFound", "NoSuchContainer"],
  denied: [
    "AccessDenied",
    "Forbidden",
    "AuthorizationPermissionMismatch",
    "AuthorizationFailure",
    "AllAccessDisabled",
    "EACCES",
    "EPERM",
    "EROFS",
    "PERMISSION_DENIED",
  ],
  region: [
    "PermanentRedirect",
    "AuthorizationHeaderMalformed",
    "IllegalLocationConstraintException",
    "InvalidRegion",
  ],
  clock: ["RequestTimeTooSkewed", "RequestExpired"],
  credentials: [
    "TokenRefused",
    "SSH_AUTH_FAILED",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "InvalidToken",
    "ExpiredToken",
    "InvalidClientTokenId",
    "AuthenticationFailed",
    "InvalidAuthenticationInfo",
    "CredentialsProviderError",
  ],
  unreachable: [
    "ECONNREFUSED",
    "ENOTFOUND",
    "EAI_AGAIN",
    "ETIMEDOUT",
    "ECONNRESET",
    "EHOSTUNREACH",
    "ENETUNREACH",
    "TimeoutError",
    "UND_ERR_CONNECT_TIMEOUT",
    "EPROBETIMEOUT",
  ],
};

/**
 * A hint for a failed probe step, or undefined when the error is not one of the usual mistakes (the
 * store's message then stands alone). `region` is the one the client signs for (s3).
 */
export function probeHint(
  type: string,
  step: ProbeStep,
  facts: ErrorFacts,
  where: { region?: string; location?: string } = {},
): string | undefined {
  const code = facts.code;
  const noun = type === "abs" ? "container" : "bucket";
  const bucket = facts.bucket !== undefined ? `${noun} ${JSON.stringify(facts.bucket)}` : `the ${noun}`;
  const at = facts.endpoint ?? where.location;
  const on = at !== undefined ? ` at ${at}` : "";
  const is = (list: readonly string[]) => code !== undefined && list.includes(code);
  if (is(CODES.missingBucket)) {
    return `missing ${noun}: ${bucket} does not exist${on}; create it, or correct the ${noun} name in the destination`;
  }
  if (code === "SSH_HOST_KEY_REJECTED") {
    return `unknown host key: the server${on} presented a host key that is neither pinned (host-key, host-key-file) nor in known_hosts; if the server's key really changed (a reinstall), pin the new one shown in the message, otherwise check that the host is the backup server`;
  }
  if (is(CODES.region)) {
    return `wrong region: ${bucket} is not in region ${JSON.stringify(where.region ?? "")}; set the destination's region to the bucket's`;
  }
  if (is(CODES.clock)) {
    return "clock skew: this node's clock differs from the store's by more than the signature allows (15 minutes on S3); fix the node's time sync (NTP)";
  }
  if (code === "TokenRefused") {
    return `wrong credentials: the token endpoint${on} refused the key (${code}); ${CHECK_KEY[type] ?? CHECK_KEY.s3}`;
  }
  if (is(CODES.credentials)) {
    return `wrong credentials: the store does not accept the key${on} (${code}); ${CHECK_KEY[type] ?? CHECK_KEY.s3}`;
  }
  if (is(CODES.denied) || (code === undefined && facts.httpStatus === 403)) {
    if (type === "sftp" || type === "file") {
      return `no permission to ${step}: the ${type === "sftp" ? "SFTP user" : "replicator"} may not ${step} files under the destination's path${on}; give it write access there, or set path to a directory it owns (in a chroot, one under the user's home); ${WHY[step]}`;
    }
    const need = NEEDS[type]?.[step] ?? `${step} files in the destination's directory`;
    return `no permission to ${step}: the credentials lack ${need} on ${bucket}; ${WHY[step]}`;
  }
  if (is(CODES.unreachable)) {
    return `unreachable endpoint: ${at ?? "the store"} cannot be reached from the replicator (${code}); check the endpoint (host and port), DNS, and NetworkPolicies or egress rules`;
  }
  if (type === "gcs" && facts.httpStatus === 404 && step === "write") {
    return `missing bucket: ${bucket} does not exist${on}; create it, or correct the bucket name in the destination`;
  }
  if (facts.httpStatus === 401) {
    return `wrong credentials: the store refused them (HTTP 401); ${CHECK_KEY[type] ?? "check the destination's Secret"}`;
  }
  return undefined;
}
