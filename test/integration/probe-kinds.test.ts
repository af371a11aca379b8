/**
 * The destination self-test (src/replicator/probe.ts) on the other destination kinds, by the real
 * replicator CLI against each kind's real local server (test/integration/probe.test.ts does S3 on
 * MinIO):
 *
 * - GCS on fake-gcs-server, with a service-account key exchanged at a FAKE token_uri stand-in
 *   (test/helpers/token-standin.ts): the emulator checks no credentials, the stand-in does;
 * - Azure Blob on Azurite (--disableTelemetry, test/helpers/azurite.ts), with account keys in files;
 * - SFTP on OpenSSH with a chrooted sftp-only user (test/helpers/sftp.ts), host key pinned.
 *
 * On each: a good destination passes and leaves no probe object behind; a missing bucket or
 * container (SFTP: a directory the user may not write), a wrong credential, and for SFTP a wrong
 * pinned host key and a closed port, fail at `write` with the service's own error in the message and
 * a hint naming the mistake. No secret (private keys, account keys) appears in /status or the logs.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { generateKeyPairSync } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { type DestinationStatus, ReplicatorStatusSchema } from "../../src/shared/protocol.ts";
import { type Azurite, startAzurite } from "../helpers/azurite.ts";
import { type FakeGcs, startGcs } from "../helpers/gcs.ts";
import { freePort } from "../helpers/ports.ts";
import { makeTempDir, removeTempDir } from "../helpers/proc.ts";
import { type SftpServer, startSftp } from "../helpers/sftp.ts";
import { startTokenStandIn, type TokenStandIn } from "../helpers/token-standin.ts";
import { type Replicator, replicate, sleep } from "../helpers/walship.ts";

let dir = "";
const running: Replicator[] = [];

before(() => {
  dir = makeTempDir("probe-kinds");
});
after(async () => {
  for (const r of running) await r.stop();
  removeTempDir(dir);
});

type Probe = NonNullable<DestinationStatus["probe"]>;

/** Starts `walship replicate` on one database with these replica blocks; probes retry every second. */
async function start(
  name: string,
  replicas: string,
  env: NodeJS.ProcessEnv = {},
): Promise<{ port: number; rep: Replicator }> {
  const port = await freePort();
  const db = path.join(dir, `${name}.db`);
  const text =
    `addr: 127.0.0.1:${port}\nprobe-interval: 1s\ndbs:\n  - path: ${db}\n` +
    `    monitor-interval: 50ms\n    replicas:\n${replicas}`;
  const { rep } = replicate(dir, text, { file: `${name}.yml`, env });
  running.push(rep);
  return { port, rep };
}

/** Polls /status until every named destination has a finished probe; returns them by name. */
async function probes(port: number, names: string[], rep: Replicator): Promise<Map<string, Probe>> {
  const end = Date.now() + 60_000;
  let last: unknown;
  while (Date.now() < end) {
    try {
      const res = await fetch(`http://127.0.0.1:${port}/status`);
      const text = await res.text();
      const got = new Map<string, Probe>();
      for (const d of ReplicatorStatusSchema.parse(JSON.parse(text)).databases[0]!.replicas) {
        if (d.probe) got.set(d.name, d.probe);
      }
      last = text;
      if (names.every((n) => got.has(n))) {
        statusTexts.push(text);
        return got;
      }
    } catch (err) {
      last = err;
    }
    await sleep(200);
  }
  throw new Error(
    `probes of ${names.join(", ")} not all done: ${String(last)}\n${rep.output().slice(-3000)}`,
  );
}

/** Every /status document read, for the no-secret check. */
const statusTexts: string[] = [];

/** Neither /status nor the log holds any of the secrets (whole, or a long piece of a PEM body). */
function assertNoSecret(rep: Replicator, secrets: string[]): void {
  const seen = `${statusTexts.join("\n")}\n${rep.output()}`;
  for (const s of secrets) {
    const pieces = s.includes("-----BEGIN")
      ? s
          .split("\n")
          .filter((l) => l.length >= 40 && !l.startsWith("-----"))
          .slice(0, 3)
      : [s];
    assert.ok(pieces.length > 0);
    for (const p of pieces)
      assert.ok(!seen.includes(p), `a secret appears in /status or the log: ${p.slice(0, 8)}...`);
  }
}

function show(kind: string, m: Map<string, Probe>): void {
  if (process.env.PROBE_KINDS_DEBUG) console.log(kind, JSON.stringify(Object.fromEntries(m), null, 2));
}

describe("destination self-test on gcs, abs and sftp", () => {
  let gcs: FakeGcs | undefined;
  let standIn: TokenStandIn | undefined;
  let az: Azurite | undefined;
  let sftp: SftpServer | undefined;
  after(async () => {
    for (const r of running) await r.stop();
    await gcs?.close();
    await standIn?.close();
    await az?.close();
    await sftp?.close();
  });

  it("gcs (fake-gcs-server): good passes; a missing bucket and a key the token endpoint refuses fail at write", async () => {
    gcs = await startGcs();
    standIn = await startTokenStandIn();
    await gcs.createBucket("good");
    const good = standIn.serviceAccountKey();
    // The same account with another private key (a deleted or rotated key): the grant's signature fails.
    const other = generateKeyPairSync("rsa", { modulusLength: 2048 })
      .privateKey.export({ type: "pkcs8", format: "pem" })
      .toString();
    const wrong = { ...good, private_key: other };
    writeFileSync(path.join(dir, "sa-good.json"), JSON.stringify(good), { mode: 0o600 });
    writeFileSync(path.join(dir, "sa-wrong.json"), JSON.stringify(wrong), { mode: 0o600 });
    const block = (name: string, bucket: string, key: string) =>
      `      - name: ${name}\n        url: gcs://${bucket}/probe\n        endpoint: ${gcs?.endpoint}\n` +
      `        credentials-file: ${path.join(dir, key)}\n        sync-interval: 100ms\n`;
    const { port, rep } = await start(
      "gcs",
      block("good", "good", "sa-good.json") +
        block("nobucket", "missing", "sa-good.json") +
        block("badkey", "good", "sa-wrong.json"),
      { METADATA_SERVER_DETECTION: "none", GCE_METADATA_HOST: "127.0.0.1:9" },
    );
    const got = await probes(port, ["good", "nobucket", "badkey"], rep);
    show("gcs", got);
    assert.equal(got.get("good")?.outcome, "ok", JSON.stringify(got.get("good")));
    assert.deepEqual(
      (await gcs.listObjects("good", "probe/walship/probe/")).map((o) => o.name),
      [],
      "no probe object left",
    );

    const missing = got.get("nobucket");
    assert.ok(missing, "probed");
    assert.equal(missing.outcome, "failed", JSON.stringify(missing));
    assert.equal(missing.step, "write");
    assert.match(missing.message ?? "", /HTTP 404/);
    assert.match(
      missing.hint ?? "",
      /^missing bucket: bucket "missing" does not exist at http:\/\/127\.0\.0\.1:/,
    );

    const badkey = got.get("badkey");
    assert.ok(badkey, "probed");
    assert.equal(badkey.outcome, "failed", JSON.stringify(badkey));
    assert.equal(badkey.step, "write");
    assert.match(badkey.message ?? "", /invalid_grant|bad signature/);
    assert.match(badkey.hint ?? "", /^wrong credentials: /);
    assert.match(badkey.hint ?? "", /credentials-file|service-account key/);
    assertNoSecret(rep, [good.private_key!, other]);
  });

  it("abs (Azurite): good passes; a missing container and a wrong account key fail at write", async () => {
    az = await startAzurite();
    await az.createContainer("good");
    const wrongKey = Buffer.alloc(64, 7).toString("base64");
    writeFileSync(path.join(dir, "abs-key"), az.key, { mode: 0o600 });
    writeFileSync(path.join(dir, "abs-wrong"), wrongKey, { mode: 0o600 });
    const block = (name: string, container: string, key: string) =>
      `      - name: ${name}\n        type: abs\n        account-name: ${az?.account}\n` +
      `        bucket: ${container}\n        path: probe\n        endpoint: ${az?.endpoint}\n` +
      `        account-key-file: ${path.join(dir, key)}\n        sync-interval: 100ms\n`;
    const { port, rep } = await start(
      "abs",
      block("good", "good", "abs-key") +
        block("nocontainer", "missing", "abs-key") +
        block("badkey", "good", "abs-wrong"),
    );
    const got = await probes(port, ["good", "nocontainer", "badkey"], rep);
    show("abs", got);
    assert.equal(got.get("good")?.outcome, "ok", JSON.stringify(got.get("good")));
    const left: string[] = [];
    for await (const b of az
      .client()
      .getContainerClient("good")
      .listBlobsFlat({ prefix: "probe/walship/probe/" }))
      left.push(b.name);
    assert.deepEqual(left, [], "no probe object left");

    const missing = got.get("nocontainer");
    assert.ok(missing, "probed");
    assert.equal(missing.outcome, "failed", JSON.stringify(missing));
    assert.equal(missing.step, "write");
    assert.match(missing.message ?? "", /ContainerNotFound/);
    assert.match(
      missing.hint ?? "",
      /^missing container: container "missing" does not exist at http:\/\/127\.0\.0\.1:/,
    );

    const badkey = got.get("badkey");
    assert.ok(badkey, "probed");
    assert.equal(badkey.outcome, "failed", JSON.stringify(badkey));
    assert.equal(badkey.step, "write");
    assert.match(badkey.message ?? "", /AuthorizationFailure|AuthenticationFailed/);
    assert.match(badkey.hint ?? "", /^wrong credentials: /);
    assert.match(badkey.hint ?? "", /account-key/);
    assertNoSecret(rep, [az.key, wrongKey]);
  });

  it("sftp (OpenSSH): good passes; an unwritable path, a wrong key, a wrong host key and a closed port fail at write", async () => {
    sftp = await startSftp();
    const s = sftp;
    const otherKey = path.join(dir, "id_other");
    execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", otherKey]);
    const otherHost = path.join(dir, "host_other");
    execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", otherHost]);
    const wrongHostKey = readFileSync(`${otherHost}.pub`, "utf8").trim().split(" ").slice(0, 2).join(" ");
    const closed = await freePort();
    const block = (name: string, o: { host?: string; key?: string; hostKey?: string; path?: string }) =>
      `      - name: ${name}\n        type: sftp\n        host: ${o.host ?? s.address}\n        user: ${s.user}\n` +
      `        key-path: ${o.key ?? s.keyPath}\n        host-key: ${o.hostKey ?? s.hostKeyLine("ed25519")}\n` +
      `        path: ${o.path ?? "/data/probe"}\n        sync-interval: 100ms\n`;
    const { port, rep } = await start(
      "sftp",
      block("good", {}) +
        block("readonly", { path: "/probe-root" }) +
        block("badkey", { key: otherKey }) +
        block("badhost", { hostKey: wrongHostKey }) +
        block("closed", { host: `127.0.0.1:${closed}` }),
    );
    const got = await probes(port, ["good", "readonly", "badkey", "badhost", "closed"], rep);
    show("sftp", got);
    assert.equal(got.get("good")?.outcome, "ok", JSON.stringify(got.get("good")));
    const probeDir = path.join(s.root, "data/probe/walship/probe");
    assert.deepEqual(
      (() => {
        try {
          return execFileSync("ls", ["-A", probeDir], { encoding: "utf8" }).split("\n").filter(Boolean);
        } catch {
          return [];
        }
      })(),
      [],
      "no probe object left",
    );

    const ro = got.get("readonly");
    assert.ok(ro, "probed");
    assert.equal(ro.outcome, "failed", JSON.stringify(ro));
    assert.equal(ro.step, "write");
    assert.match(ro.message ?? "", /permission denied/i);
    assert.match(ro.hint ?? "", /^no permission to write: /);

    const badkey = got.get("badkey");
    assert.ok(badkey, "probed");
    assert.equal(badkey.outcome, "failed", JSON.stringify(badkey));
    assert.equal(badkey.step, "write");
    assert.match(badkey.message ?? "", /All configured authentication methods failed/);
    assert.match(badkey.hint ?? "", /^wrong credentials: /);
    assert.match(badkey.hint ?? "", /authorized_keys/);

    const badhost = got.get("badhost");
    assert.ok(badhost, "probed");
    assert.equal(badhost.outcome, "failed", JSON.stringify(badhost));
    assert.equal(badhost.step, "write");
    assert.match(badhost.message ?? "", /HOST KEY MISMATCH .*Host denied \(verification failed\)/);
    assert.match(badhost.hint ?? "", /^unknown host key: /);

    const closedProbe = got.get("closed");
    assert.ok(closedProbe, "probed");
    assert.equal(closedProbe.outcome, "failed", JSON.stringify(closedProbe));
    assert.equal(closedProbe.step, "write");
    assert.match(closedProbe.message ?? "", /ECONNREFUSED/);
    assert.match(closedProbe.hint ?? "", new RegExp(`^unreachable endpoint: .*127\\.0\\.0\\.1:${closed}`));

    assertNoSecret(rep, [readFileSync(s.keyPath, "utf8"), readFileSync(otherKey, "utf8")]);
  });
});
