/**
 * The sftp destination's host-key decisions, pure, on literal inputs: public key lines, known_hosts
 * patterns (plain, port, wildcard, negation, hashed as `ssh-keygen -H` writes them, @revoked,
 * @cert-authority), the algorithms offered, fingerprints as `ssh-keygen -l` prints them.
 */
import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { describe, it } from "node:test";
import {
  fingerprint,
  hostKeyAlgorithms,
  hostMatches,
  knownHostKeys,
  knownHostsName,
  parsePublicKey,
  pinnedHostKeys,
  verifyHostKey,
} from "../../src/replicator/storage/ssh-host-keys.ts";

// Generated with ssh-keygen for these tests; public halves only.
const ED = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHoJjZC6U40q3Ej0xuOcwteRLUVtFQYHwoJ4HsSkSVYi";
const ED_FP = "SHA256:Ugmo2E6XX37st9xn/enAa58hgaVrchVTwHqd9dNbx3c";
const OTHER = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl";

describe("ssh host keys", () => {
  it("parses public key lines and refuses what is not one", () => {
    const k = parsePublicKey(`${ED} comment here`);
    assert.equal(k?.type, "ssh-ed25519");
    assert.equal(k?.blob.length, 51);
    assert.equal(parsePublicKey("SHA256:Ugmo2E6XX37st9xn"), undefined);
    assert.equal(parsePublicKey("ssh-ed25519 !!!"), undefined);
    // A blob whose inner type differs from the line's.
    assert.equal(parsePublicKey(`ssh-rsa ${ED.split(" ")[1]}`), undefined);
  });

  it("prints fingerprints as ssh-keygen -l does", () => {
    assert.equal(fingerprint(parsePublicKey(ED)!.blob), ED_FP);
  });

  it("names a server as ssh looks it up: [host]:port off port 22", () => {
    assert.equal(knownHostsName("backup.lan", 22), "backup.lan");
    assert.equal(knownHostsName("192.0.2.10", 2222), "[192.0.2.10]:2222");
  });

  it("matches known_hosts patterns: lists, wildcards, negation, hashed names", () => {
    assert.equal(hostMatches("a.lan,backup.lan", "backup.lan"), true);
    assert.equal(hostMatches("*.lan", "backup.lan"), true);
    assert.equal(hostMatches("backup.la?", "backup.lan"), true);
    assert.equal(hostMatches("*.lan,!backup.lan", "backup.lan"), false);
    assert.equal(hostMatches("BACKUP.LAN", "backup.lan"), true);
    assert.equal(hostMatches("backup.lan", "[backup.lan]:2222"), false);
    const salt = Buffer.from("0123456789abcdefghij");
    const hash = createHmac("sha1", salt).update("[192.0.2.10]:2222").digest("base64");
    assert.equal(hostMatches(`|1|${salt.toString("base64")}|${hash}`, "[192.0.2.10]:2222"), true);
    assert.equal(hostMatches(`|1|${salt.toString("base64")}|${hash}`, "192.0.2.10"), false);
  });

  it("reads the keys and revocations a known_hosts text lists for one server", () => {
    const text = [
      "# comment",
      "",
      `[192.0.2.10]:2222 ${ED}`,
      `192.0.2.10 ${OTHER}`,
      `@revoked * ${OTHER}`,
      `@cert-authority *.lan ${ED}`,
      "garbage",
    ].join("\n");
    const found = knownHostKeys(text, "192.0.2.10", 2222);
    assert.deepEqual(
      found.keys.map((k) => k.blob.toString("base64")),
      [ED.split(" ")[1]],
    );
    assert.equal(found.revoked.length, 1);
    assert.deepEqual(verifyHostKey(parsePublicKey(ED)!.blob, found), { ok: true });
    assert.deepEqual(verifyHostKey(parsePublicKey(OTHER)!.blob, found), { ok: false, reason: "revoked" });
    assert.deepEqual(verifyHostKey(parsePublicKey(OTHER)!.blob, { keys: found.keys, revoked: [] }), {
      ok: false,
      reason: "mismatch",
    });
    assert.deepEqual(verifyHostKey(parsePublicKey(ED)!.blob, { keys: [], revoked: [] }), {
      ok: false,
      reason: "unknown",
    });
  });

  it("offers only the algorithms that prove a known key, RSA's SHA-2 forms first", () => {
    const rsa = { type: "ssh-rsa", blob: Buffer.alloc(0) };
    const ed = parsePublicKey(ED)!;
    assert.deepEqual(hostKeyAlgorithms([ed, rsa]), [
      "ssh-ed25519",
      "rsa-sha2-512",
      "rsa-sha2-256",
      "ssh-rsa",
    ]);
    assert.deepEqual(hostKeyAlgorithms([]), []);
  });

  it("reads pinned keys from lines and a file's text, and flags a line that is not a key", () => {
    assert.equal(
      pinnedHostKeys([ED], `# keys\n\n${OTHER}\n`) !== "bad-line" && pinnedHostKeys([ED], OTHER).length,
      2,
    );
    assert.equal(pinnedHostKeys([], "not a key"), "bad-line");
    assert.deepEqual(pinnedHostKeys([], undefined), []);
  });
});
