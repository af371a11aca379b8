/**
 * Worker thread that plays the application: one better-sqlite3 connection, writing paced
 * transactions and stamping each commit with the shared clock (bench/measure.ts `now`). Every row
 * starts with `WSBENCHSEQ<12 digits>`, the sequence number of the transaction that wrote it; the
 * poller finds these numbers in the WAL segments (bench/decoder.ts).
 * Rows are made by bench/rows.ts (about 2:1 for LZ4).
 */
import { parentPort } from "node:worker_threads";
import Database from "better-sqlite3";
import { now } from "./measure.ts";
import { makeRow } from "./rows.ts";
import type { TxShape, WriterReply, WriterRequest } from "./workloads.ts";

const sleeper = new Int32Array(new SharedArrayBuffer(4));

function pause(ms: number): void {
  Atomics.wait(sleeper, 0, 0, ms);
}

let db: Database.Database | undefined;
let seq = 0;
let rowCount = 0;

function open(path: string): void {
  db = new Database(path);
  db.pragma("journal_mode = WAL");
  db.pragma("synchronous = NORMAL");
  db.pragma("busy_timeout = 5000");
  db.exec("CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, v BLOB NOT NULL)");
  rowCount = (db.prepare("SELECT coalesce(max(id), 0) AS n FROM t").get() as { n: number }).n;
  const m = db
    .prepare("SELECT max(CAST(substr(v, 11, 12) AS TEXT)) AS s FROM t WHERE id > ?")
    .get(Math.max(0, rowCount - 10_000)) as { s: string | null };
  seq = m.s ? Number(m.s) : 0;
}

/** Bulk-creates a database of about `bytes` with rows of `rowBytes` (no WAL while loading). */
function create(path: string, bytes: number, rowBytes: number): { rows: number; ms: number } {
  const t0 = now();
  const c = new Database(path);
  c.pragma("journal_mode = OFF");
  c.pragma("synchronous = OFF");
  c.exec("CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, v BLOB NOT NULL)");
  const ins = c.prepare("INSERT INTO t(id, v) VALUES (?, ?)");
  const rows = Math.ceil(bytes / rowBytes);
  const batch = 2000;
  const tx = c.transaction((from: number, to: number) => {
    for (let i = from; i < to; i++) ins.run(i + 1, makeRow(0, rowBytes));
  });
  for (let i = 0; i < rows; i += batch) tx(i, Math.min(rows, i + batch));
  c.pragma("journal_mode = WAL");
  c.close();
  return { rows, ms: now() - t0 };
}

function paced(shape: TxShape): WriterReply {
  const d = db;
  if (!d) throw new Error("writer: no database open");
  const ins = d.prepare("INSERT INTO t(v) VALUES (?)");
  const upd = d.prepare("UPDATE t SET v = ? WHERE id = ?");
  const run = d.transaction((s: number) => {
    for (let r = 0; r < shape.rowsPerTx; r++) {
      const row = makeRow(s, shape.rowBytes);
      if (shape.mode === "update" && rowCount > 0) upd.run(row, 1 + Math.floor(Math.random() * rowCount));
      else ins.run(row);
    }
  });
  const cap = shape.txCount ?? Math.ceil(((shape.durationMs ?? 0) / 1000) * (shape.txPerSec || 50_000) + 16);
  const commitAt = new Float64Array(Math.max(16, cap));
  // The wall clock too: the tools stamp commits with it, and after a pause of the machine (a virtual
  // machine's snapshot) it is no longer the monotonic clock that commitAt counts from.
  const commitWall = new Float64Array(commitAt.length);
  // And the wall clock before each transaction begins: its commit is surely after that, while the
  // reading after it returns may come a millisecond or more after the commit was published.
  const startWall = new Float64Array(commitAt.length);
  const firstSeq = seq + 1;
  const t0 = now();
  const end = shape.durationMs === undefined ? Number.POSITIVE_INFINITY : t0 + shape.durationMs;
  let done = 0;
  const more = (): boolean => (shape.txCount === undefined || done < shape.txCount) && done < commitAt.length;
  while (more() && now() < end) {
    const elapsed = now() - t0;
    let due: number;
    if (shape.burst) {
      due = (Math.floor(elapsed / shape.burst.everyMs) + 1) * shape.burst.txPerBurst;
    } else if (shape.txPerSec > 0) {
      due = Math.floor((elapsed / 1000) * shape.txPerSec) + 1;
    } else {
      due = Number.POSITIVE_INFINITY;
    }
    if (done >= due) {
      pause(1);
      continue;
    }
    while (done < due && more() && now() < end) {
      seq++;
      startWall[done] = Date.now();
      run(seq);
      commitAt[done] = now();
      commitWall[done++] = Date.now();
    }
  }
  if (shape.mode === "insert") rowCount += done * shape.rowsPerTx;
  const elapsedMs = now() - t0;
  return {
    op: "paced",
    firstSeq,
    lastSeq: seq,
    commitAt: commitAt.slice(0, done),
    commitWall: commitWall.slice(0, done),
    startWall: startWall.slice(0, done),
    elapsedMs,
    rows: done * shape.rowsPerTx,
    rowBytes: done * shape.rowsPerTx * shape.rowBytes,
  };
}

function handle(req: WriterRequest): WriterReply {
  switch (req.op) {
    case "open":
      open(req.path);
      return { op: "open", seq, rows: rowCount };
    case "create":
      return { op: "create", ...create(req.path, req.bytes, req.rowBytes) };
    case "paced":
      return paced(req.shape);
    case "close":
      db?.close();
      db = undefined;
      return { op: "close" };
  }
}

parentPort?.on("message", (req: WriterRequest) => {
  try {
    const reply = handle(req);
    if (reply.op === "paced")
      parentPort!.postMessage(reply, [
        reply.commitAt.buffer as ArrayBuffer,
        reply.commitWall.buffer as ArrayBuffer,
      ]);
    else parentPort!.postMessage(reply);
  } catch (err) {
    parentPort!.postMessage({ op: "error", message: (err as Error).message });
  }
});
