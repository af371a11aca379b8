/**
 * S3 server-side encryption, as a destination option: SSE-S3 (`server-side-encryption: AES256`, the
 * store's own keys), SSE-KMS (`aws:kms`, with an optional `sse-kms-key-id`) and SSE-C (a 256-bit
 * customer key, base64, from `sse-customer-key` or the file `sse-customer-key-path`, the names
 * Litestream v0.5 uses; v0.3.13 has none of these). The store encrypts what it keeps on its disks;
 * it sees the plaintext on the way in. For encryption the store cannot read, use `age:`.
 *
 * Rules kept here:
 * - SSE-C excludes the other two; with SSE-C every write, part and read carries the key, so a reader
 *   without it (Litestream v0.3.13, `aws s3 cp` without `--sse-c`) gets an error, never the data.
 * - SSE-C is refused over `http://`: the key would travel in clear (AWS and MinIO refuse it too).
 * - The key is checked (base64 of exactly 32 bytes) and never echoed; a key file is read again at
 *   most every `refreshMs` (a rotated Secret), though objects written under the old key then need the
 *   old key to be read: rotate SSE-C by starting a new path.
 * - SSE-S3 and SSE-KMS need nothing on reads: the store decrypts for whoever may read the object.
 */
import { readFile } from "node:fs/promises";
import { ErrorCodes, WalshipError } from "../../shared/errors.ts";

export const DEFAULT_SSE_KEY_REFRESH_MS = 10_000;

export interface SseSettings {
  /** `server-side-encryption`: SSE-S3 (`AES256`) or SSE-KMS (`aws:kms`). */
  serverSideEncryption?: "AES256" | "aws:kms";
  /** `sse-kms-key-id`: the KMS key (implies `aws:kms`); undefined = the store's default key. */
  kmsKeyId?: string;
  /** `sse-customer-key`: SSE-C, base64 of a 256-bit key. */
  customerKey?: string;
  /** `sse-customer-key-path`: a file holding that base64 key (how the operator hands a Secret over). */
  customerKeyPath?: string;
}

/** Parameters for S3 commands: `write` for PutObject/CreateMultipartUpload, `read` for GetObject/HeadObject/UploadPart. */
export interface SseParams {
  write: {
    ServerSideEncryption?: "AES256" | "aws:kms";
    SSEKMSKeyId?: string;
    SSECustomerAlgorithm?: "AES256";
    SSECustomerKey?: string;
  };
  read: { SSECustomerAlgorithm?: "AES256"; SSECustomerKey?: string };
}

const NONE: SseParams = { write: {}, read: {} };

/** Whether any server-side encryption is asked for. */
export function hasSse(s: SseSettings | undefined): boolean {
  return (
    s !== undefined &&
    (s.serverSideEncryption !== undefined ||
      s.kmsKeyId !== undefined ||
      s.customerKey !== undefined ||
      s.customerKeyPath !== undefined)
  );
}

/** What is wrong with the combination, given the endpoint: the key to name and why. Pure. */
export function sseProblem(
  s: SseSettings,
  endpoint: string | undefined,
): { key: string; message: string } | undefined {
  const customer = s.customerKey !== undefined || s.customerKeyPath !== undefined;
  const customerKey = s.customerKey !== undefined ? "sse-customer-key" : "sse-customer-key-path";
  if (s.customerKey !== undefined && s.customerKeyPath !== undefined)
    return { key: "sse-customer-key", message: "set sse-customer-key or sse-customer-key-path, not both" };
  if (customer && (s.serverSideEncryption !== undefined || s.kmsKeyId !== undefined))
    return {
      key: customerKey,
      message: "SSE-C (a customer key) cannot be combined with server-side-encryption or sse-kms-key-id",
    };
  if (s.kmsKeyId !== undefined && s.serverSideEncryption === "AES256")
    return { key: "sse-kms-key-id", message: "a KMS key needs server-side-encryption aws:kms, not AES256" };
  if (customer && endpoint !== undefined && /^http:\/\//i.test(endpoint))
    return {
      key: customerKey,
      message: `SSE-C needs an https endpoint (the key is sent with every request), not ${endpoint}`,
    };
  if (s.customerKey !== undefined && !isCustomerKey(s.customerKey))
    return { key: "sse-customer-key", message: CUSTOMER_KEY_FORM };
  return undefined;
}

const CUSTOMER_KEY_FORM =
  "an SSE-C key must be 32 bytes in base64 (44 characters, e.g. from `openssl rand -base64 32`)";

function isCustomerKey(key: string): boolean {
  return /^[A-Za-z0-9+/]{43}=$/.test(key) && Buffer.from(key, "base64").length === 32;
}

/** A base64 256-bit key, its trailing newline dropped; the message never holds it. Pure. */
export function parseCustomerKey(text: string, where: string): string {
  const key = text.replace(/[\r\n]+$/, "");
  if (!isCustomerKey(key))
    throw new WalshipError(ErrorCodes.CONFIG, `${where}: ${CUSTOMER_KEY_FORM}`, { details: { path: where } });
  return key;
}

/** The parameters once the customer key, if any, is known. Pure. */
export function sseParams(s: SseSettings | undefined, customerKey?: string): SseParams {
  if (!s || !hasSse(s)) return NONE;
  if (customerKey !== undefined) {
    const c = { SSECustomerAlgorithm: "AES256" as const, SSECustomerKey: customerKey };
    return { write: c, read: c };
  }
  const mode = s.serverSideEncryption ?? "aws:kms";
  return {
    write: {
      ServerSideEncryption: mode,
      ...(mode === "aws:kms" && s.kmsKeyId !== undefined ? { SSEKMSKeyId: s.kmsKeyId } : {}),
    },
    read: {},
  };
}

/** The parameters for each request, the key file read again at most every `refreshMs`. */
export function sseSource(
  s: SseSettings | undefined,
  refreshMs = DEFAULT_SSE_KEY_REFRESH_MS,
): () => Promise<SseParams> {
  if (!s || !hasSse(s)) return async () => NONE;
  const file = s.customerKeyPath;
  if (file === undefined) {
    const key = s.customerKey !== undefined ? parseCustomerKey(s.customerKey, "sse-customer-key") : undefined;
    const fixed = sseParams(s, key);
    return async () => fixed;
  }
  let cached: { params: SseParams; at: number } | undefined;
  return async () => {
    if (!cached || Date.now() - cached.at >= refreshMs) {
      let text: string;
      try {
        text = await readFile(file, "utf8");
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code ?? "error";
        throw new WalshipError(ErrorCodes.CONFIG, `read sse-customer-key-path ${file}: ${code}`, {
          details: { path: "sse-customer-key-path", file },
        });
      }
      cached = {
        params: sseParams(s, parseCustomerKey(text, `sse-customer-key-path ${file}`)),
        at: Date.now(),
      };
    }
    return cached.params;
  };
}
