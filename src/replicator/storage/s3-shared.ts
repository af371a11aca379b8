/**
 * What both S3 clients share (the SDK's in s3.ts and s3-connection.ts, the restores' reader in
 * s3-read.ts): the request settings, and how a listing goes on to its next page. Kept apart so the
 * reader loads without the SDK.
 */
import { ErrorCodes, WalshipError } from "../../shared/errors.ts";

/** Attempts per request (first try included) before an error is returned. */
export const DEFAULT_MAX_ATTEMPTS = 5;
/**
 * A request whose socket stays idle this long fails with a timeout (and is retried). It is the only
 * way a half-open connection (the peer gone without a FIN or RST) is noticed, so it bounds how long
 * replication stalls on one: measured with toxiproxy (a 60 s half-open fault), lag was back to normal
 * 13.5 s after it at 30 s, and not within 45 s at 60 s. Data flowing (a slow upload) keeps the
 * socket from idling.
 */
export const DEFAULT_REQUEST_TIMEOUT_MS = 30_000;
/** Connecting gets at most this long (or the request timeout, if shorter). */
export const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;

/**
 * Where the next ListObjectsV2 page of a truncated listing starts: the page's continuation token, or,
 * from a store that truncates without one, after the last name it gave (`names`: the page's keys and
 * common prefixes). A page that gives neither a token nor a name past `startAfter` cannot go on: a
 * STORAGE error naming `url`.
 */
export function nextListStart(
  token: string | undefined,
  names: () => string[],
  startAfter: string | undefined,
  what: { verb: string; url: string; bucket: string; key: string },
): { token: string | undefined; startAfter: string | undefined } {
  if (token) return { token, startAfter };
  const last = names().sort().at(-1);
  if (!last || last === startAfter) {
    throw new WalshipError(
      ErrorCodes.STORAGE,
      `${what.verb} ${what.url}: the store truncated a listing without a way to continue`,
      { details: { bucket: what.bucket, key: what.key } },
    );
  }
  return { token: undefined, startAfter: last };
}

/**
 * The attempts and the idle timeout of `opts`, checked (CONFIG errors), defaults filled in, and the
 * connect timeout they give (DEFAULT_CONNECT_TIMEOUT_MS, or the idle timeout if that is shorter).
 */
export function checkRequestOptions(opts: {
  maxAttempts?: number | undefined;
  requestTimeoutMs?: number | undefined;
}): {
  maxAttempts: number;
  timeoutMs: number;
  connectMs: number;
} {
  const maxAttempts = opts.maxAttempts ?? DEFAULT_MAX_ATTEMPTS;
  if (!Number.isInteger(maxAttempts) || maxAttempts < 1) {
    throw new WalshipError(
      ErrorCodes.CONFIG,
      `create s3 replica: max attempts must be a positive integer, got ${maxAttempts}`,
      { details: { maxAttempts } },
    );
  }
  const timeoutMs = opts.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
  if (!Number.isFinite(timeoutMs) || timeoutMs < 0) {
    throw new WalshipError(
      ErrorCodes.CONFIG,
      `create s3 replica: request timeout must be >= 0 ms, got ${timeoutMs}`,
      { details: { requestTimeoutMs: timeoutMs } },
    );
  }
  const connectMs =
    timeoutMs === 0 ? DEFAULT_CONNECT_TIMEOUT_MS : Math.min(timeoutMs, DEFAULT_CONNECT_TIMEOUT_MS);
  return { maxAttempts, timeoutMs, connectMs };
}
