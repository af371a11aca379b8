/**
 * The worker side of FileWriter (file-writer.ts): performs each request on the file descriptor it was
 * given, in order, and answers each; page arenas go back to the main thread for reuse. Given a direct
 * descriptor as well, aligned writes go through it (direct-write.ts).
 */
import { parentPort, workerData } from "node:worker_threads";
import { DirectWrites } from "./direct-write.ts";
import type { FileWriterReply, FileWriterRequest } from "./file-writer.ts";
import { performWrite } from "./file-writer-ops.ts";

const port = parentPort;
if (!port) throw new Error("file-writer-worker: must run as a worker thread");
const { fd, directFd } = workerData as { fd: number; directFd?: number };
const direct = directFd === undefined ? undefined : new DirectWrites(directFd, fd);

port.on("message", (req: FileWriterRequest) => {
  const reply: FileWriterReply = { id: req.id };
  const transfer: ArrayBuffer[] = [];
  try {
    const before = direct?.written ?? 0;
    const buffer = performWrite(fd, req, direct);
    if (direct && direct.written > before) reply.direct = direct.written - before;
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
