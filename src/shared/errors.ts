/**
 * The error catalogue. Every error Walship raises on purpose carries a stable `code`; tests assert on
 * codes, never on message text. Messages start with a "verb noun:" phrase and name the field, file
 * or object concerned.
 */
export const ErrorCodes = {
  /** A config file or flag is malformed; the message names the key. */
  CONFIG: "WALSHIP_ERR_CONFIG",
  /** A CLI usage problem (unknown flag, missing argument). */
  USAGE: "WALSHIP_ERR_USAGE",
  /** An object, generation or file that was asked for does not exist. */
  NOT_FOUND: "WALSHIP_ERR_NOT_FOUND",
  /** Stored data failed a check: LZ4 frame, WAL checksum, salt, size, contiguity. */
  CORRUPT: "WALSHIP_ERR_CORRUPT",
  /** The WAL or shadow WAL is not in a state we can read. */
  WAL: "WALSHIP_ERR_WAL",
  /** Restore could not find what it needs (no snapshot, a gap in indexes, a missing segment). */
  RESTORE: "WALSHIP_ERR_RESTORE",
  /** A restore would overwrite an existing database. */
  EXISTS: "WALSHIP_ERR_EXISTS",
  /** The restored database failed PRAGMA integrity_check. */
  INTEGRITY: "WALSHIP_ERR_INTEGRITY",
  /**
   * An object's encryption does not match its replica's: a plaintext object where `age:` is
   * configured, an age-encrypted one where it is not, or one that no configured identity opens.
   */
  ENCRYPTION: "WALSHIP_ERR_ENCRYPTION",
  /** A storage backend call failed (network, permissions, missing bucket). */
  STORAGE: "WALSHIP_ERR_STORAGE",
  /** A SQLite call failed. */
  SQLITE: "WALSHIP_ERR_SQLITE",
  /** The operation was cancelled (shutdown). */
  ABORTED: "WALSHIP_ERR_ABORTED",
  /** A Kubernetes API request failed (an HTTP error status from the API server). */
  KUBE: "WALSHIP_ERR_KUBE",
  /** Work that writes to local disk was not started: what it needs would not fit (guardrails). */
  NO_SPACE: "WALSHIP_ERR_NO_SPACE",
  /** Another writer holds the replica path's claim: nothing is written there (fence.ts). */
  FENCED: "WALSHIP_ERR_FENCED",
} as const;

export type ErrorCode = (typeof ErrorCodes)[keyof typeof ErrorCodes];

export class WalshipError extends Error {
  readonly code: ErrorCode;
  /** Structured facts about the failure (a key name, an object path), for logs and status. */
  readonly details: Readonly<Record<string, unknown>>;

  constructor(
    code: ErrorCode,
    message: string,
    options?: { cause?: unknown; details?: Record<string, unknown> },
  ) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = "WalshipError";
    this.code = code;
    this.details = options?.details ?? {};
  }
}

/** Raised by every storage backend for a missing object, whatever the backend calls it. */
export class NotFoundError extends WalshipError {
  constructor(what: string, options?: { cause?: unknown }) {
    super(ErrorCodes.NOT_FOUND, `not found: ${what}`, options);
    this.name = "NotFoundError";
  }
}

export function isNotFound(err: unknown): err is NotFoundError {
  return err instanceof WalshipError && err.code === ErrorCodes.NOT_FOUND;
}

export function hasCode(err: unknown, code: ErrorCode): err is WalshipError {
  return err instanceof WalshipError && err.code === code;
}

/** A one-line description of any thrown value, with its causes, for logs and status. */
export function describeError(err: unknown): string {
  const parts: string[] = [];
  let cur: unknown = err;
  for (let depth = 0; cur !== undefined && cur !== null && depth < 5; depth++) {
    if (cur instanceof Error) {
      if (!parts.some((p) => p.includes(cur instanceof Error ? cur.message : ""))) parts.push(cur.message);
      cur = cur.cause;
    } else {
      parts.push(String(cur));
      break;
    }
  }
  return parts.join(": ");
}
