/**
 * The worker side of Backfiller (backfill.ts): copies committed WAL frames back into the database with
 * `wal_checkpoint(PASSIVE)` on a connection of its own, so the replicator's event loop keeps uploading
 * and serving HTTP while SQLite writes pages. One request at a time; the answer says whether the whole
 * WAL was copied back.
 */
import { parentPort } from "node:worker_threads";
import Database from "better-sqlite3";
import type { BackfillReply, BackfillRequest } from "./backfill.ts";

const port = parentPort;
if (!port) throw new Error("backfill-worker: must run as a worker thread");
const pause = new Int32Array(new SharedArrayBuffer(4));

port.on("message", (req: BackfillRequest) => {
  let reply: BackfillReply;
  try {
    reply = { id: req.id, complete: backfill(req) };
  } catch (err) {
    const e = err as { message?: string; code?: string };
    reply = { id: req.id, error: { message: e.message ?? String(err), ...(e.code ? { code: e.code } : {}) } };
  }
  port.postMessage(reply);
});

function backfill(req: BackfillRequest): boolean {
  const db = new Database(req.path, { timeout: req.busyTimeoutMs, fileMustExist: true });
  try {
    for (let i = 0; i < req.tries; i++) {
      if (i > 0) Atomics.wait(pause, 0, 0, req.retryMs);
      const [row] = db.pragma("wal_checkpoint(PASSIVE)") as Array<{ log: number; checkpointed: number }>;
      if (!row) return false;
      if (row.log === row.checkpointed) return true;
    }
    return false;
  } finally {
    db.close();
  }
}
