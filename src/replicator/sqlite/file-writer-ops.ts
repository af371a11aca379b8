/**
 * What FileWriter's requests do to the file: shared by the worker thread (file-writer-worker.ts) and
 * the in-thread mode a small restore uses (file-writer.ts).
 */
import { fsyncSync, ftruncateSync, writeSync } from "node:fs";
import type { DirectWrites } from "./direct-write.ts";
import type { FileWriterRequest } from "./file-writer.ts";
import { writePages } from "./wal-apply.ts";

/**
 * Performs `req` on `fd`; returns the buffer it used (to give back for reuse), if any. With `direct`,
 * a write it can take (aligned snapshot blocks) goes through it instead.
 */
export function performWrite(
  fd: number,
  req: FileWriterRequest,
  direct?: DirectWrites,
): ArrayBuffer | undefined {
  switch (req.op) {
    case "write": {
      const d = req.data;
      if (direct?.write(d, req.position)) return d.buffer as ArrayBuffer;
      let done = 0;
      while (done < d.length) done += writeSync(fd, d, done, d.length - done, req.position + done);
      return d.buffer as ArrayBuffer;
    }
    case "pages":
      writePages(fd, req.run);
      return req.run.arena.buffer as ArrayBuffer;
    case "truncate":
      ftruncateSync(fd, req.size);
      return undefined;
    case "sync":
      fsyncSync(fd);
      return undefined;
  }
}
