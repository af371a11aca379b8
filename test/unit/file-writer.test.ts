/**
 * FileWriter, on its worker thread and inline (a small restore's mode): writes at positions, page
 * runs, truncation and fsync give the same file; a failure surfaces through drain() naming the file,
 * and fails every later request. Aligned writes given an O_DIRECT descriptor go through it, and the
 * file is the same as with plain writes, pages written over them through the page cache included.
 */
import assert from "node:assert/strict";
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, describe, it } from "node:test";
import {
  alignedBuffer,
  DIRECT_ALIGN,
  DirectWrites,
  openDirect,
} from "../../src/replicator/sqlite/direct-write.ts";
import { FileWriter } from "../../src/replicator/sqlite/file-writer.ts";

const dir = mkdtempSync(path.join(os.tmpdir(), "walship-fw-"));
after(() => rmSync(dir, { recursive: true, force: true }));

for (const inline of [false, true]) {
  describe(`FileWriter ${inline ? "inline" : "on a worker thread"}`, () => {
    it("writes, writes page runs, truncates and syncs, in the order asked", async () => {
      const file = path.join(dir, `ok-${inline}.db`);
      const fd = openSync(file, "w+");
      const w = new FileWriter(fd, file, { inline });
      const a = w.buffer(8);
      a.set([1, 2, 3, 4, 5, 6, 7, 8]);
      void w.write(a, 0);
      // Pages 2 and 3 of 4 bytes from slots 1 and 0 of an arena: bytes 4..11.
      const arena = w.buffer(8);
      arena.set([9, 9, 9, 9, 7, 7, 7, 7]);
      void w.pages({ arena, pageSize: 4, pgnos: Float64Array.from([2, 3]), slots: Uint32Array.from([1, 0]) });
      void w.truncate(10);
      void w.sync();
      await w.drain();
      assert.equal(w.pending, 0);
      // A buffer handed over comes back for reuse.
      assert.equal(w.buffer(8).byteLength, 8);
      await w.close();
      closeSync(fd);
      assert.deepEqual([...readFileSync(file)], [1, 2, 3, 4, 7, 7, 7, 7, 9, 9]);
    });

    it("a failed write rejects drain() naming the file, and every later request", async () => {
      const file = path.join(dir, `ro-${inline}.db`);
      writeFileSync(file, "");
      const fd = openSync(file, "r");
      const w = new FileWriter(fd, file, { inline });
      void w.write(w.buffer(4), 0);
      await assert.rejects(
        w.drain(),
        (e: Error) => e.message.startsWith(`write ${file}: `) && /EBADF/.test(e.message),
      );
      await assert.rejects(w.sync(), /EBADF/);
      await w.close();
      closeSync(fd);
    });
  });
}

// The real file system of the tests' temporary directory (ext4 on this project's machines); O_DIRECT
// exists on Linux only.
describe("direct writes (O_DIRECT)", { skip: process.platform !== "linux" && "O_DIRECT is Linux's" }, () => {
  const block = (seed: number, bytes: number) => {
    const b = new Uint8Array(bytes);
    for (let i = 0; i < bytes; i++) b[i] = (i * 31 + seed * 7) & 0xff;
    return b;
  };

  it("takes aligned blocks, refuses unaligned ones, and the file reads back as written", () => {
    const file = path.join(dir, "direct.db");
    writeFileSync(file, "");
    const dfd = openDirect(file);
    assert.notEqual(dfd, undefined, `O_DIRECT refused for ${file}`);
    const fd = openSync(file, "r");
    const d = new DirectWrites(dfd as number, fd);
    try {
      const a = block(1, 2 * DIRECT_ALIGN);
      assert.equal(d.write(a, 0), true);
      assert.equal(d.write(block(2, 100), 2 * DIRECT_ALIGN), false, "a length that is not aligned");
      assert.equal(d.write(block(3, DIRECT_ALIGN), 512), false, "an offset that is not aligned");
      assert.equal(d.write(new Uint8Array(8 * 1024 * 1024), 0), false, "larger than the stage");
      assert.equal(d.written, 2 * DIRECT_ALIGN);
      assert.equal(d.enabled, true);
      assert.deepEqual(readFileSync(file), Buffer.from(a));
    } finally {
      closeSync(dfd as number);
      closeSync(fd);
    }
  });

  it("falls back for good when the descriptor refuses (a stage that is not aligned)", () => {
    const file = path.join(dir, "direct-refused.db");
    writeFileSync(file, "");
    const dfd = openDirect(file) as number;
    const fd = openSync(file, "r");
    // One byte into a page-aligned buffer: the kernel answers EINVAL to a direct write from it.
    const d = new DirectWrites(dfd, fd, alignedBuffer(128 * 1024).subarray(1, 1 + 64 * 1024));
    try {
      assert.equal(d.write(block(4, DIRECT_ALIGN), 0), false);
      assert.equal(d.enabled, false);
      assert.equal(d.written, 0);
      assert.equal(readFileSync(file).length, 0);
    } finally {
      closeSync(dfd);
      closeSync(fd);
    }
  });

  it("a FileWriter with a direct descriptor writes the same file as without, pages over blocks included", async () => {
    const ps = DIRECT_ALIGN;
    const blocks = [block(5, 16 * ps), block(6, 16 * ps), block(7, 3 * ps + 100)];
    const files: Buffer[] = [];
    for (const withDirect of [true, false]) {
      const file = path.join(dir, `fw-direct-${withDirect}.db`);
      const fd = openSync(file, "w+");
      const dfd = withDirect ? openDirect(file) : undefined;
      const w = new FileWriter(fd, file, { directFd: dfd });
      let pos = 0;
      for (const b of blocks) {
        const copy = w.buffer(b.length);
        copy.set(b);
        void w.write(copy, pos);
        pos += b.length;
      }
      // Pages 2, 17 and 30 (1-based) over what the blocks wrote, then a cut and a sync.
      const arena = w.buffer(3 * ps);
      arena.set(block(8, 3 * ps));
      void w.pages({
        arena,
        pageSize: ps,
        pgnos: Float64Array.from([2, 17, 30]),
        slots: Uint32Array.from([2, 0, 1]),
      });
      void w.truncate(34 * ps + 50);
      void w.sync();
      await w.drain();
      // The two whole blocks went through the direct descriptor; the short last one could not.
      assert.equal(w.directBytes, withDirect ? 32 * ps : 0);
      await w.close();
      if (dfd !== undefined) closeSync(dfd);
      closeSync(fd);
      files.push(readFileSync(file));
    }
    const [direct, plain] = files as [Buffer, Buffer];
    assert.equal(direct.length, 34 * ps + 50);
    assert.ok(direct.equals(plain), "the file written with direct I/O differs from the plain one");
    // And the plain one is what was asked: page 17 from slot 0 of the arena, the last block's tail cut.
    assert.deepEqual(plain.subarray(16 * ps, 17 * ps), Buffer.from(block(8, 3 * ps).subarray(0, ps)));
    assert.deepEqual(plain.subarray(0, ps), Buffer.from(blocks[0]!.subarray(0, ps)));
  });
});
