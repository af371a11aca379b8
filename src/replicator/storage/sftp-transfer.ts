/**
 * Pipelined SFTP transfers: many WRITE or READ requests in flight on one open handle instead of one
 * 32 KiB request per round trip (Litestream v0.3.13's pkg/sftp setting, #238). Written against the
 * few callback methods they use, so this file needs no SSH library.
 *
 * Pieces are at most 32 KiB, which every SFTP server accepts; a window of `depth` pieces is in flight.
 * A write stops issuing at the first failure or abort (destroying a streamed body, so whatever feeds
 * it is not left blocked), waits for what is in flight, then throws.
 */
import type { Readable } from "node:stream";
import { toBytes } from "./common.ts";

/** Every SFTP server accepts READ and WRITE payloads of 32 KiB (the protocol's minimum). */
export const PIECE_BYTES = 32 * 1024;

type Callback<T = void> = (err: Error | undefined | null, value?: T) => void;

export interface HandleOps {
  write(handle: Buffer, data: Buffer, offset: number, length: number, position: number, cb: Callback): void;
  read(
    handle: Buffer,
    into: Buffer,
    offset: number,
    length: number,
    position: number,
    cb: (err: Error | undefined | null, bytesRead: number) => void,
  ): void;
}

/** Wraps one request: a timer that calls `onTimeout` (which should kill the connection) if it hangs. */
export type Guard = <T>(what: string, start: (cb: Callback<T>) => void) => Promise<T>;

/**
 * Writes a body at offset 0 with up to `depth` WRITE requests in flight; returns the byte count.
 * `checkAbort` is called before each piece (throw to stop).
 */
export async function pipelinedWrite(
  ops: HandleOps,
  guard: Guard,
  handle: Buffer,
  body: Readable | Uint8Array,
  depth: number,
  checkAbort: () => void,
): Promise<number> {
  let position = 0;
  let inFlight = 0;
  let failure: unknown;
  let wake: (() => void) | undefined;
  const settled = () => {
    const w = wake;
    wake = undefined;
    w?.();
  };
  const waitBelow = async (n: number) => {
    while (inFlight > n) await new Promise<void>((r) => (wake = r));
  };
  const send = async (bytes: Uint8Array) => {
    for (let at = 0; at < bytes.byteLength; at += PIECE_BYTES) {
      if (failure !== undefined) throw failure;
      checkAbort();
      await waitBelow(depth - 1);
      if (failure !== undefined) throw failure;
      const piece = Buffer.from(
        bytes.buffer,
        bytes.byteOffset + at,
        Math.min(PIECE_BYTES, bytes.byteLength - at),
      );
      const pos = position;
      position += piece.length;
      inFlight++;
      // The library copies the piece into its packet at once, so the source may be reused after.
      guard<void>("write", (cb) => ops.write(handle, piece, 0, piece.length, pos, cb)).then(
        () => {
          inFlight--;
          settled();
        },
        (err: unknown) => {
          inFlight--;
          failure ??= err;
          // Stop the body too: a producer blocked on it (a pipe) must not wait forever.
          if (!(body instanceof Uint8Array)) body.destroy();
          settled();
        },
      );
    }
  };
  try {
    if (body instanceof Uint8Array) await send(body);
    else for await (const chunk of body) await send(toBytes(chunk));
  } catch (err) {
    failure ??= err;
  }
  await waitBelow(0);
  if (failure !== undefined) throw failure;
  return position;
}

/**
 * Reads `size` bytes from offset 0 with up to `depth` READ requests in flight, yielding them in
 * order. A short read is completed by further reads; an early end of file is an error (the object
 * is written once and renamed into place, so its size does not change under us).
 */
export async function* pipelinedRead(
  ops: HandleOps,
  guard: Guard,
  handle: Buffer,
  size: number,
  depth: number,
): AsyncGenerator<Buffer> {
  const readFully = async (at: number, len: number): Promise<Buffer> => {
    const buf = Buffer.allocUnsafe(len);
    let got = 0;
    while (got < len) {
      const n = await guard<number>("read", (cb) => ops.read(handle, buf, got, len - got, at + got, cb));
      if (!n) throw new Error(`read: unexpected end of file at byte ${at + got} of ${size}`);
      got += n;
    }
    return buf;
  };
  const queue: Array<Promise<Buffer>> = [];
  let next = 0;
  const refill = () => {
    while (queue.length < depth && next < size) {
      const len = Math.min(PIECE_BYTES, size - next);
      const p = readFully(next, len);
      p.catch(() => {}); // awaited in order below; no unhandled rejection if we stop early
      queue.push(p);
      next += len;
    }
  };
  refill();
  while (queue.length > 0) {
    const piece = await (queue.shift() as Promise<Buffer>);
    refill();
    yield piece;
  }
}
