/**
 * The benchmark's store readers (bench/stores.ts), which `make bench-destinations` watches replicas
 * through: against the real local servers (MinIO, fake-gcs-server, Azurite) and a directory, each
 * lists keys under a prefix in key order after a StartAfter key (exclusive), gives the "directories"
 * one level down with a delimiter, reads an object whole and deletes a prefix and nothing beside it.
 * The directory reader (an SFTP server's chroot) also leaves out Walship's `.tmp` uploads and any file
 * an SSH server process still holds open, with every key after it: Litestream v0.3.13 writes its SFTP
 * objects in place, and the bench must not see one before it is whole.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { PutObjectCommand } from "@aws-sdk/client-s3";
import { openStore, type StoreReader, type StoreSpec } from "../../bench/stores.ts";
import { type Azurite, startAzurite } from "../helpers/azurite.ts";
import { type FakeGcs, startGcs } from "../helpers/gcs.ts";
import { type Minio, startMinio } from "../helpers/minio.ts";

const WAL = "p/generations/0123456789abcdef/wal";
const KEYS: Record<string, Buffer> = {
  [`${WAL}/00000000_00000000.wal.lz4`]: Buffer.from("first segment"),
  [`${WAL}/00000000_00001000.wal.lz4`]: Buffer.from("second segment, longer"),
  [`${WAL}/00000001_00000000.wal.lz4`]: Buffer.alloc(70_000, 7),
  "p/generations/fedcba9876543210/snapshots/00000000.snapshot.lz4": Buffer.from("snapshot"),
  "q/outside": Buffer.from("not under p/"),
};
const SEGMENTS = Object.keys(KEYS).filter((k) => k.startsWith(`${WAL}/`));

const dirs: string[] = [];
const tmp = (what: string) => {
  const d = mkdtempSync(path.join(os.tmpdir(), `walship-bench-stores-${what}-`));
  dirs.push(d);
  return d;
};
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** The same checks on every kind of store, filled with KEYS by `put`. */
function contract(
  name: string,
  open: () => Promise<{ spec: StoreSpec; put: (k: string, b: Buffer) => Promise<void> }>,
) {
  describe(`the ${name} reader`, () => {
    let reader: StoreReader;
    before(async () => {
      const { spec, put } = await open();
      for (const [k, b] of Object.entries(KEYS)) await put(k, b);
      reader = await openStore(spec);
    });
    after(() => reader?.close());

    it("lists the generations one level down with a delimiter", async () => {
      const l = await reader.list("p/generations/", undefined, "/");
      assert.deepEqual([...l.common].sort(), [
        "p/generations/0123456789abcdef/",
        "p/generations/fedcba9876543210/",
      ]);
      assert.deepEqual(l.contents, []);
    });

    it("lists keys in order with their sizes, and only those after StartAfter", async () => {
      const all = await reader.list(`${WAL}/`);
      assert.deepEqual(
        all.contents,
        SEGMENTS.map((key) => ({ key, size: KEYS[key]!.length })),
      );
      const rest = await reader.list(`${WAL}/`, SEGMENTS[0]);
      assert.deepEqual(
        rest.contents.map((c) => c.key),
        SEGMENTS.slice(1),
      );
      assert.deepEqual((await reader.list(`${WAL}/`, SEGMENTS.at(-1))).contents, []);
    });

    it("reads an object whole", async () => {
      for (const k of SEGMENTS) assert.deepEqual(await reader.get(k), KEYS[k]);
    });

    it("deletes a prefix and nothing beside it", async () => {
      await reader.deletePrefix("p/");
      assert.deepEqual((await reader.list("p/")).contents, []);
      assert.deepEqual(
        (await reader.list("q/")).contents.map((c) => c.key),
        ["q/outside"],
      );
    });
  });
}

let minio: Minio | undefined;
let gcs: FakeGcs | undefined;
let azurite: Azurite | undefined;
after(async () => {
  await minio?.close();
  await gcs?.close();
  await azurite?.close();
});

contract("s3 (MinIO)", async () => {
  minio = await startMinio();
  await minio.createBucket("bench");
  const client = minio.client();
  const m = minio;
  return {
    spec: {
      kind: "s3",
      bucket: "bench",
      access: {
        endpoint: m.endpoint,
        region: m.region,
        accessKeyId: m.accessKeyId,
        secretAccessKey: m.secretAccessKey,
      },
    },
    put: async (k, b) => {
      await client.send(new PutObjectCommand({ Bucket: "bench", Key: k, Body: b }));
    },
  };
});

contract("gcs (fake-gcs-server)", async () => {
  gcs = await startGcs();
  await gcs.createBucket("bench");
  const g = gcs;
  return {
    spec: { kind: "gcs", endpoint: g.endpoint, bucket: "bench" },
    put: async (k, b) => {
      const res = await fetch(
        `${g.endpoint}/upload/storage/v1/b/bench/o?uploadType=media&name=${encodeURIComponent(k)}`,
        { method: "POST", body: b, headers: { "content-type": "application/octet-stream" } },
      );
      assert.ok(res.ok, `upload ${k}: HTTP ${res.status}`);
    },
  };
});

contract("abs (Azurite)", async () => {
  azurite = await startAzurite();
  await azurite.createContainer("bench");
  const container = azurite.client().getContainerClient("bench");
  const a = azurite;
  return {
    spec: { kind: "abs", endpoint: a.endpoint, account: a.account, key: a.key, container: "bench" },
    put: async (k, b) => {
      await container.getBlockBlobClient(k).uploadData(b);
    },
  };
});

const root = tmp("dir");
contract("dir (an SFTP server's chroot)", async () => ({
  spec: { kind: "dir", root },
  put: async (k, b) => {
    mkdirSync(path.dirname(path.join(root, k)), { recursive: true });
    writeFileSync(path.join(root, k), b);
  },
}));

describe("the dir reader, beside an SFTP server's writes", () => {
  const store = tmp("sftp");
  const wal = path.join(store, "r/wal");
  mkdirSync(wal, { recursive: true });
  writeFileSync(path.join(wal, "a.wal.lz4"), "whole");
  writeFileSync(path.join(wal, "b.wal.lz4"), "being written");
  writeFileSync(path.join(wal, "c.wal.lz4"), "after it");
  writeFileSync(path.join(wal, "d.wal.lz4.tmp"), "an upload not yet renamed");

  it("leaves out .tmp names, and a file an SSH server process holds open with every key after it", async () => {
    const reader = await openStore({ kind: "dir", root: store });
    const keys = async () => (await reader.list("r/wal/")).contents.map((c) => c.key);
    assert.deepEqual(await keys(), ["r/wal/a.wal.lz4", "r/wal/b.wal.lz4", "r/wal/c.wal.lz4"]);
    // A process whose name (comm) starts with "sftp" holding b open for writing, as sshd's
    // internal-sftp holds a file Litestream is still writing.
    const bin = path.join(tmp("holder"), "sftp-holder");
    copyFileSync("/bin/sleep", bin);
    const holder = spawn("sh", ["-c", `exec 3>>"$0"; exec "$1" 30`, path.join(wal, "b.wal.lz4"), bin], {
      stdio: "ignore",
    });
    try {
      await waitUntil(async () => (await keys()).length === 1, "the open file hidden");
      assert.deepEqual(await keys(), ["r/wal/a.wal.lz4"]);
      assert.equal(readFileSync(`/proc/${holder.pid}/comm`, "utf8").trim(), "sftp-holder");
    } finally {
      holder.kill("SIGKILL");
      await new Promise((r) => holder.once("exit", r));
    }
    assert.deepEqual(await keys(), ["r/wal/a.wal.lz4", "r/wal/b.wal.lz4", "r/wal/c.wal.lz4"]);
  });

  it("refuses to delete an empty prefix (the whole store)", async () => {
    const reader = await openStore({ kind: "dir", root: store });
    await assert.rejects(reader.deletePrefix("/"), /empty prefix/);
    assert.equal((await reader.list("r/wal/")).contents.length, 3);
  });
});

async function waitUntil(cond: () => Promise<boolean>, what: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
