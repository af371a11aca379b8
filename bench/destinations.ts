/**
 * `make bench-destinations`: one workload on every destination Walship and Litestream v0.3.13 share
 * (S3, GCS, Azure Blob Storage, SFTP), both tools in the same run, each figure also given relative to
 * the same tool's S3 figure. The stores are the local servers the tests use: MinIO, fake-gcs-server,
 * Azurite (always with --disableTelemetry) and OpenSSH's sshd with a chrooted sftp-only user, all on
 * 127.0.0.1; no cloud endpoint is named, and the metadata hosts point at a closed loopback port.
 *
 * One part per destination and tool, on a fresh copy of one base database:
 *   1. the replicator starts; the time until its first snapshot is seen in the store;
 *   2. a steady writer (BENCH_DEST_MIBPS of rows per second, default 8, for BENCH_DEST_SECONDS,
 *      default 30; 16 rows of 4,000 bytes per transaction; sync-interval 1s): the replicator's CPU seconds per GiB of WAL, its peak resident set, lag p50 and p99
 *      (commit to the segment holding it seen in the store, bench/measure.ts);
 *   3. the replicator stops; the replica is restored (latest) by the same tool: seconds and peak RSS;
 *      the restored database must hold the writer's last transaction.
 * BENCH_REPEATS passes (default 3); each figure is the median over them, and each ratio the median of
 * the per-pass ratios. BENCH_DESTINATIONS (default s3,gcs,abs,sftp), BENCH_TOOLS, BENCH_WALSHIP,
 * BENCH_DEST_DB_MIB (default 256), BENCH_PROFILE=1 (Walship's replicator and restore under `--cpu-prof`,
 * in bench/results/profiles-destinations-<stamp>/<destination>-p<pass>[-restore]/; summarise with
 * `node bench/profile.ts DIR`). Results: bench/results/destinations-<stamp>.json and .md.
 * See docs/benchmarks.md ("Destinations").
 */
import { copyFileSync, mkdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { type Azurite, startAzurite } from "../test/helpers/azurite.ts";
import { type FakeGcs, startGcs } from "../test/helpers/gcs.ts";
import { litestreamBin, spawnLitestream } from "../test/helpers/litestream.ts";
import { type Minio, startMinio } from "../test/helpers/minio.ts";
import { type ManagedProcess, makeTempDir, runCommand, spawnManaged } from "../test/helpers/proc.ts";
import { type SftpServer, startSftp } from "../test/helpers/sftp.ts";
import { machineInfo } from "./machine.ts";
import { BucketPoller, firstSnapshot, lagStats, now, round, sampleProc, sleep } from "./measure.ts";
import { lastSeqIn } from "./rows.ts";
import { openStore, type StoreSpec } from "./stores.ts";
import { median } from "./table.ts";
import { Writer } from "./workloads.ts";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const WALSHIP = process.env.BENCH_WALSHIP ?? path.join(ROOT, "bin/walship");
const RESULTS = path.join(ROOT, "bench/results");
const MiB = 1 << 20;
const GiB = 1 << 30;

type Tool = "walship" | "litestream";
const DESTINATIONS = ["s3", "gcs", "abs", "sftp"] as const;
type Destination = (typeof DESTINATIONS)[number];

const REPEATS = Number(process.env.BENCH_REPEATS ?? 3);
const DB_BYTES = Number(process.env.BENCH_DEST_DB_MIB ?? 256) * MiB;
const ROW_MIBPS = Number(process.env.BENCH_DEST_MIBPS ?? 8);
const WRITE_MS = Number(process.env.BENCH_DEST_SECONDS ?? 30) * 1000;
const ROW_BYTES = 4000;
const ROWS_PER_TX = 16;
/** A loopback port nothing listens on: where the cloud metadata lookups would go, if any were made. */
const NO_METADATA = "127.0.0.1:9";

function log(msg: string): void {
  console.log(`[${new Date().toISOString().slice(11, 19)}] ${msg}`);
}

function listOf<T extends string>(env: string | undefined, all: readonly T[], what: string): T[] {
  if (!env) return [...all];
  const picked = env.split(",").map((s) => s.trim()) as T[];
  for (const p of picked)
    if (!all.includes(p)) throw new Error(`${what}: unknown ${p} (known: ${all.join(", ")})`);
  return picked;
}

/** One destination as both tools are configured for it, and where the bench watches it. */
interface Target {
  name: Destination;
  /** The replica's YAML lines (indented for `replicas:`) for `tool`'s location `label`. */
  replica(tool: Tool, label: string): string;
  /** Where that location is stored, and its key prefix there. */
  store(tool: Tool, label: string): { spec: StoreSpec; prefix: string };
  env: Record<string, string>;
}

interface Servers {
  minio?: Minio;
  gcs?: FakeGcs;
  azurite?: Azurite;
  sftp?: SftpServer;
  home?: string;
}

async function startTargets(wanted: Destination[], tools: Tool[], servers: Servers): Promise<Target[]> {
  const base = {
    AWS_EC2_METADATA_DISABLED: "true",
    GCE_METADATA_HOST: NO_METADATA,
    GCE_METADATA_IP: NO_METADATA,
  };
  const out: Target[] = [];
  for (const name of wanted) {
    if (name === "s3") {
      const minio = await startMinio();
      servers.minio = minio;
      for (const t of tools) await minio.createBucket(t);
      const access = {
        endpoint: minio.endpoint,
        region: minio.region,
        accessKeyId: minio.accessKeyId,
        secretAccessKey: minio.secretAccessKey,
      };
      out.push({
        name,
        replica: (tool, label) => `      - type: s3
        bucket: ${tool}
        path: ${label}
        endpoint: ${minio.endpoint}
        region: us-east-1
        force-path-style: true
        access-key-id: $LITESTREAM_ACCESS_KEY_ID
        secret-access-key: $LITESTREAM_SECRET_ACCESS_KEY`,
        store: (tool, label) => ({ spec: { kind: "s3", access, bucket: tool }, prefix: label }),
        env: {
          ...base,
          LITESTREAM_ACCESS_KEY_ID: minio.accessKeyId,
          LITESTREAM_SECRET_ACCESS_KEY: minio.secretAccessKey,
        },
      });
    } else if (name === "gcs") {
      const gcs = await startGcs();
      servers.gcs = gcs;
      for (const t of tools) await gcs.createBucket(t);
      out.push({
        name,
        replica: (tool, label) => `      - url: gcs://${tool}/${label}`,
        store: (tool, label) => ({
          spec: { kind: "gcs", endpoint: gcs.endpoint, bucket: tool },
          prefix: label,
        }),
        // Both tools reach the emulator through the variable Google's Go client reads.
        env: { ...base, STORAGE_EMULATOR_HOST: gcs.emulatorHost, METADATA_SERVER_DETECTION: "none" },
      });
    } else if (name === "abs") {
      const az = await startAzurite();
      servers.azurite = az;
      for (const t of tools) await az.createContainer(t);
      out.push({
        name,
        replica: (tool, label) => `      - type: abs
        account-name: ${az.account}
        bucket: ${tool}
        path: ${label}
        endpoint: ${az.endpoint}`,
        store: (tool, label) => ({
          spec: { kind: "abs", endpoint: az.endpoint, account: az.account, key: az.key, container: tool },
          prefix: label,
        }),
        env: { ...base, LITESTREAM_AZURE_ACCOUNT_KEY: az.key },
      });
    } else {
      const sftp = await startSftp({ writableDirs: ["data"] });
      servers.sftp = sftp;
      const home = makeTempDir("bench-dest-home");
      servers.home = home;
      mkdirSync(path.join(home, ".ssh"), { mode: 0o700 });
      // Walship checks the host key (Litestream v0.3.13 does not check it at all).
      writeFileSync(path.join(home, ".ssh", "known_hosts"), `${sftp.knownHostsLine("ed25519")}\n`);
      out.push({
        name,
        replica: (tool, label) => `      - type: sftp
        host: ${sftp.address}
        user: ${sftp.user}
        key-path: ${sftp.keyPath}
        path: /data/${tool}/${label}`,
        store: (tool, label) => ({ spec: { kind: "dir", root: sftp.root }, prefix: `data/${tool}/${label}` }),
        env: { ...base, HOME: home },
      });
    }
  }
  return out;
}

/** What one part measured. */
interface Part {
  snapshotSec: number;
  snapshotBytes: number;
  walBytes: number;
  walMiBps: number;
  cpuSecPerGiB: number;
  peakRssMiB: number;
  lagP50Ms: number;
  lagP99Ms: number;
  unseen: number;
  unverifiedSegments: number;
  restoreSec: number;
  restorePeakRssMiB: number;
}

async function makeBase(work: string): Promise<string> {
  const file = path.join(work, "base.db");
  const part = `${file}.part`;
  const w = new Writer();
  const r = await w.create(part, DB_BYTES, ROW_BYTES).finally(() => w.close());
  renameSync(part, file);
  log(
    `base database: ${Math.round(statSync(file).size / MiB)} MiB, ${r.rows} rows in ${round(r.ms / 1000)} s`,
  );
  return file;
}

const STAMP = new Date().toISOString().replace(/[:.]/g, "-");
/** With BENCH_PROFILE=1: where Walship's processes write their CPU profiles. */
const PROFILES =
  process.env.BENCH_PROFILE === "1" ? path.join(RESULTS, `profiles-destinations-${STAMP}`) : undefined;

/** `env` for one of Walship's processes; with BENCH_PROFILE=1 under `--cpu-prof`, into PROFILES/label. */
function profiled(tool: Tool, env: NodeJS.ProcessEnv, label: string): NodeJS.ProcessEnv {
  if (tool !== "walship" || !PROFILES) return env;
  const into = path.join(PROFILES, label);
  mkdirSync(into, { recursive: true });
  return { ...env, NODE_OPTIONS: `--cpu-prof --cpu-prof-dir=${into}` };
}

function startTool(
  tool: Tool,
  cfg: string,
  dir: string,
  env: Record<string, string>,
  label: string,
): ManagedProcess {
  const full = profiled(tool, { ...process.env, ...env }, label);
  if (tool === "litestream")
    return spawnLitestream(["replicate", "-config", cfg], { env: full, logDir: dir });
  return spawnManaged(WALSHIP, ["replicate", "-config", cfg], { name: "walship", env: full, logDir: dir });
}

async function part(target: Target, tool: Tool, base: string, work: string, pass: number): Promise<Part> {
  const label = `p${pass}`;
  const dir = path.join(work, `${target.name}-${tool}-${label}`);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const { spec, prefix } = target.store(tool, label);
  const store = await openStore(spec);
  try {
    await store.deletePrefix(`${prefix}/`);
    const db = path.join(dir, "app.db");
    copyFileSync(base, db);
    const cfg = path.join(dir, "litestream.yml");
    writeFileSync(
      cfg,
      `dbs:
  - path: ${db}
    replicas:
${target.replica(tool, label)}
        sync-interval: 1s
`,
    );
    await runCommand("sync", [], { timeoutMs: 600_000 });
    const pol = new BucketPoller({ store: spec, prefix });
    pol.start();
    const t0 = now();
    const proc = startTool(tool, cfg, dir, target.env, `${target.name}-${label}`);
    try {
      const snap = await firstSnapshot(pol, proc, `${target.name} ${tool}`, 600_000);
      const snapshotSec = round((snap.seenAt - t0) / 1000, 2);
      await sleep(1500);
      const writer = new Writer();
      await writer.open(db);
      const seg0 = pol.segments.length;
      const cpu0 = sampleProc(proc.pid);
      const r = await writer.paced({
        mode: "insert",
        rowsPerTx: ROWS_PER_TX,
        rowBytes: ROW_BYTES,
        txPerSec: (ROW_MIBPS * MiB) / (ROWS_PER_TX * ROW_BYTES),
        durationMs: WRITE_MS,
      });
      const drained = await pol.waitForSeq(r.lastSeq, 300_000);
      const cpu1 = sampleProc(proc.pid);
      await writer.close();
      const segs = pol.segments.slice(seg0);
      const walBytes = segs.reduce((a, s) => a + s.walBytes, 0);
      const { lags, unseen } = pol.lags(r.firstSeq, r.commitAt);
      const lag = lagStats(lags, unseen);
      const stopped = sampleProc(proc.pid);
      const exit = await proc.stop({ signal: "SIGTERM", graceMs: 60_000 });
      if (exit.code !== 0) log(`  ${tool} exited with ${JSON.stringify(exit)}; log ${proc.logFile}`);
      await pol.stop();
      if (!drained) throw new Error(`${tool}: transaction ${r.lastSeq} never seen in ${target.name}`);
      const out = path.join(dir, "restored.db");
      const tf = path.join(dir, "time.txt");
      const bin = tool === "walship" ? WALSHIP : litestreamBin();
      await runCommand("sync", [], { timeoutMs: 600_000 });
      const rt0 = now();
      await runCommand(
        "/usr/bin/time",
        ["-f", "%e %M", "-o", tf, bin, "restore", "-config", cfg, "-o", out, db],
        {
          env: profiled(tool, { ...process.env, ...target.env }, `${target.name}-${label}-restore`),
          timeoutMs: 600_000,
        },
      );
      const restoreSec = round((now() - rt0) / 1000, 2);
      const [, maxKiB] = readFileSync(tf, "utf8").trim().split("\n").pop()!.split(" ").map(Number);
      const restored = lastSeqIn(out);
      if (restored !== r.lastSeq) {
        throw new Error(
          `${tool} restored from ${target.name} up to transaction ${restored}, expected ${r.lastSeq}`,
        );
      }
      const cpuSec = (cpu1?.cpuSec ?? Number.NaN) - (cpu0?.cpuSec ?? Number.NaN);
      const res: Part = {
        snapshotSec,
        snapshotBytes: snap.size,
        walBytes,
        walMiBps: round(walBytes / MiB / (r.elapsedMs / 1000), 2),
        cpuSecPerGiB: round(cpuSec / (walBytes / GiB), 2),
        peakRssMiB: round((stopped?.hwmBytes ?? Number.NaN) / MiB),
        lagP50Ms: lag.p50Ms,
        lagP99Ms: lag.p99Ms,
        unseen: lag.unseen,
        unverifiedSegments: segs.filter((s) => !s.verified).length,
        restoreSec,
        restorePeakRssMiB: round((maxKiB ?? Number.NaN) / 1024),
      };
      log(
        `  ${target.name} ${tool}: snapshot ${res.snapshotSec} s; WAL ${res.walMiBps} MiB/s, CPU ${res.cpuSecPerGiB} s/GiB, peak RSS ${res.peakRssMiB} MiB, lag p50 ${res.lagP50Ms} p99 ${res.lagP99Ms} ms${res.unverifiedSegments ? `, ${res.unverifiedSegments} segments unverified` : ""}; restore ${res.restoreSec} s, ${res.restorePeakRssMiB} MiB`,
      );
      return res;
    } finally {
      if (proc.exitInfo === undefined) await proc.stop({ signal: "SIGKILL", graceMs: 5_000 });
      await pol.stop();
    }
  } finally {
    await store.deletePrefix(`${prefix}/`).catch(() => undefined);
    store.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The figures of the table, and whether a lower value is better. */
const FIGURES: Array<{ key: keyof Part; label: string }> = [
  { key: "snapshotSec", label: "snapshot s" },
  { key: "cpuSecPerGiB", label: "CPU s per GiB of WAL" },
  { key: "peakRssMiB", label: "peak RSS MiB" },
  { key: "lagP50Ms", label: "lag p50 ms" },
  { key: "lagP99Ms", label: "lag p99 ms" },
  { key: "restoreSec", label: "restore latest s" },
  { key: "restorePeakRssMiB", label: "restore peak RSS MiB" },
];

type Passes = Array<Partial<Record<Destination, Partial<Record<Tool, Part>>>>>;

function fmt(x: number | undefined): string {
  if (x === undefined || !Number.isFinite(x)) return "-";
  return Math.abs(x) >= 100 ? String(Math.round(x)) : String(round(x, 2));
}

/**
 * The table: per destination and figure, each tool's median, its ratio to the same tool's S3 figure
 * (the median of the per-pass ratios), and walship/litestream (likewise).
 */
function report(passes: Passes, dests: Destination[], tools: Tool[]): string {
  const med = (xs: Array<number | undefined>) =>
    median(xs.filter((x): x is number => x !== undefined && Number.isFinite(x)));
  const lines = [
    `| destination | figure | ${tools.map((t) => `${t} | ${t} / its S3`).join(" | ")}${tools.length === 2 ? " | walship / litestream" : ""} |`,
    `|---|---|${tools.map(() => "--:|--:|").join("")}${tools.length === 2 ? "--:|" : ""}`,
  ];
  for (const d of dests) {
    for (const f of FIGURES) {
      const cells: string[] = [];
      for (const t of tools) {
        const vals = passes.map((p) => p[d]?.[t]?.[f.key]);
        const toS3 = passes.map((p) => {
          const v = p[d]?.[t]?.[f.key];
          const s = p.s3?.[t]?.[f.key];
          return v !== undefined && s ? v / s : undefined;
        });
        cells.push(fmt(med(vals)), d === "s3" || !dests.includes("s3") ? "" : fmt(med(toS3)));
      }
      if (tools.length === 2) {
        cells.push(
          fmt(
            med(
              passes.map((p) => {
                const w = p[d]?.walship?.[f.key];
                const l = p[d]?.litestream?.[f.key];
                return w !== undefined && l ? w / l : undefined;
              }),
            ),
          ),
        );
      }
      lines.push(`| ${d} | ${f.label} | ${cells.join(" | ")} |`);
    }
  }
  return lines.join("\n");
}

async function main(): Promise<void> {
  const tools = listOf<Tool>(process.env.BENCH_TOOLS, ["walship", "litestream"], "BENCH_TOOLS");
  const dests = listOf<Destination>(process.env.BENCH_DESTINATIONS, DESTINATIONS, "BENCH_DESTINATIONS");
  const started = now();
  const stamp = STAMP;
  mkdirSync(RESULTS, { recursive: true });
  const work = makeTempDir("bench-dest");
  const servers: Servers = {};
  const passes: Passes = [];
  const results: Record<string, unknown> = {
    started: new Date().toISOString(),
    params: {
      repeats: REPEATS,
      dbBytes: DB_BYTES,
      rowMiBps: ROW_MIBPS,
      writeMs: WRITE_MS,
      rowBytes: ROW_BYTES,
      rowsPerTx: ROWS_PER_TX,
    },
    machine: machineInfo(WALSHIP),
    destinations: dests,
    tools,
    passes,
  };
  try {
    log(
      `bench destinations: ${dests.join(",")}; tools ${tools.join(",")}; ${REPEATS} passes; work dir ${work}`,
    );
    const targets = await startTargets(dests, tools, servers);
    const base = await makeBase(work);
    for (let i = 0; i < REPEATS; i++) {
      log(
        `pass ${i + 1}/${REPEATS} (load ${os
          .loadavg()
          .map((x) => x.toFixed(2))
          .join(" ")})`,
      );
      const pass: Passes[number] = {};
      passes.push(pass);
      for (const t of targets) {
        pass[t.name] = {};
        // Alternate which tool goes first, pass by pass.
        for (const tool of i % 2 ? [...tools].reverse() : tools) {
          pass[t.name]![tool] = await part(t, tool, base, work, i + 1);
        }
      }
    }
  } finally {
    await servers.minio?.close();
    await servers.gcs?.close();
    await servers.azurite?.close();
    await servers.sftp?.close();
    if (servers.home) rmSync(servers.home, { recursive: true, force: true });
    rmSync(work, { recursive: true, force: true });
    results.finished = new Date().toISOString();
    results.loadAverageAtEnd = os.loadavg().map((x) => round(x, 2));
    results.durationSec = round((now() - started) / 1000);
    const text = report(passes, dests, tools);
    results.table = text;
    const file = path.join(RESULTS, `destinations-${stamp}.json`);
    writeFileSync(file, `${JSON.stringify(results, null, 2)}\n`);
    writeFileSync(path.join(RESULTS, `destinations-${stamp}.md`), `${text}\n`);
    console.log(`\n${text}\n`);
    console.log(`bench destinations: ${round((now() - started) / 60_000, 1)} min; figures in ${file}`);
    if (PROFILES) console.log(`bench destinations: walship CPU profiles in ${PROFILES}`);
  }
}

try {
  await main();
  process.exit(0);
} catch (err) {
  console.error(`bench destinations: ${(err as Error).stack ?? err}`);
  process.exit(1);
}
