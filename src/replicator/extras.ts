/**
 * Walship's side objects, stored beside Litestream's layout under `<root>/walship/` (Litestream never
 * reads them): the commit times of each segment and the exact position of each snapshot.
 */
import { isNotFound } from "../shared/errors.ts";
import { hex8 } from "../shared/format.ts";
import type { ReplicaClient } from "./storage/client.ts";

/** Commit times of the transactions in one segment: `[endOffset, unixMillis]` pairs. */
export interface CommitTimesDoc {
  v: 1;
  commits: Array<[number, number]>;
}

/** Where and when a Walship snapshot was taken: it holds no page newer than (index, offset). */
export interface SnapshotMetaDoc {
  v: 1;
  index: number;
  offset: number;
  time: number;
}

export function snapshotMetaKey(generation: string, index: number): string {
  return `walship/generations/${generation}/snapshots/${hex8(index)}.json`;
}

export function encodeJson(doc: unknown): Uint8Array {
  return Buffer.from(`${JSON.stringify(doc)}\n`);
}

/** Reads a JSON side object, or undefined when it is absent or unreadable (never fatal). */
export async function readJsonExtra<T>(
  client: ReplicaClient,
  key: string,
  signal?: AbortSignal,
): Promise<T | undefined> {
  try {
    const bytes = await client.getExtra(key, { signal });
    return JSON.parse(Buffer.from(bytes).toString("utf8")) as T;
  } catch (err) {
    if (isNotFound(err) || err instanceof SyntaxError) return undefined;
    throw err;
  }
}
