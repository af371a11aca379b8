/**
 * A logical checksum of a SQLite database: the schema and every row of every table, in key order.
 * Two databases with the same content hash the same whatever their page layout, free lists or file
 * size, which is what makes replica validation free of false alarms.
 */
import { createHash } from "node:crypto";
import type Database from "better-sqlite3";

export function logicalChecksum(conn: Database.Database): string {
  const h = createHash("sha256");
  const objects = conn
    .prepare(
      "SELECT type, name, tbl_name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY type, name",
    )
    .all() as Array<{ type: string; name: string; tbl_name: string; sql: string | null }>;
  for (const o of objects) {
    h.update(`${o.type}\0${o.name}\0${o.tbl_name}\0${o.sql ?? ""}\n`);
    if (o.type !== "table" || !o.sql || /^CREATE VIRTUAL/i.test(o.sql)) continue;
    const withoutRowid = /WITHOUT\s+ROWID/i.test(o.sql);
    const order = withoutRowid ? "" : " ORDER BY rowid";
    const quoted = `"${o.name.replace(/"/g, '""')}"`;
    for (const row of conn.prepare(`SELECT * FROM ${quoted}${order}`).raw().iterate() as Iterable<
      unknown[]
    >) {
      for (const v of row) {
        if (v === null) h.update("\0n");
        else if (Buffer.isBuffer(v)) h.update(`\0b${v.length}:`).update(v);
        else h.update(`\0${typeof v === "number" || typeof v === "bigint" ? "i" : "s"}${String(v)}`);
      }
      h.update("\n");
    }
  }
  return h.digest("hex");
}
