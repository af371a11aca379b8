/**
 * The worker side of FileWriter (file-writer.ts): performs each request on the file descriptor it was
 * given, in order, and answers each; page arenas go back to the main thread for reuse.
 */
import { fsyncSync, ftruncateSync, writeSync } from "node:fs";
import { parentPort, workerData } from "node:worker_threads";
import type { FileWriterReply, FileWriterRequest } from "./file-writer.ts";
import { writePages } from "./wal-apply.ts";

const port = parentPort;
if (!port) throw new Error("file-writer-worker: must run as a worker thread");
const { fd } = workerData as { fd: number };

port.on("message", (req: FileWriterRequest) => {
  const reply: FileWriterReply = { id: req.id };
  const transfer: ArrayBuffer[] = [];
  try {
    switch (req.op) {
      case "write": {
        const d = req.data;
        reply.buffer = d.buffer as ArrayBuffer;
        transfer.push(reply.buffer);
        let done = 0;
        while (done < d.length) done += writeSync(fd, d, done, d.length - done, req.position + done);
        break;
      }
      case "pages":
        reply.buffer = req.run.arena.buffer as ArrayBuffer;
        transfer.push(reply.buffer);
        writePages(fd, req.run);
        break;
      case "truncate":
        ftruncateSync(fd, req.size);
        break;
      case "sync":
        fsyncSync(fd);
        break;
    }
  } catch (err) {
    const e = err as { message?: string; code?: string };
    reply.error = { message: e.message ?? String(err), ...(e.code ? { code: e.code } : {}) };
  }
  port.postMessage(reply, transfer);
});
