/**
 * FileWriter, on its worker thread and inline (a small restore's mode): writes at positions, page
 * runs, truncation and fsync give the same file; a failure surfaces through drain() naming the file,
 * and fails every later request.
 */
import assert from "node:assert/strict";
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, describe, it } from "node:test";
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
