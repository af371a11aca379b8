/**
 * Walship's own S3 requests (src/replicator/storage/s3-http.ts, used whenever the keys are given and
 * the region is known) against the AWS SDK client on a real MinIO (test/unit/s3-client.test.ts runs
 * its whole suite on both as well): the same listings (several generations, over
 * a thousand segments so that listings go on across pages, a path with spaces, `&`, `+` and non-ASCII
 * characters), the same bytes, the same restored database, and the same errors for the usual mistakes
 * (wrong secret, unknown key id, missing bucket, missing object, closed port), none naming the
 * secret. Also: a body cut mid-way by a real TCP proxy is resumed, a 503 SlowDown is retried, a peer
 * that never answers times out, key files are read again, keys from LITESTREAM_ACCESS_KEY_ID and
 * LITESTREAM_SECRET_ACCESS_KEY are taken, and what one client writes (a multipart upload included)
 * and deletes the other sees.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { Readable } from "node:stream";
import { after, before, describe, it } from "node:test";
import Database from "better-sqlite3";
import { MIN_PART_SIZE_BYTES, type S3Settings } from "../../src/replicator/storage/s3.ts";
import { httpFits, S3HttpReplicaClient } from "../../src/replicator/storage/s3-http.ts";
import { S3ReplicaClient } from "../../src/replicator/storage/s3-sdk.ts";
import { ErrorCodes, WalshipError } from "../../src/shared/errors.ts";
import { createLogger } from "../../src/shared/log.ts";
import { type Minio, startMinio } from "../helpers/minio.ts";
import { freePort } from "../helpers/ports.ts";
import { logicalHash } from "../helpers/sqlite.ts";
import { sleep, startReplicator, walship, writeConfig } from "../helpers/walship.ts";

process.env.AWS_EC2_METADATA_DISABLED = "true";
const BUCKET = "reader";
const ROOT = "odd path/ü+&'=";
const GENERATIONS = ["0123456789abcdef", "1123456789abcdef", "2123456789abcdef"];
const SEGMENTS = 1205;

let minio: Minio;
const dir = mkdtempSync(path.join(os.tmpdir(), "walship-s3read-"));
const closers: Array<() => unknown> = [];

before(async () => {
  minio = await startMinio();
  await minio.createBucket(BUCKET);
});
after(async () => {
  for (const c of closers) await c();
  await minio?.close();
  rmSync(dir, { recursive: true, force: true });
});

function settings(extra: Partial<S3Settings> = {}): S3Settings {
  return {
    bucket: BUCKET,
    path: ROOT,
    region: "us-east-1",
    endpoint: minio.endpoint,
    forcePathStyle: true,
    skipVerify: false,
    accessKeyId: minio.accessKeyId,
    secretAccessKey: minio.secretAccessKey,
    ...extra,
  };
}

function both(extra: Partial<S3Settings> = {}, opts: { maxAttempts?: number } = {}) {
  const sdk = new S3ReplicaClient(settings(extra), opts);
  const reader = new S3HttpReplicaClient(settings(extra), opts);
  closers.push(
    () => sdk.close?.(),
    () => reader.close?.(),
  );
  return { sdk, reader };
}

async function drain(r: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of r) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

/** The error a call fails with (it must fail). */
async function failure(p: Promise<unknown>): Promise<WalshipError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof WalshipError, String(err));
    return err;
  }
  assert.fail("expected a failure");
}

/** A loopback TCP proxy to MinIO; `onConnection(n)` picks what the n-th connection gets. */
async function proxy(
  mode: (n: number) => "pass" | { cutAfter: number } | "slowdown" | "silent",
): Promise<{ endpoint: string; connections: () => number }> {
  const target = new URL(minio.endpoint);
  let n = 0;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    sockets.add(client);
    const m = mode(++n);
    if (m === "silent") return; // accepts, never answers
    if (m === "slowdown") {
      const body =
        '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>';
      client.once("data", () =>
        client.end(
          `HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/xml\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`,
        ),
      );
      return;
    }
    const upstream = net.connect(Number(target.port), target.hostname);
    sockets.add(upstream);
    let sent = 0;
    client.on("data", (d) => upstream.write(d));
    upstream.on("data", (d) => {
      sent += d.length;
      if (typeof m === "object" && sent > m.cutAfter) {
        client.write(d.subarray(0, d.length - (sent - m.cutAfter)));
        client.destroy();
        upstream.destroy();
        return;
      }
      client.write(d);
    });
    const close = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on("close", close).on("error", close);
    upstream.on("close", close).on("error", close);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  closers.push(
    () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  );
  const port = (server.address() as net.AddressInfo).port;
  return { endpoint: `http://127.0.0.1:${port}`, connections: () => n };
}

describe("Walship's S3 requests against the SDK client (real MinIO)", () => {
  const snapshot = randomBytes(3 * 1024 * 1024 + 17);

  before(async () => {
    const w = new S3ReplicaClient(settings());
    closers.push(() => w.close?.());
    for (const [i, g] of GENERATIONS.entries()) {
      await w.writeSnapshot(g, 0, Readable.from([i === 0 ? snapshot : randomBytes(100 + i)]));
    }
    await w.writeSnapshot(GENERATIONS[0]!, 7, Readable.from([randomBytes(5000)]));
    const jobs: Promise<unknown>[] = [];
    for (let k = 0; k < SEGMENTS; k++) {
      jobs.push(
        w.writeWalSegment(GENERATIONS[0]!, Math.floor(k / 100), (k % 100) * 4152, randomBytes(k % 50)),
      );
      if (jobs.length === 32) await Promise.all(jobs.splice(0));
    }
    await Promise.all(jobs);
    await w.putExtra("walship/extra & <one>.json", Buffer.from('{"a":1}'));
  });

  it("the settings it takes: keys or key files, and a known region; else the SDK", () => {
    assert.equal(httpFits(settings()), true);
    assert.equal(httpFits(settings({ accessKeyId: undefined, secretAccessKey: undefined }), {}), false);
    const envKeys = { AWS_ACCESS_KEY_ID: "AKIDENV", AWS_SECRET_ACCESS_KEY: "from-env" };
    assert.equal(httpFits(settings({ accessKeyId: undefined, secretAccessKey: undefined }), envKeys), true);
    assert.equal(
      httpFits(
        settings({
          accessKeyId: undefined,
          secretAccessKey: undefined,
          accessKeyIdFile: "/k",
          secretAccessKeyFile: "/s",
        }),
      ),
      true,
    );
    assert.equal(httpFits(settings({ region: undefined, endpoint: undefined })), false);
    assert.equal(httpFits(settings({ forcePathStyle: false, bucket: "dotted.bucket" })), false);
    assert.equal(httpFits(settings({ forcePathStyle: false, endpoint: "http://10.1.2.3:9000" })), false);
    assert.equal(httpFits(settings({ forcePathStyle: false, endpoint: undefined })), true);
  });

  it("lists, reads and counts exactly as the SDK client does", async () => {
    const { sdk, reader } = both();
    const gens = await reader.generations();
    assert.deepEqual(gens, GENERATIONS);
    assert.deepEqual(gens, await sdk.generations());
    for (const g of GENERATIONS) {
      assert.deepEqual(await reader.snapshots(g), await sdk.snapshots(g), g);
      assert.deepEqual(await reader.walSegments(g), await sdk.walSegments(g), g);
    }
    const segs = await reader.walSegments(GENERATIONS[0]!);
    assert.equal(segs.length, SEGMENTS);
    // Over a thousand keys: at least two pages for one listing.
    assert.ok(
      reader.operations.LIST.count >= 2 * GENERATIONS.length + 2,
      String(reader.operations.LIST.count),
    );
    assert.deepEqual(await reader.listExtras("walship/"), await sdk.listExtras("walship/"));
    assert.deepEqual(await reader.listExtras("walship/"), ["walship/extra & <one>.json"]);
    const extra = await reader.getExtra("walship/extra & <one>.json");
    assert.ok(Buffer.from(extra).equals(Buffer.from(await sdk.getExtra("walship/extra & <one>.json"))));
    assert.equal(Buffer.from(extra).toString(), '{"a":1}');
    const got = await drain(await reader.snapshotReader(GENERATIONS[0]!, 0));
    assert.ok(got.equals(snapshot));
    for (const s of [segs[0]!, segs[700]!, segs.at(-1)!]) {
      const a = await drain(await reader.walSegmentReader(s.generation, s.index, s.offset));
      const b = await drain(await sdk.walSegmentReader(s.generation, s.index, s.offset));
      assert.ok(a.equals(b));
      assert.equal(a.length, s.size);
    }
    // Both read the extra and three segments; the reader also read the snapshot.
    assert.equal(reader.operations.GET.count, 5);
    assert.equal(sdk.operations.GET.count, 4);
    assert.equal(reader.operations.GET.bytes, sdk.operations.GET.bytes + snapshot.length);
  });

  it("fails as the SDK client does, naming the object and the field, never the secret", async () => {
    const secret = "not-the-secret-Zq81";
    const closed = `http://127.0.0.1:${await freePort()}`;
    const cases: Array<{ name: string; extra: Partial<S3Settings>; code: string; field?: RegExp }> = [
      {
        name: "wrong secret",
        extra: { secretAccessKey: secret },
        code: "SignatureDoesNotMatch",
        field: /secret-access-key/,
      },
      {
        name: "unknown key id",
        extra: { accessKeyId: "AKIDNOBODY", secretAccessKey: secret },
        code: "InvalidAccessKeyId",
        field: /access-key-id/,
      },
      {
        name: "missing bucket",
        extra: { bucket: "no-such-bucket" },
        code: "NoSuchBucket",
        field: /no-such-bucket/,
      },
      { name: "closed port", extra: { endpoint: closed }, code: "ECONNREFUSED" },
    ];
    for (const c of cases) {
      const { sdk, reader } = both(c.extra, { maxAttempts: 2 });
      const a = await failure(reader.generations());
      const b = await failure(sdk.generations());
      assert.equal(a.code, ErrorCodes.STORAGE, c.name);
      assert.equal(a.details?.s3Code, c.code, `${c.name}: ${a.message}`);
      assert.equal(a.details?.s3Code, b.details?.s3Code, c.name);
      assert.equal(a.details?.httpStatus, b.details?.httpStatus, c.name);
      assert.equal(a.message, b.message, c.name);
      assert.match(a.message, /s3:\/\/[a-z-]+\/odd path\/ü\+&'=\/generations\//, c.name);
      if (c.field) assert.match(a.message, c.field, c.name);
      assert.ok(!a.message.includes(secret) && !JSON.stringify(a.details).includes(secret), c.name);
      assert.ok(!a.message.includes(minio.secretAccessKey), c.name);
    }
    const { reader } = both();
    const missing = await failure(reader.getExtra("walship/none.json"));
    assert.equal(missing.code, ErrorCodes.NOT_FOUND);
    assert.match(missing.message, /walship\/none\.json/);
    const absent = await failure(reader.snapshotReader(GENERATIONS[1]!, 9));
    assert.equal(absent.code, ErrorCodes.NOT_FOUND);
  });

  it("what one client writes (one PutObject, a multipart upload) and deletes, the other sees", async () => {
    const big = randomBytes(2 * MIN_PART_SIZE_BYTES + 4321);
    const g = "3123456789abcdef";
    for (const [writer, reader] of [
      ["http", "sdk"],
      ["sdk", "http"],
    ] as const) {
      const pair = both({}, {});
      const parts = { partSizeBytes: MIN_PART_SIZE_BYTES };
      const w =
        writer === "http"
          ? new S3HttpReplicaClient(settings(), parts)
          : new S3ReplicaClient(settings(), parts);
      closers.push(() => w.close?.());
      const r = reader === "http" ? pair.reader : pair.sdk;
      await w.writeSnapshot(g, 1, Readable.from([big]));
      await w.writeWalSegment(g, 1, 0, Buffer.from("one"));
      assert.ok((await drain(await r.snapshotReader(g, 1))).equals(big), writer);
      assert.equal((await drain(await r.walSegmentReader(g, 1, 0))).toString(), "one", writer);
      assert.ok((await r.generations()).includes(g), writer);
      await w.deleteGeneration(g);
      assert.ok(!(await r.generations()).includes(g), `${writer} deleted it`);
      assert.deepEqual(await r.walSegments(g), [], writer);
    }
  });

  it("resumes a body cut mid-way (a real TCP proxy closes the first connection)", async () => {
    const p = await proxy((n) => (n === 1 ? { cutAfter: 1024 * 1024 } : "pass"));
    const lines: string[] = [];
    const log = createLogger({ sink: (l) => lines.push(l), format: "json" });
    const reader = new S3HttpReplicaClient(settings({ endpoint: p.endpoint }), { log });
    closers.push(() => reader.close?.());
    const got = await drain(await reader.snapshotReader(GENERATIONS[0]!, 0));
    assert.ok(got.equals(snapshot), `${got.length} of ${snapshot.length} bytes`);
    assert.ok(p.connections() >= 2);
    assert.ok(
      lines.some((l) => l.includes("s3 download broke off; resuming it")),
      lines.join(""),
    );
  });

  it("retries a 503 SlowDown, and times a silent peer out", async () => {
    const slow = await proxy((n) => (n === 1 ? "slowdown" : "pass"));
    const reader = new S3HttpReplicaClient(settings({ endpoint: slow.endpoint }));
    closers.push(() => reader.close?.());
    assert.deepEqual(await reader.generations(), GENERATIONS);
    assert.equal(slow.connections(), 2);
    assert.equal(reader.operations.LIST.count, 1);

    const silent = await proxy(() => "silent");
    const stuck = new S3HttpReplicaClient(settings({ endpoint: silent.endpoint }), {
      requestTimeoutMs: 300,
      maxAttempts: 2,
    });
    closers.push(() => stuck.close?.());
    const t0 = Date.now();
    const e = await failure(stuck.generations());
    assert.equal(e.details?.s3Code, "TimeoutError", e.message);
    assert.equal(e.details?.attempts, 2, e.message);
    assert.equal(silent.connections(), 2);
    assert.ok(Date.now() - t0 < 5000);
  });

  it("reads key files, and reads them again", async () => {
    const id = path.join(dir, "id");
    const key = path.join(dir, "secret");
    writeFileSync(id, `${minio.accessKeyId}\n`);
    writeFileSync(key, `${minio.secretAccessKey}\n`);
    const reader = new S3HttpReplicaClient(
      settings({
        accessKeyId: undefined,
        secretAccessKey: undefined,
        accessKeyIdFile: id,
        secretAccessKeyFile: key,
      }),
      { credentialRefreshMs: 0, maxAttempts: 1 },
    );
    closers.push(() => reader.close?.());
    assert.deepEqual(await reader.generations(), GENERATIONS);
    writeFileSync(key, "rotated-wrong-secret\n");
    const e = await failure(reader.generations());
    assert.equal(e.details?.s3Code, "SignatureDoesNotMatch");
    assert.ok(!e.message.includes("rotated-wrong-secret"));
  });

  it("`walship restore` gives the same database either way", async () => {
    const db = path.join(dir, "app.db");
    const cfg = writeConfig(
      dir,
      `access-key-id: ${minio.accessKeyId}\nsecret-access-key: ${minio.secretAccessKey}\ndbs:\n  - path: ${db}\n    replicas:\n      - type: s3\n        bucket: ${BUCKET}\n        path: app\n        endpoint: ${minio.endpoint}\n        region: us-east-1\n        sync-interval: 100ms\n`,
    );
    const d = new Database(db);
    d.pragma("journal_mode = WAL");
    d.exec("CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)");
    const rep = startReplicator(["-config", cfg]);
    for (let i = 0; i < 40; i++) {
      d.prepare("INSERT INTO t(v) VALUES (?)").run(randomBytes(3000));
      await sleep(20);
    }
    await sleep(1000);
    assert.equal(await rep.stop(), 0, rep.output());
    const want = logicalHash(db);
    d.close();
    const outs: string[] = [];
    for (const mode of ["on", "off"]) {
      const out = path.join(dir, `restored-${mode}.db`);
      const r = await walship(["restore", "-config", cfg, "-o", out, db], {
        env: { WALSHIP_S3_CLIENT: mode === "off" ? "sdk" : "" },
      });
      assert.equal(r.code, 0, r.stderr);
      assert.equal(logicalHash(out), want, mode);
      outs.push(out);
    }
    assert.ok(readFileSync(outs[0]!).equals(readFileSync(outs[1]!)), "byte for byte");
    // No keys in the config: LITESTREAM_ACCESS_KEY_ID/SECRET in the environment stand for the AWS_*
    // pair, as in Litestream, for the reader and the SDK's chain alike.
    const keyless = writeConfig(
      dir,
      readFileSync(cfg, "utf8").replace(/^access-key-id: .*\nsecret-access-key: .*\n/, ""),
      "keyless.yml",
    );
    assert.doesNotMatch(readFileSync(keyless, "utf8"), /access-key/);
    for (const mode of ["on", "off"]) {
      const out = path.join(dir, `keyless-${mode}.db`);
      const env = {
        LITESTREAM_ACCESS_KEY_ID: minio.accessKeyId,
        LITESTREAM_SECRET_ACCESS_KEY: minio.secretAccessKey,
        WALSHIP_S3_CLIENT: mode === "off" ? "sdk" : "",
      };
      const r = await walship(["restore", "-config", keyless, "-o", out, db], { env });
      assert.equal(r.code, 0, `${mode}: ${r.stderr}`);
      assert.equal(logicalHash(out), want, mode);
    }
  });
});
