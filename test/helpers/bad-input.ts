/**
 * Shared by the bad-input suites (test/integration/bad-*.test.ts): a replicated database to point
 * bad input at, a fingerprint of a replica tree (to show nothing already replicated was touched),
 * and a CLI runner with a deadline (a bad input must fail fast, never start replicating).
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { once } from "node:events";
import { readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import path from "node:path";
import { logicalHash, openWorkload } from "./sqlite.ts";
import { type RunResult, sleep, startReplicator, WALSHIP, walship } from "./walship.ts";

export function errorCode(stderr: string): string | undefined {
  return /\[(WALSHIP_ERR_[A-Z_]+)\]/.exec(stderr)?.[1];
}

/** SHA-256 over every file's relative path and bytes under `root` (sorted). */
export function treeHash(root: string): string {
  const h = createHash("sha256");
  const walk = (dir: string): void => {
    for (const name of readdirSync(dir).sort()) {
      const p = path.join(dir, name);
      if (statSync(p).isDirectory()) walk(p);
      else h.update(`${path.relative(root, p)}\n`).update(readFileSync(p));
    }
  };
  walk(root);
  return h.digest("hex");
}

export interface Replicated {
  db: string;
  replica: string;
  /** A config replicating `db` to `replica` (file destination). */
  config: string;
  /** The source's logical hash when replication stopped. */
  sourceHash: string;
  /** Fingerprint of the replica tree when replication stopped. */
  replicaHash: string;
}

/** Replicates a small workload (several WAL indexes) to a file destination under `dir`, then stops. */
export async function replicateSample(dir: string, seed: number): Promise<Replicated> {
  const db = path.join(dir, "app.db");
  const replica = path.join(dir, "replica");
  const config = path.join(dir, "walship.yml");
  writeFileSync(
    config,
    `dbs:
  - path: ${db}
    monitor-interval: 50ms
    min-checkpoint-page-count: 32
    max-checkpoint-page-count: 64
    replicas:
      - url: file://${replica}
        sync-interval: 50ms
`,
  );
  const app = openWorkload(db, seed, { vacuum: false });
  const rep = startReplicator(["-config", config]);
  // Until the replica has several WAL indexes, one of them in several segments (the damage cases
  // need both); on a busy machine that takes more steps.
  const end = Date.now() + 60_000;
  for (let i = 0; ; i++) {
    app.step();
    await sleep(20);
    if (i >= 60 && i % 20 === 0 && (hasShape(replica) || Date.now() > end)) break;
  }
  await sleep(500);
  assert.equal(await rep.stop(), 0, rep.output());
  app.close();
  assert.ok(hasShape(replica), "the sample has several WAL indexes, one in several segments");
  return { db, replica, config, sourceHash: logicalHash(db), replicaHash: treeHash(replica) };
}

/** At least 3 WAL indexes, and one of them (not the last) in 2 or more segments. */
export function hasShape(replica: string): boolean {
  let gens: string[];
  try {
    gens = readdirSync(path.join(replica, "generations"));
  } catch {
    return false;
  }
  if (gens.length !== 1) return false;
  let names: string[];
  try {
    names = readdirSync(path.join(replica, "generations", gens[0]!, "wal"));
  } catch {
    return false;
  }
  const per = new Map<string, number>();
  for (const n of names) per.set(n.slice(0, 8), (per.get(n.slice(0, 8)) ?? 0) + 1);
  const indexes = [...per.keys()].sort();
  return indexes.length >= 3 && indexes.slice(0, -1).some((i) => per.get(i)! >= 2);
}

/** Nothing already replicated was lost: the replica tree is as it was and restores to the source. */
export async function assertNothingLost(r: Replicated, dir: string): Promise<void> {
  assert.equal(treeHash(r.replica), r.replicaHash, "the replica is untouched");
  assert.equal(logicalHash(r.db), r.sourceHash, "the database is untouched");
  const out = path.join(dir, `check-${Date.now()}.db`);
  const res = await walship(["restore", "-o", out, `file://${r.replica}`]);
  assert.equal(res.code, 0, res.stderr);
  assert.equal(logicalHash(out), r.sourceHash, "the replica still restores to the source");
}

/** Runs the CLI; a run still going after `ms` is killed and reported with code null. */
export async function walshipWithin(
  args: string[],
  ms: number,
  env: NodeJS.ProcessEnv = {},
): Promise<RunResult & { timedOut: boolean }> {
  const child = spawn(WALSHIP, args, { env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (d: Buffer) => {
    stdout += d.toString();
  });
  child.stderr.on("data", (d: Buffer) => {
    stderr += d.toString();
  });
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    child.kill("SIGKILL");
  }, ms);
  const [code] = (await once(child, "exit")) as [number | null];
  clearTimeout(timer);
  return { code, stdout, stderr, timedOut };
}
