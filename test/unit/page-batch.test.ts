/**
 * BatchedPages (sqlite/wal-apply.ts): pages buffered across truncations must leave the file exactly
 * as writing each page and truncating in turn would. Random sequences of page writes and truncations
 * (cuts, extensions, a page cut and written again) go through batches of several capacities into a
 * real file, and are checked against the same operations done one by one on another real file.
 */
import assert from "node:assert/strict";
import { closeSync, ftruncateSync, openSync, readFileSync, writeSync } from "node:fs";
import path from "node:path";
import { describe, it } from "node:test";
import { BatchedPages, writePages } from "../../src/replicator/sqlite/wal-apply.ts";
import { makeTempDir, removeTempDir } from "../helpers/proc.ts";
import { rng } from "../helpers/rng.ts";

type Op = { add: number; fill: number } | { truncate: number };

const PS = 512;

function ops(seed: number, n: number): Op[] {
  const r = rng(seed);
  const out: Op[] = [];
  for (let i = 0; i < n; i++) {
    if (r() < 0.12) out.push({ truncate: Math.floor(r() * 40) * PS });
    else out.push({ add: 1 + Math.floor(r() * 40), fill: 1 + (i % 250) });
  }
  return out;
}

/** The reference: each page written and each truncation done in turn. */
function oneByOne(file: string, start: Buffer, list: Op[]): Buffer {
  const fd = openSync(file, "w+");
  try {
    writeSync(fd, start, 0, start.length, 0);
    for (const op of list) {
      if ("truncate" in op) ftruncateSync(fd, op.truncate);
      else writeSync(fd, Buffer.alloc(PS, op.fill), 0, PS, (op.add - 1) * PS);
    }
  } finally {
    closeSync(fd);
  }
  return readFileSync(file);
}

function batched(
  file: string,
  start: Buffer,
  list: Op[],
  capacityPages: number,
): { bytes: Buffer; runs: number } {
  const fd = openSync(file, "w+");
  let runs = 0;
  try {
    writeSync(fd, start, 0, start.length, 0);
    const sink = new BatchedPages(
      {
        arena: (bytes) => new Uint8Array(bytes),
        write: (run) => {
          runs++;
          writePages(fd, run);
        },
        truncate: (size) => ftruncateSync(fd, size),
      },
      capacityPages * PS,
    );
    for (const op of list) {
      if ("truncate" in op) sink.truncate(op.truncate);
      else {
        // Pages arrive inside larger buffers, at an offset, as frames do.
        const frame = Buffer.alloc(PS + 24, 0xee);
        frame.fill(op.fill, 24);
        sink.add(op.add, PS, frame, 24);
      }
    }
    sink.flush();
  } finally {
    closeSync(fd);
  }
  return { bytes: readFileSync(file), runs };
}

describe("BatchedPages across truncations", () => {
  it("leaves the file as page-by-page writes and truncations do, for any batch size", () => {
    const dir = makeTempDir("page-batch");
    try {
      const start = Buffer.alloc(20 * PS, 0x5a);
      for (let seed = 1; seed <= 60; seed++) {
        const list = ops(seed, 200);
        const want = oneByOne(path.join(dir, "ref.db"), start, list);
        for (const cap of [1, 3, 16, 1000]) {
          const got = batched(path.join(dir, `b${cap}.db`), start, list, cap);
          assert.equal(got.bytes.length, want.length, `seed ${seed}, ${cap} pages per batch: file size`);
          assert.ok(got.bytes.equals(want), `seed ${seed}, ${cap} pages per batch: contents`);
        }
      }
    } finally {
      removeTempDir(dir);
    }
  });

  it("a truncation does not send a batch; pages it cuts are not written", () => {
    const dir = makeTempDir("page-batch");
    try {
      const start = Buffer.alloc(8 * PS, 1);
      // Page 6 is written, cut by a truncation to 4 pages, the file extended to 8 again: it must read
      // as zeros. Page 7 is cut, then written again: the later content. All in one batch.
      const list: Op[] = [
        { add: 2, fill: 2 },
        { add: 6, fill: 6 },
        { add: 7, fill: 7 },
        { truncate: 4 * PS },
        { add: 3, fill: 3 },
        { truncate: 8 * PS },
        { add: 7, fill: 9 },
      ];
      const got = batched(path.join(dir, "b.db"), start, list, 100);
      assert.equal(got.runs, 1, "one batch, sent by flush()");
      assert.ok(got.bytes.equals(oneByOne(path.join(dir, "ref.db"), start, list)));
      assert.ok(got.bytes.subarray(5 * PS, 6 * PS).equals(Buffer.alloc(PS, 0)), "page 6 was cut");
      assert.ok(got.bytes.subarray(6 * PS, 7 * PS).equals(Buffer.alloc(PS, 9)), "page 7 is the later one");
    } finally {
      removeTempDir(dir);
    }
  });
});

describe("writePages", () => {
  it("writes each stretch of consecutive pages in one call and says how many calls", () => {
    const dir = makeTempDir("page-batch-writes");
    const fd = openSync(path.join(dir, "db"), "w+");
    try {
      // Pages 1-3, 7 and 9-10, held in the arena out of order.
      const pgnos = Float64Array.from([1, 2, 3, 7, 9, 10]);
      const slots = Uint32Array.from([5, 4, 3, 2, 1, 0]);
      const arena = new Uint8Array(6 * PS);
      for (let i = 0; i < 6; i++)
        arena.fill(pgnos[i] as number, (slots[i] as number) * PS, ((slots[i] as number) + 1) * PS);
      assert.equal(writePages(fd, { arena, pageSize: PS, pgnos, slots }), 3);
      const file = readFileSync(path.join(dir, "db"));
      assert.equal(file.length, 10 * PS);
      for (const p of [1, 2, 3, 7, 9, 10]) assert.equal(file[(p - 1) * PS], p, `page ${p}`);
      for (const p of [4, 5, 6, 8]) assert.equal(file[(p - 1) * PS], 0, `page ${p} (never written)`);
    } finally {
      closeSync(fd);
      removeTempDir(dir);
    }
  });
});
