/**
 * An S3 object's body as one stream that survives a broken connection: a body that breaks off (a
 * connection reset or dropped mid-download) is resumed where it stopped with a ranged GET of the same
 * version (If-Match on its ETag), up to the attempts a request gets. The SDK retries a request only
 * until its headers arrive, and one lost connection must not fail a whole restore.
 */
import { addAbortSignal, Readable } from "node:stream";
import { ErrorCodes, WalshipError } from "../../shared/errors.ts";
import type { Logger } from "../../shared/log.ts";
import { describe, isAbortError } from "./common.ts";
import type { ObjectBody } from "./s3-transport.ts";

export interface Download {
  /** `s3://bucket/key`. */
  url: string;
  bucket: string;
  key: string;
  /** The GET of the rest of the object from byte `from`, if it is still version `etag`. */
  rest: (range: { from: number; etag: string }) => Promise<ObjectBody>;
  maxAttempts: number;
  signal: AbortSignal | undefined;
  log: Logger | undefined;
  /** A failure mid-stream as our error (STORAGE or ABORTED). */
  toError: (err: unknown) => Error;
}

/** The body of `first` (the answer to a whole-object GET), resumed as often as `d` allows. */
export function resumableBody(first: ObjectBody, d: Download): Readable {
  if (first.Body === undefined) return Readable.from([], { objectMode: false });
  const nodeBody = (body: unknown): Readable => {
    if (!(body instanceof Readable)) {
      throw new WalshipError(ErrorCodes.STORAGE, `read ${d.url}: the transport gave no Node stream`, {
        details: { bucket: d.bucket, key: d.key },
      });
    }
    if (d.signal) addAbortSignal(d.signal, body);
    return body;
  };
  let body = nodeBody(first.Body);
  const total = first.ContentLength;
  const etag = first.ETag;
  const { signal, url } = d;
  // Relay through a generator so a failure mid-stream arrives as our error (STORAGE or ABORTED).
  const relay = async function* () {
    let received = 0;
    for (let attempt = 1; ; attempt++) {
      try {
        for await (const chunk of body) {
          received += (chunk as Buffer).length;
          yield chunk as Buffer;
        }
        if (total === undefined || received >= total) return;
        throw new WalshipError(
          ErrorCodes.STORAGE,
          `read ${url}: the body ended after ${received} of ${total} bytes`,
          { details: { bucket: d.bucket, key: d.key, received, total } },
        );
      } catch (err) {
        // Broke off after the last byte: nothing is missing.
        if (total !== undefined && received >= total && !signal?.aborted) return;
        const resumable =
          !signal?.aborted &&
          !isAbortError(err) &&
          etag !== undefined &&
          total !== undefined &&
          attempt < d.maxAttempts;
        if (!resumable) throw d.toError(err);
        d.log?.warn(
          { object: url, received, total, attempt, err: describe(err) },
          "s3 download broke off; resuming it",
        );
        await new Promise((r) => setTimeout(r, Math.min(100 * 2 ** attempt, 2000)));
        try {
          body = nodeBody((await d.rest({ from: received, etag })).Body);
        } catch (again) {
          throw d.toError(again);
        }
      }
    }
  };
  return Readable.from(relay(), { objectMode: false });
}
