/**
 * Streaming a body up to S3: one PutObject when the body fits in one part, else a multipart upload
 * with up to `queueSize` parts in flight at once. What is kept around it:
 *
 * - Memory: parts are gathered in buffers of one part size taken from a pool the client keeps
 *   (PartPool): the part being gathered, a full one held until the body shows whether more comes (a
 *   body of exactly one part is one PutObject), and the parts in flight, at most queueSize + 2
 *   buffers, reused from one upload to the next and freed after a while unused. (@aws-sdk/lib-storage's
 *   Upload, used before, joined every part into a fresh buffer: a quick 411 MiB snapshot spent 8 % of
 *   its samples in that copy and more in the garbage collector behind it; docs/benchmarks.md.)
 * - Every request is sent under the caller's signal and under the upload's own, which stops the
 *   other parts in flight and the reading of the body once one request has failed.
 *   CreateMultipartUpload is the exception: one cut off after the store acted on it would leave an
 *   upload nobody knows the id of, so it goes on after an abort (the upload fails at once all the
 *   same); the failed upload waits up to CREATE_GRACE_MS for its answer and aborts what it created
 *   (later than that, in the background).
 * - The multipart upload is aborted here on any failure or abort: AbortMultipartUpload goes out
 *   under no signal, an abort being exactly when the parts must go, and a failure to abort is logged,
 *   never thrown over the cause.
 * - The error thrown is the first request that failed (or the body's own error), mapped by the caller
 *   to an error naming the object; more than MAX_PARTS parts and a store that returns no upload id
 *   or no ETag for a part are STORAGE errors of their own.
 * - Checksums: none is asked for; neither transport sends one on a part (test/unit/s3-upload.test.ts).
 * - Server-side encryption is the transport's (s3-transport.ts): it adds what each request takes.
 */
import type { Readable } from "node:stream";
import { setTimeout as sleep } from "node:timers/promises";
import { ErrorCodes, WalshipError } from "../../shared/errors.ts";
import type { Logger } from "../../shared/log.ts";
import { describe, raceAbort } from "./common.ts";
import type { S3Transport } from "./s3-transport.ts";

/** S3's most parts in one multipart upload. */
export const MAX_PARTS = 10_000;
/**
 * Parts uploaded at once: two already keep a link busy while a part is answered; more cost a part of
 * memory each (see above) against a sidecar limit of 384 MiB (operator/specs/statefulset.ts).
 */
export const DEFAULT_UPLOAD_QUEUE_SIZE = 2;
/** After a failure or abort, how long a CreateMultipartUpload still in flight is waited for. */
const CREATE_GRACE_MS = 5_000;
/** How long a pool keeps its free part buffers after the last upload that used them. */
const POOL_IDLE_MS = 10_000;

/**
 * Part buffers of one size, reused by the uploads of one client. Buffers given back are kept up to
 * `keep`, and all are let go once none was taken for POOL_IDLE_MS (a replicator that uploads a large
 * segment now and then does not hold its parts in between).
 */
export class PartPool {
  readonly partSize: number;
  readonly #keep: number;
  readonly #idleMs: number;
  #free: Buffer[] = [];
  #timer: NodeJS.Timeout | undefined;

  constructor(partSize: number, keep: number, idleMs = POOL_IDLE_MS) {
    this.partSize = partSize;
    this.#keep = keep;
    this.#idleMs = idleMs;
  }

  take(): Buffer {
    return this.#free.pop() ?? Buffer.allocUnsafe(this.partSize);
  }

  give(buf: Buffer): void {
    if (this.#free.length < this.#keep) this.#free.push(buf);
    this.#timer?.refresh();
    // Through a weak reference: the timer alone does not keep an abandoned client's buffers.
    const pool = new WeakRef(this);
    this.#timer ??= setTimeout(() => pool.deref()?.clear(), this.#idleMs).unref();
  }

  /** Lets every free buffer go now (the client is closed). */
  clear(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#free = [];
  }

  /** Free buffers held now (for tests). */
  get held(): number {
    return this.#free.length;
  }
}

export interface UploadRequest {
  /** The requests (s3-sdk.ts or s3-http.ts). */
  transport: S3Transport;
  bucket: string;
  key: string;
  /** Where part buffers come from; its part size is the upload's. */
  pool: PartPool;
  queueSize: number;
  signal: AbortSignal | undefined;
  /** `write s3://bucket/key`, for the errors made here. */
  what: string;
  log: Logger | undefined;
  /**
   * What is thrown for a failure: a request's error (SDK, network, abort) or anything else, which is
   * the body's own (a read error, an encoder's WalshipError, an abort). WalshipErrors made here come
   * as requests' errors.
   */
  toError(err: unknown, from: "request" | "body"): Error;
}

/**
 * Uploads `body` and returns its size. Throws what failed first, through `toError`, after aborting
 * the multipart upload if one was started.
 */
export async function uploadBody(r: UploadRequest, body: Readable): Promise<number> {
  const stop = new AbortController();
  const signal = r.signal ? AbortSignal.any([r.signal, stop.signal]) : stop.signal;
  const partSize = r.pool.partSize;
  /** The id of the upload the CreateMultipartUpload made, once it answers; undefined if it failed. */
  let created: Promise<string | undefined> | undefined;
  let uploadId: Promise<string> | undefined;
  let failed: { err: unknown; from: "request" | "body" } | undefined;
  const fail = (err: unknown, from: "request" | "body"): void => {
    // The first failure is the cause; what it stops fails after it with abort errors.
    failed ??= { err, from };
    stop.abort();
  };
  const parts: Array<{ PartNumber: number; ETag: string }> = [];
  const inFlight = new Set<Promise<void>>();
  let size = 0;
  let partNumber = 0;

  const createUpload = async (): Promise<string> => {
    signal.throwIfAborted();
    const sent = r.transport.createUpload(r.key);
    created = sent.then(
      (id) => id,
      () => undefined,
    );
    const id = await raceAbort(sent, signal, (reason) => reason);
    if (!id) {
      throw new WalshipError(ErrorCodes.STORAGE, `${r.what}: the store returned no upload id`, {
        details: { bucket: r.bucket, key: r.key },
      });
    }
    return id;
  };

  const sendPart = async (buf: Buffer, length: number, n: number): Promise<void> => {
    try {
      if (n > MAX_PARTS) {
        throw new WalshipError(
          ErrorCodes.STORAGE,
          `${r.what}: body is larger than ${MAX_PARTS} parts of ${partSize} bytes`,
          { details: { bucket: r.bucket, key: r.key, partSizeBytes: partSize } },
        );
      }
      uploadId ??= createUpload();
      const UploadId = await uploadId;
      const etag = await r.transport.uploadPart(r.key, UploadId, n, buf.subarray(0, length), signal);
      if (!etag) {
        throw new WalshipError(ErrorCodes.STORAGE, `${r.what}: the store returned no ETag for part ${n}`, {
          details: { bucket: r.bucket, key: r.key, part: n },
        });
      }
      parts.push({ PartNumber: n, ETag: etag });
      size += length;
    } catch (err) {
      fail(err, "request");
    } finally {
      r.pool.give(buf);
    }
  };

  /** Sends a full or last part once a slot is free; resolves when it is under way. */
  const dispatch = async (buf: Buffer, length: number): Promise<void> => {
    while (inFlight.size >= r.queueSize && !failed) await Promise.race(inFlight);
    if (failed) {
      r.pool.give(buf);
      return;
    }
    const p = sendPart(buf, length, ++partNumber).finally(() => inFlight.delete(p));
    inFlight.add(p);
  };

  let cur: Buffer | undefined;
  let fill = 0;
  /** A full part held back until the body shows more bytes after it. */
  let full: Buffer | undefined;
  const chunks = body[Symbol.asyncIterator]() as AsyncIterator<Uint8Array>;
  try {
    for (;;) {
      let next: IteratorResult<Uint8Array>;
      try {
        next = await raceAbort(chunks.next(), signal, (reason) => reason);
      } catch (err) {
        if (!failed) fail(err, "body");
        break;
      }
      if (next.done) break;
      const chunk = next.value;
      for (let i = 0; i < chunk.length && !failed; ) {
        if (full) {
          await dispatch(full, partSize);
          full = undefined;
          if (failed) break;
        }
        cur ??= r.pool.take();
        const n = Math.min(partSize - fill, chunk.length - i);
        cur.set(chunk.subarray(i, i + n), fill);
        fill += n;
        i += n;
        if (fill === partSize) {
          full = cur;
          cur = undefined;
          fill = 0;
        }
      }
      if (failed) break;
    }
    if (!failed) {
      if (partNumber === 0) {
        // The whole body fits in one part: one PutObject.
        const one = full ?? cur;
        const length = full ? partSize : fill;
        const data = one ? one.subarray(0, length) : Buffer.alloc(0);
        try {
          await r.transport.putObject(r.key, data, signal);
          size = length;
        } catch (err) {
          fail(err, "request");
        }
      } else {
        if (full) await dispatch(full, partSize);
        full = undefined;
        if (cur && fill > 0 && !failed) await dispatch(cur, fill);
        else if (cur) r.pool.give(cur);
        cur = undefined;
        await Promise.all(inFlight);
        if (!failed) {
          try {
            parts.sort((a, b) => a.PartNumber - b.PartNumber);
            await r.transport.completeUpload(r.key, await uploadId!, parts, signal);
          } catch (err) {
            fail(err, "request");
          }
        }
      }
    }
  } finally {
    for (const b of [full, cur]) if (b) r.pool.give(b);
  }
  if (!failed) return size;

  stop.abort();
  await Promise.allSettled(inFlight);
  // Stop reading: the body may be waiting on its source (a read still pending is left to settle).
  if (!body.destroyed) body.destroy();
  // Answered already (the usual case) or within the grace; else aborted whenever it answers.
  const id = created && (await Promise.race([created, sleep(CREATE_GRACE_MS, undefined, { ref: false })]));
  if (id !== undefined) await abortUpload(r, id);
  else
    void created?.then(async (late) => {
      if (late !== undefined) await abortUpload(r, late);
    });
  throw r.toError(failed.err, failed.from);
}

/** Best effort, under no signal; a failure is logged (the lifecycle rule in docs/destinations.md). */
async function abortUpload(r: UploadRequest, uploadId: string): Promise<void> {
  try {
    await r.transport.abortUpload(r.key, uploadId);
  } catch (abortErr) {
    r.log?.warn(
      { bucket: r.bucket, key: r.key, uploadId, err: describe(abortErr) },
      "s3 multipart upload not aborted; its parts stay until a lifecycle rule removes them",
    );
  }
}
