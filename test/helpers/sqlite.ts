/** Real-SQLite helpers for tests: a logical hash of every user table, and random workloads. */
import { createHash } from "node:crypto";
import Database from "better-sqlite3";

/** SHA-256 over every user table's schema and rows (ordered), ignoring Litestream's own tables. */
export function logicalHash(file: string): string {
  const db = new Database(file, { readonly: true, fileMustExist: true });
  try {
    return logicalHashOf(db);
  } finally {
    db.close();
  }
}

export function logicalHashOf(db: Database.Database): string {
  const h = createHash("sha256");
  const tables = db
    .prepare(
      "SELECT name, sql FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name NOT LIKE '_litestream_%' ORDER BY name",
    )
    .all() as Array<{ name: string; sql: string }>;
  for (const t of tables) {
    h.update(`table ${t.name} ${t.sql}\n`);
    const rows = db.prepare(`SELECT * FROM "${t.name}" ORDER BY 1, 2`).raw().all() as unknown[][];
    for (const r of rows) {
      h.update(
        JSON.stringify(r, (_k, v: unknown) =>
          Buffer.isBuffer(v)
            ? `blob:${createHash("sha1").update(v).digest("hex")}`
            : typeof v === "bigint"
              ? v.toString()
              : v,
        ),
      );
      h.update("\n");
    }
  }
  return h.digest("hex");
}

export function integrityCheck(file: string): string {
  const db = new Database(file, { readonly: true, fileMustExist: true });
  try {
    return (db.prepare("PRAGMA integrity_check").pluck().all() as string[]).join("; ");
  } finally {
    db.close();
  }
}

/** A small deterministic PRNG so a failing run can be repeated from its seed. */
export function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 0x100000000;
  };
}

export type WorkloadKind = "insert" | "update" | "delete" | "blob" | "schema" | "vacuum" | "index";

/** The first draw (of 100) that picks each kind in Workload.step. */
const kindDraw: Record<WorkloadKind, number> = {
  insert: 0,
  update: 45,
  delete: 65,
  blob: 78,
  schema: 88,
  vacuum: 95,
  index: 97,
};

export interface Workload {
  db: Database.Database;
  /** Runs one random transaction, or one of the given kind; returns what it did. */
  step(kind?: WorkloadKind): string;
  close(): void;
}

/**
 * An application writing to a database in WAL mode: inserts, updates, deletes, blobs spanning many
 * pages, schema changes and the occasional VACUUM, as random transactions.
 */
export function openWorkload(
  file: string,
  seed: number,
  opts: { vacuum?: boolean; autocheckpoint?: number } = {},
): Workload {
  const db = new Database(file);
  db.pragma("journal_mode = wal");
  db.pragma("busy_timeout = 5000");
  if (opts.autocheckpoint !== undefined) db.pragma(`wal_autocheckpoint = ${opts.autocheckpoint}`);
  db.exec("CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY, name TEXT, qty INTEGER, data BLOB)");
  const r = rng(seed);
  let tables = 1;
  const pick = (n: number) => Math.floor(r() * n);
  return {
    db,
    step(kind) {
      const k = kind === undefined ? pick(100) : kindDraw[kind];
      if (k < 45) {
        const n = 1 + pick(20);
        const ins = db.prepare("INSERT INTO items (name, qty, data) VALUES (?, ?, ?)");
        db.transaction(() => {
          for (let i = 0; i < n; i++)
            ins.run(`item-${pick(1e9)}`, pick(1000), Buffer.alloc(pick(300), pick(256)));
        })();
        return `insert ${n}`;
      }
      if (k < 65) {
        db.prepare("UPDATE items SET qty = qty + 1, name = name || 'u' WHERE id % ? = 0").run(2 + pick(7));
        return "update";
      }
      if (k < 78) {
        db.prepare("DELETE FROM items WHERE id IN (SELECT id FROM items ORDER BY random() LIMIT ?)").run(
          1 + pick(10),
        );
        return "delete";
      }
      if (k < 88) {
        // A blob spanning many pages (overflow chains).
        const size = 20_000 + pick(200_000);
        const b = Buffer.alloc(size);
        for (let i = 0; i < size; i += 97) b[i] = pick(256);
        db.prepare("INSERT INTO items (name, qty, data) VALUES ('blob', ?, ?)").run(size, b);
        return "blob";
      }
      if (k < 95) {
        tables++;
        db.exec(
          `CREATE TABLE IF NOT EXISTS extra${tables} (k TEXT PRIMARY KEY, v REAL); INSERT INTO extra${tables} VALUES ('a', ${r()})`,
        );
        if (tables > 3 && r() < 0.5) db.exec(`DROP TABLE IF EXISTS extra${tables - 2}`);
        return "schema";
      }
      if (opts.vacuum !== false && k < 97) {
        db.exec("VACUUM");
        return "vacuum";
      }
      db.exec("CREATE INDEX IF NOT EXISTS items_qty ON items (qty)");
      return "index";
    },
    close() {
      db.close();
    },
  };
}

/** Runs random transactions for `ms` milliseconds, pausing `pauseMs` between them. */
export async function writeFor(w: Workload, ms: number, pauseMs = 15): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    w.step();
    await new Promise((r) => setTimeout(r, pauseMs));
  }
}

/**
 * An application database in WAL mode with autocheckpoint off (checkpoints happen only when a test
 * says so) and one table of blobs; `insert(n, bytes)` commits n rows of random bytes in one
 * transaction.
 */
export function blobApp(file: string): { app: Database.Database; insert(n: number, bytes?: number): void } {
  const app = new Database(file);
  app.pragma("journal_mode = WAL");
  app.pragma("wal_autocheckpoint = 0");
  app.exec("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v BLOB)");
  const ins = app.prepare("INSERT INTO t (v) VALUES (randomblob(?))");
  return {
    app,
    insert: (n, bytes = 3000) =>
      app.transaction(() => {
        for (let i = 0; i < n; i++) ins.run(bytes);
      })(),
  };
}
