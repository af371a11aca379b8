/**
 * Config keys and URL forms of the sftp, gcs and abs destinations: Litestream v0.3.13's (as seeds
 * 000 and 002 write them) and Walship's extensions (host-key, known-hosts-file,
 * insecure-ignore-host-key, key-passphrase-file, credentials-file, endpoint, sas-token, *-path, URL
 * query parameters, gs://, AZURE_STORAGE_* and STORAGE_EMULATOR_HOST). Pure: literal inputs.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { type Config, parseConfig, type ReplicaConfig } from "../../src/replicator/config.ts";
import { ErrorCodes, WalshipError } from "../../src/shared/errors.ts";

function replica(yaml: string, env: NodeJS.ProcessEnv = {}): { r: ReplicaConfig; c: Config } {
  const body = yaml
    .trim()
    .split("\n")
    .map((l) => `        ${l}`)
    .join("\n");
  const c = parseConfig(`dbs:\n  - path: /data/app.db\n    replicas:\n      -\n${body}\n`, {
    env,
    cwd: "/work",
    homedir: "/home/me",
  });
  return { r: c.dbs[0]!.replicas[0]!, c };
}

function configError(fn: () => unknown, path: string, message?: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof WalshipError, String(err));
    assert.equal(err.code, ErrorCodes.CONFIG);
    assert.equal(err.details.path, path, err.message);
    if (message) assert.match(err.message, message);
    return true;
  });
}

describe("sftp config", () => {
  it("takes seed 000's block as written (host with port 2222, user, key-path, path)", () => {
    const { r, c } = replica(`
type: sftp
host: 192.0.2.10:2222
user: litestream
key-path: /etc/litestream/id_ed25519
path: /cacmin-bot`);
    assert.equal(r.type, "sftp");
    assert.deepEqual(r.sftp, {
      host: "192.0.2.10:2222",
      user: "litestream",
      keyPath: "/etc/litestream/id_ed25519",
      path: "/cacmin-bot",
    });
    assert.deepEqual(c.warnings, []);
  });

  it("reads the host-key checks and the passphrase file (Walship keys), ~ expanded", () => {
    const { r, c } = replica(`
type: sftp
host: h
user: u
key-path: ~/.ssh/id_ed25519
host-key:
  - ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl
known-hosts-file: ~/.ssh/kh
insecure-ignore-host-key: false
key-passphrase-file: secrets/pass`);
    assert.deepEqual(r.sftp, {
      host: "h",
      user: "u",
      keyPath: "/home/me/.ssh/id_ed25519",
      path: "",
      hostKeys: ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"],
      knownHostsFile: "/home/me/.ssh/kh",
      insecureIgnoreHostKey: false,
      keyPassphraseFile: "/work/secrets/pass",
    });
    assert.deepEqual(c.warnings, []);
    // One key as a plain string too.
    assert.deepEqual(replica("type: sftp\nhost: h\nuser: u\nhost-key: ssh-ed25519 AAAA").r.sftp?.hostKeys, [
      "ssh-ed25519 AAAA",
    ]);
  });

  it("reads host-key-file and password-file (files of a mounted Secret)", () => {
    const { r } = replica(
      "type: sftp\nhost: h\nuser: u\nhost-key-file: /run/s/host-key\npassword-file: /run/s/pw",
    );
    assert.equal(r.sftp?.hostKeyFile, "/run/s/host-key");
    assert.equal(r.sftp?.passwordFile, "/run/s/pw");
  });

  it("takes the passphrase from WALSHIP_SFTP_KEY_PASSPHRASE", () => {
    const { r } = replica("type: sftp\nhost: h\nuser: u", { WALSHIP_SFTP_KEY_PASSPHRASE: "pw" });
    assert.equal(r.sftp?.keyPassphrase, "pw");
  });

  it("takes key-path, host-key and the insecure flag as URL query parameters", () => {
    const { r } = replica(
      "url: sftp://u@h:2222/srv/db?key-path=/k/id&host-key=ssh-ed25519%20AAAA&insecure-ignore-host-key=true",
    );
    assert.deepEqual(r.sftp, {
      host: "h:2222",
      user: "u",
      path: "/srv/db",
      keyPath: "/k/id",
      hostKeys: ["ssh-ed25519 AAAA"],
      insecureIgnoreHostKey: true,
    });
    configError(
      () => replica("url: sftp://u@h/p?bogus=1"),
      "dbs[0].replicas[0].url",
      /unknown query parameter "bogus"/,
    );
    configError(() => replica("url: sftp://u@h/p?password=x"), "dbs[0].replicas[0].url");
  });

  it("warns that Walship keys are not read by other types", () => {
    const { c } = replica("url: s3://b/p\nhost-key: ssh-ed25519 AAAA");
    assert.match(c.warnings.join("\n"), /host-key: not used by s3 replicas/);
  });
});

describe("gcs config", () => {
  it("takes seed 002's url form; gs:// is the same destination", () => {
    for (const url of ["gcs://my-bucket/nebulagc/db", "gs://my-bucket/nebulagc/db"]) {
      const { r } = replica(`url: ${url}`);
      assert.equal(r.type, "gcs");
      assert.deepEqual(r.gcs, { bucket: "my-bucket", path: "nebulagc/db" });
    }
    assert.equal(replica("type: gs\nbucket: b").r.type, "gcs");
  });

  it("reads credentials-file and endpoint (Walship keys); an endpoint gets the credentials", () => {
    const { r } = replica("url: gcs://b/p\ncredentials-file: ~/sa.json\nendpoint: http://127.0.0.1:4443/");
    assert.deepEqual(r.gcs, {
      bucket: "b",
      path: "p",
      credentialsFile: "/home/me/sa.json",
      endpoint: "http://127.0.0.1:4443",
      authWithEndpoint: true,
    });
    configError(() => replica("url: gcs://b/p\nendpoint: ftp://x"), "dbs[0].replicas[0].endpoint");
  });

  it("uses STORAGE_EMULATOR_HOST as the Go client does: host:port or a URL, no credentials", () => {
    assert.deepEqual(replica("url: gcs://b/p", { STORAGE_EMULATOR_HOST: "127.0.0.1:4443" }).r.gcs, {
      bucket: "b",
      path: "p",
      endpoint: "http://127.0.0.1:4443",
      authWithEndpoint: false,
    });
    assert.equal(
      replica("url: gcs://b/p", { STORAGE_EMULATOR_HOST: "https://emu:9000" }).r.gcs?.endpoint,
      "https://emu:9000",
    );
    // An explicit endpoint wins.
    assert.equal(
      replica("url: gcs://b/p\nendpoint: http://x:1", { STORAGE_EMULATOR_HOST: "127.0.0.1:4443" }).r.gcs
        ?.endpoint,
      "http://x:1",
    );
  });

  it("takes ?endpoint= in the URL form (restore URL against an emulator)", () => {
    assert.equal(
      replica("url: gcs://b/p?endpoint=http://127.0.0.1:4443").r.gcs?.endpoint,
      "http://127.0.0.1:4443",
    );
  });
});

describe("abs config", () => {
  it("reads Litestream's keys, the account from the URL user, the key from LITESTREAM_AZURE_ACCOUNT_KEY", () => {
    const { r } = replica("url: abs://acct@cont/x/y", { LITESTREAM_AZURE_ACCOUNT_KEY: "k1" });
    assert.deepEqual(r.abs, { accountName: "acct", accountKey: "k1", bucket: "cont", path: "x/y" });
    const yaml = replica(
      "type: abs\naccount-name: a\naccount-key: k\nbucket: c\npath: p\nendpoint: http://127.0.0.1:10000/devstoreaccount1",
    ).r;
    assert.deepEqual(yaml.abs, {
      accountName: "a",
      accountKey: "k",
      bucket: "c",
      path: "p",
      endpoint: "http://127.0.0.1:10000/devstoreaccount1",
    });
  });

  it("reads AZURE_STORAGE_ACCOUNT, AZURE_STORAGE_KEY and AZURE_STORAGE_SAS_TOKEN (what seed 002 sets)", () => {
    const { r } = replica("url: abs://cont/x", {
      AZURE_STORAGE_ACCOUNT: "acct",
      AZURE_STORAGE_KEY: "k2",
      AZURE_STORAGE_SAS_TOKEN: "sv=1",
    });
    assert.deepEqual(r.abs, {
      accountName: "acct",
      accountKey: "k2",
      sasToken: "sv=1",
      bucket: "cont",
      path: "x",
    });
    // LITESTREAM_AZURE_ACCOUNT_KEY (Litestream's) wins over AZURE_STORAGE_KEY; YAML wins over both.
    assert.equal(
      replica("url: abs://cont/x", { LITESTREAM_AZURE_ACCOUNT_KEY: "L", AZURE_STORAGE_KEY: "A" }).r.abs
        ?.accountKey,
      "L",
    );
    assert.equal(
      replica("url: abs://a@cont/x\naccount-key: Y", { AZURE_STORAGE_KEY: "A" }).r.abs?.accountKey,
      "Y",
    );
  });

  it("warns when seed 002's abs://ACCOUNT/CONTAINER/path form makes the account the container", () => {
    const { r, c } = replica("url: abs://my-account/my-container/nebulagc/db", {
      AZURE_STORAGE_ACCOUNT: "my-account",
      AZURE_STORAGE_KEY: "k",
    });
    // Read as Litestream reads it, so both tools address the same blobs ...
    assert.equal(r.abs?.bucket, "my-account");
    assert.equal(r.abs?.path, "my-container/nebulagc/db");
    // ... with a warning that says what was probably meant.
    assert.match(c.warnings.join("\n"), /names container "my-account".*abs:\/\/ACCOUNT@CONTAINER\/path/);
  });

  it("reads sas-token and the *-path keys, and ?endpoint= in the URL form", () => {
    const { r } = replica(
      "url: abs://acct@cont/p?endpoint=http://127.0.0.1:10000/devstoreaccount1\nsas-token-file: /run/s/sas\naccount-key-file: /run/s/key",
    );
    assert.deepEqual(r.abs, {
      accountName: "acct",
      bucket: "cont",
      path: "p",
      endpoint: "http://127.0.0.1:10000/devstoreaccount1",
      sasTokenFile: "/run/s/sas",
      accountKeyFile: "/run/s/key",
    });
  });
});
