/**
 * Streaming a body up to S3 with @aws-sdk/lib-storage's Upload: one PutObject when the body fits in
 * one part, else a multipart upload with up to `queueSize` parts in flight at once. What is kept
 * around it:
 *
 * - Memory: Upload holds each part in flight as one buffer, gathers the next one meanwhile, joins its
 *   chunks into a copy, and keeps the previous joined buffer until the next join (the bytes left over
 *   after a part are a view of it): at most 2 × queueSize + 2 parts, measured 13-16 MiB with 5 MiB
 *   parts one at a time, 21 MiB two at a time, 35-41 MiB four at a time (test/unit/s3-client.test.ts).
 *   With the defaults (8 MiB parts, 2 at a time) about 34 MiB, at most 48 MiB, per upload.
 * - Every request is sent under the caller's signal and under the upload's own, which stops the
 *   other parts in flight once one request has failed (Upload itself would go on reading the body).
 *   CreateMultipartUpload is the exception: one cut off after the store acted on it would leave an
 *   upload nobody knows the id of, so it goes on after an abort (the upload fails at once all the
 *   same); the failed upload waits up to CREATE_GRACE_MS for its answer and aborts what it created
 *   (later than that, in the background).
 * - The multipart upload is aborted here on any failure or abort (Upload's `leavePartsOnError` is
 *   set so it does not do it itself): AbortMultipartUpload goes out under no signal, an abort being
 *   exactly when the parts must go, and a failure to abort is logged, never thrown over the cause.
 * - The error thrown is the first request that failed (or the body's own error), mapped by the caller
 *   to an error naming the object; more than MAX_PARTS parts and a store that returns no upload id
 *   are STORAGE errors of their own.
 * - Checksums: Upload asks for CRC32 only when the client computes checksums WHEN_SUPPORTED; the
 *   client is made with WHEN_REQUIRED (s3.ts), so no part carries one (test/unit/s3-upload.test.ts).
 * - Server-side encryption: `params` goes on the create call and on every part (the SDK sends on a
 *   part only what UploadPart takes: the SSE-C key), and on the completion.
 */
import type { Readable } from "node:stream";
import { setTimeout as sleep } from "node:timers/promises";
import {
  AbortMultipartUploadCommand,
  CreateMultipartUploadCommand,
  PutObjectCommand,
  type PutObjectCommandInput,
  type S3Client,
  UploadPartCommand,
} from "@aws-sdk/client-s3";
import { Upload } from "@aws-sdk/lib-storage";
import { ErrorCodes, WalshipError } from "../../shared/errors.ts";
import type { Logger } from "../../shared/log.ts";
import { describe, raceAbort } from "./common.ts";

/** S3's most parts in one multipart upload. */
export const MAX_PARTS = 10_000;
/**
 * Parts uploaded at once: two already keep a link busy while a part is answered; more cost 2 parts of
 * memory each (see above) against a sidecar limit of 384 MiB (operator/specs/statefulset.ts).
 */
export const DEFAULT_UPLOAD_QUEUE_SIZE = 2;
/** After a failure or abort, how long a CreateMultipartUpload still in flight is waited for. */
const CREATE_GRACE_MS = 5_000;

export interface UploadRequest {
  s3: S3Client;
  bucket: string;
  key: string;
  /** Extra parameters for PutObject, CreateMultipartUpload, UploadPart and the completion (SSE). */
  params: Partial<PutObjectCommandInput>;
  partSize: number;
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
  /** The id of the upload the CreateMultipartUpload made, once it answers; undefined if it failed. */
  let created: Promise<string | undefined> | undefined;
  let size = 0;
  let failed: { err: unknown } | undefined;

  // The SDK client with every request under `signal`; Upload reads its config through the prototype.
  const client = Object.create(r.s3) as S3Client;
  const send = async (command: unknown, options?: object): Promise<unknown> => {
    try {
      if (command instanceof UploadPartCommand && (command.input.PartNumber ?? 0) > MAX_PARTS) {
        throw new WalshipError(
          ErrorCodes.STORAGE,
          `${r.what}: body is larger than ${MAX_PARTS} parts of ${r.partSize} bytes`,
          { details: { bucket: r.bucket, key: r.key, partSizeBytes: r.partSize } },
        );
      }
      const sdkSend = r.s3.send.bind(r.s3) as (c: unknown, o?: object) => Promise<unknown>;
      if (command instanceof CreateMultipartUploadCommand) {
        signal.throwIfAborted();
        const sent = sdkSend(command, options) as Promise<{ UploadId?: string }>;
        created = sent.then(
          (o) => o.UploadId,
          () => undefined,
        );
        const uploadId = (await raceAbort(sent, signal, (reason) => reason)).UploadId;
        if (!uploadId) {
          throw new WalshipError(ErrorCodes.STORAGE, `${r.what}: the store returned no upload id`, {
            details: { bucket: r.bucket, key: r.key },
          });
        }
        return { UploadId: uploadId };
      }
      const out = await sdkSend(command, { ...options, abortSignal: signal });
      if (command instanceof UploadPartCommand || command instanceof PutObjectCommand) {
        size += (command.input.Body as Uint8Array).byteLength;
      }
      return out;
    } catch (err) {
      // The first failure is the cause; the parts it stops fail after it with abort errors.
      failed ??= { err };
      stop.abort();
      throw err;
    }
  };
  client.send = send as S3Client["send"];

  const upload = new Upload({
    client,
    params: { ...r.params, Bucket: r.bucket, Key: r.key, Body: body },
    partSize: r.partSize,
    queueSize: r.queueSize,
    leavePartsOnError: true,
  });
  try {
    await upload.done();
    return size;
  } catch (err) {
    stop.abort();
    // Answered already (the usual case) or within the grace; else aborted whenever it answers.
    const id = created && (await Promise.race([created, sleep(CREATE_GRACE_MS, undefined, { ref: false })]));
    if (id !== undefined) await abortUpload(r, id);
    else
      void created?.then(async (late) => {
        if (late !== undefined) await abortUpload(r, late);
      });
    throw failed ? r.toError(failed.err, "request") : r.toError(err, "body");
  }
}

/** Best effort, under no signal; a failure is logged (the lifecycle rule in docs/destinations.md). */
async function abortUpload(r: UploadRequest, uploadId: string): Promise<void> {
  try {
    await r.s3.send(new AbortMultipartUploadCommand({ Bucket: r.bucket, Key: r.key, UploadId: uploadId }));
  } catch (abortErr) {
    r.log?.warn(
      { bucket: r.bucket, key: r.key, uploadId, err: describe(abortErr) },
      "s3 multipart upload not aborted; its parts stay until a lifecycle rule removes them",
    );
  }
}
