/**
 * Small pieces every storage backend needs the same way: abort handling, error text, byte chunks,
 * the replica root joined as Litestream joins it, and a bounded-concurrency loop.
 */
import path from "node:path";
import { Readable } from "node:stream";
import { ErrorCodes, WalshipError } from "../../shared/errors.ts";
import type { OperationCounts } from "./client.ts";

/** An ABORTED error naming the object (`verb what: aborted`). */
export function abortedError(verb: string, what: string, cause: unknown): WalshipError {
  return new WalshipError(ErrorCodes.ABORTED, `${verb} ${what}: aborted`, { cause, details: { key: what } });
}

/** Throws ABORTED when the signal has fired. */
export function checkSignal(signal: AbortSignal | undefined, verb: string, what: string): void {
  if (signal?.aborted) throw abortedError(verb, what, signal.reason);
}

export function isAbortError(err: unknown): boolean {
  return (
    typeof err === "object" &&
    err !== null &&
    ((err as { name?: unknown }).name === "AbortError" || (err as { code?: unknown }).code === "ABORT_ERR")
  );
}

export function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** A body chunk as bytes (strings are UTF-8); anything else is a STORAGE error. */
export function toBytes(chunk: unknown): Uint8Array {
  if (chunk instanceof Uint8Array) return chunk;
  if (typeof chunk === "string") return Buffer.from(chunk);
  throw new WalshipError(ErrorCodes.STORAGE, `write object: body chunk is ${typeof chunk}, not bytes`);
}

/**
 * The key prefix for a replica path, joined as Go's path.Join would (Litestream joins every key with
 * it): "" or ending in "/"; cleaned, a leading "/" kept.
 */
export function rootPrefix(p: string): string {
  if (p === "") return "";
  const joined = path.posix.join(p, "x");
  return joined === "x" ? "" : joined.slice(0, -1);
}

/** Fresh GET/PUT/DELETE/LIST counters for litestream_replica_operation_total and _bytes. */
export function newOperationCounts(): OperationCounts {
  return {
    GET: { count: 0, bytes: 0 },
    PUT: { count: 0, bytes: 0 },
    DELETE: { count: 0, bytes: 0 },
    LIST: { count: 0, bytes: 0 },
  };
}

/**
 * Runs `fn` over the items with at most `limit` at once; stops starting new ones after the first
 * failure or an abort, waits for those running, then throws the first failure.
 */
export async function forEachLimited<T>(
  items: readonly T[],
  limit: number,
  fn: (item: T) => Promise<void>,
  onBeforeEach?: () => void,
): Promise<void> {
  let next = 0;
  let failed = false;
  const worker = async () => {
    while (!failed && next < items.length) {
      const item = items[next++] as T;
      try {
        onBeforeEach?.();
        await fn(item);
      } catch (err) {
        failed = true;
        throw err;
      }
    }
  };
  const results = await Promise.allSettled(Array.from({ length: Math.min(limit, items.length) }, worker));
  const rejected = results.find((r): r is PromiseRejectedResult => r.status === "rejected");
  if (rejected) throw rejected.reason;
}

/**
 * Reads a body until it ends or passes `limit` bytes: a body that ends within it can go in one
 * request. `rest()` yields what was read and then the remainder, for a streamed upload.
 */
export async function readHead(
  body: AsyncIterable<unknown>,
  limit: number,
): Promise<{ ended: boolean; size: number; bytes(): Buffer; rest(): AsyncGenerator<Uint8Array> }> {
  const it = body[Symbol.asyncIterator]() as AsyncIterator<unknown>;
  const head: Uint8Array[] = [];
  let size = 0;
  let ended = false;
  while (size <= limit) {
    const r = await it.next();
    if (r.done) {
      ended = true;
      break;
    }
    const c = toBytes(r.value);
    head.push(c);
    size += c.byteLength;
  }
  return {
    ended,
    size,
    bytes: () => Buffer.concat(head, size),
    rest: async function* () {
      yield* head;
      for (;;) {
        const r = await it.next();
        if (r.done) return;
        yield toBytes(r.value);
      }
    },
  };
}

/**
 * A download as the stream a reader returns: each chunk counted as GET bytes, a failure midway
 * turned into our error (STORAGE or ABORTED) by `toError`, `cleanup` run however it ends.
 */
export function relayDownload(
  source: AsyncIterable<unknown>,
  counts: OperationCounts,
  toError: (err: unknown) => Error,
  cleanup?: () => void,
): Readable {
  const relay = async function* () {
    try {
      for await (const chunk of source) {
        const c = chunk as Buffer;
        counts.GET.bytes += c.length;
        yield c;
      }
    } catch (err) {
      throw toError(err);
    } finally {
      cleanup?.();
    }
  };
  return Readable.from(relay(), { objectMode: false });
}

/**
 * Settles with `p`, or rejects at once with `aborted(reason)` when the signal fires first (the work
 * goes on, unobserved): for SDK calls that do not take a signal, or do not stop on one.
 */
export function raceAbort<T>(
  p: Promise<T>,
  signal: AbortSignal | undefined,
  aborted: (reason: unknown) => unknown,
): Promise<T> {
  if (!signal) return p;
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(aborted(signal.reason));
    if (signal.aborted) return onAbort();
    signal.addEventListener("abort", onAbort, { once: true });
    p.then(
      (v) => {
        signal.removeEventListener("abort", onAbort);
        resolve(v);
      },
      (err: unknown) => {
        signal.removeEventListener("abort", onAbort);
        reject(err);
      },
    );
  });
}
