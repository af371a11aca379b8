/**
 * age keys read as Litestream v0.3.13 reads them (each string a whole file: lines, `#` comments, blank
 * lines), only X25519, and the fail-closed rules between the lists; no message ever holds a key.
 * Literal inputs; the keys are generated once.
 */
import assert from "node:assert/strict";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { describe, it } from "node:test";
import { generateHybridIdentity, generateX25519Identity, identityToRecipient } from "age-encryption";
import {
  type AgeSettings,
  ageKeySource,
  checkKeyring,
  loadAgeKeys,
  parseIdentities,
  parseRecipients,
} from "../../src/replicator/age/keys.ts";
import { ErrorCodes, WalshipError } from "../../src/shared/errors.ts";

const A = await generateX25519Identity();
const B = await generateX25519Identity();
const RA = await identityToRecipient(A);
const RB = await identityToRecipient(B);
const PQ = await generateHybridIdentity();
const RPQ = await identityToRecipient(PQ);

function settings(over: Partial<AgeSettings>): AgeSettings {
  return {
    identities: [],
    recipients: [],
    identityFiles: [],
    recipientFiles: [],
    allowPlaintextGenerations: false,
    ...over,
  };
}

/** Asserts a CONFIG error whose message matches and holds none of the secrets. */
function configError(fn: () => unknown, re: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof WalshipError);
    assert.equal(e.code, ErrorCodes.CONFIG);
    assert.match(e.message, re);
    for (const secret of [A, B, PQ]) assert.ok(!e.message.includes(secret.slice(16, 40)), "a key leaked");
    return true;
  });
}

async function configRejects(p: Promise<unknown>, re: RegExp): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof WalshipError);
    assert.equal(e.code, ErrorCodes.CONFIG);
    assert.match(e.message, re);
    for (const secret of [A, B]) assert.ok(!e.message.includes(secret.slice(16, 40)), "a key leaked");
    return true;
  });
}

describe("age key parsing", () => {
  it("reads an age-keygen file: comments, blank lines, CRLF, several keys", () => {
    const file = `# created: 2026-01-01T00:00:00Z\n# public key: ${RA}\n${A}\r\n\n${B}\n`;
    assert.deepEqual(parseIdentities(file, "age.identities[0]"), [A, B]);
    assert.deepEqual(parseRecipients(`# team\n${RA}\n${RB}`, "r"), [RA, RB]);
  });

  it("refuses empty values, other key kinds and keys in the wrong list, naming the line only", () => {
    configError(
      () => parseIdentities("", "dbs[0].replicas[0].age.identities[0]"),
      /^dbs\[0\]\.replicas\[0\]\.age\.identities\[0\]: no age identity found/,
    );
    configError(() => parseIdentities("# only a comment\n", "x"), /no age identity found/);
    configError(() => parseRecipients("", "x"), /no age recipient found/);
    configError(() => parseIdentities(`# c\n${PQ}`, "x"), /line 2 is a post-quantum age key/);
    configError(() => parseRecipients(RPQ, "x"), /line 1 is a post-quantum age key/);
    configError(
      () => parseRecipients("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG9wZW4gc2VzYW1l user@host", "x"),
      /line 1 is an SSH key/,
    );
    configError(
      () => parseRecipients("age1yubikey1qwt50d05nh5vutpdzmlg5wn80xq5negm4uj9ghv0snvdd3yysf5yw3rhl3t", "x"),
      /line 1 is an age plugin recipient/,
    );
    configError(() => parseIdentities(RA, "x"), /line 1 is a recipient \(public key\), not an identity/);
    configError(
      () => parseRecipients(`${RA}\n${A}`, "x"),
      /line 2 is an identity \(a secret key\), not a recipient/,
    );
    // One character changed (bech32's checksum catches any one): Q, or P where the key ends in Q.
    const badLast = A.endsWith("Q") ? "P" : "Q";
    configError(
      () => parseIdentities(`${A.slice(0, -1)}${badLast}`, "x"),
      /line 1 is a malformed age identity/,
    );
    configError(() => parseIdentities(` ${A}`, "x"), /line 1 is not an X25519 age identity/);
    configError(() => parseRecipients(`${RA.slice(0, -2)}`, "x"), /line 1 is a malformed age recipient/);
    configError(() => parseRecipients("$AGE_RECIPIENT", "x"), /line 1 is not an X25519 age recipient/);
  });
});

describe("age keyring rules", () => {
  const ring = (identities: string[], recipients: string[], identityRecipients: string[]) => ({
    identities,
    recipients,
    identityRecipients,
  });

  it("recipients without identities: an error for every command", () => {
    for (const writing of [true, false])
      configError(
        () => checkKeyring(ring([], [RA], []), "r.age", { writing }),
        /^r\.age: recipients without identities/,
      );
  });

  it("identities without recipients: an error for the replicator, fine for restores and listings", () => {
    configError(
      () => checkKeyring(ring([A], [], [RA]), "r.age", { writing: true }),
      /identities without recipients: the replica would be written in plaintext/,
    );
    assert.deepEqual(checkKeyring(ring([A], [], [RA]), "r.age", { writing: false }).identities, [A]);
  });

  it("the replicator must hold the identity of at least one recipient; extra recipients (escrow) are fine", () => {
    configError(
      () => checkKeyring(ring([A], [RB], [RA]), "r.age", { writing: true }),
      /no recipient matches an identity/,
    );
    assert.deepEqual(checkKeyring(ring([A], [RA, RB], [RA]), "r.age", { writing: true }).recipients, [
      RA,
      RB,
    ]);
  });

  it("loads inline strings and files, naming the file on errors, and derives the identities' recipients", async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), "walship-age-keys-"));
    try {
      await fs.writeFile(path.join(dir, "identity"), `${B}\n`);
      await fs.writeFile(path.join(dir, "recipient"), `${RB}\n`);
      await fs.writeFile(path.join(dir, "empty"), "");
      const k = await loadAgeKeys(
        settings({
          identities: [A],
          recipients: [RA],
          identityFiles: [path.join(dir, "identity")],
          recipientFiles: [path.join(dir, "recipient")],
        }),
        "r.age",
        { writing: true },
      );
      assert.deepEqual(k.identities, [A, B]);
      assert.deepEqual(k.recipients, [RA, RB]);
      assert.deepEqual(k.identityRecipients, [RA, RB]);
      await configRejects(
        loadAgeKeys(settings({ identityFiles: [path.join(dir, "missing")], recipients: [RA] }), "r.age", {
          writing: true,
        }),
        /^r\.age\.identity-files\[0\]: read .*missing: ENOENT/,
      );
      await configRejects(
        loadAgeKeys(settings({ identityFiles: [path.join(dir, "empty")], recipients: [RA] }), "r.age", {
          writing: true,
        }),
        /^r\.age\.identity-files\[0\] \(.*empty\): no age identity found/,
      );
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });

  it("keys from files are read again after the refresh period (a rotated Secret)", async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), "walship-age-keys-"));
    try {
      const idFile = path.join(dir, "identity");
      const rFile = path.join(dir, "recipient");
      await fs.writeFile(idFile, A);
      await fs.writeFile(rFile, RA);
      const source = ageKeySource(settings({ identityFiles: [idFile], recipientFiles: [rFile] }), "r.age", {
        writing: true,
        refreshMs: 50,
      });
      assert.deepEqual((await source()).recipients, [RA]);
      await fs.writeFile(idFile, `${A}\n${B}\n`);
      await fs.writeFile(rFile, RB);
      assert.deepEqual((await source()).recipients, [RA], "cached within the period");
      await new Promise((r) => setTimeout(r, 80));
      const k = await source();
      assert.deepEqual(k.recipients, [RB]);
      assert.deepEqual(k.identities, [A, B]);
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });
});
