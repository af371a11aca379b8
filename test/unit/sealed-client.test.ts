/**
 * The sealing layer (storage/sealed.ts) over a real file destination: the whole ReplicaClient contract
 * in age mode and in plain mode, then what only sealing can show: the stored bytes are age files
 * whose plaintext never appears; a plaintext object in an age replica, an age object in a plain one,
 * and an object no identity opens fail with ENCRYPTION naming the object; a path holding the other
 * form refuses every write (nothing is written) unless plaintext generations are allowed, and then
 * only those generations refuse; key rotation keeps old objects readable; a failed look at the path
 * is retried and writes nothing meanwhile.
 */
import assert from "node:assert/strict";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { generateX25519Identity, identityToRecipient } from "age-encryption";
import type { AgeKeyring } from "../../src/replicator/age/keys.ts";
import { AGE_INTRO, ageEncryptor, transformBytes } from "../../src/replicator/age/stream.ts";
import type { ReplicaClient } from "../../src/replicator/storage/client.ts";
import { FileReplicaClient } from "../../src/replicator/storage/file.ts";
import { SealedReplicaClient, type Sealing } from "../../src/replicator/storage/sealed.ts";
import { ErrorCodes, WalshipError } from "../../src/shared/errors.ts";
import { bytesStream, readAll, replicaClientContract } from "../contract/replica-client.contract.ts";
import { assertCode } from "../helpers/assert.ts";

const G1 = "0a1b2c3d4e5f6071";
const G2 = "1111111111111111";
const LZ4ISH = Buffer.from([0x04, 0x22, 0x4d, 0x18, 0x64, 0x70, 0xb9, 1, 2, 3]);

let base = "";
let seq = 0;
before(async () => {
  base = await fs.mkdtemp(path.join(os.tmpdir(), "walship-sealed-"));
});
after(async () => {
  await fs.rm(base, { recursive: true, force: true });
});

function freshRoot(): string {
  seq++;
  return path.join(base, `r${seq}`);
}

async function keyring(...ids: string[]): Promise<AgeKeyring> {
  const identityRecipients = await Promise.all(ids.map((i) => identityToRecipient(i)));
  return { identities: ids, recipients: identityRecipients, identityRecipients };
}

function ageSealing(k: AgeKeyring | (() => AgeKeyring), allow = false): Sealing {
  return {
    mode: "age",
    keys: async () => (typeof k === "function" ? k() : k),
    allowPlaintextGenerations: allow,
  };
}

const ID = await generateX25519Identity();
const RING = await keyring(ID);
/** The stored size of an age file of n bytes for one X25519 recipient: header + nonce + tags. */
const PREFIX = (await transformBytes(await ageEncryptor(RING.recipients), new Uint8Array(0))).length - 16;
const ageSize = (n: number) => PREFIX + n + 16 * Math.max(1, Math.ceil(n / 65536));

replicaClientContract(
  "file, sealed with age",
  async () => {
    const root = freshRoot();
    return {
      client: new SealedReplicaClient(new FileReplicaClient(root), ageSealing(RING)),
      cleanup: () => fs.rm(root, { recursive: true, force: true }),
    };
  },
  { storedSize: ageSize, bigBodyBytes: 1024 * 1024 + 123 },
);

replicaClientContract(
  "file, sealed plain",
  async () => {
    const root = freshRoot();
    return {
      client: new SealedReplicaClient(new FileReplicaClient(root), { mode: "plain" }),
      cleanup: () => fs.rm(root, { recursive: true, force: true }),
    };
  },
  { bigBodyBytes: 1024 * 1024 + 123 },
);

/** Every file under dir, relative, sorted. */
async function tree(dir: string): Promise<string[]> {
  const entries = await fs.readdir(dir, { recursive: true, withFileTypes: true }).catch(() => []);
  return entries
    .filter((e) => e.isFile())
    .map((e) => path.relative(dir, path.join(e.parentPath, e.name)))
    .sort();
}

async function codeOf(p: Promise<unknown>): Promise<WalshipError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof WalshipError, String(err));
    return err;
  }
  assert.fail("expected a rejection");
}

describe("SealedReplicaClient", () => {
  it("stores age files whose bytes hold none of the plaintext, under unchanged names", async () => {
    const root = freshRoot();
    const c = new SealedReplicaClient(new FileReplicaClient(root), ageSealing(RING));
    const secret = Buffer.from("the database's secret row ".repeat(400));
    await c.writeSnapshot(G1, 1, bytesStream(secret.toString()));
    await c.writeWalSegment(G1, 1, 0, secret);
    await c.putExtra(`walship/generations/${G1}/commits/00000001_00000000.json`, secret);
    assert.deepEqual(await tree(root), [
      `generations/${G1}/snapshots/00000001.snapshot.lz4`,
      `generations/${G1}/wal/00000001_00000000.wal.lz4`,
      `walship/generations/${G1}/commits/00000001_00000000.json`,
    ]);
    for (const f of await tree(root)) {
      const bytes = await fs.readFile(path.join(root, f));
      assert.ok(bytes.subarray(0, AGE_INTRO.length).equals(AGE_INTRO), f);
      assert.equal(bytes.indexOf("secret row"), -1, f);
    }
    assert.deepEqual(await readAll(await c.snapshotReader(G1, 1)), secret);
    assert.deepEqual(
      Buffer.from(await c.getExtra(`walship/generations/${G1}/commits/00000001_00000000.json`)),
      secret,
    );
  });

  it("an age replica refuses a plaintext object and one no identity opens, naming the object", async () => {
    const root = freshRoot();
    const plain = new FileReplicaClient(root);
    await plain.writeWalSegment(G1, 1, 0, LZ4ISH);
    await plain.putExtra("walship/generations/x.json", Buffer.from('{"v":1}'));
    // An empty snapshot, and a segment sealed for another key, written directly.
    await plain.writeSnapshot(G1, 2, bytesStream(""));
    const otherRing = await keyring(await generateX25519Identity());
    await plain.writeWalSegment(
      G1,
      2,
      0,
      await transformBytes(await ageEncryptor(otherRing.recipients), LZ4ISH),
    );

    const c = new SealedReplicaClient(new FileReplicaClient(root), ageSealing(RING));
    let e = await codeOf(readAll(await c.walSegmentReader(G1, 1, 0)));
    assert.equal(e.code, ErrorCodes.ENCRYPTION);
    assert.match(
      e.message,
      new RegExp(`${root}/generations/${G1}/wal/00000001_00000000\\.wal\\.lz4: a plaintext object`),
    );
    e = await codeOf(c.getExtra("walship/generations/x.json"));
    assert.equal(e.code, ErrorCodes.ENCRYPTION);
    assert.match(e.message, /walship\/generations\/x\.json: a plaintext object/);
    e = await codeOf(readAll(await c.walSegmentReader(G1, 2, 0)));
    assert.equal(e.code, ErrorCodes.ENCRYPTION);
    assert.match(e.message, /00000002_00000000\.wal\.lz4: no configured age identity opens this object/);
    // The empty snapshot is no age file either: CORRUPT (truncated header), naming it.
    e = await codeOf(readAll(await c.snapshotReader(G1, 2)));
    assert.equal(e.code, ErrorCodes.CORRUPT);
    assert.match(e.message, /00000002\.snapshot\.lz4/);
  });

  it("a plain replica refuses an age object, naming it, and reads plaintext unchanged", async () => {
    const root = freshRoot();
    const sealed = new SealedReplicaClient(new FileReplicaClient(root), ageSealing(RING));
    await sealed.writeWalSegment(G1, 1, 0, LZ4ISH);
    await sealed.putExtra("walship/a.json", Buffer.from("{}"));
    await new FileReplicaClient(root).writeWalSegment(G2, 1, 0, LZ4ISH);
    const c = new SealedReplicaClient(new FileReplicaClient(root), { mode: "plain" });
    let e = await codeOf(readAll(await c.walSegmentReader(G1, 1, 0)));
    assert.equal(e.code, ErrorCodes.ENCRYPTION);
    assert.match(
      e.message,
      /00000001_00000000\.wal\.lz4: an age-encrypted object, and the replica has no age keys/,
    );
    e = await codeOf(c.getExtra("walship/a.json"));
    assert.equal(e.code, ErrorCodes.ENCRYPTION);
    assert.deepEqual(await readAll(await c.walSegmentReader(G2, 1, 0)), LZ4ISH);
  });

  it("a path holding plaintext generations refuses every age write and writes nothing", async () => {
    const root = freshRoot();
    await new FileReplicaClient(root).writeSnapshot(G1, 1, bytesStream(LZ4ISH.toString("latin1")));
    const before = await tree(root);
    const c = new SealedReplicaClient(new FileReplicaClient(root), ageSealing(RING));
    for (const write of [
      () => c.writeSnapshot(G2, 1, bytesStream("x")),
      () => c.writeWalSegment(G2, 1, 0, Buffer.from("x")),
      () => c.putExtra(`walship/generations/${G2}/snapshots/00000001.json`, Buffer.from("{}")),
    ]) {
      const e = await codeOf(write());
      assert.equal(e.code, ErrorCodes.ENCRYPTION);
      assert.match(
        e.message,
        new RegExp(
          `holds plaintext generations \\(${G1}; .*generations/${G1}/snapshots/00000001\\.snapshot\\.lz4 is an LZ4 frame\\)`,
        ),
      );
      assert.match(e.message, /allow-plaintext-generations/);
    }
    assert.deepEqual(await tree(root), before);
  });

  it("allowPlaintextGenerations: new generations are encrypted, the plaintext ones refuse writes", async () => {
    const root = freshRoot();
    await new FileReplicaClient(root).writeSnapshot(G1, 1, bytesStream(LZ4ISH.toString("latin1")));
    const c = new SealedReplicaClient(new FileReplicaClient(root), ageSealing(RING, true));
    assert.deepEqual([...(await c.check())], [G1]);
    await c.writeSnapshot(G2, 1, bytesStream("new"));
    const e = await codeOf(c.writeWalSegment(G1, 1, 0, Buffer.from("x")));
    assert.equal(e.code, ErrorCodes.ENCRYPTION);
    assert.match(e.message, new RegExp(`generation ${G1} holds plaintext objects`));
    assert.deepEqual(
      (await c.inspect()).map((g) => [g.generation, g.form]),
      [
        [G1, "plain"],
        [G2, "age"],
      ],
    );
  });

  it("a plain replica on a path holding age generations refuses to write", async () => {
    const root = freshRoot();
    await new SealedReplicaClient(new FileReplicaClient(root), ageSealing(RING)).writeWalSegment(
      G1,
      1,
      0,
      LZ4ISH,
    );
    const before = await tree(root);
    const c = new SealedReplicaClient(new FileReplicaClient(root), { mode: "plain" });
    const e = await codeOf(c.writeWalSegment(G2, 1, 0, LZ4ISH));
    assert.equal(e.code, ErrorCodes.ENCRYPTION);
    assert.match(e.message, /holds age-encrypted generations .*no age keys are configured/);
    assert.deepEqual(await tree(root), before);
  });

  it("key rotation: new objects go to the new key, old ones still open with both identities", async () => {
    const root = freshRoot();
    const oldId = ID;
    const newId = await generateX25519Identity();
    let ring = RING;
    const c = new SealedReplicaClient(
      new FileReplicaClient(root),
      ageSealing(() => ring),
    );
    await c.writeWalSegment(G1, 1, 0, Buffer.from("before rotation"));
    const both = await keyring(oldId, newId);
    ring = { ...both, recipients: [await identityToRecipient(newId)] };
    await c.writeWalSegment(G1, 2, 0, Buffer.from("after rotation"));
    assert.equal((await readAll(await c.walSegmentReader(G1, 1, 0))).toString(), "before rotation");
    assert.equal((await readAll(await c.walSegmentReader(G1, 2, 0))).toString(), "after rotation");
    // The new key alone opens only the new object; the old key alone only the old one.
    const onlyNew = new SealedReplicaClient(new FileReplicaClient(root), ageSealing(await keyring(newId)));
    assert.equal((await readAll(await onlyNew.walSegmentReader(G1, 2, 0))).toString(), "after rotation");
    assert.equal(
      (await codeOf(readAll(await onlyNew.walSegmentReader(G1, 1, 0)))).code,
      ErrorCodes.ENCRYPTION,
    );
    const onlyOld = new SealedReplicaClient(new FileReplicaClient(root), ageSealing(RING));
    assert.equal(
      (await codeOf(readAll(await onlyOld.walSegmentReader(G1, 2, 0)))).code,
      ErrorCodes.ENCRYPTION,
    );
  });

  it("a failed look at the path writes nothing and is tried again at the next write", async () => {
    const root = freshRoot();
    const inner = new FileReplicaClient(root);
    let fail = true;
    // The real client, whose listing of generations fails while `fail` is set.
    const flaky = new Proxy(inner, {
      get(target, prop) {
        if (prop === "generations" && fail)
          return async () => {
            throw new WalshipError(ErrorCodes.STORAGE, "list: connection reset");
          };
        const v = Reflect.get(target, prop, target);
        return typeof v === "function" ? v.bind(target) : v;
      },
    }) as ReplicaClient;
    const c = new SealedReplicaClient(flaky, ageSealing(RING));
    await assertCode(c.writeWalSegment(G1, 1, 0, Buffer.from("x")), ErrorCodes.STORAGE);
    assert.deepEqual(await tree(root), []);
    fail = false;
    await c.writeWalSegment(G1, 1, 0, Buffer.from("x"));
    assert.equal((await readAll(await c.walSegmentReader(G1, 1, 0))).toString(), "x");
  });
});
