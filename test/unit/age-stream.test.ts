/**
 * age v1 files: our streaming encryptor and decryptor (native ChaCha20-Poly1305 payload) against the
 * `age-encryption` package's own whole-file encrypt and decrypt, both ways, at the chunk boundaries
 * (0, 1, 64 KiB - 1, 64 KiB, 64 KiB + 1, 3 × 64 KiB, 1 MiB + 7) and with every input chunking; and
 * each way a read fails closed: a plaintext LZ4 object, a foreign file, another key, an altered,
 * truncated or extended object, all with a code and the object's name. Interop with Go's age (through
 * the real litestream v0.3.13) is in test/integration/age-interop.test.ts.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { Readable } from "node:stream";
import { describe, it } from "node:test";
import { Decrypter, Encrypter, generateX25519Identity, identityToRecipient } from "age-encryption";
import {
  AGE_INTRO,
  ageDecryptor,
  ageEncryptor,
  LZ4_MAGIC,
  sniff,
  transformBytes,
} from "../../src/replicator/age/stream.ts";
import { ErrorCodes, WalshipError } from "../../src/shared/errors.ts";
import { assertCode } from "../helpers/assert.ts";

const SIZES = [0, 1, 65535, 65536, 65537, 3 * 65536, 1024 * 1024 + 7];

async function keypair(): Promise<{ id: string; rcpt: string }> {
  const id = await generateX25519Identity();
  return { id, rcpt: await identityToRecipient(id) };
}

/** Feeds `data` to a transform in pieces of `step` bytes and gathers the output. */
async function through(t: NodeJS.ReadWriteStream, data: Buffer, step: number): Promise<Buffer> {
  const pieces: Buffer[] = [];
  for (let i = 0; i < data.length; i += step) pieces.push(data.subarray(i, i + step));
  const out: Buffer[] = [];
  const src = Readable.from(pieces);
  src.pipe(t as unknown as NodeJS.WritableStream);
  for await (const c of t as unknown as AsyncIterable<Buffer>) out.push(c);
  return Buffer.concat(out);
}

async function rejectsWith(p: Promise<unknown>, code: string, what: RegExp): Promise<WalshipError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof WalshipError, `expected a WalshipError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    assert.match(err.message, what);
    return err;
  }
  assert.fail("expected a rejection");
}

describe("age files", () => {
  it("our files open with age-encryption's Decrypter at every size and input chunking", async () => {
    const a = await keypair();
    for (const size of SIZES) {
      const plain = randomBytes(size);
      for (const step of [1_000, 65536, 70_000]) {
        if (size > 200_000 && step === 1_000) continue;
        const sealed = await through(await ageEncryptor([a.rcpt]), plain, step);
        assert.ok(sealed.subarray(0, AGE_INTRO.length).equals(AGE_INTRO));
        const d = new Decrypter();
        d.addIdentity(a.id);
        assert.ok(Buffer.from(await d.decrypt(sealed)).equals(plain), `size ${size} step ${step}`);
      }
    }
  });

  it("files age-encryption writes open with ours, in any chunking", async () => {
    const a = await keypair();
    for (const size of SIZES) {
      const plain = randomBytes(size);
      const e = new Encrypter();
      e.addRecipient(a.rcpt);
      const sealed = Buffer.from(await e.encrypt(plain));
      for (const step of [7, 65552, 100_000]) {
        if (size > 200_000 && step === 7) continue;
        const got = await through(ageDecryptor({ identities: [a.id], what: "obj" }), sealed, step);
        assert.ok(got.equals(plain), `size ${size} step ${step}`);
      }
    }
  });

  it("several recipients: each identity opens the file; any identity list holding one works", async () => {
    const [a, b, c] = [await keypair(), await keypair(), await keypair()];
    const plain = randomBytes(100_000);
    const sealed = await transformBytes(await ageEncryptor([a.rcpt, b.rcpt]), plain);
    for (const ids of [[a.id], [b.id], [c.id, b.id]]) {
      assert.ok((await transformBytes(ageDecryptor({ identities: ids, what: "o" }), sealed)).equals(plain));
    }
    await rejectsWith(
      transformBytes(ageDecryptor({ identities: [c.id], what: "generations/g/wal/x.wal.lz4" }), sealed),
      ErrorCodes.ENCRYPTION,
      /generations\/g\/wal\/x\.wal\.lz4: no configured age identity opens this object/,
    );
  });

  it("each file has its own key and nonce: the same plaintext never seals to the same bytes", async () => {
    const a = await keypair();
    const plain = Buffer.alloc(1000, 7);
    const one = await transformBytes(await ageEncryptor([a.rcpt]), plain);
    const two = await transformBytes(await ageEncryptor([a.rcpt]), plain);
    assert.notDeepEqual(one, two);
    assert.equal(one.length, two.length);
  });

  it("refuses a plaintext LZ4 object, naming it, and a file that is not age", async () => {
    const a = await keypair();
    const lz4 = Buffer.concat([LZ4_MAGIC, Buffer.from([0x64, 0x70, 0xb9]), randomBytes(100)]);
    await rejectsWith(
      transformBytes(
        ageDecryptor({ identities: [a.id], what: "s3://b/p/generations/g/snapshots/00000001.snapshot.lz4" }),
        lz4,
      ),
      ErrorCodes.ENCRYPTION,
      /s3:\/\/b\/p\/generations\/g\/snapshots\/00000001\.snapshot\.lz4: a plaintext object in a replica configured with age/,
    );
    await rejectsWith(
      transformBytes(
        ageDecryptor({ identities: [a.id], what: "x" }),
        Buffer.from("hello world, not age at all"),
      ),
      ErrorCodes.CORRUPT,
      /not an age-encrypted object/,
    );
    await rejectsWith(
      transformBytes(ageDecryptor({ identities: [a.id], what: "x" }), Buffer.alloc(0)),
      ErrorCodes.CORRUPT,
      /truncated age header/,
    );
  });

  it("an altered, truncated or extended object is CORRUPT, and nothing unauthenticated comes out", async () => {
    const a = await keypair();
    const plain = randomBytes(3 * 65536 + 100);
    const sealed = await transformBytes(await ageEncryptor([a.rcpt]), plain);
    const open = (b: Buffer) => transformBytes(ageDecryptor({ identities: [a.id], what: "seg" }), b);
    // A flipped bit in each part: the header's MAC, the nonce, the first chunk, the last chunk. (One in
    // a recipient stanza reads as another recipient's file: ENCRYPTION, tested above.)
    const macAt = sealed.indexOf("\n--- ") + 10;
    const nonceAt = sealed.indexOf("\n", macAt) + 5;
    const payloadStart = nonceAt - 4 + 16;
    assert.equal(sealed.length - payloadStart, plain.length + 4 * 16);
    for (const at of [macAt, nonceAt, payloadStart + 1000, sealed.length - 5]) {
      const bad = Buffer.from(sealed);
      bad[at] = (bad[at] as number) ^ 1;
      await assertCode(open(bad), ErrorCodes.CORRUPT, undefined, `byte ${at} altered`);
    }
    // Truncated at a chunk boundary (the last full chunk then fails as last), mid-chunk, in the header.
    for (const len of [
      payloadStart + 65552,
      payloadStart + 65552 * 2,
      sealed.length - 1,
      40,
      payloadStart + 3,
    ]) {
      await assertCode(open(sealed.subarray(0, len)), ErrorCodes.CORRUPT, undefined, `truncated to ${len}`);
    }
    await assertCode(open(Buffer.concat([sealed, Buffer.from([0])])), ErrorCodes.CORRUPT);
    // A streaming reader sees no byte of a chunk that fails: the first chunk altered yields nothing.
    const bad = Buffer.from(sealed);
    bad[payloadStart + 10] = (bad[payloadStart + 10] as number) ^ 1;
    const t = ageDecryptor({ identities: [a.id], what: "seg" });
    let seen = 0;
    t.on("data", (c: Buffer) => {
      seen += c.length;
    });
    await assert.rejects(
      new Promise((resolve, reject) => {
        t.once("end", resolve);
        t.once("error", reject);
        t.end(bad);
      }),
    );
    assert.equal(seen, 0);
  });

  it("sniff tells age, LZ4 and other bytes apart from their first bytes", () => {
    assert.equal(sniff(AGE_INTRO), "age");
    assert.equal(sniff(Buffer.from("age-enc")), "short");
    assert.equal(sniff(Buffer.from([0x04, 0x22, 0x4d, 0x18, 0x64])), "lz4");
    assert.equal(sniff(Buffer.from([0x04, 0x22])), "short");
    assert.equal(sniff(Buffer.from('{"v":1}')), "other");
    assert.equal(sniff(new Uint8Array(0)), "short");
  });
});
