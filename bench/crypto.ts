/**
 * `make bench-crypto`: what age encryption costs, in CPU seconds per GiB of WAL. See
 * docs/benchmarks.md ("Encryption").
 *
 * 1. Pipeline: real WAL (a SQLite database written with the benchmark's rows, bench/rows.ts, no
 *    checkpoint) goes through Walship's own stream stages in this process, one 4 MiB segment at a
 *    time as the replicator ships it: LZ4 (what every replica pays), then age over the LZ4 frame (what
 *    an encrypted replica adds), and back: age open, then LZ4 decode (a restore). Each stage's CPU
 *    time (process.cpuUsage, all threads) is the best of three rounds.
 * 2. End to end: `walship replicate` to MinIO, plain then with `age:`, with the same paced writer; the
 *    replicator process's CPU seconds (/proc) over the WAL it shipped, and the bytes it stored.
 *
 * Environment: BENCH_CRYPTO_WAL_MIB (pipeline WAL, default 256), BENCH_CRYPTO_E2E_SEC (each end-to-end
 * run, default 60; 0 skips part 2), BENCH_CRYPTO_MIBPS (its row rate, default 8).
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { Readable, type Transform } from "node:stream";
import { ListObjectsV2Command } from "@aws-sdk/client-s3";
import { generateX25519Identity, identityToRecipient } from "age-encryption";
import Database from "better-sqlite3";
import { ageDecryptor, ageEncryptor } from "../src/replicator/age/stream.ts";
import { createLz4Decoder, createLz4Encoder } from "../src/replicator/lz4.ts";
import { type Minio, startMinio } from "../test/helpers/minio.ts";
import { freePort } from "../test/helpers/ports.ts";
import { spawnManaged, stopAll } from "../test/helpers/proc.ts";
import { round, sampleProc, sleep } from "./measure.ts";
import { makeRow } from "./rows.ts";
import { Writer } from "./workloads.ts";

const MiB = 1 << 20;
const GiB = 1 << 30;
const SEGMENT = 4 * MiB;

function log(msg: string): void {
  console.log(`[${new Date().toISOString().slice(11, 19)}] ${msg}`);
}

/** WAL bytes of about `bytes`: a fresh database, rows of 4000 bytes, 64 per transaction, no checkpoint. */
export function makeWal(dir: string, bytes: number): Buffer {
  const file = path.join(dir, "wal.db");
  const db = new Database(file);
  db.pragma("journal_mode = WAL");
  db.pragma("wal_autocheckpoint = 0");
  db.exec("CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB NOT NULL)");
  const ins = db.prepare("INSERT INTO t(v) VALUES (?)");
  const tx = db.transaction((first: number) => {
    for (let i = 0; i < 64; i++) ins.run(makeRow(first + i, 4000));
  });
  let seq = 0;
  while (readFileSizeOrZero(`${file}-wal`) < bytes) {
    tx(seq);
    seq += 64;
  }
  const wal = readFileSync(`${file}-wal`);
  db.close();
  return wal;
}

function readFileSizeOrZero(f: string): number {
  try {
    return statSync(f).size;
  } catch {
    return 0;
  }
}

/** Runs each segment through the stages made by `stages`, one segment at a time; returns output bytes. */
async function runSegments(segments: Buffer[], stages: () => Promise<Transform[]>): Promise<number> {
  let out = 0;
  for (const seg of segments) {
    let s: Readable = Readable.from([seg]);
    for (const t of await stages()) s = s.pipe(t);
    for await (const c of s) out += (c as Buffer).length;
  }
  return out;
}

/** CPU seconds (user + system, every thread) and wall seconds of `fn`. */
async function cpu<T>(fn: () => Promise<T>): Promise<{ cpuSec: number; wallSec: number; value: T }> {
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  const value = await fn();
  const c = process.cpuUsage(c0);
  return { cpuSec: (c.user + c.system) / 1e6, wallSec: (performance.now() - t0) / 1000, value };
}

async function best<T>(rounds: number, fn: () => Promise<T>) {
  let b: { cpuSec: number; wallSec: number; value: T } | undefined;
  for (let i = 0; i < rounds; i++) {
    const r = await cpu(fn);
    if (!b || r.cpuSec < b.cpuSec) b = r;
  }
  return b as { cpuSec: number; wallSec: number; value: T };
}

export interface PipelineResult {
  walBytes: number;
  lz4Bytes: number;
  ageBytes: number;
  /** CPU seconds per GiB of WAL for each stage. */
  lz4EncodeSecPerGiB: number;
  ageEncryptSecPerGiB: number;
  ageDecryptSecPerGiB: number;
  lz4DecodeSecPerGiB: number;
  /** Upload side: encryption's share of the LZ4 + age pipeline. */
  encryptOverheadPct: number;
}

export async function pipelineBench(walMiB: number): Promise<PipelineResult> {
  const dir = mkdtempSync(path.join(os.tmpdir(), "walship-bench-crypto-"));
  try {
    log(`pipeline: writing ${walMiB} MiB of WAL`);
    const wal = makeWal(dir, walMiB * MiB);
    const segments: Buffer[] = [];
    for (let i = 0; i < wal.length; i += SEGMENT) segments.push(wal.subarray(i, i + SEGMENT));
    const id = await generateX25519Identity();
    const recipients = [await identityToRecipient(id)];
    const perGiB = (sec: number) => round(sec / (wal.length / GiB), 3);

    const lz4 = await best(3, () => runSegments(segments, async () => [createLz4Encoder()]));
    const framed: Buffer[] = [];
    for (const seg of segments)
      framed.push(Buffer.concat(await Readable.from([seg]).pipe(createLz4Encoder()).toArray()));
    const enc = await best(3, () => runSegments(framed, async () => [await ageEncryptor(recipients)]));
    const sealed: Buffer[] = [];
    for (const f of framed)
      sealed.push(
        Buffer.concat(
          await Readable.from([f])
            .pipe(await ageEncryptor(recipients))
            .toArray(),
        ),
      );
    const dec = await best(3, () =>
      runSegments(sealed, async () => [ageDecryptor({ identities: [id], what: "bench" })]),
    );
    const unlz4 = await best(3, () => runSegments(framed, async () => [createLz4Decoder()]));
    if (unlz4.value !== wal.length || dec.value !== lz4.value)
      throw new Error("pipeline: a round trip lost bytes");
    const res: PipelineResult = {
      walBytes: wal.length,
      lz4Bytes: lz4.value,
      ageBytes: enc.value,
      lz4EncodeSecPerGiB: perGiB(lz4.cpuSec),
      ageEncryptSecPerGiB: perGiB(enc.cpuSec),
      ageDecryptSecPerGiB: perGiB(dec.cpuSec),
      lz4DecodeSecPerGiB: perGiB(unlz4.cpuSec),
      encryptOverheadPct: round((100 * enc.cpuSec) / lz4.cpuSec, 1),
    };
    log(
      `pipeline, per GiB of WAL: LZ4 ${res.lz4EncodeSecPerGiB} s, + age ${res.ageEncryptSecPerGiB} s (${res.encryptOverheadPct}% of LZ4); restore: age ${res.ageDecryptSecPerGiB} s + LZ4 ${res.lz4DecodeSecPerGiB} s; stored ${round(res.lz4Bytes / MiB, 1)} MiB plain, ${round(res.ageBytes / MiB, 1)} MiB age`,
    );
    return res;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export interface EndToEndRun {
  variant: "plain" | "age";
  walBytes: number;
  cpuSec: number;
  cpuSecPerGiB: number;
  storedBytes: number;
}

const WALSHIP = path.join(path.dirname(new URL(import.meta.url).pathname), "../bin/walship");

/** The replicator's litestream_replica_wal_bytes (WAL bytes it uploaded), from its /metrics. */
async function walBytesUploaded(port: number): Promise<number | undefined> {
  try {
    const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    const m = /^litestream_replica_wal_bytes\{[^}]*\} (\d+(?:\.\d+)?(?:e\+\d+)?)$/m.exec(text);
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

async function storedBytes(minio: Minio, bucket: string): Promise<number> {
  const c = minio.client();
  let total = 0;
  let token: string | undefined;
  do {
    const out = await c.send(new ListObjectsV2Command({ Bucket: bucket, ContinuationToken: token }));
    for (const o of out.Contents ?? []) total += o.Size ?? 0;
    token = out.IsTruncated ? out.NextContinuationToken : undefined;
  } while (token);
  c.destroy();
  return total;
}

/** One `walship replicate` to MinIO under a paced writer; its CPU over the WAL it shipped. */
async function endToEndRun(
  minio: Minio,
  variant: "plain" | "age",
  seconds: number,
  rowMiBps: number,
): Promise<EndToEndRun> {
  const dir = mkdtempSync(path.join(os.tmpdir(), `walship-bench-crypto-${variant}-`));
  const bucket = `crypto-${variant}-${Date.now()}`;
  await minio.createBucket(bucket);
  const id = await generateX25519Identity();
  const port = await freePort();
  const db = path.join(dir, "app.db");
  const cfg = path.join(dir, "walship.yml");
  const age =
    variant === "age"
      ? `        age:\n          identities: ["${id}"]\n          recipients: ["${await identityToRecipient(id)}"]\n`
      : "";
  writeFileSync(
    cfg,
    `addr: 127.0.0.1:${port}
dbs:
  - path: ${db}
    replicas:
      - name: minio
        type: s3
        bucket: ${bucket}
        path: app
        endpoint: ${minio.endpoint}
        region: us-east-1
        force-path-style: true
        access-key-id: ${minio.accessKeyId}
        secret-access-key: ${minio.secretAccessKey}
        sync-interval: 1s
${age}`,
  );
  const writer = new Writer();
  await writer.open(db);
  const proc = spawnManaged(WALSHIP, ["replicate", "-config", cfg], {
    name: `walship-${variant}`,
    logDir: dir,
  });
  try {
    for (let i = 0; (await walBytesUploaded(port)) === undefined; i++) {
      if (i > 600) throw new Error(`${variant}: no metrics after 60 s; log ${proc.logFile}`);
      await sleep(100);
    }
    await sleep(2000);
    const cpu0 = sampleProc(proc.pid);
    const wal0 = (await walBytesUploaded(port)) ?? 0;
    const rowsPerTx = 64;
    await writer.paced({
      mode: "insert",
      rowsPerTx,
      rowBytes: 4000,
      txPerSec: (rowMiBps * MiB) / (rowsPerTx * 4000),
      durationMs: seconds * 1000,
    });
    // Until the uploads stop growing: everything written is shipped.
    let last = -1;
    for (;;) {
      await sleep(2500);
      const now = (await walBytesUploaded(port)) ?? 0;
      if (now === last) break;
      last = now;
    }
    const cpu1 = sampleProc(proc.pid);
    const walBytes = last - wal0;
    const cpuSec = (cpu1?.cpuSec ?? Number.NaN) - (cpu0?.cpuSec ?? Number.NaN);
    const run: EndToEndRun = {
      variant,
      walBytes,
      cpuSec: round(cpuSec, 2),
      cpuSecPerGiB: round(cpuSec / (walBytes / GiB), 2),
      storedBytes: await storedBytes(minio, bucket),
    };
    log(
      `end to end, ${variant}: ${round(walBytes / MiB, 1)} MiB of WAL, ${run.cpuSec} CPU-s, ${run.cpuSecPerGiB} CPU-s per GiB, stored ${round(run.storedBytes / MiB, 1)} MiB`,
    );
    return run;
  } finally {
    await proc.stop({ signal: "SIGTERM", graceMs: 30_000 });
    await writer.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

export async function endToEndBench(seconds: number, rowMiBps: number): Promise<EndToEndRun[]> {
  const minio = await startMinio();
  try {
    // plain, age, plain, age: alternated, so a change in the machine's load falls on both.
    const runs: EndToEndRun[] = [];
    for (const variant of ["plain", "age", "plain", "age"] as const)
      runs.push(await endToEndRun(minio, variant, seconds, rowMiBps));
    return runs;
  } finally {
    await minio.close();
    await stopAll(10_000);
  }
}

/** Per GiB of WAL: the mean of each variant's runs and their difference (what age adds). */
export function endToEndSummary(runs: EndToEndRun[]): { plain: number; age: number; ageAdds: number } {
  const mean = (v: string) => {
    const r = runs.filter((x) => x.variant === v);
    return r.reduce((a, x) => a + x.cpuSec, 0) / (r.reduce((a, x) => a + x.walBytes, 0) / GiB);
  };
  const plain = round(mean("plain"), 2);
  const age = round(mean("age"), 2);
  return { plain, age, ageAdds: round(age - plain, 2) };
}

async function main(): Promise<void> {
  const walMiB = Number(process.env.BENCH_CRYPTO_WAL_MIB ?? 256);
  const seconds = Number(process.env.BENCH_CRYPTO_E2E_SEC ?? 60);
  const rowMiBps = Number(process.env.BENCH_CRYPTO_MIBPS ?? 8);
  const pipeline = await pipelineBench(walMiB);
  const endToEnd = seconds > 0 ? await endToEndBench(seconds, rowMiBps) : [];
  const summary = endToEnd.length > 0 ? endToEndSummary(endToEnd) : undefined;
  if (summary)
    log(
      `end to end, CPU-s per GiB of WAL: plain ${summary.plain}, age ${summary.age}: age adds ${summary.ageAdds}`,
    );
  const out = {
    at: new Date().toISOString(),
    host: { cpus: os.cpus().length, load: os.loadavg() },
    pipeline,
    endToEnd,
    ...(summary ? { endToEndSummary: summary } : {}),
  };
  const dir = path.join(path.dirname(new URL(import.meta.url).pathname), "results");
  mkdirSync(dir, { recursive: true });
  const file = path.join(dir, `crypto-${new Date().toISOString().replace(/[:.]/g, "-")}.json`);
  writeFileSync(file, `${JSON.stringify(out, null, 2)}\n`);
  log(`figures in ${file}`);
}

if (import.meta.main) await main();
