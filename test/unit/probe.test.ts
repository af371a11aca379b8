/**
 * The destination self-test: the hint chosen for each usual mistake (probe-hints.ts, pure, literal
 * errors as each backend raises them), and probeDestination's four steps on a real file destination
 * and on clients that answer wrongly at one step (probe.ts).
 */
import assert from "node:assert/strict";
import { existsSync, readdirSync } from "node:fs";
import path from "node:path";
import { after, describe, it } from "node:test";
import { credentialFiles, PROBE_PREFIX, probeDestination } from "../../src/replicator/probe.ts";
import { errorFacts, probeHint } from "../../src/replicator/probe-hints.ts";
import type { ReplicaClient } from "../../src/replicator/storage/client.ts";
import { FileReplicaClient } from "../../src/replicator/storage/file.ts";
import { ErrorCodes, WalshipError } from "../../src/shared/errors.ts";
import { makeTempDir, removeTempDir } from "../helpers/proc.ts";

const storage = (details: Record<string, unknown>, cause?: unknown) =>
  new WalshipError(ErrorCodes.STORAGE, "put s3://b/k: failed", { details, ...(cause ? { cause } : {}) });

describe("errorFacts", () => {
  it("takes the store's code, status, bucket and endpoint from a WalshipError", () => {
    assert.deepEqual(
      errorFacts(
        storage({ s3Code: "NoSuchBucket", httpStatus: 404, bucket: "b", endpoint: "http://x:9000" }),
      ),
      { code: "NoSuchBucket", httpStatus: 404, bucket: "b", endpoint: "http://x:9000" },
    );
    assert.deepEqual(errorFacts(storage({ azureCode: "ContainerNotFound", container: "c" })), {
      code: "ContainerNotFound",
      bucket: "c",
    });
    assert.deepEqual(errorFacts(storage({ sftpStatus: 3, host: "h:22" })), { code: "PERMISSION_DENIED" });
  });

  it("finds a Node error's code down the cause chain", () => {
    const refused = Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:1"), { code: "ECONNREFUSED" });
    assert.deepEqual(errorFacts(storage({ bucket: "b" }, refused)), { code: "ECONNREFUSED", bucket: "b" });
    assert.deepEqual(errorFacts(Object.assign(new Error("x"), { code: "EACCES" })), { code: "EACCES" });
    assert.deepEqual(errorFacts("a string"), {});
  });
});

describe("errorFacts: the errors gcs, abs and sftp raise (as seen on fake-gcs-server, Azurite, OpenSSH)", () => {
  it("a token endpoint that refused the key: TokenRefused, naming the endpoint; one that did not answer: its network code", () => {
    const refused = new WalshipError(
      ErrorCodes.STORAGE,
      "gcs credentials: the token endpoint http://t/token refused the key of a@b (HTTP 400): invalid_grant: bad signature",
      { details: { tokenUrl: "http://t/token", httpStatus: 400 } },
    );
    assert.deepEqual(errorFacts(refused), {
      code: "TokenRefused",
      httpStatus: 400,
      endpoint: "http://t/token",
    });
    const down = new WalshipError(
      ErrorCodes.STORAGE,
      "gcs credentials: token request to http://t/token failed",
      {
        details: { tokenUrl: "http://t/token" },
        cause: new TypeError("fetch failed", {
          cause: Object.assign(new Error("connect ECONNREFUSED"), { code: "ECONNREFUSED" }),
        }),
      },
    );
    assert.deepEqual(errorFacts(down), { code: "ECONNREFUSED", endpoint: "http://t/token" });
  });

  it("Azurite's AuthorizationFailure for a bad signature is AuthenticationFailed; Azure's refused operation stays", () => {
    const azurite = storage({ azureCode: "AuthorizationFailure", httpStatus: 403, container: "c" });
    Object.defineProperty(azurite, "message", {
      value:
        "write abs://a@c/k: the credentials were refused (AuthorizationFailure): Server failed to authenticate the request.",
    });
    assert.equal(errorFacts(azurite).code, "AuthenticationFailed");
    const firewall = storage({ azureCode: "AuthorizationFailure", httpStatus: 403, container: "c" });
    assert.equal(errorFacts(firewall).code, "AuthorizationFailure");
  });

  it("ssh2: a refused login and a refused host key, which carry no code", () => {
    const login = Object.assign(new Error("All configured authentication methods failed"), {
      level: "client-authentication",
    });
    assert.deepEqual(errorFacts(storage({ host: "h:22", key: "k" }, login)), { code: "SSH_AUTH_FAILED" });
    const hostKey = new WalshipError(ErrorCodes.STORAGE, "sftp sftp://u@h:22/p: HOST KEY MISMATCH for h", {
      details: { host: "h:22" },
      cause: Object.assign(new Error("Host denied (verification failed)"), { level: "handshake" }),
    });
    assert.deepEqual(errorFacts(hostKey), { code: "SSH_HOST_KEY_REJECTED" });
  });
});

describe("probeHint", () => {
  const hint = (type: string, step: "write" | "read" | "list" | "delete", facts: object, where = {}) =>
    probeHint(type, step, facts, where);

  it("a missing bucket, named, with where", () => {
    assert.equal(
      hint("s3", "write", { code: "NoSuchBucket", bucket: "backups", endpoint: "http://m:9000" }),
      'missing bucket: bucket "backups" does not exist at http://m:9000; create it, or correct the bucket name in the destination',
    );
    assert.equal(
      hint("abs", "write", { code: "ContainerNotFound", bucket: "c", endpoint: "http://a:10000/acct" }),
      'missing container: container "c" does not exist at http://a:10000/acct; create it, or correct the container name in the destination',
    );
    assert.match(hint("gcs", "write", { httpStatus: 404, bucket: "g" }) ?? "", /^missing bucket: bucket "g"/);
  });

  it("no permission: the step's permission by type, and delete names retention", () => {
    assert.equal(
      hint("s3", "write", { code: "AccessDenied", bucket: "b" }),
      'no permission to write: the credentials lack s3:PutObject on bucket "b"; every sync and snapshot writes',
    );
    const del = hint("s3", "delete", { code: "AccessDenied", bucket: "b" }) ?? "";
    assert.match(del, /^no permission to delete: the credentials lack s3:DeleteObject on bucket "b"; /);
    assert.match(del, /retention deletes old snapshots and WAL; grant it, or set retention to 0s/);
    assert.match(hint("gcs", "delete", { httpStatus: 403 }) ?? "", /storage\.objects\.delete/);
    assert.match(hint("abs", "list", { code: "AuthorizationPermissionMismatch" }) ?? "", /SAS permission l/);
    assert.match(
      hint("file", "write", { code: "EACCES" }) ?? "",
      /^no permission to write: the replicator may not write files under the destination's path; give it write access there/,
    );
    assert.match(hint("sftp", "delete", { code: "PERMISSION_DENIED" }) ?? "", /^no permission to delete/);
  });

  it("the wrong region names the region signed for", () => {
    for (const code of [
      "PermanentRedirect",
      "AuthorizationHeaderMalformed",
      "IllegalLocationConstraintException",
    ]) {
      assert.equal(
        hint("s3", "write", { code, bucket: "b" }, { region: "us-east-1" }),
        `wrong region: bucket "b" is not in region "us-east-1"; set the destination's region to the bucket's`,
      );
    }
  });

  it("clock skew", () => {
    assert.match(hint("s3", "write", { code: "RequestTimeTooSkewed" }) ?? "", /^clock skew: .*NTP/);
  });

  it("wrong credentials", () => {
    for (const code of ["InvalidAccessKeyId", "SignatureDoesNotMatch", "AuthenticationFailed"]) {
      assert.match(hint("s3", "write", { code }) ?? "", new RegExp(`^wrong credentials: .*\\(${code}\\)`));
    }
    assert.match(hint("gcs", "read", { httpStatus: 401 }) ?? "", /^wrong credentials: .*HTTP 401/);
  });

  it("an unreachable endpoint, or a probe that timed out", () => {
    for (const code of ["ECONNREFUSED", "ENOTFOUND", "ETIMEDOUT", "EPROBETIMEOUT"]) {
      assert.match(
        hint("s3", "write", { code, endpoint: "http://10.0.0.1:9000" }) ?? "",
        new RegExp(`^unreachable endpoint: http://10\\.0\\.0\\.1:9000 cannot be reached .*\\(${code}\\)`),
      );
    }
    assert.match(
      hint("sftp", "write", { code: "ENOTFOUND" }, { location: "sftp://h/p" }) ?? "",
      /sftp:\/\/h\/p/,
    );
  });

  it("gcs, abs and sftp: a refused key names what to check for the type, never the key", () => {
    assert.equal(
      hint("gcs", "write", { code: "TokenRefused", httpStatus: 400, endpoint: "http://t/token" }),
      "wrong credentials: the token endpoint at http://t/token refused the key (TokenRefused); check credentials-file or GOOGLE_APPLICATION_CREDENTIALS: the service-account key may be deleted or rotated, or the Workload Identity binding missing",
    );
    assert.match(
      hint("abs", "write", { code: "AuthenticationFailed", bucket: "c" }) ?? "",
      /^wrong credentials: .*\(AuthenticationFailed\); check account-name with its account-key/,
    );
    assert.match(
      hint("sftp", "write", { code: "SSH_AUTH_FAILED" }, { location: "sftp://u@h:22/p" }) ?? "",
      /^wrong credentials: the store does not accept the key at sftp:\/\/u@h:22\/p \(SSH_AUTH_FAILED\); .*authorized_keys/,
    );
    assert.match(hint("gcs", "read", { httpStatus: 401 }) ?? "", /credentials-file/);
  });

  it("sftp: a refused host key, and a path the user may not write", () => {
    assert.match(
      hint("sftp", "write", { code: "SSH_HOST_KEY_REJECTED" }, { location: "sftp://u@h:22/p" }) ?? "",
      /^unknown host key: the server at sftp:\/\/u@h:22\/p presented a host key that is neither pinned \(host-key, host-key-file\) nor in known_hosts/,
    );
    assert.equal(
      hint("sftp", "write", { code: "PERMISSION_DENIED" }, { location: "sftp://u@h:22/p" }),
      "no permission to write: the SFTP user may not write files under the destination's path at sftp://u@h:22/p; give it write access there, or set path to a directory it owns (in a chroot, one under the user's home); every sync and snapshot writes",
    );
  });

  it("no hint for what it does not know", () => {
    assert.equal(hint("s3", "write", { code: "InternalError", httpStatus: 500 }), undefined);
    assert.equal(hint("s3", "read", {}), undefined);
  });
});

describe("probeDestination", () => {
  const dir = makeTempDir("probe-unit");
  after(() => removeTempDir(dir));

  it("passes on a file destination and leaves no object behind", async () => {
    const root = path.join(dir, "ok");
    const r = await probeDestination(new FileReplicaClient(root), { id: "p1" });
    assert.equal(r.outcome, "ok");
    assert.equal(r.step, undefined);
    const probeDir = path.join(root, PROBE_PREFIX);
    assert.ok(!existsSync(probeDir) || readdirSync(probeDir).length === 0, "no probe object left");
  });

  /** A file client whose one method is replaced. */
  function patched(root: string, patch: Partial<ReplicaClient>): ReplicaClient {
    const inner = new FileReplicaClient(path.join(dir, root));
    return new Proxy(inner, {
      get: (t, k) =>
        k in patch
          ? patch[k as keyof ReplicaClient]
          : (Reflect.get(t, k, t)?.bind?.(t) ?? Reflect.get(t, k, t)),
    });
  }

  it("fails at read when other bytes come back, and still deletes what it wrote", async () => {
    const inner = new FileReplicaClient(path.join(dir, "read"));
    const c = patched("read", { getExtra: async () => new Uint8Array([1, 2, 3]) });
    const r = await probeDestination(c, { id: "p2" });
    assert.equal(r.outcome, "failed");
    assert.equal(r.step, "read");
    assert.match(r.message ?? "", /got 3 bytes that differ/);
    assert.deepEqual(await inner.listExtras(PROBE_PREFIX), []);
  });

  it("fails at list when the object is not listed", async () => {
    const r = await probeDestination(patched("list", { listExtras: async () => [] }), { id: "p3" });
    assert.equal(r.step, "list");
    assert.match(r.message ?? "", /is not listed/);
  });

  it("fails at delete with the store's error and the delete hint", async () => {
    const denied = new WalshipError(ErrorCodes.STORAGE, "delete s3://b/: AccessDenied", {
      details: { s3Code: "AccessDenied", bucket: "b" },
    });
    const r = await probeDestination(
      patched("delete", {
        deleteExtras: async () => {
          throw denied;
        },
      }),
      { id: "p4" },
    );
    assert.equal(r.step, "delete");
    assert.equal(r.message, "delete s3://b/: AccessDenied");
    assert.match(r.hint ?? "", /^no permission to delete: .*retention/);
  });

  it("a step that hangs times out with the unreachable hint", async () => {
    const r = await probeDestination(
      patched("hang", {
        putExtra: (_k, _b, opts) =>
          new Promise((_, reject) =>
            opts?.signal?.addEventListener("abort", () => reject(opts.signal?.reason)),
          ),
      }),
      { id: "p5", timeoutMs: 50 },
    );
    assert.equal(r.step, "write");
    assert.match(r.message ?? "", /timed out after 0s/);
    assert.match(r.hint ?? "", /^unreachable endpoint: .*EPROBETIMEOUT/);
  });
});

describe("credentialFiles", () => {
  it("lists each credential file a destination reads", () => {
    assert.deepEqual(
      credentialFiles({
        name: "s",
        type: "s3",
        s3: {
          bucket: "b",
          path: "",
          forcePathStyle: false,
          accessKeyIdFile: "/c/id",
          secretAccessKeyFile: "/c/s",
        },
      } as never),
      ["/c/id", "/c/s"],
    );
    assert.deepEqual(credentialFiles({ name: "f", type: "file", file: { path: "/x" } }), []);
  });
});
