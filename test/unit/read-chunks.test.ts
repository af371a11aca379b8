/**
 * readChunks (db/files.ts), how a large WAL segment is read for its upload: the range in chunks of
 * one buffer filled again at each step, and a file that ends before the range is an error naming
 * where it ends, never a shorter segment.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, describe, it } from "node:test";
import { readChunks } from "../../src/replicator/db/files.ts";

const dir = mkdtempSync(path.join(os.tmpdir(), "walship-read-chunks-"));
after(() => rmSync(dir, { recursive: true, force: true }));

const data = randomBytes(1_000_003);
const file = path.join(dir, "shadow.wal");
writeFileSync(file, data);

const short = (at: number) => new Error(`ends at ${at}`);

describe("readChunks", () => {
  it("yields [start, end) in chunks of at most the size, all views of one buffer", async () => {
    const sizes: number[] = [];
    const buffers = new Set<ArrayBufferLike>();
    const got: Buffer[] = [];
    for await (const c of readChunks(file, 12_345, 900_000, 65_536, short)) {
      sizes.push(c.length);
      buffers.add(c.buffer);
      got.push(Buffer.from(c));
    }
    assert.ok(Buffer.concat(got).equals(data.subarray(12_345, 900_000)));
    assert.ok(
      sizes.every((n) => n <= 65_536),
      `chunk sizes ${sizes.join(",")}`,
    );
    assert.equal(sizes.length, Math.ceil((900_000 - 12_345) / 65_536));
    assert.equal(buffers.size, 1, "one buffer, filled again at each step");
  });

  it("throws what `short` makes, at the file's end, when the file ends before `end`", async () => {
    const got: Buffer[] = [];
    await assert.rejects(async () => {
      for await (const c of readChunks(file, 990_000, 1_200_000, 4096, short)) got.push(Buffer.from(c));
    }, /ends at 1000003$/);
    assert.ok(Buffer.concat(got).equals(data.subarray(990_000)), "what the file had came first");
  });

  it("yields nothing for an empty range", async () => {
    let n = 0;
    for await (const _ of readChunks(file, 500, 500, 4096, short)) n++;
    assert.equal(n, 0);
  });
});
