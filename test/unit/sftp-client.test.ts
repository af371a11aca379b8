/**
 * The SFTP destination against a real OpenSSH sshd (Debian's openssh-server) with a chrooted,
 * sftp-only user and key auth, as seed 000's backup server: the shared ReplicaClient contract, plus
 * what only SFTP shows (host-key checks, passphrase keys, temp name + rename, relative paths,
 * connections killed or hung mid-request, file times).
 *
 * The chroot directory on disk observes the destination independently of the code under test.
 * Needs root (useradd, chroot); the helper removes the user and its directory afterwards.
 */
import assert from "node:assert/strict";
import { createHash, createHmac, randomBytes } from "node:crypto";
import { existsSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Readable } from "node:stream";
import { after, before, describe, it } from "node:test";
import {
  SftpReplicaClient,
  type SftpReplicaClientOptions,
  splitHostPort,
} from "../../src/replicator/storage/sftp.ts";
import { ErrorCodes, WalshipError } from "../../src/shared/errors.ts";
import {
  bytesStream,
  generatedBody,
  readAll,
  replicaClientContract,
} from "../contract/replica-client.contract.ts";
import { assertCode } from "../helpers/assert.ts";
import { makeTempDir } from "../helpers/proc.ts";
import { type SftpServer, startSftp } from "../helpers/sftp.ts";

const G1 = "0a1b2c3d4e5f6071";
const MiB = 1024 * 1024;

let sftp: SftpServer | undefined;
before(async () => {
  sftp = await startSftp();
});
after(async () => {
  await sftp?.close();
});

function server(): SftpServer {
  assert.ok(sftp, "sshd did not start (root and Debian's openssh-server are needed: test/infra/install)");
  return sftp;
}

let seq = 0;
/** A fresh directory name under /data (inside the chroot). */
function freshPath(label: string): string {
  return `/data/${label}-${++seq}`;
}

function client(p: string, over: Partial<SftpReplicaClientOptions> = {}): SftpReplicaClient {
  const s = server();
  return new SftpReplicaClient({
    host: s.address,
    user: s.user,
    keyPath: s.keyPath,
    path: p,
    hostKeys: [s.hostKeyLine("ed25519")],
    ...over,
  });
}

/** Files under a chroot path, relative, sorted (what is really on the server's disk). */
function filesOnDisk(p: string): string[] {
  const root = join(server().root, p);
  if (!existsSync(root)) return [];
  return (readdirSync(root, { recursive: true }) as string[])
    .filter((f) => statSync(join(root, f)).isFile())
    .sort();
}

replicaClientContract("sftp (OpenSSH, chrooted sftp-only user)", async () => {
  const p = freshPath("contract");
  const c = client(p);
  return {
    client: c,
    cleanup: async () => {
      c.close();
      rmSync(join(server().root, p), { recursive: true, force: true });
    },
  };
});

describe("sftp destination", () => {
  it("writes to <name>.tmp and renames it into place, leaving no temp file", async () => {
    const p = freshPath("rename");
    const c = client(p);
    try {
      await c.writeSnapshot(G1, 1, bytesStream("first"));
      await c.writeSnapshot(G1, 1, bytesStream("second, longer"));
      assert.deepEqual(filesOnDisk(p), [`generations/${G1}/snapshots/00000001.snapshot.lz4`]);
      assert.equal((await readAll(await c.snapshotReader(G1, 1))).toString(), "second, longer");
    } finally {
      c.close();
    }
  });

  it("reports the file's mtime (whole seconds) as the object time", async () => {
    const p = freshPath("mtime");
    const c = client(p);
    try {
      const info = await c.writeWalSegment(G1, 1, 0, Buffer.from("seg"));
      const st = statSync(join(server().root, p, `generations/${G1}/wal/00000001_00000000.wal.lz4`));
      assert.equal(info.createdAt.getTime(), Math.floor(st.mtimeMs / 1000) * 1000);
      assert.equal((await c.walSegments(G1))[0]?.createdAt.getTime(), info.createdAt.getTime());
    } finally {
      c.close();
    }
  });

  it("resolves a relative path against the login directory (the user's home in the chroot)", async () => {
    const s = server();
    const c = client(`reldb-${++seq}`);
    try {
      await c.writeWalSegment(G1, 1, 0, Buffer.from("x"));
      const onDisk = join(
        s.root,
        "home",
        s.user,
        `reldb-${seq}`,
        `generations/${G1}/wal/00000001_00000000.wal.lz4`,
      );
      assert.ok(existsSync(onDisk), `${onDisk} missing`);
      assert.equal(c.location, `sftp://${s.user}@${s.address}/reldb-${seq}`);
    } finally {
      c.close();
    }
  });

  describe("host keys", () => {
    it("accepts a key from known_hosts (plain, or hashed as ssh-keygen -H writes it)", async () => {
      const s = server();
      const dir = makeTempDir("known-hosts");
      const plain = join(dir, "plain");
      writeFileSync(
        plain,
        `# comment\nother.example ${s.hostKeyLine("rsa")}\n${s.knownHostsLine("ed25519")}\n`,
      );
      const salt = randomBytes(20);
      const name = `[${s.listenHost}]:${s.port}`;
      const hmac = createHmac("sha1", salt).update(name).digest("base64");
      const hashed = join(dir, "hashed");
      writeFileSync(hashed, `|1|${salt.toString("base64")}|${hmac} ${s.hostKeyLine("ecdsa")}\n`);
      for (const file of [plain, hashed]) {
        const c = client(freshPath("kh"), { hostKeys: undefined, knownHostsFiles: [file] });
        try {
          await c.writeWalSegment(G1, 1, 0, Buffer.from("x"));
        } finally {
          c.close();
        }
      }
    });

    it("negotiates the algorithm of the pinned key when the server has several (rsa pinned)", async () => {
      const c = client(freshPath("rsa"), { hostKeys: [server().hostKeyLine("rsa")] });
      try {
        assert.deepEqual(await c.generations(), []);
      } finally {
        c.close();
      }
    });

    it("refuses an unknown host key by default, showing the fingerprint and how to pin it", async () => {
      const dir = makeTempDir("known-hosts");
      const empty = join(dir, "known_hosts");
      writeFileSync(empty, "");
      const c = client(freshPath("unknown"), { hostKeys: undefined, knownHostsFiles: [empty] });
      try {
        await assert.rejects(c.generations(), (err: unknown) => {
          assert.ok(err instanceof WalshipError);
          assert.equal(err.code, ErrorCodes.STORAGE);
          assert.match(err.message, /host key is not known: ssh-\S+ SHA256:[A-Za-z0-9+/]{43}/);
          assert.match(err.message, /host-key: "ssh-/);
          assert.match(err.message, /insecure-ignore-host-key: true/);
          return true;
        });
      } finally {
        c.close();
      }
    });

    it("refuses a changed host key as a mismatch, and a revoked one", async () => {
      const s = server();
      const other = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl";
      const c = client(freshPath("mismatch"), { hostKeys: [other] });
      try {
        await assert.rejects(c.generations(), /HOST KEY MISMATCH/);
      } finally {
        c.close();
      }
      const dir = makeTempDir("known-hosts");
      const file = join(dir, "known_hosts");
      writeFileSync(file, `${s.knownHostsLine("ed25519")}\n@revoked ${s.knownHostsLine("ed25519")}\n`);
      const r = client(freshPath("revoked"), { hostKeys: undefined, knownHostsFiles: [file] });
      try {
        await assert.rejects(r.generations(), /@revoked/);
      } finally {
        r.close();
      }
    });

    it("reads pinned keys from host-key-file (a mounted Secret) at each connection", async () => {
      const dir = makeTempDir("host-key-file");
      const file = join(dir, "host-key");
      writeFileSync(
        file,
        `# the server's keys\n${server().hostKeyLine("ecdsa")}\n${server().hostKeyLine("ed25519")}\n`,
      );
      const c = client(freshPath("hkf"), { hostKeys: undefined, hostKeyFile: file });
      try {
        assert.deepEqual(await c.generations(), []);
      } finally {
        c.close();
      }
      writeFileSync(file, "not a key\n");
      const bad = client(freshPath("hkf"), { hostKeys: undefined, hostKeyFile: file });
      await assert.rejects(bad.generations(), (err: unknown) => {
        assert.ok(err instanceof WalshipError);
        assert.equal(err.code, ErrorCodes.CONFIG);
        assert.match(err.message, /host-key-file .* not a public key/);
        return true;
      });
    });

    it("skips the check only when asked (insecureIgnoreHostKey)", async () => {
      const c = client(freshPath("insecure"), {
        hostKeys: undefined,
        knownHostsFiles: [],
        insecureIgnoreHostKey: true,
      });
      try {
        assert.deepEqual(await c.generations(), []);
      } finally {
        c.close();
      }
    });
  });

  describe("keys", () => {
    it("logs in with a passphrase-protected key given its passphrase, and names the passphrase when it is missing", async () => {
      const s = server();
      const k = await s.addClientKey({ passphrase: "correct horse" });
      const ok = client(freshPath("pass"), { keyPath: k.privatePath, passphrase: "correct horse" });
      try {
        await ok.writeWalSegment(G1, 1, 0, Buffer.from("x"));
      } finally {
        ok.close();
      }
      const missing = client(freshPath("pass"), { keyPath: k.privatePath });
      await assert.rejects(missing.generations(), (err: unknown) => {
        assert.ok(err instanceof WalshipError);
        assert.equal(err.code, ErrorCodes.CONFIG);
        assert.match(err.message, /passphrase-protected; set passphrase/);
        return true;
      });
      const wrong = client(freshPath("pass"), { keyPath: k.privatePath, passphrase: "wrong" });
      await assertCode(wrong.generations(), ErrorCodes.CONFIG);
      // From key-passphrase-file, trailing newline dropped (as a Secret made from a file has one).
      const passFile = join(makeTempDir("passphrase"), "passphrase");
      writeFileSync(passFile, "correct horse\n");
      const fromFile = client(freshPath("pass"), { keyPath: k.privatePath, passphraseFile: passFile });
      try {
        assert.deepEqual(await fromFile.generations(), []);
      } finally {
        fromFile.close();
      }
    });

    it("logs in with an RSA key", async () => {
      const k = await server().addClientKey({ type: "rsa" });
      const c = client(freshPath("rsakey"), { keyPath: k.privatePath });
      try {
        assert.deepEqual(await c.generations(), []);
      } finally {
        c.close();
      }
    });

    it("a key the server does not accept is a STORAGE error naming the user, not the key", async () => {
      const dir = makeTempDir("stranger");
      const { execFileSync } = await import("node:child_process");
      execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", join(dir, "k")]);
      const c = client(freshPath("stranger"), { keyPath: join(dir, "k") });
      await assert.rejects(c.generations(), (err: unknown) => {
        assert.ok(err instanceof WalshipError);
        assert.equal(err.code, ErrorCodes.STORAGE);
        assert.match(err.message, new RegExp(`refused user "${server().user}"`));
        return true;
      });
    });
  });

  describe("broken connections", () => {
    it("a connection killed mid-upload leaves no object under the final name, and the next write reconnects", async () => {
      const s = server();
      const p = freshPath("killed");
      const c = client(p);
      try {
        await c.writeSnapshot(G1, 1, bytesStream("previous"));
        // A body that stalls after 1 MiB: the upload is surely in progress when the session dies.
        let sent = 0;
        const body = new Readable({
          read() {
            if (sent < MiB) {
              sent += 64 * 1024;
              this.push(randomBytes(64 * 1024));
            } else if (sent === MiB) {
              sent++;
              setTimeout(() => {
                assert.ok(s.killSessions("SIGKILL") > 0, "no session to kill");
              }, 100);
            }
          },
        });
        const t0 = Date.now();
        await assertCode(c.writeSnapshot(G1, 2, body), ErrorCodes.STORAGE);
        assert.ok(Date.now() - t0 < 10_000, "the failure must come at once, not after a timeout");
        assert.ok(body.destroyed, "the body feeding a failed upload is destroyed");
        const names = filesOnDisk(p);
        assert.ok(!names.includes(`generations/${G1}/snapshots/00000002.snapshot.lz4`), names.join(","));
        // Next call: a fresh connection, and the old object is whole.
        assert.equal((await readAll(await c.snapshotReader(G1, 1))).toString(), "previous");
        const { stream, digest } = generatedBody(3 * MiB + 1, 100_000);
        await c.writeSnapshot(G1, 2, stream);
        const h = createHash("sha256").update(await readAll(await c.snapshotReader(G1, 2)));
        assert.equal(h.digest("hex"), digest());
      } finally {
        c.close();
      }
    });

    it("an idempotent call (a listing) is retried at once on a fresh connection after a kill", async () => {
      const s = server();
      const p = freshPath("relist");
      const c = client(p);
      try {
        await c.writeWalSegment(G1, 1, 0, Buffer.from("x"));
        s.killSessions("SIGKILL");
        assert.equal((await c.walSegments(G1)).length, 1);
      } finally {
        c.close();
      }
    });

    it("a hung server times a request out, and an abort returns at once even while it hangs", async () => {
      const s = server();
      const p = freshPath("hung");
      const c = client(p, { requestTimeoutMs: 1500, keepaliveIntervalMs: 60_000 });
      try {
        await c.writeWalSegment(G1, 1, 0, Buffer.from("x"));
        assert.ok(s.killSessions("SIGSTOP") > 0);
        const ac = new AbortController();
        setTimeout(() => ac.abort(), 200);
        const t0 = Date.now();
        await assertCode(c.walSegments(G1, { signal: ac.signal }), ErrorCodes.ABORTED);
        assert.ok(Date.now() - t0 < 1000, `abort took ${Date.now() - t0} ms`);
        const t1 = Date.now();
        // The listing is retried once on a new connection, which works: the old one timed out.
        const list = await c.walSegments(G1);
        assert.equal(list.length, 1);
        assert.ok(Date.now() - t1 < 8_000, `timeout + retry took ${Date.now() - t1} ms`);
      } finally {
        s.killSessions("SIGKILL");
        c.close();
      }
    });
  });

  it("splits host:port as Go does, 22 when absent", () => {
    assert.deepEqual(splitHostPort("example.com"), { host: "example.com", port: 22 });
    assert.deepEqual(splitHostPort("example.com:2222"), { host: "example.com", port: 2222 });
    assert.deepEqual(splitHostPort("[::1]:2222"), { host: "::1", port: 2222 });
    assert.deepEqual(splitHostPort("[::1]"), { host: "::1", port: 22 });
    assert.deepEqual(splitHostPort("::1"), { host: "::1", port: 22 });
    assert.deepEqual(splitHostPort("10.0.0.5"), { host: "10.0.0.5", port: 22 });
  });

  it("rejects a host-key that is not a public key line, naming the key", () => {
    assert.throws(
      () => client("/data/x", { hostKeys: ["SHA256:abcdef"] }),
      (err: unknown) =>
        err instanceof WalshipError && err.code === ErrorCodes.CONFIG && /host-key/.test(err.message),
    );
  });
});
