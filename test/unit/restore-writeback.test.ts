/**
 * The restore's early writeback (src/replicator/restore/execute.ts Writeback): an fdatasync of the
 * file being restored, started while the restore goes on, whose failure must not be lost (the
 * restore would otherwise rename a file the disk may not hold) and which never outlives the wait for
 * it (the restore closes the descriptor right after).
 */
import assert from "node:assert/strict";
import { closeSync, mkdtempSync, openSync, rmSync, writeSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, describe, it } from "node:test";
import { Writeback } from "../../src/replicator/restore/execute.ts";

const dir = mkdtempSync(path.join(os.tmpdir(), "walship-writeback-"));
after(() => rmSync(dir, { recursive: true, force: true }));

describe("restore Writeback", () => {
  it("syncs a real file, as often as asked, and settles with nothing running", async () => {
    const fd = openSync(path.join(dir, "a.db"), "w+");
    try {
      const wb = new Writeback(fd);
      await wb.settle(); // nothing started
      writeSync(fd, Buffer.alloc(1 << 20, 7));
      wb.start();
      wb.start(); // while one runs: no second one, no error
      await wb.settle();
      writeSync(fd, Buffer.alloc(1 << 20, 8), 0, 1 << 20, 1 << 20);
      wb.start();
      await wb.settle();
    } finally {
      closeSync(fd);
    }
  });

  it("keeps the first error for the wait, even once the failed sync is over", async () => {
    const fd = openSync(path.join(dir, "b.db"), "w+");
    closeSync(fd); // a descriptor that is no longer open: fdatasync fails with EBADF
    const wb = new Writeback(fd);
    wb.start();
    await assert.rejects(wb.settle(), { code: "EBADF" });
    // A later wait still reports it.
    await assert.rejects(wb.settle(), { code: "EBADF" });
  });
});
