/**
 * The Azure Blob Storage destination against a real Azurite (npm; always --disableTelemetry): the
 * shared ReplicaClient contract, plus what only Azure shows (block uploads above one block,
 * Creation-Time as the object time and Last-Modified when a listing lacks it, SAS tokens, wrong keys,
 * missing containers, the endpoint and account rules).
 *
 * The raw BlobServiceClient from the helper observes the container independently of the code under
 * test.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import {
  ContainerSASPermissions,
  generateBlobSASQueryParameters,
  StorageSharedKeyCredential,
} from "@azure/storage-blob";
import {
  AbsReplicaClient,
  type AbsReplicaClientOptions,
  accountFromEndpoint,
  blobTime,
} from "../../src/replicator/storage/abs.ts";
import { ErrorCodes } from "../../src/shared/errors.ts";
import { bytesStream, generatedBody, replicaClientContract } from "../contract/replica-client.contract.ts";
import { assertCode } from "../helpers/assert.ts";
import { type Azurite, startAzurite } from "../helpers/azurite.ts";
import { freePort } from "../helpers/ports.ts";
import { makeTempDir } from "../helpers/proc.ts";

const G1 = "0a1b2c3d4e5f6071";
const MiB = 1024 * 1024;

let azurite: Azurite | undefined;
before(async () => {
  azurite = await startAzurite();
});
after(async () => {
  await azurite?.close();
});

function server(): Azurite {
  assert.ok(azurite, "azurite did not start (npm install brings it: make deps)");
  return azurite;
}

let seq = 0;
async function freshContainer(label: string): Promise<string> {
  const name = `${label}-${process.pid}-${++seq}`;
  await server().createContainer(name);
  return name;
}

function client(container: string, over: Partial<AbsReplicaClientOptions> = {}): AbsReplicaClient {
  const az = server();
  return new AbsReplicaClient({
    container,
    path: "",
    accountName: az.account,
    accountKey: az.key,
    endpoint: az.endpoint,
    ...over,
  });
}

async function blobNames(container: string): Promise<string[]> {
  const out: string[] = [];
  for await (const b of server().client().getContainerClient(container).listBlobsFlat()) out.push(b.name);
  return out.sort();
}

replicaClientContract("abs (azurite)", async () => {
  const container = await freshContainer("contract");
  const c = client(container, { path: "db/replica" });
  return { client: c, cleanup: async () => c.close() };
});

describe("abs destination", () => {
  it("runs against an Azurite started with --disableTelemetry (else it reports off the machine)", () => {
    const pid = server().process?.pid;
    assert.ok(pid, "azurite runs");
    const argv = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
    assert.ok(argv.includes("--disableTelemetry"), argv.join(" "));
  });

  it("places keys as Litestream joins them and names the location abs://account@container/path", async () => {
    const container = await freshContainer("keys");
    const c = client(container, { path: "a//b/./" });
    assert.equal(c.location, `abs://${server().account}@${container}/a/b`);
    await c.writeSnapshot(G1, 1, bytesStream("x"));
    assert.deepEqual(await blobNames(container), [`a/b/generations/${G1}/snapshots/00000001.snapshot.lz4`]);
  });

  it("streams a body of several blocks and reads it back unchanged", async () => {
    const container = await freshContainer("big");
    const c = client(container, { path: "p", blockSizeBytes: 1 * MiB });
    const size = 5 * MiB + 17;
    const { stream, digest } = generatedBody(size, 100_000);
    const info = await c.writeSnapshot(G1, 1, stream);
    assert.equal(info.size, size);
    const want = digest();
    const h = createHash("sha256");
    let n = 0;
    for await (const chunk of await c.snapshotReader(G1, 1)) {
      h.update(chunk as Buffer);
      n += (chunk as Buffer).length;
    }
    assert.equal(n, size);
    assert.equal(h.digest("hex"), want);
    const blocks = await server()
      .client()
      .getContainerClient(container)
      .getBlockBlobClient(`p/generations/${G1}/snapshots/00000001.snapshot.lz4`)
      .getBlockList("committed");
    assert.equal(blocks.committedBlocks?.length, 6, "5 MiB + 17 bytes in 1 MiB blocks");
  });

  it("reports the blob's Creation-Time as the object time", async () => {
    const container = await freshContainer("times");
    const c = client(container, { path: "t" });
    await c.writeWalSegment(G1, 1, 0, Buffer.from("seg"));
    const props = await server()
      .client()
      .getContainerClient(container)
      .getBlobClient(`t/generations/${G1}/wal/00000001_00000000.wal.lz4`)
      .getProperties();
    assert.ok(props.createdOn);
    const [listed] = await c.walSegments(G1);
    assert.equal(listed?.createdAt.getTime(), props.createdOn.getTime());
  });

  it("falls back to Last-Modified when a listing has no Creation-Time, never crashes", () => {
    const lm = new Date("2026-01-02T03:04:05Z");
    assert.equal(blobTime({ createdOn: undefined, lastModified: lm }).getTime(), lm.getTime());
    assert.equal(blobTime({}).getTime(), 0);
    const created = new Date("2025-12-31T00:00:00Z");
    assert.equal(blobTime({ createdOn: created, lastModified: lm }).getTime(), created.getTime());
  });

  it("works with a SAS token instead of the account key", async () => {
    const container = await freshContainer("sas");
    const az = server();
    const sas = generateBlobSASQueryParameters(
      {
        containerName: container,
        permissions: ContainerSASPermissions.parse("racwdl"),
        expiresOn: new Date(Date.now() + 3600_000),
      },
      new StorageSharedKeyCredential(az.account, az.key),
    ).toString();
    const c = new AbsReplicaClient({ container, path: "s", endpoint: az.endpoint, sasToken: `?${sas}` });
    await c.writeWalSegment(G1, 1, 0, Buffer.from("via sas"));
    assert.deepEqual(
      (await c.walSegments(G1)).map((s) => s.size),
      [7],
    );
    await c.deleteGeneration(G1);
    assert.deepEqual(await c.generations(), []);
    // A read-only SAS cannot write: a STORAGE error that says what the identity needs.
    const ro = generateBlobSASQueryParameters(
      {
        containerName: container,
        permissions: ContainerSASPermissions.parse("rl"),
        expiresOn: new Date(Date.now() + 3600_000),
      },
      new StorageSharedKeyCredential(az.account, az.key),
    ).toString();
    const r = new AbsReplicaClient({
      container,
      path: "s",
      endpoint: az.endpoint,
      sasToken: ro,
      maxAttempts: 1,
    });
    await assert.rejects(r.writeWalSegment(G1, 2, 0, Buffer.from("x")), (err: unknown) => {
      assert.equal((err as { code?: string }).code, ErrorCodes.STORAGE);
      assert.match((err as Error).message, /access denied|Authorization/);
      // Neither the message nor the details carry the token's signature.
      const sig = new URLSearchParams(ro).get("sig") as string;
      assert.ok(sig.length > 10);
      assert.ok(!(err as Error).message.includes(sig), "the SAS signature is not echoed");
      assert.ok(!JSON.stringify((err as { details?: unknown }).details).includes(sig));
      return true;
    });
  });

  it("reads the account key from a file again, so a rotated Secret is used without a restart", async () => {
    const container = await freshContainer("rotate");
    const dir = makeTempDir("abs-key");
    const keyFile = join(dir, "account-key");
    const wrong = Buffer.from("a wrong key, rotated away soon!!").toString("base64");
    writeFileSync(keyFile, `${wrong}\n`);
    const c = new AbsReplicaClient({
      container,
      accountName: server().account,
      endpoint: server().endpoint,
      accountKeyFile: keyFile,
      credentialRefreshMs: 50,
      maxAttempts: 1,
    });
    await assert.rejects(c.generations(), /credentials were refused/);
    writeFileSync(keyFile, `${server().key}\n`);
    await new Promise((r) => setTimeout(r, 100));
    await c.writeWalSegment(G1, 1, 0, Buffer.from("after rotation"));
    assert.equal((await c.walSegments(G1)).length, 1);
    writeFileSync(keyFile, "");
    await new Promise((r) => setTimeout(r, 100));
    await assert.rejects(c.generations(), (err: unknown) => {
      assert.equal((err as { code?: string }).code, ErrorCodes.CONFIG);
      assert.match((err as Error).message, /account-key-file .* the file is empty/);
      return true;
    });
  });

  it("a wrong account key is a STORAGE error that names the credentials and never echoes the key", async () => {
    const container = await freshContainer("badkey");
    const wrong = Buffer.from("not the key at all, not at all!!").toString("base64");
    const c = client(container, { accountKey: wrong, maxAttempts: 1 });
    await assert.rejects(c.generations(), (err: unknown) => {
      assert.equal((err as { code?: string }).code, ErrorCodes.STORAGE);
      assert.match((err as Error).message, /credentials were refused/);
      assert.ok(!(err as Error).message.includes(wrong));
      return true;
    });
  });

  it("a missing container is a STORAGE error naming it (not NOT_FOUND)", async () => {
    const c = client(`missing-${process.pid}`, { maxAttempts: 1 });
    await assertCode(c.snapshotReader(G1, 1), ErrorCodes.STORAGE);
    await assert.rejects(c.generations(), /container "missing-\d+" does not exist/);
  });

  it("refuses to start without credentials, naming the keys to set", () => {
    assert.throws(
      () => new AbsReplicaClient({ container: "c", accountName: "acct" }),
      (err: unknown) => {
        assert.equal((err as { code?: string }).code, ErrorCodes.CONFIG);
        assert.match((err as Error).message, /account-key.*AZURE_STORAGE_KEY.*sas-token/);
        return true;
      },
    );
    assert.throws(
      () => new AbsReplicaClient({ container: "", accountName: "a", accountKey: "k" }),
      /container/,
    );
  });

  it("reads the account from the endpoint when account-name is not set", () => {
    assert.equal(accountFromEndpoint("http://127.0.0.1:10000/devstoreaccount1"), "devstoreaccount1");
    assert.equal(accountFromEndpoint("https://myacct.blob.core.windows.net"), "myacct");
    assert.equal(accountFromEndpoint("https://myacct.blob.core.windows.net/"), "myacct");
    assert.equal(accountFromEndpoint(undefined), undefined);
    assert.equal(accountFromEndpoint("not a url"), undefined);
  });

  it("a failed upload stops the body that feeds it (no producer left blocked on a pipe)", async () => {
    // A port nobody listens on: every request fails at once.
    const port = await freePort();
    const container = "never-created";
    const c = client(container, {
      endpoint: `http://127.0.0.1:${port}/devstoreaccount1`,
      maxAttempts: 1,
      blockSizeBytes: 1024 * 1024,
    });
    const { stream } = generatedBody(64 * 1024 * 1024, 64 * 1024);
    await assertCode(c.writeSnapshot(G1, 1, stream), ErrorCodes.STORAGE);
    assert.ok(stream.destroyed, "the body is destroyed");
    assert.ok(!stream.readableEnded, "and was not read to its end");
  });
});
