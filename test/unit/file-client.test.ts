/**
 * The file destination: the shared ReplicaClient contract against a temp directory, plus what only a
 * file system can show (exact paths, temp files, stray directory entries, modes, streaming).
 */
import assert from "node:assert/strict";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { Readable } from "node:stream";
import { after, before, describe, it } from "node:test";
import { FileReplicaClient } from "../../src/replicator/storage/file.ts";
import { ErrorCodes, WalshipError } from "../../src/shared/errors.ts";
import {
  abortingBody,
  bytesStream,
  failingBody,
  readAll,
  replicaClientContract,
} from "../contract/replica-client.contract.ts";
import { assertCode } from "../helpers/assert.ts";

const GEN = "a1b2c3d4e5f60718";

let base = "";
before(async () => {
  base = await fs.mkdtemp(path.join(os.tmpdir(), "walship-file-client-"));
});
after(async () => {
  await fs.rm(base, { recursive: true, force: true });
});

let seq = 0;
/** A fresh destination directory (not yet created: the client makes it on first write). */
function freshRoot(): string {
  seq++;
  return path.join(base, `replica-${seq}`);
}

replicaClientContract("file", async () => {
  const root = freshRoot();
  return {
    client: new FileReplicaClient(root),
    cleanup: () => fs.rm(root, { recursive: true, force: true }),
  };
});

/** Every file under `dir`, as "/"-joined paths relative to it, sorted. */
async function tree(dir: string): Promise<string[]> {
  const entries = await fs.readdir(dir, { recursive: true, withFileTypes: true });
  return entries
    .filter((e) => e.isFile())
    .map((e) => path.relative(dir, path.join(e.parentPath, e.name)).split(path.sep).join("/"))
    .sort();
}

describe("FileReplicaClient", () => {
  it("takes only an absolute root and reports it as its location", () => {
    for (const bad of ["relative/dir", "", "./x"]) {
      assertCode(() => new FileReplicaClient(bad), ErrorCodes.CONFIG);
    }
    const c = new FileReplicaClient("/var/lib/replica/");
    assert.equal(c.type, "file");
    assert.equal(c.location, "/var/lib/replica");
  });

  it("writes objects at exactly Litestream's paths, and nothing else", async () => {
    const root = freshRoot();
    const c = new FileReplicaClient(root);
    await c.writeSnapshot(GEN, 1, bytesStream("snapshot bytes"));
    await c.writeWalSegment(GEN, 2, 0x1038, Buffer.from("segment bytes"));
    await c.putExtra(`walship/generations/${GEN}/commits/00000002_00001038.json`, Buffer.from("[]"));
    assert.deepEqual(await tree(root), [
      `generations/${GEN}/snapshots/00000001.snapshot.lz4`,
      `generations/${GEN}/wal/00000002_00001038.wal.lz4`,
      `walship/generations/${GEN}/commits/00000002_00001038.json`,
    ]);
    assert.equal(
      await fs.readFile(path.join(root, "generations", GEN, "snapshots", "00000001.snapshot.lz4"), "utf8"),
      "snapshot bytes",
    );
    assert.equal(
      await fs.readFile(path.join(root, "generations", GEN, "wal", "00000002_00001038.wal.lz4"), "utf8"),
      "segment bytes",
    );
  });

  it("reads objects Litestream (or anyone) put at those paths", async () => {
    const root = freshRoot();
    const dir = path.join(root, "generations", GEN);
    await fs.mkdir(path.join(dir, "snapshots"), { recursive: true });
    await fs.mkdir(path.join(dir, "wal"), { recursive: true });
    await fs.writeFile(path.join(dir, "snapshots", "0000000a.snapshot.lz4"), "ten");
    await fs.writeFile(path.join(dir, "wal", "0000000a_00000020.wal.lz4"), "frames");
    const mtime = new Date("2024-01-02T03:04:05Z");
    await fs.utimes(path.join(dir, "snapshots", "0000000a.snapshot.lz4"), mtime, mtime);
    const c = new FileReplicaClient(root);
    assert.deepEqual(await c.generations(), [GEN]);
    assert.deepEqual(await c.snapshots(GEN), [{ generation: GEN, index: 10, size: 3, createdAt: mtime }]);
    assert.deepEqual(
      (await c.walSegments(GEN)).map((s) => [s.index, s.offset, s.size]),
      [[10, 32, 6]],
    );
    assert.equal((await readAll(await c.walSegmentReader(GEN, 10, 32))).toString(), "frames");
  });

  it("leaves no object and no .tmp file after a body fails midway", async () => {
    const root = freshRoot();
    const c = new FileReplicaClient(root);
    await assertCode(c.writeSnapshot(GEN, 1, failingBody(new Error("source broke"))), ErrorCodes.STORAGE);
    await assertCode(
      c.writeWalSegment(GEN, 1, 0, failingBody(new Error("source broke"))),
      ErrorCodes.STORAGE,
    );
    assert.deepEqual(await tree(root), []);
  });

  it("leaves no object and no .tmp file after an abort mid-stream", async () => {
    const root = freshRoot();
    const c = new FileReplicaClient(root);
    await c.writeSnapshot(GEN, 1, bytesStream("kept"));
    const ac = new AbortController();
    await assertCode(c.writeSnapshot(GEN, 1, abortingBody(ac), { signal: ac.signal }), ErrorCodes.ABORTED);
    assert.deepEqual(await tree(root), [`generations/${GEN}/snapshots/00000001.snapshot.lz4`]);
  });

  it("ignores stray files and directories in the layout's directories", async () => {
    const root = freshRoot();
    const c = new FileReplicaClient(root);
    await c.writeSnapshot(GEN, 1, bytesStream("real"));
    await c.writeWalSegment(GEN, 1, 0, Buffer.from("real"));
    const gens = path.join(root, "generations");
    const snaps = path.join(gens, GEN, "snapshots");
    const wal = path.join(gens, GEN, "wal");
    await fs.writeFile(path.join(snaps, "00000002.snapshot.lz4.tmp"), "crash leftover");
    await fs.writeFile(path.join(snaps, ".DS_Store"), "x");
    await fs.mkdir(path.join(snaps, "00000003.snapshot.lz4"));
    await fs.writeFile(path.join(wal, "00000001_00000020.wal.lz4.tmp"), "crash leftover");
    await fs.mkdir(path.join(wal, "00000002_00000000.wal.lz4"));
    await fs.symlink(path.join(snaps, "00000001.snapshot.lz4"), path.join(snaps, "00000004.snapshot.lz4"));
    await fs.writeFile(path.join(gens, "0123456789abcdef"), "a file, not a generation directory");
    await fs.mkdir(path.join(gens, "0123456789ABCDEF"));
    await fs.mkdir(path.join(gens, `${GEN}.tmp`));
    await fs.writeFile(path.join(root, "walship-notes.txt.tmp"), "x");

    assert.deepEqual(await c.generations(), [GEN]);
    assert.deepEqual(
      (await c.snapshots(GEN)).map((s) => s.index),
      [1],
    );
    assert.deepEqual(
      (await c.walSegments(GEN)).map((s) => [s.index, s.offset]),
      [[1, 0]],
    );
    // A directory where an object should be is not an object.
    await assertCode(c.snapshotReader(GEN, 3), ErrorCodes.NOT_FOUND);
    await assertCode(c.walSegmentReader(GEN, 2, 0), ErrorCodes.NOT_FOUND);
    await assertCode(c.getExtra(`generations/${GEN}/snapshots/00000003.snapshot.lz4`), ErrorCodes.NOT_FOUND);
    // A file where a directory should be lists as nothing and reads as missing.
    assert.deepEqual(await c.snapshots("0123456789abcdef"), []);
    await assertCode(c.snapshotReader("0123456789abcdef", 1), ErrorCodes.NOT_FOUND);
    // Temp files are never extras.
    assert.deepEqual(await c.listExtras("walship"), []);
  });

  it("replaces a stale .tmp file left by a crash", async () => {
    const root = freshRoot();
    const c = new FileReplicaClient(root);
    const snaps = path.join(root, "generations", GEN, "snapshots");
    await fs.mkdir(snaps, { recursive: true });
    await fs.writeFile(
      path.join(snaps, "00000001.snapshot.lz4.tmp"),
      "a long stale partial write from a crash",
    );
    await c.writeSnapshot(GEN, 1, bytesStream("new"));
    assert.deepEqual(await fs.readdir(snaps), ["00000001.snapshot.lz4"]);
    assert.equal((await readAll(await c.snapshotReader(GEN, 1))).toString(), "new");
  });

  it("creates directories 0700 and files 0600 by default, or the modes it is given", async () => {
    const root = freshRoot();
    await new FileReplicaClient(root).writeWalSegment(GEN, 1, 0, Buffer.from("x"));
    for (const dir of [root, path.join(root, "generations"), path.join(root, "generations", GEN, "wal")]) {
      assert.equal((await fs.stat(dir)).mode & 0o777, 0o700, dir);
    }
    assert.equal(
      (await fs.stat(path.join(root, "generations", GEN, "wal", "00000001_00000000.wal.lz4"))).mode & 0o777,
      0o600,
    );

    const root2 = freshRoot();
    await new FileReplicaClient(root2, { dirMode: 0o750, fileMode: 0o640 }).writeSnapshot(
      GEN,
      1,
      bytesStream("x"),
    );
    assert.equal(
      (await fs.stat(path.join(root2, "generations", GEN, "snapshots"))).mode & 0o777,
      0o750 & ~0o022 & 0o777,
    );
    assert.equal(
      (await fs.stat(path.join(root2, "generations", GEN, "snapshots", "00000001.snapshot.lz4"))).mode &
        0o640,
      0o640,
    );
  });

  it("streams to disk instead of buffering the whole body", async () => {
    const root = freshRoot();
    const c = new FileReplicaClient(root);
    const tmp = path.join(root, "generations", GEN, "snapshots", "00000001.snapshot.lz4.tmp");
    const chunkSize = 64 * 1024;
    const chunks = 256; // 16 MiB
    const maxAhead = 48; // chunks the producer may run ahead of the bytes on disk
    let produced = 0;
    let worstLag = 0;
    const body = Readable.from(
      (async function* () {
        for (; produced < chunks; produced++) {
          if (produced > 0) {
            const onDisk = (await fs.stat(tmp)).size;
            worstLag = Math.max(worstLag, produced - Math.floor(onDisk / chunkSize));
          }
          yield Buffer.alloc(chunkSize, produced & 0xff);
        }
      })(),
      { objectMode: false },
    );
    const info = await c.writeSnapshot(GEN, 1, body);
    assert.equal(info.size, chunkSize * chunks);
    assert.ok(worstLag <= maxAhead, `producer ran ${worstLag} chunks ahead of the disk`);
  });

  it("turns other I/O errors into STORAGE errors that name the object", async () => {
    const root = freshRoot();
    await fs.mkdir(path.dirname(root), { recursive: true });
    await fs.writeFile(root, "the root is a file, not a directory");
    const c = new FileReplicaClient(root);
    const key = `generations/${GEN}/snapshots/00000001.snapshot.lz4`;
    await assert.rejects(c.writeSnapshot(GEN, 1, bytesStream("x")), (err: unknown) => {
      assert.ok(err instanceof WalshipError);
      assert.equal(err.code, ErrorCodes.STORAGE);
      assert.equal(err.details.key, key);
      assert.equal(err.details.path, path.join(root, key));
      assert.ok(err.cause !== undefined);
      return true;
    });
    await assertCode(c.putExtra("walship/x", Buffer.from("x")), ErrorCodes.STORAGE);
    await fs.rm(root);
  });

  it("deleteGeneration removes the generation's directories entirely", async () => {
    const root = freshRoot();
    const c = new FileReplicaClient(root);
    await c.writeSnapshot(GEN, 1, bytesStream("x"));
    await c.putExtra(`walship/generations/${GEN}/commits/00000001_00000000.json`, Buffer.from("[]"));
    await fs.writeFile(path.join(root, "generations", GEN, "stray.txt"), "x");
    await c.deleteGeneration(GEN);
    await assert.rejects(fs.stat(path.join(root, "generations", GEN)), { code: "ENOENT" });
    await assert.rejects(fs.stat(path.join(root, "walship", "generations", GEN)), { code: "ENOENT" });
    assert.deepEqual(await fs.readdir(path.join(root, "generations")), []);
  });
});
