/**
 * The worker side of FileWriter (file-writer.ts): performs each request on the file descriptor it was
 * given, in order, and answers each; page arenas go back to the main thread for reuse.
 */
import { parentPort, workerData } from "node:worker_threads";
import type { FileWriterReply, FileWriterRequest } from "./file-writer.ts";
import { performWrite } from "./file-writer-ops.ts";

const port = parentPort;
if (!port) throw new Error("file-writer-worker: must run as a worker thread");
const { fd } = workerData as { fd: number };

port.on("message", (req: FileWriterRequest) => {
  const reply: FileWriterReply = { id: req.id };
  const transfer: ArrayBuffer[] = [];
  try {
    const buffer = performWrite(fd, req);
    if (buffer) {
      reply.buffer = buffer;
      transfer.push(buffer);
    }
  } catch (err) {
    const e = err as { message?: string; code?: string };
    reply.error = { message: e.message ?? String(err), ...(e.code ? { code: e.code } : {}) };
  }
  port.postMessage(reply, transfer);
});
