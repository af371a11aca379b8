/**
 * Single-writer fencing (issue #19): two `walship replicate` processes of two different databases
 * pointed at one replica path. The second refuses (status, metric, log naming the first), writes
 * nothing there, and the first keeps replicating; the second takes over at once when the first stops
 * cleanly (it releases its claim), and only after the claim expires when the first is SIGKILLed.
 * On a real file destination and on real MinIO.
 */
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { GetObjectCommand } from "@aws-sdk/client-s3";
import { CLAIM_KEY, type ClaimDoc, parseClaim } from "../../src/replicator/claim.ts";
import { type DestinationStatus, ReplicatorStatusSchema } from "../../src/shared/protocol.ts";
import { runLitestream } from "../helpers/litestream.ts";
import { type Minio, startMinio } from "../helpers/minio.ts";
import { freePort } from "../helpers/ports.ts";
import { logicalHash, logicalHashOf, openWorkload, type Workload } from "../helpers/sqlite.ts";
import { type Replicator, replicate, sleep, walship } from "../helpers/walship.ts";

const TTL_MS = 3000;
const dirs: string[] = [];
let minio: Minio;
let s3env: NodeJS.ProcessEnv;

before(async () => {
  minio = await startMinio();
  s3env = { AWS_ACCESS_KEY_ID: minio.accessKeyId, AWS_SECRET_ACCESS_KEY: minio.secretAccessKey };
});
after(async () => {
  await minio?.close();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** A pod identity as the operator injects it, so that pid checks do not apply. */
const podEnv = (name: string, uid: string): NodeJS.ProcessEnv => ({
  WALSHIP_POD_NAMESPACE: "ns",
  WALSHIP_POD_NAME: name,
  WALSHIP_POD_UID: uid,
});

interface Writer {
  name: string;
  dir: string;
  db: string;
  cfg: string;
  port: number;
  app: Workload;
  rep: Replicator;
}

type Dest = { kind: "file"; root: string } | { kind: "s3"; bucket: string; prefix: string };

function destinationYaml(d: Dest): string {
  if (d.kind === "file") return `      - name: shared\n        url: file://${d.root}\n`;
  return (
    `      - name: shared\n        type: s3\n        bucket: ${d.bucket}\n        path: ${d.prefix}\n` +
    `        endpoint: ${minio.endpoint}\n        region: us-east-1\n        force-path-style: true\n`
  );
}

/** The generations present at the destination, read from its storage directly. */
function generationsAt(d: Dest): string[] {
  const dir =
    d.kind === "file"
      ? path.join(d.root, "generations")
      : path.join(minio.dataDir, d.bucket, ...d.prefix.split("/"), "generations");
  return existsSync(dir) ? readdirSync(dir).sort() : [];
}

async function startWriter(name: string, dest: Dest, env: NodeJS.ProcessEnv = {}): Promise<Writer> {
  const dir = mkdtempSync(path.join(os.tmpdir(), `walship-fence-${name}-`));
  dirs.push(dir);
  const db = path.join(dir, `${name}.db`);
  const port = await freePort();
  const app = openWorkload(db, name.charCodeAt(0), { vacuum: false });
  app.step();
  const text =
    `addr: 127.0.0.1:${port}\nclaim-ttl: ${TTL_MS}ms\ndbs:\n  - path: ${db}\n    monitor-interval: 50ms\n` +
    `    replicas:\n${destinationYaml(dest)}        sync-interval: 100ms\n`;
  const { cfg, rep } = replicate(dir, text, { env: { ...s3env, ...env } });
  return { name, dir, db, cfg, port, app, rep };
}

async function destinationStatus(w: Writer): Promise<DestinationStatus | undefined> {
  const res = await fetch(`http://127.0.0.1:${w.port}/status`).catch(() => undefined);
  if (!res) return undefined;
  return ReplicatorStatusSchema.parse(await res.json()).databases[0]?.replicas[0];
}

async function waitUntil<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

const synced = (w: Writer) => () =>
  destinationStatus(w).then((s) => (s?.ready && s.generation ? s.generation : undefined));

/** Writes on `w` for `ms`. */
async function write(w: Writer, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    w.app.step();
    await sleep(20);
  }
}

/** The claim document at an S3 destination, read and checked by the replicator's own parser. */
async function claimAt(d: Extract<Dest, { kind: "s3" }>): Promise<ClaimDoc> {
  const client = minio.client();
  try {
    const key = `${d.prefix}/${CLAIM_KEY}`;
    const res = await client.send(new GetObjectCommand({ Bucket: d.bucket, Key: key }));
    const parsed = parseClaim((await res.Body?.transformToByteArray()) ?? new Uint8Array());
    if ("problem" in parsed) throw new Error(`${key}: ${parsed.problem}`);
    return parsed.doc;
  } finally {
    client.destroy();
  }
}

/** When `w` took the claim, by its own log line (the claim's expiry less its TTL). */
function claimedAt(w: Writer): number {
  for (const line of w.rep.output().split("\n")) {
    if (!line.includes("claim: this replicator now holds the replica path")) continue;
    const rec = JSON.parse(line) as { expiresAt?: string };
    if (rec.expiresAt) return Date.parse(rec.expiresAt) - TTL_MS;
  }
  throw new Error(`${w.name} logged no claim taken: ${w.rep.output()}`);
}

/**
 * `w`'s database restored from the shared destination equals the live one, by walship and by stock
 * litestream v0.3.13 (the claim object beside the layout is ignored by both).
 */
async function assertRestores(w: Writer): Promise<void> {
  await sleep(600);
  const want = logicalHashOf(w.app.db);
  const out = path.join(w.dir, "restored.db");
  rmSync(out, { force: true });
  const r = await walship(["restore", "-config", w.cfg, "-o", out, w.db], { env: s3env });
  assert.equal(r.code, 0, r.stderr);
  assert.equal(logicalHash(out), want, `${w.name} restores from the shared path`);
  const ls = path.join(w.dir, "litestream.db");
  rmSync(ls, { force: true });
  const l = await runLitestream(["restore", "-config", w.cfg, "-o", ls, w.db], { env: s3env });
  assert.equal(l.code, 0, l.stderr);
  assert.equal(logicalHash(ls), want, `litestream restores ${w.name} from the shared path`);
}

/**
 * A replicates; B starts on the same path and refuses (naming A), writes nothing there, A keeps
 * replicating. Then A goes (`how`), and B takes over: returns how long that took and, after a
 * SIGKILL, how long after A's last claim expired B wrote its own.
 */
async function scenario(
  dest: Dest,
  how: "stop" | "kill",
  envA: NodeJS.ProcessEnv,
  envB: NodeJS.ProcessEnv,
): Promise<{ took: number; afterExpiryMs?: number }> {
  const a = await startWriter("alpha", dest, envA);
  const genA = await waitUntil("A synced", synced(a)).catch(async (err) => {
    await a.rep.stop();
    throw new Error(`${(err as Error).message}: ${a.rep.output()}`);
  });
  await write(a, 300);
  // B only now: A's claim is in place.
  const b = await startWriter("bravo", dest, envB);
  try {
    const fenced = await waitUntil("B fenced", () =>
      destinationStatus(b).then((s) => (s?.fenced ? s : undefined)),
    );
    assert.equal(fenced.ready, false);
    assert.equal(fenced.generation, undefined, "B has written no position there");
    const holder = fenced.fenced?.holder ?? "";
    if (envA.WALSHIP_POD_NAME) assert.match(holder, /^pod ns\/alpha-0 \(uid uid-alpha\)$/);
    else assert.match(holder, new RegExp(`^process ${a.rep.child.pid} on host `));
    const metrics = await (await fetch(`http://127.0.0.1:${b.port}/metrics`)).text();
    assert.match(metrics, /^walship_replica_fenced\{[^}]*name="shared"[^}]*\} 1$/m);
    const metricsA = await (await fetch(`http://127.0.0.1:${a.port}/metrics`)).text();
    assert.match(metricsA, /^walship_replica_fenced\{[^}]*name="shared"[^}]*\} 0$/m);
    assert.match(b.rep.output(), /another writer holds the replica path/);

    // Both write for a while: only A's generation is there, and A's replica is whole and current.
    await Promise.all([write(a, 2 * TTL_MS), write(b, 2 * TTL_MS)]);
    assert.deepEqual(generationsAt(dest), [genA], "nothing of B's is at the shared path");
    assert.ok((await destinationStatus(b))?.fenced, "B still refuses");
    await assertRestores(a);

    // A goes; B takes over (at once after a clean stop, after expiry after a SIGKILL).
    const gone = Date.now();
    if (how === "stop") assert.equal(await a.rep.stop(), 0, a.rep.output());
    else await a.rep.kill9();
    // A pod's claim outlives its SIGKILL: A's last one, read once A is gone. (Without pods, on one
    // machine, B frees a dead process's claim at its next look, so there may be none of A's left.)
    const last =
      how === "kill" && envA.WALSHIP_POD_NAME && dest.kind === "s3" ? await claimAt(dest) : undefined;
    if (last) assert.equal(last.holder.pod?.name, envA.WALSHIP_POD_NAME, "A's claim outlives it");
    const genB = await waitUntil("B took over", synced(b), 10 * TTL_MS);
    const took = Date.now() - gone;
    assert.equal((await destinationStatus(b))?.fenced, undefined);
    assert.match(b.rep.output(), /this replicator now holds the replica path/);
    assert.notEqual(genB, genA);
    await write(b, 500);
    await assertRestores(b);
    return last ? { took, afterExpiryMs: claimedAt(b) - Date.parse(last.expiresAt) } : { took };
  } finally {
    for (const w of [a, b]) {
      if (w.rep.child.exitCode === null && w.rep.child.signalCode === null) await w.rep.stop();
      w.app.close();
    }
  }
}

describe("single-writer fencing", () => {
  it("file destination: the second writer refuses, then takes over at once after a clean stop", async () => {
    const root = path.join(mkdtempSync(path.join(os.tmpdir(), "walship-fence-file-")), "replica");
    dirs.push(path.dirname(root));
    const { took } = await scenario({ kind: "file", root }, "stop", {}, {});
    // Released at the stop: B's next look (every TTL/3) takes it, well before the claim would expire.
    assert.ok(took < TTL_MS, `took over in ${took} ms after a clean stop (claim TTL ${TTL_MS} ms)`);
  });

  it("file destination, same machine: a SIGKILLed writer's claim is taken over before it expires", async () => {
    const root = path.join(mkdtempSync(path.join(os.tmpdir(), "walship-fence-file-")), "replica");
    dirs.push(path.dirname(root));
    // Outside a cluster, on one machine and boot, a claimant whose process is gone holds nothing.
    const { took } = await scenario({ kind: "file", root }, "kill", {}, {});
    assert.ok(took < TTL_MS, `took over in ${took} ms`);
  });

  it("MinIO: pods' claims; a SIGKILLed pod's claim is taken over only after it expires", async () => {
    await minio.createBucket("fence");
    const { afterExpiryMs } = await scenario(
      { kind: "s3", bucket: "fence", prefix: "apps/shared" },
      "kill",
      podEnv("alpha-0", "uid-alpha"),
      podEnv("bravo-0", "uid-bravo"),
    );
    // Another pod's claim: expired by its stamp and unchanged for a TTL of B's own observation. It
    // expires a TTL after A's last renewal, which came up to TTL/3 before the SIGKILL, so the time
    // from the kill says little; B's claim is measured against A's last one's expiry.
    assert.ok(afterExpiryMs !== undefined);
    assert.ok(afterExpiryMs >= 0, `B claimed ${-afterExpiryMs} ms before A's claim expired`);
    // B looks every TTL/3: it takes an expired claim at one of its next looks.
    assert.ok(afterExpiryMs < TTL_MS, `B claimed ${afterExpiryMs} ms after A's claim expired`);
  });

  it("MinIO: a clean stop releases the claim", async () => {
    await minio.createBucket("fence2");
    const { took } = await scenario(
      { kind: "s3", bucket: "fence2", prefix: "shared" },
      "stop",
      podEnv("alpha-0", "uid-alpha"),
      podEnv("bravo-0", "uid-bravo"),
    );
    assert.ok(took < TTL_MS, `took over in ${took} ms after a clean stop`);
  });
});
