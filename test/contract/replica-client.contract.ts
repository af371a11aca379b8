/**
 * The one contract every ReplicaClient passes (file now, MinIO/S3 later). Backend-neutral: it talks
 * to the client only, never to the file system or an SDK. Each test gets a fresh, empty destination
 * from `makeClient` and cleans it up. Backend-specific checks belong in the backend's own test file.
 *
 *   replicaClientContract("file", async () => ({ client, cleanup }));
 */
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { Readable } from "node:stream";
import { describe, it } from "node:test";
import type { ReplicaClient } from "../../src/replicator/storage/client.ts";
import { ErrorCodes, WalshipError } from "../../src/shared/errors.ts";
import { assertCode } from "../helpers/assert.ts";

export interface ContractOptions {
  /**
   * Write objects with names outside the layout through `putExtra` and check the listings ignore
   * them. Default true; set false for a backend that cannot hold such objects.
   */
  strayObjects?: boolean;
  /** Size of the streamed round-trip body; default 6 MiB + 123 bytes (past S3's 5 MiB part size). */
  bigBodyBytes?: number;
  /**
   * The stored size of a body of `n` bytes, as listings report it; default `n`. A client that
   * transforms what it stores (the age sealing layer) gives its own.
   */
  storedSize?: (n: number) => number;
}

export type MakeClient = () => Promise<{ client: ReplicaClient; cleanup(): Promise<void> }>;

const G1 = "0a1b2c3d4e5f6071";
const G2 = "1111111111111111";
const G3 = "fedcba9876543210";
const G0 = "0000000000000000";

export function replicaClientContract(
  name: string,
  makeClient: MakeClient,
  options: ContractOptions = {},
): void {
  const strays = options.strayObjects ?? true;
  const bigBodyBytes = options.bigBodyBytes ?? 6 * 1024 * 1024 + 123;
  const stored = options.storedSize ?? ((n: number) => n);

  /** Runs one test body against a fresh destination, cleaning up whatever happens. */
  const withClient = (fn: (c: ReplicaClient) => Promise<void>) => async () => {
    const { client, cleanup } = await makeClient();
    try {
      await fn(client);
    } finally {
      await cleanup();
    }
  };

  describe(`ReplicaClient contract: ${name}`, () => {
    describe("an empty destination", () => {
      it(
        "lists no generations, snapshots, segments or extras",
        withClient(async (c) => {
          assert.equal(typeof c.type, "string");
          assert.ok(c.type.length > 0);
          assert.equal(typeof c.location, "string");
          assert.deepEqual(await c.generations(), []);
          assert.deepEqual(await c.snapshots(G1), []);
          assert.deepEqual(await c.walSegments(G1), []);
          assert.deepEqual(await c.listExtras(""), []);
          assert.deepEqual(await c.listExtras("walship/"), []);
        }),
      );

      it(
        "reports NOT_FOUND for a missing snapshot, segment and extra",
        withClient(async (c) => {
          await assertCode(c.snapshotReader(G1, 1), ErrorCodes.NOT_FOUND);
          await assertCode(c.walSegmentReader(G1, 1, 0), ErrorCodes.NOT_FOUND);
          await assertCode(c.getExtra("walship/missing.json"), ErrorCodes.NOT_FOUND);
        }),
      );

      it(
        "treats deleting missing objects as success",
        withClient(async (c) => {
          await c.deleteSnapshot(G1, 1);
          await c.deleteWalSegments([{ generation: G1, index: 1, offset: 0 }]);
          await c.deleteWalSegments([]);
          await c.deleteExtras(["walship/missing.json"]);
          await c.deleteExtras([]);
          await c.deleteGeneration(G1);
          assert.deepEqual(await c.generations(), []);
        }),
      );
    });

    describe("snapshots", () => {
      it(
        "round-trips a streamed body byte for byte and describes it",
        withClient(async (c) => {
          const body = randomBytes(100_000);
          const before = Date.now();
          const info = await c.writeSnapshot(G1, 1, chunked(body, 7_000));
          assert.equal(info.generation, G1);
          assert.equal(info.index, 1);
          assert.equal(info.size, stored(body.length));
          assertRecent(info.createdAt, before);

          assert.deepEqual(await readAll(await c.snapshotReader(G1, 1)), body);
          const list = await c.snapshots(G1);
          assert.equal(list.length, 1);
          assert.equal(list[0]?.generation, G1);
          assert.equal(list[0]?.index, 1);
          assert.equal(list[0]?.size, stored(body.length));
          assertRecent(list[0]!.createdAt, before);
          assert.deepEqual(await c.generations(), [G1]);
        }),
      );

      it(
        "round-trips an empty body",
        withClient(async (c) => {
          const info = await c.writeSnapshot(G1, 0, Readable.from([]));
          assert.equal(info.size, stored(0));
          assert.equal((await readAll(await c.snapshotReader(G1, 0))).length, 0);
          assert.deepEqual(
            (await c.snapshots(G1)).map((s) => [s.index, s.size]),
            [[0, stored(0)]],
          );
        }),
      );

      it(
        "streams a multi-megabyte body in and out unchanged",
        withClient(async (c) => {
          const { stream, digest } = generatedBody(bigBodyBytes, 64 * 1024 + 1);
          const info = await c.writeSnapshot(G1, 2, stream);
          assert.equal(info.size, stored(bigBodyBytes));
          const want = digest();
          const reader = await c.snapshotReader(G1, 2);
          const hash = createHash("sha256");
          let got = 0;
          for await (const chunk of reader) {
            hash.update(chunk as Buffer);
            got += (chunk as Buffer).length;
          }
          assert.equal(got, bigBodyBytes);
          assert.equal(hash.digest("hex"), want);
          assert.equal((await c.snapshots(G1))[0]?.size, stored(bigBodyBytes));
        }),
      );

      it(
        "replaces a snapshot of the same index",
        withClient(async (c) => {
          await c.writeSnapshot(G1, 3, Readable.from([Buffer.from("first version, longer")]));
          const second = Buffer.from("second");
          const info = await c.writeSnapshot(G1, 3, Readable.from([second]));
          assert.equal(info.size, stored(second.length));
          assert.deepEqual(await readAll(await c.snapshotReader(G1, 3)), second);
          const list = await c.snapshots(G1);
          assert.deepEqual(
            list.map((s) => [s.index, s.size]),
            [[3, stored(second.length)]],
          );
        }),
      );

      it(
        "lists snapshots sorted by index whatever the write order",
        withClient(async (c) => {
          const order = [0x10, 2, 0x7fffffff, 0, 0xa, 1, 0x100];
          for (const index of order) await c.writeSnapshot(G1, index, bytesStream(`snap ${index}`));
          const list = await c.snapshots(G1);
          assert.deepEqual(
            list.map((s) => s.index),
            [...order].sort((a, b) => a - b),
          );
          for (const s of list) {
            assert.equal(s.generation, G1);
            assert.equal(s.size, stored(Buffer.byteLength(`snap ${s.index}`)));
          }
        }),
      );

      it(
        "keeps generations apart and lists them sorted",
        withClient(async (c) => {
          for (const gen of [G3, G1, G2, G0]) {
            await c.writeSnapshot(gen, 1, bytesStream(`${gen} snapshot`));
          }
          await c.writeSnapshot(G2, 4, bytesStream("g2 four"));
          assert.deepEqual(await c.generations(), [G0, G1, G2, G3]);
          assert.deepEqual(
            (await c.snapshots(G2)).map((s) => [s.generation, s.index]),
            [
              [G2, 1],
              [G2, 4],
            ],
          );
          assert.deepEqual(
            (await c.snapshots(G3)).map((s) => [s.generation, s.index]),
            [[G3, 1]],
          );
          assert.equal((await readAll(await c.snapshotReader(G3, 1))).toString(), `${G3} snapshot`);
          await assertCode(c.snapshotReader(G3, 4), ErrorCodes.NOT_FOUND);
        }),
      );

      it(
        "deletes one snapshot and leaves the others",
        withClient(async (c) => {
          for (const index of [1, 2, 3]) await c.writeSnapshot(G1, index, bytesStream(`s${index}`));
          await c.deleteSnapshot(G1, 2);
          await c.deleteSnapshot(G1, 2);
          assert.deepEqual(
            (await c.snapshots(G1)).map((s) => s.index),
            [1, 3],
          );
          await assertCode(c.snapshotReader(G1, 2), ErrorCodes.NOT_FOUND);
        }),
      );
    });

    describe("wal segments", () => {
      it(
        "round-trips Uint8Array and Readable bodies and describes them",
        withClient(async (c) => {
          const header = randomBytes(32 + 4096 + 24);
          const frames = randomBytes(3 * (4096 + 24));
          const before = Date.now();
          const a = await c.writeWalSegment(G1, 2, 0, new Uint8Array(header));
          const b = await c.writeWalSegment(G1, 2, 0x1038, chunked(frames, 4096));
          assert.deepEqual([a.generation, a.index, a.offset, a.size], [G1, 2, 0, stored(header.length)]);
          assert.deepEqual([b.generation, b.index, b.offset, b.size], [G1, 2, 0x1038, stored(frames.length)]);
          assertRecent(a.createdAt, before);
          assertRecent(b.createdAt, before);

          assert.deepEqual(await readAll(await c.walSegmentReader(G1, 2, 0)), header);
          assert.deepEqual(await readAll(await c.walSegmentReader(G1, 2, 0x1038)), frames);
          const list = await c.walSegments(G1);
          assert.deepEqual(
            list.map((s) => [s.generation, s.index, s.offset, s.size]),
            [
              [G1, 2, 0, stored(header.length)],
              [G1, 2, 0x1038, stored(frames.length)],
            ],
          );
          for (const s of list) assertRecent(s.createdAt, before);
          assert.deepEqual(await c.generations(), [G1]);
          assert.deepEqual(await c.snapshots(G1), []);
        }),
      );

      it(
        "lists segments sorted by index then offset whatever the write order",
        withClient(async (c) => {
          const positions: Array<[number, number]> = [
            [3, 0x20],
            [1, 0x1038],
            [0x10, 0],
            [1, 0],
            [3, 0],
            [2, 0xffffffff],
            [1, 0x2070],
            [2, 0x20],
            [0xa, 0x1038],
            [1, 0x20],
          ];
          for (const [index, offset] of positions) {
            await c.writeWalSegment(G1, index, offset, Buffer.from(`${index}:${offset}`));
          }
          await c.writeWalSegment(G0, 5, 0, Buffer.from("other generation"));
          const want = [...positions].sort((x, y) => x[0] - y[0] || x[1] - y[1]);
          const list = await c.walSegments(G1);
          assert.deepEqual(
            list.map((s) => [s.index, s.offset]),
            want,
          );
          for (const s of list) {
            assert.equal(s.generation, G1);
            assert.equal(s.size, stored(Buffer.byteLength(`${s.index}:${s.offset}`)));
          }
          assert.deepEqual(
            (await c.walSegments(G0)).map((s) => [s.generation, s.index, s.offset]),
            [[G0, 5, 0]],
          );
        }),
      );

      it(
        "replaces a segment at the same position",
        withClient(async (c) => {
          await c.writeWalSegment(G1, 1, 0, Buffer.from("a longer first body"));
          await c.writeWalSegment(G1, 1, 0, Buffer.from("short"));
          assert.equal((await readAll(await c.walSegmentReader(G1, 1, 0))).toString(), "short");
          assert.deepEqual(
            (await c.walSegments(G1)).map((s) => [s.index, s.offset, s.size]),
            [[1, 0, stored(5)]],
          );
        }),
      );

      it(
        "reports NOT_FOUND for a missing position in an existing generation",
        withClient(async (c) => {
          await c.writeWalSegment(G1, 1, 0, Buffer.from("x"));
          await assertCode(c.walSegmentReader(G1, 1, 0x20), ErrorCodes.NOT_FOUND);
          await assertCode(c.walSegmentReader(G1, 2, 0), ErrorCodes.NOT_FOUND);
          await assertCode(c.walSegmentReader(G2, 1, 0), ErrorCodes.NOT_FOUND);
        }),
      );

      it(
        "deletes the listed segments only, ignoring ones already gone",
        withClient(async (c) => {
          for (const [index, offset] of [
            [1, 0],
            [1, 0x20],
            [2, 0],
            [3, 0],
          ] as const) {
            await c.writeWalSegment(G1, index, offset, Buffer.from("seg"));
          }
          await c.writeWalSegment(G2, 1, 0, Buffer.from("seg"));
          await c.deleteWalSegments([
            { generation: G1, index: 1, offset: 0 },
            { generation: G1, index: 2, offset: 0 },
            { generation: G1, index: 9, offset: 0 },
            { generation: G3, index: 1, offset: 0 },
          ]);
          assert.deepEqual(
            (await c.walSegments(G1)).map((s) => [s.index, s.offset]),
            [
              [1, 0x20],
              [3, 0],
            ],
          );
          assert.equal((await c.walSegments(G2)).length, 1);
        }),
      );

      it(
        "deletes more than 1000 segments in one call",
        withClient(async (c) => {
          const n = 1005;
          const segs = Array.from({ length: n }, (_, i) => ({
            generation: G1,
            index: Math.floor(i / 10),
            offset: (i % 10) * 32,
          }));
          await mapLimit(segs, 16, (s) =>
            c.writeWalSegment(s.generation, s.index, s.offset, Buffer.from([s.offset])),
          );
          await c.writeWalSegment(G1, 5000, 0, Buffer.from("keep"));
          assert.equal((await c.walSegments(G1)).length, n + 1);
          await c.deleteWalSegments(segs);
          assert.deepEqual(
            (await c.walSegments(G1)).map((s) => [s.index, s.offset]),
            [[5000, 0]],
          );
        }),
      );
    });

    describe("generations", () => {
      it(
        "deleteGeneration removes its snapshots, segments and extras and leaves other generations",
        withClient(async (c) => {
          for (const gen of [G1, G2]) {
            await c.writeSnapshot(gen, 1, bytesStream(`${gen} snap`));
            await c.writeWalSegment(gen, 1, 0, Buffer.from(`${gen} wal 0`));
            await c.writeWalSegment(gen, 1, 0x1038, Buffer.from(`${gen} wal 1`));
            await c.putExtra(`walship/generations/${gen}/commits/00000001_00000000.json`, Buffer.from("[]"));
          }
          await c.deleteGeneration(G1);
          assert.deepEqual(await c.generations(), [G2]);
          assert.deepEqual(await c.snapshots(G1), []);
          assert.deepEqual(await c.walSegments(G1), []);
          await assertCode(c.snapshotReader(G1, 1), ErrorCodes.NOT_FOUND);
          await assertCode(c.walSegmentReader(G1, 1, 0), ErrorCodes.NOT_FOUND);
          assert.deepEqual(await c.listExtras(`walship/generations/${G1}/`), []);

          assert.equal((await c.snapshots(G2)).length, 1);
          assert.equal((await c.walSegments(G2)).length, 2);
          assert.equal((await readAll(await c.walSegmentReader(G2, 1, 0x1038))).toString(), `${G2} wal 1`);
          assert.deepEqual(await c.listExtras("walship/"), [
            `walship/generations/${G2}/commits/00000001_00000000.json`,
          ]);

          await c.deleteGeneration(G1);
          await c.deleteGeneration(G2);
          assert.deepEqual(await c.generations(), []);
          assert.deepEqual(await c.listExtras(""), []);
        }),
      );

      it(
        "a generation can be written again after it was deleted",
        withClient(async (c) => {
          await c.writeSnapshot(G1, 1, bytesStream("old"));
          await c.deleteGeneration(G1);
          await c.writeSnapshot(G1, 2, bytesStream("new"));
          assert.deepEqual(await c.generations(), [G1]);
          assert.deepEqual(
            (await c.snapshots(G1)).map((s) => s.index),
            [2],
          );
        }),
      );
    });

    describe("names outside the layout", {
      skip: strays ? false : "backend cannot hold stray objects",
    }, () => {
      it(
        "are ignored by the listings",
        withClient(async (c) => {
          await c.writeSnapshot(G1, 1, bytesStream("real snapshot"));
          await c.writeWalSegment(G1, 1, 0, Buffer.from("real segment"));
          const strayKeys = [
            `generations/${G1}/snapshots/notes.txt`,
            `generations/${G1}/snapshots/1.snapshot.lz4`,
            `generations/${G1}/snapshots/00000002.snapshot.lz4.tmp`,
            `generations/${G1}/snapshots/0000000A.snapshot.lz4`,
            `generations/${G1}/snapshots/00000003.snapshot`,
            `generations/${G1}/snapshots/00000003_00000000.wal.lz4`,
            `generations/${G1}/wal/00000001_0000020.wal.lz4`,
            `generations/${G1}/wal/00000001_000000020.wal.lz4`,
            `generations/${G1}/wal/00000001.wal.lz4`,
            `generations/${G1}/wal/00000002_00000000.wal`,
            `generations/${G1}/wal/00000003_00000000.wal.lz4.tmp`,
            `generations/${G1}/wal/00000004.snapshot.lz4`,
            `generations/${G1}/other/00000005.snapshot.lz4`,
            "generations/ABCDEF0123456789/snapshots/00000001.snapshot.lz4",
            "generations/0123456789abcde/snapshots/00000001.snapshot.lz4",
            "generations/0123456789abcdef0/snapshots/00000001.snapshot.lz4",
            "generations/not-a-generation/wal/00000001_00000000.wal.lz4",
            "generations.txt",
            "snapshots/00000001.snapshot.lz4",
          ];
          for (const key of strayKeys) await c.putExtra(key, Buffer.from("stray"));
          assert.deepEqual(await c.generations(), [G1]);
          assert.deepEqual(
            (await c.snapshots(G1)).map((s) => [s.index, s.size]),
            [[1, stored(Buffer.byteLength("real snapshot"))]],
          );
          assert.deepEqual(
            (await c.walSegments(G1)).map((s) => [s.index, s.offset, s.size]),
            [[1, 0, stored(Buffer.byteLength("real segment"))]],
          );
        }),
      );
    });

    describe("extras", () => {
      it(
        "round-trips bytes and replaces on put",
        withClient(async (c) => {
          const key = `walship/generations/${G1}/commits/00000001_00000000.json`;
          const body = randomBytes(3000);
          await c.putExtra(key, body);
          assert.deepEqual(Buffer.from(await c.getExtra(key)), body);
          await c.putExtra(key, Buffer.from("{}"));
          assert.equal(Buffer.from(await c.getExtra(key)).toString(), "{}");
          await c.putExtra("walship/empty", new Uint8Array(0));
          assert.equal((await c.getExtra("walship/empty")).length, 0);
          assert.ok((await c.getExtra(key)) instanceof Uint8Array);
        }),
      );

      it(
        "lists full keys under a prefix, sorted, with object-store prefix semantics",
        withClient(async (c) => {
          const all = [
            "walship/x/b.json",
            "walship/x/a.json",
            "walship/x/sub/c.json",
            "walship/xz/d.json",
            "walship/y/e.json",
            "walship/x/A.json",
          ];
          for (const key of all) await c.putExtra(key, Buffer.from(key));
          assert.deepEqual(await c.listExtras("walship/x/"), [
            "walship/x/A.json",
            "walship/x/a.json",
            "walship/x/b.json",
            "walship/x/sub/c.json",
          ]);
          assert.deepEqual(await c.listExtras("walship/x"), [
            "walship/x/A.json",
            "walship/x/a.json",
            "walship/x/b.json",
            "walship/x/sub/c.json",
            "walship/xz/d.json",
          ]);
          assert.deepEqual(await c.listExtras("walship/x/a"), ["walship/x/a.json"]);
          assert.deepEqual(await c.listExtras("walship/"), [...all].sort());
          assert.deepEqual(await c.listExtras("walship/nothing/"), []);
          assert.deepEqual(await c.listExtras("walship/x/sub/c.json"), ["walship/x/sub/c.json"]);
        }),
      );

      it(
        "deletes the listed keys only, ignoring ones already gone",
        withClient(async (c) => {
          for (const key of ["walship/a", "walship/b", "walship/c/d"])
            await c.putExtra(key, Buffer.from("1"));
          await c.deleteExtras(["walship/a", "walship/c/d", "walship/never"]);
          assert.deepEqual(await c.listExtras("walship/"), ["walship/b"]);
          await assertCode(c.getExtra("walship/a"), ErrorCodes.NOT_FOUND);
          await assertCode(c.getExtra("walship/c"), ErrorCodes.NOT_FOUND);
        }),
      );

      it(
        "rejects keys that leave the root with STORAGE",
        withClient(async (c) => {
          for (const key of [
            "../escape",
            "walship/../../escape",
            "/etc/passwd",
            "walship/./x",
            "walship//x",
            "",
          ]) {
            await assertCode(c.putExtra(key, Buffer.from("x")), ErrorCodes.STORAGE);
            await assertCode(c.getExtra(key), ErrorCodes.STORAGE);
            await assertCode(c.deleteExtras([key]), ErrorCodes.STORAGE);
          }
          for (const prefix of ["../", "walship/../", "/abs"]) {
            await assertCode(c.listExtras(prefix), ErrorCodes.STORAGE);
          }
          assert.deepEqual(await c.listExtras(""), []);
        }),
      );
    });

    describe("names the layout cannot hold", () => {
      it(
        "rejects bad generations, indexes and offsets with STORAGE and writes nothing",
        withClient(async (c) => {
          for (const gen of ["ABCDEF0123456789", "0123", "../../../../etc", "", "0123456789abcdeg"]) {
            await assertCode(c.writeSnapshot(gen, 1, bytesStream("x")), ErrorCodes.STORAGE);
            await assertCode(c.writeWalSegment(gen, 1, 0, Buffer.from("x")), ErrorCodes.STORAGE);
            await assertCode(c.snapshots(gen), ErrorCodes.STORAGE);
            await assertCode(c.walSegments(gen), ErrorCodes.STORAGE);
            await assertCode(c.snapshotReader(gen, 1), ErrorCodes.STORAGE);
            await assertCode(c.deleteGeneration(gen), ErrorCodes.STORAGE);
          }
          for (const bad of [-1, 1.5, 0x100000000, Number.NaN]) {
            await assertCode(c.writeSnapshot(G1, bad, bytesStream("x")), ErrorCodes.STORAGE);
            await assertCode(c.writeWalSegment(G1, bad, 0, Buffer.from("x")), ErrorCodes.STORAGE);
            await assertCode(c.writeWalSegment(G1, 0, bad, Buffer.from("x")), ErrorCodes.STORAGE);
            await assertCode(c.walSegmentReader(G1, 0, bad), ErrorCodes.STORAGE);
          }
          await c.writeWalSegment(G1, 1, 0, Buffer.from("keep"));
          await assertCode(
            c.deleteWalSegments([
              { generation: G1, index: 1, offset: 0 },
              { generation: "bad", index: 1, offset: 0 },
            ]),
            ErrorCodes.STORAGE,
          );
          assert.equal((await c.walSegments(G1)).length, 1, "a bad entry must stop the whole delete");
          assert.deepEqual(await c.generations(), [G1]);
          assert.deepEqual(await c.snapshots(G1), []);
        }),
      );
    });

    describe("failed and cancelled calls", () => {
      it(
        "an abort mid-stream rejects with ABORTED and leaves no snapshot",
        withClient(async (c) => {
          const ac = new AbortController();
          await assertCode(
            c.writeSnapshot(G1, 1, abortingBody(ac), { signal: ac.signal }),
            ErrorCodes.ABORTED,
          );
          assert.deepEqual(await c.snapshots(G1), []);
          await assertCode(c.snapshotReader(G1, 1), ErrorCodes.NOT_FOUND);
        }),
      );

      it(
        "an abort mid-stream rejects with ABORTED and leaves no segment",
        withClient(async (c) => {
          const ac = new AbortController();
          await assertCode(
            c.writeWalSegment(G1, 1, 0, abortingBody(ac), { signal: ac.signal }),
            ErrorCodes.ABORTED,
          );
          assert.deepEqual(await c.walSegments(G1), []);
          await assertCode(c.walSegmentReader(G1, 1, 0), ErrorCodes.NOT_FOUND);
        }),
      );

      it(
        "an aborted overwrite keeps the previous snapshot",
        withClient(async (c) => {
          await c.writeSnapshot(G1, 1, bytesStream("previous"));
          const ac = new AbortController();
          await assertCode(
            c.writeSnapshot(G1, 1, abortingBody(ac), { signal: ac.signal }),
            ErrorCodes.ABORTED,
          );
          assert.equal((await readAll(await c.snapshotReader(G1, 1))).toString(), "previous");
          assert.deepEqual(
            (await c.snapshots(G1)).map((s) => [s.index, s.size]),
            [[1, stored(Buffer.byteLength("previous"))]],
          );
        }),
      );

      it(
        "a body that fails midway rejects with STORAGE and leaves the previous object",
        withClient(async (c) => {
          await assertCode(
            c.writeSnapshot(G1, 1, failingBody(new Error("disk on fire"))),
            ErrorCodes.STORAGE,
          );
          assert.deepEqual(await c.snapshots(G1), []);
          await c.writeWalSegment(G1, 1, 0, Buffer.from("previous"));
          await assertCode(c.writeWalSegment(G1, 1, 0, failingBody(new Error("boom"))), ErrorCodes.STORAGE);
          assert.equal((await readAll(await c.walSegmentReader(G1, 1, 0))).toString(), "previous");
          assert.deepEqual(
            (await c.walSegments(G1)).map((s) => [s.index, s.offset, s.size]),
            [[1, 0, stored(Buffer.byteLength("previous"))]],
          );
        }),
      );

      it(
        "a WalshipError from the body keeps its code",
        withClient(async (c) => {
          const err = new WalshipError(ErrorCodes.CORRUPT, "encode snapshot: bad page");
          await assertCode(c.writeSnapshot(G1, 1, failingBody(err)), ErrorCodes.CORRUPT);
          assert.deepEqual(await c.snapshots(G1), []);
        }),
      );

      it(
        "every call given an aborted signal rejects with ABORTED and changes nothing",
        withClient(async (c) => {
          await c.writeSnapshot(G1, 1, bytesStream("snap"));
          await c.writeWalSegment(G1, 1, 0, Buffer.from("wal"));
          await c.putExtra("walship/k", Buffer.from("extra"));
          const signal = AbortSignal.abort();
          const o = { signal };
          await assertCode(c.generations(o), ErrorCodes.ABORTED);
          await assertCode(c.snapshots(G1, o), ErrorCodes.ABORTED);
          await assertCode(c.walSegments(G1, o), ErrorCodes.ABORTED);
          await assertCode(c.snapshotReader(G1, 1, o), ErrorCodes.ABORTED);
          await assertCode(c.walSegmentReader(G1, 1, 0, o), ErrorCodes.ABORTED);
          await assertCode(c.getExtra("walship/k", o), ErrorCodes.ABORTED);
          await assertCode(c.listExtras("walship/", o), ErrorCodes.ABORTED);
          await assertCode(c.writeSnapshot(G1, 2, bytesStream("x"), o), ErrorCodes.ABORTED);
          await assertCode(c.writeWalSegment(G1, 1, 0x20, Buffer.from("x"), o), ErrorCodes.ABORTED);
          await assertCode(c.putExtra("walship/k2", Buffer.from("x"), o), ErrorCodes.ABORTED);
          await assertCode(c.deleteSnapshot(G1, 1, o), ErrorCodes.ABORTED);
          await assertCode(
            c.deleteWalSegments([{ generation: G1, index: 1, offset: 0 }], o),
            ErrorCodes.ABORTED,
          );
          await assertCode(c.deleteExtras(["walship/k"], o), ErrorCodes.ABORTED);
          await assertCode(c.deleteGeneration(G1, o), ErrorCodes.ABORTED);

          assert.deepEqual(
            (await c.snapshots(G1)).map((s) => s.index),
            [1],
          );
          assert.deepEqual(
            (await c.walSegments(G1)).map((s) => [s.index, s.offset]),
            [[1, 0]],
          );
          assert.deepEqual(await c.listExtras("walship/"), ["walship/k"]);
        }),
      );
    });
  });
}

export async function readAll(r: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const chunk of r) parts.push(Buffer.from(chunk as Uint8Array));
  return Buffer.concat(parts);
}

/** A byte-mode stream of `s`. */
export function bytesStream(s: string | Uint8Array): Readable {
  return chunked(Buffer.from(s), 16 * 1024);
}

/** A byte-mode stream that hands out `body` in pieces of `size` bytes. */
export function chunked(body: Uint8Array, size: number): Readable {
  let at = 0;
  return new Readable({
    read() {
      if (at >= body.length) {
        this.push(null);
        return;
      }
      this.push(body.subarray(at, at + size));
      at += size;
    },
  });
}

/** A byte-mode stream of `total` random bytes, produced lazily; `digest()` is its SHA-256 once consumed. */
export function generatedBody(total: number, chunkSize: number): { stream: Readable; digest(): string } {
  const hash = createHash("sha256");
  let sent = 0;
  const stream = new Readable({
    read() {
      if (sent >= total) {
        this.push(null);
        return;
      }
      const chunk = randomBytes(Math.min(chunkSize, total - sent));
      sent += chunk.length;
      hash.update(chunk);
      this.push(chunk);
    },
  });
  return {
    stream,
    digest: () => {
      assert.equal(sent, total, "body not fully consumed");
      return hash.digest("hex");
    },
  };
}

/** Sends a few chunks, then aborts `ac` and never ends: only the abort can finish the write. */
export function abortingBody(ac: AbortController, chunks = 4, chunkSize = 64 * 1024): Readable {
  let sent = 0;
  return new Readable({
    read() {
      if (sent < chunks) {
        sent++;
        this.push(randomBytes(chunkSize));
      } else if (sent === chunks) {
        sent++;
        setImmediate(() => ac.abort());
      }
    },
  });
}

/** Sends a few chunks, then fails with `err`. */
export function failingBody(err: Error, chunks = 3, chunkSize = 64 * 1024): Readable {
  let sent = 0;
  return new Readable({
    read() {
      if (sent < chunks) {
        sent++;
        this.push(randomBytes(chunkSize));
      } else {
        setImmediate(() => this.destroy(err));
      }
    },
  });
}

function assertRecent(d: Date, startedMs: number): void {
  assert.ok(d instanceof Date, "createdAt must be a Date");
  assert.ok(!Number.isNaN(d.getTime()), "createdAt must be a valid date");
  // Object stores keep second (or coarser) precision and clocks drift a little: allow a margin.
  assert.ok(d.getTime() >= startedMs - 5_000, `createdAt ${d.toISOString()} is before the write started`);
  assert.ok(d.getTime() <= Date.now() + 5_000, `createdAt ${d.toISOString()} is in the future`);
}

async function mapLimit<T>(
  items: readonly T[],
  limit: number,
  fn: (item: T) => Promise<unknown>,
): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await fn(items[next++] as T);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}
