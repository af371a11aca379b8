/**
 * `make bench-tick`: one sync tick seen from the store's side, Walship against Litestream v0.3.13 in
 * the same run. Each tool replicates a steady writer (1,000 commits a second of one 200-byte row, as
 * the lag phase's "steady 1k") with `sync-interval` and `monitor-interval` 100ms to one MinIO through
 * an HTTP proxy made here, which times every request and reads the bench's sequence numbers out of
 * every WAL segment it forwards. Per tool and round it prints:
 * - the lag of every commit to MinIO's answer for the segment that holds it (the bench's lag phase
 *   measures to the moment its poller lists the segment, which adds the listing's own delay);
 * - from a segment's last commit to its PUT reaching the proxy (the tool's copy and upload start),
 *   and from that PUT to MinIO's answer;
 * - the time between segment PUTs, and the requests made, by kind.
 * BENCH_TICK_ROUNDS (default 3) rounds of BENCH_TICK_SECONDS (default 20) per tool, the tools
 * alternating; BENCH_WALSHIP pins a build as in bench/run.ts. See docs/benchmarks.md ("Where Walship
 * stands", item 5).
 */
import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";
import { lz4DecodeFrame } from "../src/replicator/lz4.ts";
import { LITESTREAM_VERSION, litestreamBin } from "../test/helpers/litestream.ts";
import { startMinio } from "../test/helpers/minio.ts";
import { WALSHIP } from "../test/helpers/walship.ts";
import { maxSeqIn } from "./decoder.ts";
import { now, round, sleep } from "./measure.ts";
import { type PacedReply, Writer } from "./workloads.ts";

const ROUNDS = Number(process.env.BENCH_TICK_ROUNDS ?? 3);
const SECONDS = Number(process.env.BENCH_TICK_SECONDS ?? 20);
const TOOLS = ["walship", "litestream"] as const;

/** One request as the proxy saw it (times from bench/measure.ts `now`). */
interface Seen {
  method: string;
  key: string;
  /** Headers in. */
  at: number;
  /** MinIO's answer (its headers) back at the proxy. */
  answered?: number;
  /** For a WAL segment: the highest sequence number in it (0 when it holds none). */
  maxSeq?: number;
}

const WAL_SEGMENT = /\/wal\/[0-9a-f]{8}_[0-9a-f]{8}\.wal\.lz4$/;

/** An HTTP proxy in front of `upstream` that records what goes through it into `seen`. */
function proxy(upstream: URL, seen: { list: Seen[] }): Promise<{ endpoint: string; close: () => void }> {
  const agent = new http.Agent({ keepAlive: true });
  const server = http.createServer((req, res) => {
    const at = now();
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const body = Buffer.concat(chunks);
      const key = (req.url ?? "").replace(/\?.*/, "");
      const s: Seen = { method: req.method ?? "", key, at };
      const out = http.request(
        {
          host: upstream.hostname,
          port: upstream.port,
          method: req.method,
          path: req.url,
          headers: req.headers,
          agent,
        },
        (answer) => {
          s.answered = now();
          res.writeHead(answer.statusCode ?? 502, answer.headers);
          answer.pipe(res);
        },
      );
      out.on("error", (err) => {
        res.destroy(err);
      });
      out.end(body);
      if (s.method === "PUT" && WAL_SEGMENT.test(key)) {
        const wal = lz4DecodeFrame(body);
        s.maxSeq = maxSeqIn(wal, wal.length);
      }
      seen.list.push(s);
    });
  });
  return new Promise((resolve) =>
    server.listen(0, "127.0.0.1", () =>
      resolve({
        endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
        close: () => {
          server.close();
          agent.destroy();
        },
      }),
    ),
  );
}

function pct(xs: number[], p: number): number {
  if (xs.length === 0) return Number.NaN;
  const s = [...xs].sort((a, b) => a - b);
  return round(s[Math.min(s.length - 1, Math.floor(p * s.length))]!);
}

const spread = (xs: number[]): string => `p50 ${pct(xs, 0.5)} p90 ${pct(xs, 0.9)} p99 ${pct(xs, 0.99)}`;

const dir = mkdtempSync(path.join(os.tmpdir(), "walship-bench-tick-"));
const minio = await startMinio();
try {
  for (const t of TOOLS) await minio.createBucket(t);
  const seen = { list: [] as Seen[] };
  const front = await proxy(new URL(minio.endpoint), seen);
  const env = {
    ...process.env,
    LITESTREAM_ACCESS_KEY_ID: minio.accessKeyId,
    LITESTREAM_SECRET_ACCESS_KEY: minio.secretAccessKey,
    AWS_EC2_METADATA_DISABLED: "true",
  };
  console.log(
    `bench-tick: ${ROUNDS} rounds of ${SECONDS} s per tool, 1,000 commits/s, sync and monitor interval 100ms; load ${os
      .loadavg()
      .map((x) => x.toFixed(2))
      .join(" ")}; litestream ${LITESTREAM_VERSION}; walship ${process.env.BENCH_WALSHIP ?? WALSHIP}`,
  );
  for (let r = 0; r < ROUNDS; r++) {
    for (const tool of TOOLS) {
      const work = path.join(dir, `${tool}-${r}`);
      mkdirSync(work, { recursive: true });
      const db = path.join(work, "app.db");
      const writer = new Writer();
      await writer.open(db);
      const cfg = path.join(work, "config.yml");
      writeFileSync(
        cfg,
        `access-key-id: $LITESTREAM_ACCESS_KEY_ID
secret-access-key: $LITESTREAM_SECRET_ACCESS_KEY
dbs:
  - path: ${db}
    monitor-interval: 100ms
    replicas:
      - type: s3
        bucket: ${tool}
        path: round-${r}
        endpoint: ${front.endpoint}
        region: us-east-1
        force-path-style: true
        sync-interval: 100ms
`,
      );
      seen.list = [];
      const bin = tool === "walship" ? (process.env.BENCH_WALSHIP ?? WALSHIP) : litestreamBin();
      const child = spawn(bin, ["replicate", "-config", cfg], { stdio: "ignore", env });
      const exited = new Promise((resolve) => child.once("exit", resolve));
      const snapshotted = () => seen.list.some((s) => s.key.includes("/snapshots/") && s.answered);
      let from = 0;
      let res: PacedReply;
      try {
        for (let i = 0; i < 300 && !snapshotted(); i++) await sleep(100);
        if (!snapshotted()) throw new Error(`${tool}: no snapshot within 30 s`);
        await sleep(1500);
        from = seen.list.length;
        res = await writer.paced({
          mode: "insert",
          rowsPerTx: 1,
          rowBytes: 200,
          txPerSec: 1000,
          durationMs: SECONDS * 1000,
        });
        await sleep(1500);
      } finally {
        // Stopped whatever happened: a failed round must not leave the replicator running.
        child.kill("SIGTERM");
        await exited;
        await writer.close();
      }

      const reqs = seen.list.slice(from).filter((s) => s.answered !== undefined);
      const segs = reqs.filter((s) => s.maxSeq !== undefined && s.maxSeq >= res.firstSeq);
      const commitAt = (seq: number) => res.commitAt[seq - res.firstSeq]!;
      const lags: number[] = [];
      const toPut: number[] = [];
      const answer: number[] = [];
      const gaps: number[] = [];
      let done = res.firstSeq - 1;
      for (const [i, s] of segs.entries()) {
        const last = Math.min(s.maxSeq!, res.lastSeq);
        for (let q = done + 1; q <= last; q++) lags.push(s.answered! - commitAt(q));
        if (last > done) {
          toPut.push(s.at - commitAt(last));
          done = last;
        }
        answer.push(s.answered! - s.at);
        if (i > 0) gaps.push(s.at - segs[i - 1]!.at);
      }
      const kinds = new Map<string, number>();
      for (const s of reqs) {
        const kind = `${s.method} ${s.key
          .split("/")
          .at(-1)!
          .replace(/[0-9a-f]{8,}/g, "N")}`;
        kinds.set(kind, (kinds.get(kind) ?? 0) + 1);
      }
      console.log(
        `${tool} round ${r + 1}: ${segs.length} segments, ${reqs.length} requests; lag to MinIO's answer ${spread(lags)} ms`,
      );
      console.log(
        `  last commit -> PUT at the proxy ${spread(toPut)}; PUT -> answer ${spread(answer)}; between segments ${spread(gaps)} ms`,
      );
      console.log(
        `  requests: ${[...kinds]
          .sort((a, b) => b[1] - a[1])
          .map(([k, n]) => `${k} ${n}`)
          .join(", ")}`,
      );
    }
  }
  front.close();
} finally {
  await minio.close();
  rmSync(dir, { recursive: true, force: true });
}
