/**
 * S3 failures as Walship errors: an SDK, network or body failure becomes a STORAGE error naming the
 * object (`s3://bucket/key`), with the store's code, the HTTP status and the attempts in its details,
 * and a message saying what to check for the usual mistakes (a missing bucket, wrong keys, the wrong
 * region, no credentials). Never a secret: only the bucket, key, endpoint and region are named.
 */
import { ErrorCodes, WalshipError } from "../../shared/errors.ts";
import { abortedError, describe, isAbortError } from "./common.ts";

/** What an error names besides the object: the endpoint (if not AWS) and the region signed for. */
export interface S3Place {
  bucket: string;
  endpoint: string | undefined;
  region: string | undefined;
}

/** An SDK, network or body failure as a WalshipError naming the object (`s3://bucket/key`). */
export function s3Error(
  at: S3Place,
  verb: string,
  key: string,
  err: unknown,
  signal: AbortSignal | undefined,
): WalshipError {
  if (err instanceof WalshipError) return err;
  const url = `s3://${at.bucket}/${key}`;
  if (signal?.aborted || isAbortError(err)) return abortedError(verb, url, err);
  const code = s3Code(err);
  const meta = metadata(err);
  const details: Record<string, unknown> = { bucket: at.bucket, key };
  if (code !== undefined) details.s3Code = code;
  if (meta.httpStatusCode !== undefined) details.httpStatus = meta.httpStatusCode;
  if (meta.attempts !== undefined) details.attempts = meta.attempts;
  if (at.endpoint !== undefined) details.endpoint = at.endpoint;
  const tries = meta.attempts !== undefined && meta.attempts > 1 ? ` (after ${meta.attempts} attempts)` : "";
  return new WalshipError(ErrorCodes.STORAGE, `${verb} ${url}: ${explain(at, err, code)}${tries}`, {
    cause: err,
    details,
  });
}

function explain(at: S3Place, err: unknown, code: string | undefined): string {
  const b = JSON.stringify(at.bucket);
  const where = at.endpoint ? ` at ${at.endpoint}` : "";
  const raw = describe(err);
  switch (code) {
    case "NoSuchBucket":
      return `bucket ${b} does not exist${where} (NoSuchBucket)`;
    case "InvalidAccessKeyId":
      return `the access key id is not known${where}; check access-key-id for bucket ${b} (InvalidAccessKeyId)`;
    case "SignatureDoesNotMatch":
      return `the secret access key does not match the access key id; check secret-access-key for bucket ${b} (SignatureDoesNotMatch)`;
    case "AccessDenied":
    case "Forbidden":
      return `access denied to bucket ${b}; check the credentials and the bucket policy (${code}): ${raw}`;
    case "PermanentRedirect":
    case "AuthorizationHeaderMalformed":
    case "IllegalLocationConstraintException":
      return `bucket ${b} is not in region ${JSON.stringify(at.region ?? "")}; set region (${code}): ${raw}`;
    case "CredentialsProviderError":
      return (
        `no credentials for bucket ${b}: set access-key-id and secret-access-key, or provide them ` +
        `through the AWS default chain (AWS_* env, IRSA web identity, EKS Pod Identity, profile, instance role): ${raw}`
      );
    default:
      return code !== undefined && !raw.startsWith(code) ? `${code}: ${raw}` : raw;
  }
}

/** The S3 error code (NoSuchBucket, AccessDenied, ...) or the Node error code (ECONNREFUSED, ...). */
export function s3Code(err: unknown): string | undefined {
  if (typeof err !== "object" || err === null) return undefined;
  const e = err as { name?: unknown; Code?: unknown; code?: unknown; $metadata?: unknown };
  if (typeof e.Code === "string") return e.Code;
  if (e.$metadata !== undefined && typeof e.name === "string" && e.name !== "Error") return e.name;
  if (typeof e.name === "string" && e.name === "CredentialsProviderError") return e.name;
  if (typeof e.code === "string") return e.code;
  return undefined;
}

function metadata(err: unknown): { httpStatusCode?: number; attempts?: number } {
  if (typeof err !== "object" || err === null || !("$metadata" in err)) return {};
  const m = (err as { $metadata?: { httpStatusCode?: unknown; attempts?: unknown } }).$metadata;
  const out: { httpStatusCode?: number; attempts?: number } = {};
  if (typeof m?.httpStatusCode === "number") out.httpStatusCode = m.httpStatusCode;
  if (typeof m?.attempts === "number") out.attempts = m.attempts;
  return out;
}

/** A GET or HEAD of a key that is not there. */
export function isMissingKey(err: unknown): boolean {
  const code = s3Code(err);
  return code === "NoSuchKey" || (code === "NotFound" && metadata(err).httpStatusCode === 404);
}
