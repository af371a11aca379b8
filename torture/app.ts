/**
 * The application the torture runs replicate: its own process (so it can be SIGKILLed), writing
 * random transactions to a SQLite database in WAL mode with autocheckpoint on and, at random, its own
 * checkpoints of every mode from a second connection. The database stays bounded (rows and blobs are
 * capped), and it grows and shrinks (blobs, deletes, VACUUM).
 *
 * Every transaction also appends to a ledger, in the same transaction: its sequence number and the
 * count and sum of the items after it. Any restored database can then be checked on its own: the
 * ledger runs 1..K without a gap and its last row matches the items table.
 *
 * With `journal`, after each commit a line {seq, s, e, h} is appended (fsynced): the time just before
 * the transaction began, just after its commit returned, and the logical hash of the whole database
 * after it. Point-in-time restores are judged against these.
 *
 *   node torture/app.ts '{"db":"/path/app.db","seed":1}'
 * SIGTERM ends it after the transaction under way (exit 0).
 */
import { appendFileSync, closeSync, fsyncSync, openSync, writeFileSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import Database from "better-sqlite3";
import { logicalHashOf, rng } from "../test/helpers/sqlite.ts";

export interface AppOptions {
  db: string;
  seed: number;
  /** Append {seq, s, e, h} per commit to this file. */
  journal?: string;
  /** Pause between transactions, drawn in [min, max] ms. */
  pauseMinMs?: number;
  pauseMaxMs?: number;
  /** Caps that keep the database bounded. */
  maxRows?: number;
  maxBlobs?: number;
  /** Largest blob in bytes. */
  maxBlobBytes?: number;
  /** Written with the process id once the app has opened its database and stops cleanly on SIGTERM. */
  readyFile?: string;
  /** wal_autocheckpoint (0 = off). */
  autocheckpoint?: number;
  /** Chance per transaction of an explicit checkpoint of a random mode. */
  checkpointChance?: number;
  /** Chance per transaction of a VACUUM. */
  vacuumChance?: number;
}

export const CHECKPOINT_MODES = ["PASSIVE", "FULL", "RESTART", "TRUNCATE"] as const;

export const LEDGER_SQL =
  "CREATE TABLE IF NOT EXISTS ledger (seq INTEGER PRIMARY KEY, items INTEGER NOT NULL, qty REAL NOT NULL, at INTEGER NOT NULL)";

export interface JournalLine {
  seq: number;
  /** Just before the transaction began (ms since the epoch). */
  s: number;
  /** Just after its commit returned. */
  e: number;
  /** Logical hash of the database after it. */
  h: string;
}

async function main(): Promise<void> {
  let stopping = false;
  process.on("SIGTERM", () => {
    stopping = true;
  });
  const o = JSON.parse(process.argv[2] ?? "{}") as AppOptions;
  const r = rng(o.seed);
  const pick = (n: number) => Math.floor(r() * n);
  const db = new Database(o.db);
  db.pragma("journal_mode = wal");
  db.pragma("busy_timeout = 5000");
  db.pragma(`wal_autocheckpoint = ${o.autocheckpoint ?? 200}`);
  db.exec(
    `CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY, name TEXT, qty INTEGER, data BLOB); ${LEDGER_SQL}`,
  );
  const ck = new Database(o.db);
  ck.pragma("busy_timeout = 50");
  const maxRows = o.maxRows ?? 20_000;
  const maxBlobs = o.maxBlobs ?? 60;
  const maxBlob = o.maxBlobBytes ?? 200_000;
  const ins = db.prepare("INSERT INTO items (name, qty, data) VALUES (?, ?, ?)");
  const ledger = db.prepare(
    "INSERT INTO ledger (seq, items, qty, at) VALUES ((SELECT coalesce(max(seq), 0) + 1 FROM ledger), (SELECT count(*) FROM items), (SELECT total(qty) FROM items), ?) RETURNING seq",
  );
  let extra = Number((db.prepare("SELECT count(*) AS n FROM sqlite_master").get() as { n: number }).n);
  const step = (): void => {
    const k = pick(100);
    if (k < 40) {
      const n = 1 + pick(20);
      for (let i = 0; i < n; i++)
        ins.run(`item-${pick(1e9)}`, pick(1000), Buffer.alloc(pick(300), pick(256)));
    } else if (k < 55) {
      db.prepare(
        "UPDATE items SET qty = qty + 1, name = substr(name, 1, 40) || 'u' WHERE id % ? = 0 AND id > (SELECT max(id) FROM items) - 2000",
      ).run(2 + pick(7));
    } else if (k < 70) {
      db.prepare("DELETE FROM items WHERE id IN (SELECT id FROM items ORDER BY random() LIMIT ?)").run(
        1 + pick(20),
      );
    } else if (k < 80) {
      const size = 20_000 + pick(Math.max(1, maxBlob - 20_000));
      const b = Buffer.alloc(size);
      for (let i = 0; i < size; i += 97) b[i] = pick(256);
      ins.run("blob", size, b);
      db.prepare(
        "DELETE FROM items WHERE name = 'blob' AND id NOT IN (SELECT id FROM items WHERE name = 'blob' ORDER BY id DESC LIMIT ?)",
      ).run(maxBlobs);
    } else if (k < 85) {
      extra++;
      db.exec(
        `CREATE TABLE IF NOT EXISTS extra${extra} (k TEXT PRIMARY KEY, v REAL); INSERT OR REPLACE INTO extra${extra} VALUES ('a', ${r()})`,
      );
      if (r() < 0.7) db.exec(`DROP TABLE IF EXISTS extra${extra - 2}`);
    } else if (k < 88) {
      // A large delete: the file shrinks at the next VACUUM, the freelist grows meanwhile.
      db.prepare("DELETE FROM items WHERE id % 3 = ?").run(pick(3));
    } else {
      db.prepare(
        "UPDATE items SET data = zeroblob(length(data)) WHERE id = (SELECT id FROM items ORDER BY random() LIMIT 1)",
      ).run();
    }
    db.prepare("DELETE FROM items WHERE id <= (SELECT max(id) FROM items) - ?").run(maxRows);
  };
  const txn = db.transaction(() => {
    step();
    return (ledger.get(Date.now()) as { seq: number }).seq;
  });
  const jfd = o.journal ? openSync(o.journal, "a") : undefined;
  if (o.readyFile) writeFileSync(o.readyFile, `${process.pid}\n`);
  const pauseMin = o.pauseMinMs ?? 0;
  const pauseMax = o.pauseMaxMs ?? 3;
  while (!stopping) {
    const s = Date.now();
    let seq: number;
    try {
      seq = txn.immediate();
    } catch (err) {
      // Busy beyond the timeout (a replicator holding the write lock while it catches up): retry.
      process.stderr.write(`app: transaction failed: ${(err as Error).message}\n`);
      await sleep(10);
      continue;
    }
    const e = Date.now();
    if (jfd !== undefined) {
      const line: JournalLine = { seq, s, e, h: logicalHashOf(db) };
      appendFileSync(jfd, `${JSON.stringify(line)}\n`);
      fsyncSync(jfd);
    }
    if (r() < (o.vacuumChance ?? 0.005)) db.exec("VACUUM");
    if (r() < (o.checkpointChance ?? 0.03)) {
      try {
        ck.pragma(`wal_checkpoint(${CHECKPOINT_MODES[pick(CHECKPOINT_MODES.length)]})`);
      } catch {
        // busy: the replicator's read transaction holds it off, as it should
      }
    }
    const pause = pauseMin + pick(pauseMax - pauseMin + 1);
    await sleep(pause);
  }
  if (jfd !== undefined) closeSync(jfd);
  ck.close();
  db.close();
}

if (import.meta.url === `file://${process.argv[1]}`) {
  main().catch((err) => {
    process.stderr.write(`app: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  });
}
