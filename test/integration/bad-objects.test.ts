/**
 * Bad input, objects in the bucket: corrupt, truncated, empty, foreign and misplaced objects in a
 * replica, on a file destination and on MinIO (the same damaged tree uploaded). A restore either
 * fails with a clear error naming the object (and writes nothing over the existing database), or, for
 * objects that are not the layout's own (stray files, a generation without a snapshot, foreign side
 * objects), ignores them and restores the source exactly. Case ids (B6...) are the rows of the table
 * in docs/reliability-bad-input.md; B1-B5 are in bad-input.test.ts.
 */
import assert from "node:assert/strict";
import { cpSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { PutObjectCommand } from "@aws-sdk/client-s3";
import Database from "better-sqlite3";
import { lz4DecodeFrame, lz4EncodeFrame } from "../../src/replicator/lz4.ts";
import { errorCode, type Replicated, replicateSample } from "../helpers/bad-input.ts";
import { type Minio, startMinio } from "../helpers/minio.ts";
import { makeTempDir, removeTempDir } from "../helpers/proc.ts";
import { logicalHash } from "../helpers/sqlite.ts";
import { walship } from "../helpers/walship.ts";

let dir = "";
let r: Replicated;
let other: Replicated;
let minio: Minio;
let gen = "";

before(async () => {
  dir = makeTempDir("badobjects");
  mkdirSync(path.join(dir, "a"));
  mkdirSync(path.join(dir, "b"));
  [r, other] = await Promise.all([
    replicateSample(path.join(dir, "a"), 41),
    replicateSample(path.join(dir, "b"), 43),
  ]);
  gen = readdirSync(path.join(r.replica, "generations"))[0]!;
  minio = await startMinio();
  await minio.createBucket("bad");
});
after(async () => {
  await minio?.close();
  removeTempDir(dir);
});

const genDir = (root: string) => path.join(root, "generations", gen);
const walDir = (root: string) => path.join(genDir(root), "wal");
const walNames = (root: string) => readdirSync(walDir(root)).sort();
/** The sample's one snapshot (its index depends on the run). */
const snapName = (root: string) => readdirSync(path.join(genDir(root), "snapshots"))[0]!;
const snapFile = (root: string) => path.join(genDir(root), "snapshots", snapName(root));
const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

/** A 2-page SQLite database with 1024-byte pages (the sample uses 4096). */
function otherPageSizeDb(): Buffer {
  const f = path.join(dir, "p1024.db");
  rmSync(f, { force: true });
  const d = new Database(f);
  d.pragma("page_size = 1024");
  d.exec("CREATE TABLE x (a); INSERT INTO x VALUES (1)");
  d.close();
  return readFileSync(f);
}

interface Case {
  id: string;
  what: string;
  /** Damages the copy at `root`; returns the object the error must name (a regex source), or "ok". */
  damage(root: string): string;
  code?: string;
  /** Restore at a time (now) instead of the latest. */
  timestamp?: boolean;
}

const CASES: Case[] = [
  {
    id: "B6",
    what: "a snapshot with flipped bytes",
    code: "CORRUPT",
    damage(root) {
      const b = readFileSync(snapFile(root));
      for (let i = 16; i < b.length - 8; i += 97) b[i]! ^= 0x5a;
      writeFileSync(snapFile(root), b);
      return esc(snapName(root));
    },
  },
  {
    id: "B7",
    what: "a truncated snapshot",
    code: "CORRUPT",
    damage(root) {
      const b = readFileSync(snapFile(root));
      writeFileSync(snapFile(root), b.subarray(0, Math.floor(b.length / 3)));
      return esc(snapName(root));
    },
  },
  {
    id: "B8",
    what: "a snapshot that is valid LZ4 of something that is not a database",
    code: "CORRUPT",
    damage(root) {
      writeFileSync(snapFile(root), lz4EncodeFrame(Buffer.from("hello, this is not SQLite\n".repeat(200))));
      return "not a SQLite database";
    },
  },
  {
    id: "B9",
    what: "an empty (0-byte) WAL segment",
    code: "CORRUPT",
    damage(root) {
      const n = walNames(root).at(-1)!;
      writeFileSync(path.join(walDir(root), n), "");
      return esc(n);
    },
  },
  {
    id: "B10",
    what: "an empty (0-byte) snapshot",
    code: "CORRUPT",
    damage(root) {
      writeFileSync(snapFile(root), "");
      return esc(snapName(root));
    },
  },
  {
    id: "B11",
    what: "a WAL segment stored uncompressed (not LZ4)",
    code: "CORRUPT",
    damage(root) {
      const n = walNames(root).at(-1)!;
      writeFileSync(path.join(walDir(root), n), Buffer.alloc(4152, 7));
      return `${esc(n)}.*bad frame magic`;
    },
  },
  {
    id: "B12",
    what: "a WAL segment swapped in from another database's replica",
    code: "CORRUPT",
    damage(root) {
      // A segment within an index (not its first): its frames carry the other WAL's salts.
      const otherGen = readdirSync(path.join(other.replica, "generations"))[0]!;
      const otherWal = path.join(other.replica, "generations", otherGen, "wal");
      const theirs = readdirSync(otherWal).find((n) => !n.endsWith("_00000000.wal.lz4"))!;
      const mine = walNames(root)
        .filter((n) => !n.endsWith("_00000000.wal.lz4"))
        .at(-1)!;
      cpSync(path.join(otherWal, theirs), path.join(walDir(root), mine));
      return `${esc(mine)}.*bad frame \\(checksum or salt\\)`;
    },
  },
  {
    id: "B13",
    what: "a WAL segment renamed to another offset",
    code: "CORRUPT",
    damage(root) {
      const n = walNames(root)
        .filter((x) => !x.endsWith("_00000000.wal.lz4"))
        .at(-1)!;
      const moved = `${n.slice(0, 9)}${(Number.parseInt(n.slice(9, 17), 16) + 4152).toString(16).padStart(8, "0")}.wal.lz4`;
      cpSync(path.join(walDir(root), n), path.join(walDir(root), moved));
      rmSync(path.join(walDir(root), n));
      return `${esc(moved)} starts at offset`;
    },
  },
  {
    id: "B14",
    what: "a WAL frame with a bad content checksum (LZ4 frame footer changed)",
    code: "CORRUPT",
    damage(root) {
      const n = walNames(root)[0]!;
      const b = readFileSync(path.join(walDir(root), n));
      b[b.length - 1]! ^= 0xff;
      writeFileSync(path.join(walDir(root), n), b);
      return `${esc(n)}.*content checksum`;
    },
  },
  {
    id: "B15",
    what: "a snapshot of a database with another page size",
    code: "CORRUPT",
    damage(root) {
      writeFileSync(snapFile(root), lz4EncodeFrame(otherPageSizeDb()));
      return "page size";
    },
  },
  {
    id: "B19",
    what: "a snapshot of a damaged database (valid LZ4, broken b-tree pages)",
    code: "INTEGRITY",
    damage(root) {
      const db = lz4DecodeFrame(readFileSync(snapFile(root)));
      const pageSize = db.readUInt16BE(16) === 1 ? 65536 : db.readUInt16BE(16);
      // Every page after the first gets an invalid b-tree page type; no WAL to overwrite them.
      for (let p = pageSize; p < db.length; p += pageSize) db[p] = 0x7f;
      writeFileSync(snapFile(root), lz4EncodeFrame(db));
      rmSync(walDir(root), { recursive: true });
      return `integrity_check failed on the restore of .*generations/${esc(gen)} \\(snapshot`;
    },
  },
  {
    id: "B16",
    what: "stray files in generations/, the generation and wal/ (ignored)",
    damage(root) {
      writeFileSync(path.join(root, "generations", "README.txt"), "not a generation");
      mkdirSync(path.join(root, "generations", "not-hex-at-all"));
      writeFileSync(path.join(root, "generations", "not-hex-at-all", "x"), "x");
      writeFileSync(path.join(genDir(root), "notes.md"), "notes");
      writeFileSync(path.join(walDir(root), "00000001.wal.lz4.tmp"), "junk");
      writeFileSync(path.join(walDir(root), "zzzzzzzz_00000000.wal.lz4"), "junk");
      return "ok";
    },
  },
  {
    id: "B17",
    what: "a newer generation with WAL segments but no snapshot (ignored)",
    damage(root) {
      const stray = path.join(root, "generations", "ffffffffffffffff", "wal");
      mkdirSync(stray, { recursive: true });
      cpSync(path.join(walDir(root), walNames(root)[0]!), path.join(stray, "00000000_00000000.wal.lz4"));
      return "ok";
    },
  },
  {
    id: "B18",
    what: "foreign side objects (commit times, snapshot records) at a point-in-time restore (ignored)",
    timestamp: true,
    damage(root) {
      const side = path.join(root, "walship", "generations", gen);
      for (const sub of ["commits", "snapshots"]) {
        for (const n of readdirSync(path.join(side, sub))) {
          writeFileSync(path.join(side, sub, n), sub === "commits" ? '{"v":1,"commits":"x"}' : "[]");
        }
      }
      writeFileSync(path.join(side, "commits", "garbage.json"), "\u0000\u0001");
      return "ok";
    },
  },
];

async function upload(root: string, prefix: string): Promise<void> {
  const c = minio.client();
  try {
    const walk = async (d: string): Promise<void> => {
      for (const n of readdirSync(d)) {
        const p = path.join(d, n);
        if (statSync(p).isDirectory()) await walk(p);
        else
          await c.send(
            new PutObjectCommand({
              Bucket: "bad",
              Key: `${prefix}/${path.relative(root, p)}`,
              Body: readFileSync(p),
            }),
          );
      }
    };
    await walk(root);
  } finally {
    c.destroy();
  }
}

function s3Config(prefix: string): string {
  const file = path.join(dir, `${prefix}.yml`);
  writeFileSync(
    file,
    `dbs:
  - path: ${path.join(dir, `${prefix}.source.db`)}
    replicas:
      - url: s3://bad/${prefix}
        endpoint: ${minio.endpoint}
        region: us-east-1
        force-path-style: true
        access-key-id: ${minio.accessKeyId}
        secret-access-key: ${minio.secretAccessKey}
`,
  );
  return file;
}

describe("bad input: objects in the bucket (file and MinIO)", () => {
  for (const c of CASES) {
    for (const backend of ["file", "s3"] as const) {
      it(`${c.id} ${c.what} (${backend})`, async () => {
        const root = path.join(dir, `${c.id}-${backend}`);
        cpSync(r.replica, root, { recursive: true });
        const mention = c.damage(root);
        let source: string[];
        if (backend === "file") source = [`file://${root}`];
        else {
          await upload(root, `${c.id}`);
          source = ["-config", s3Config(c.id), path.join(dir, `${c.id}.source.db`)];
        }
        const outDir = path.join(dir, `${c.id}-${backend}-out`);
        mkdirSync(outDir);
        const out = path.join(outDir, "app.db");
        const when = c.timestamp ? ["-timestamp", new Date(Date.now() + 1000).toISOString()] : [];
        if (mention === "ok") {
          const res = await walship(["restore", ...when, "-o", out, ...source], {
            env: { AWS_EC2_METADATA_DISABLED: "true" },
          });
          assert.equal(res.code, 0, res.stderr);
          assert.equal(logicalHash(out), r.sourceHash, "the foreign objects are ignored");
          return;
        }
        writeFileSync(out, "existing database bytes");
        const res = await walship(["restore", "-overwrite", ...when, "-o", out, ...source], {
          env: { AWS_EC2_METADATA_DISABLED: "true" },
        });
        assert.notEqual(res.code, 0, "restore must fail");
        assert.match(errorCode(res.stderr) ?? "", new RegExp(`^WALSHIP_ERR_(${c.code})$`), res.stderr);
        assert.match(res.stderr, new RegExp(mention));
        assert.deepEqual(readdirSync(outDir), ["app.db"], "no partial or temporary output");
        assert.equal(
          readFileSync(out, "utf8"),
          "existing database bytes",
          "the existing database is untouched",
        );
      });
    }
  }
});
