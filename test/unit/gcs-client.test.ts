/**
 * The GCS destination against a real fake-gcs-server (the GCS emulator, built by test/infra/install):
 * the shared ReplicaClient contract, plus what only GCS shows (key placement as Litestream joins it,
 * resumable uploads above 16 MiB, timeCreated as the object time, unsorted pages, the access check,
 * and uploads checked against the MD5 the server reports: a body changed on the way is refused).
 *
 * The raw JSON API listing (FakeGcs.listObjects) observes the bucket independently of the code under
 * test. The Node client gets the emulator as `endpoint`; STORAGE_EMULATOR_HOST is never set here.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { createServer, request } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, it } from "node:test";
import { GcsReplicaClient, type GcsReplicaClientOptions } from "../../src/replicator/storage/gcs.ts";
import { ErrorCodes } from "../../src/shared/errors.ts";
import {
  bytesStream,
  generatedBody,
  readAll,
  replicaClientContract,
} from "../contract/replica-client.contract.ts";
import { assertCode } from "../helpers/assert.ts";
import { type FakeGcs, startGcs } from "../helpers/gcs.ts";
import { freePort } from "../helpers/ports.ts";
import { type GateProxy, gateProxy } from "../helpers/token-standin.ts";

const G1 = "0a1b2c3d4e5f6071";
const MiB = 1024 * 1024;

// Never let google-auth-library look for a metadata server off this machine.
process.env.METADATA_SERVER_DETECTION = "none";
delete process.env.STORAGE_EMULATOR_HOST;

let gcs: FakeGcs | undefined;
before(async () => {
  gcs = await startGcs();
});
after(async () => {
  await gcs?.close();
});

function server(): FakeGcs {
  assert.ok(gcs, "fake-gcs-server did not start (run `test/infra/install fake-gcs-server`)");
  return gcs;
}

let seq = 0;
async function freshBucket(label: string): Promise<string> {
  const name = `${label}-${process.pid}-${++seq}`;
  await server().createBucket(name);
  return name;
}

function client(bucket: string, over: Partial<GcsReplicaClientOptions> = {}): GcsReplicaClient {
  return new GcsReplicaClient({ bucket, path: "", endpoint: server().endpoint, ...over });
}

replicaClientContract("gcs (fake-gcs-server)", async () => {
  const bucket = await freshBucket("contract");
  const c = client(bucket, { path: "db/replica" });
  return { client: c, cleanup: async () => c.close() };
});

describe("gcs destination", () => {
  it("places keys as Litestream joins them, under a cleaned path", async () => {
    const bucket = await freshBucket("keys");
    for (const [path, want] of [
      ["", `generations/${G1}/snapshots/00000001.snapshot.lz4`],
      ["a/b/", `a/b/generations/${G1}/snapshots/00000001.snapshot.lz4`],
      ["abs//x/./", `abs/x/generations/${G1}/snapshots/00000001.snapshot.lz4`],
      // (A leading "/" is kept, as Go's path.Join keeps it, but fake-gcs-server drops it from object
      // names, so that case is checked on rootPrefix alone, in the s3 tests.)
    ] as const) {
      const c = client(bucket, { path });
      await c.writeSnapshot(G1, 1, bytesStream("x"));
      const names = (await server().listObjects(bucket)).map((o) => o.name);
      assert.ok(names.includes(want), `${path}: ${want} not in ${names.join(", ")}`);
      assert.equal(
        c.location,
        `gs://${bucket}${want.startsWith("generations") ? "" : `/${want.split("/generations")[0]}`}`,
      );
    }
  });

  it("streams a body above 16 MiB as a resumable upload and reads it back", async () => {
    const bucket = await freshBucket("big");
    const c = client(bucket, { path: "p" });
    const size = 17 * MiB + 5;
    const { stream, digest } = generatedBody(size, 256 * 1024);
    const info = await c.writeSnapshot(G1, 1, stream);
    assert.equal(info.size, size);
    const want = digest();
    const { createHash } = await import("node:crypto");
    const h = createHash("sha256");
    let n = 0;
    for await (const chunk of await c.snapshotReader(G1, 1)) {
      h.update(chunk as Buffer);
      n += (chunk as Buffer).length;
    }
    assert.equal(n, size);
    assert.equal(h.digest("hex"), want);
    assert.equal(c.operations.PUT.count, 1);
    assert.equal(c.operations.PUT.bytes, size);
  });

  it("reports GCS's timeCreated as the object time", async () => {
    const bucket = await freshBucket("times");
    const c = client(bucket, { path: "t" });
    const info = await c.writeWalSegment(G1, 1, 0, Buffer.from("seg"));
    const [raw] = await server().listObjects(bucket, "t/");
    assert.ok(raw);
    assert.equal(info.createdAt.getTime(), new Date(raw.timeCreated).getTime());
    const [listed] = await c.walSegments(G1);
    assert.equal(listed?.createdAt.getTime(), new Date(raw.timeCreated).getTime());
  });

  it("lists across pages (more than one page of objects), sorted", async () => {
    const bucket = await freshBucket("pages");
    const c = client(bucket, { path: "pg" });
    const n = 1205;
    const body = Buffer.from("s");
    const idx = Array.from({ length: n }, (_, i) => n - i);
    // Write through the raw client in parallel to keep this quick.
    for (let at = 0; at < idx.length; at += 50) {
      await Promise.all(idx.slice(at, at + 50).map((i) => c.writeWalSegment(G1, i, 0, body)));
    }
    const list = await c.walSegments(G1);
    assert.equal(list.length, n);
    assert.deepEqual(
      list.map((s) => s.index),
      [...idx].sort((a, b) => a - b),
    );
  });

  it("a missing bucket is a STORAGE error naming it", async () => {
    const c = client(`missing-${process.pid}`);
    await assertCode(c.writeSnapshot(G1, 1, bytesStream("x")), ErrorCodes.STORAGE);
    await assert.rejects(c.generations(), /does not exist|404/);
  });

  it("checkAccess passes with full access and leaves nothing behind", async () => {
    const bucket = await freshBucket("access");
    const c = client(bucket, { path: "a" });
    await c.checkAccess();
    assert.deepEqual(await server().listObjects(bucket), []);
  });

  it("checkAccess fails at start, naming storage.objects.delete, when deletes are refused", async () => {
    // FAKE: a proxy in front of the real emulator that refuses DELETE with GCS's 403 body (the
    // emulator enforces no permissions).
    const bucket = await freshBucket("nodelete");
    const proxy = await refusingProxy(server().endpoint, "DELETE");
    try {
      const c = client(bucket, { path: "a", endpoint: proxy.url, maxAttempts: 1 });
      await assert.rejects(c.checkAccess(), (err: unknown) => {
        assert.equal((err as { code?: string }).code, ErrorCodes.STORAGE);
        assert.match(
          (err as Error).message,
          /cannot delete objects \(storage\.objects\.delete denied, HTTP 403\)/,
        );
        assert.match((err as Error).message, /roles\/storage\.objectAdmin/);
        return true;
      });
    } finally {
      await proxy.close();
    }
  });

  it("a reader of a missing object fails before any byte with NOT_FOUND, and reads an empty object", async () => {
    const bucket = await freshBucket("read");
    const c = client(bucket, { path: "r" });
    await assertCode(c.walSegmentReader(G1, 9, 0), ErrorCodes.NOT_FOUND);
    await c.writeWalSegment(G1, 9, 0, new Uint8Array(0));
    assert.equal((await readAll(await c.walSegmentReader(G1, 9, 0))).length, 0);
  });

  it("a failed upload stops the body that feeds it (no producer left blocked on a pipe)", async () => {
    // A port nobody listens on: every request fails at once.
    const port = await freePort();
    const c = client("any-bucket", {
      endpoint: `http://127.0.0.1:${port}`,
      maxAttempts: 1,
      resumableThresholdBytes: 1024 * 1024,
    });
    const { stream } = generatedBody(64 * 1024 * 1024, 64 * 1024);
    await assertCode(c.writeSnapshot(G1, 1, stream), ErrorCodes.STORAGE);
    assert.ok(stream.destroyed, "the body is destroyed");
    assert.ok(!stream.readableEnded, "and was not read to its end");
  });
});

/** FAKE: forwards everything to `target` except `method`, answered with GCS's 403 error body. */
function refusingProxy(target: string, method: string): Promise<GateProxy> {
  return gateProxy(target, (req) =>
    req.method === method
      ? {
          status: 403,
          body: {
            error: {
              code: 403,
              message:
                "walship-test@example.iam.gserviceaccount.com does not have storage.objects.delete access",
              errors: [{ reason: "forbidden", message: "forbidden" }],
            },
          },
        }
      : undefined,
  );
}

/**
 * FAKE: a link that changes one byte in the middle of each upload's media on its way to `target`
 * (a multipart POST, or a resumable session's PUT), as a faulty network or middlebox would; every
 * other request passes as it is. Resumable session URLs the server hands out are rewritten to go
 * through it too. With `corrupt` false it only forwards (the control).
 */
async function corruptingLink(
  target: string,
  corrupt: boolean,
): Promise<{ url: string; changed: () => number; close: () => Promise<void> }> {
  const t = new URL(target);
  let changed = 0;
  let url = "";
  const srv = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const body = Buffer.concat(chunks);
      const q = new URL(req.url ?? "/", "http://x").searchParams;
      const media =
        (req.method === "POST" && q.get("uploadType") === "multipart") ||
        (req.method === "PUT" && q.has("upload_id"));
      if (corrupt && media && body.length > 1024) {
        body[body.length >> 1]! ^= 0x5a;
        changed++;
      }
      const up = request(
        {
          host: t.hostname,
          port: t.port,
          method: req.method,
          path: req.url,
          headers: { ...req.headers, host: t.host, "content-length": String(body.length) },
        },
        (r) => {
          const headers = { ...r.headers };
          if (typeof headers.location === "string") headers.location = headers.location.replace(target, url);
          res.writeHead(r.statusCode ?? 502, headers);
          r.pipe(res);
        },
      );
      up.on("error", () => res.destroy());
      up.end(body);
    });
  });
  await new Promise<void>((resolve) => srv.listen(0, "127.0.0.1", resolve));
  url = `http://127.0.0.1:${(srv.address() as AddressInfo).port}`;
  return {
    url,
    changed: () => changed,
    close: () => new Promise<void>((resolve) => srv.close(() => resolve())),
  };
}

describe("gcs uploads are checked against the stored object's MD5", () => {
  for (const [kind, threshold] of [
    ["in one multipart request", undefined],
    ["as a resumable upload", 256 * 1024],
  ] as const) {
    it(`a body changed on the way fails the write ${kind}, and nothing is left stored`, async () => {
      const bucket = await freshBucket("md5");
      const body = randomBytes(512 * 1024);
      const control = await corruptingLink(server().endpoint, false);
      const bad = await corruptingLink(server().endpoint, true);
      try {
        const opts = {
          path: "v",
          maxAttempts: 1,
          ...(threshold ? { resumableThresholdBytes: threshold } : {}),
        };
        const ok = client(bucket, { ...opts, endpoint: control.url });
        await ok.writeSnapshot(G1, 1, bytesStream(body));
        assert.deepEqual(
          await readAll(await ok.snapshotReader(G1, 1)),
          body,
          "the control link stores it whole",
        );

        const c = client(bucket, { ...opts, endpoint: bad.url });
        await assertCode(c.writeSnapshot(G1, 2, bytesStream(body)), ErrorCodes.STORAGE);
        assert.equal(bad.changed(), 1, "the link changed the one upload");
        const names = (await server().listObjects(bucket, "v/")).map((o) => o.name);
        assert.deepEqual(names, [`v/generations/${G1}/snapshots/00000001.snapshot.lz4`]);
        assert.equal(c.operations.PUT.count, 0);
      } finally {
        await control.close();
        await bad.close();
      }
    });
  }
});
