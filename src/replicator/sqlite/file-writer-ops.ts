/**
 * What FileWriter's requests do to the file: shared by the worker thread (file-writer-worker.ts) and
 * the in-thread mode a small restore uses (file-writer.ts).
 */
import { fsyncSync, ftruncateSync, writeSync } from "node:fs";
import type { FileWriterRequest } from "./file-writer.ts";
import { writePages } from "./wal-apply.ts";

/** Performs `req` on `fd`; returns the buffer it used (to give back for reuse), if any. */
export function performWrite(fd: number, req: FileWriterRequest): ArrayBuffer | undefined {
  switch (req.op) {
    case "write": {
      const d = req.data;
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
