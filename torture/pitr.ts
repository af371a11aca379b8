/**
 * Point-in-time torture. Rounds of: a fresh database replicated to a file or an S3 (MinIO)
 * destination (alternating) with frequent checkpoints, WAL indexes and snapshots, while the
 * application (torture/app.ts) commits with short pauses and journals, per transaction, when it began,
 * when its commit returned, and the logical hash of the whole database after it.
 *
 * Afterwards, from the destination's commit-time records (when the replicator saw each commit):
 *  1. every stamped commit position is restored (index and offset): each must be exactly one of the
 *     source's states, the ledger must advance by one per application commit, and no stamp may come
 *     before its transaction began;
 *  2. TORTURE_PITR_RESTORES `walship restore -timestamp T` runs, T drawn around commits: 1 ms before,
 *     at and 1 ms after the stamp, 1 ms before, at and 1 ms after the app's own commit return, 1 ms
 *     before it began, and between commits. Each must equal the source's state after exactly the
 *     transactions stamped at or before T (Walship's documented rule), and never include one begun
 *     after T. Judged by the app's clock alone, a restore is either the source's state at T, or behind
 *     it by the observation delay (a commit returned by T but seen after T): both are counted.
 *
 * Knobs: TORTURE_PITR_RESTORES (200), TORTURE_PITR_ROUNDS (4; more run while restores are short),
 * TORTURE_PITR_ROUND_SECONDS (20), TORTURE_PITR_DESTS (file,s3).
 */
import { readFileSync, rmSync } from "node:fs";
import path from "node:path";
import Database from "better-sqlite3";
import { createReplicaClient, loadConfig } from "../src/replicator/config.ts";
import type { CommitTimesDoc } from "../src/replicator/extras.ts";
import { keys, parseSegmentName } from "../src/replicator/layout.ts";
import { restore } from "../src/replicator/restore.ts";
import { freePort } from "../test/helpers/ports.ts";
import { waitFor } from "../test/helpers/proc.ts";
import { type AppOptions, type JournalLine, LEDGER_SQL } from "./app.ts";
import {
  appReady,
  checkDb,
  type Dest,
  judge,
  log,
  type PartResult,
  pct,
  restoreWith,
  STARTUP_TIMEOUT_MS,
  seconds,
  startApp,
  startReplicator,
  type TortureCtx,
  type TorturePart,
  writeConfig,
} from "./common.ts";
import { readStatus, waitCaughtUp } from "./status.ts";

const KINDS = [
  "stamp-1",
  "stamp",
  "stamp+1",
  "return-1",
  "return",
  "return+1",
  "begin-1",
  "between",
] as const;
type Kind = (typeof KINDS)[number];

interface Stamp {
  gen: string;
  index: number;
  end: number;
  time: number;
}

export const pitr: TorturePart = {
  name: "pitr",
  summary: "restores to random instants around commits, each equal to the source's state then",
  byDefault: true,
  async run(ctx: TortureCtx): Promise<PartResult> {
    const target = ctx.knob("PITR_RESTORES", 200, 12);
    const rounds = Math.max(1, ctx.knob("PITR_ROUNDS", 4, 1));
    const roundSeconds = ctx.knob("PITR_ROUND_SECONDS", 20, 6);
    const destKinds = ctx.list("PITR_DESTS", ["file", "s3"]);
    const failures: string[] = [];
    const fail = (line: string) => {
      failures.push(line);
      log(`  pitr: FAILURE ${line}`);
    };
    const f = {
      rounds: 0,
      commits: 0,
      positionRestores: 0,
      positionMismatches: 0,
      timestampRestores: 0,
      timestampMismatches: 0,
      neverLaterViolations: 0,
      stampBeforeBegin: 0,
      unstampedCommits: 0,
      byAppClock: { equal: 0, behindByObservation: 0, inFlight: 0 },
      byKind: Object.fromEntries(KINDS.map((k) => [k, 0])) as Record<Kind, number>,
      observationDelayMs: { p50: 0, p99: 0, max: 0 },
    };
    const delays: number[] = [];
    const started = Date.now();
    const r = ctx.rng(2);
    while (f.timestampRestores < target) {
      const round = ++f.rounds;
      const dir = ctx.dir(`pitr/round-${round}`);
      const db = path.join(dir, "app.db");
      const cfg = path.join(dir, "walship.yml");
      const kind = destKinds[(round - 1) % destKinds.length]!;
      const dest: Dest =
        kind === "s3"
          ? { name: "s3", kind: "s3", bucket: "torture-pitr", prefix: `run-${ctx.seed}-${round}` }
          : { name: "file", kind: "file", path: path.join(dir, "replica") };
      const port = await freePort();
      await writeConfig(ctx, cfg, db, [dest], {
        addr: `127.0.0.1:${port}`,
        monitor: "20ms",
        minCheckpointPages: 100,
        maxCheckpointPages: 400,
        sync: "100ms",
        snapshotInterval: `${Math.max(3, Math.round(roundSeconds / 4))}s`,
      });
      const boot = new Database(db);
      boot.pragma("journal_mode = wal");
      boot.exec(
        `CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY, name TEXT, qty INTEGER, data BLOB); ${LEDGER_SQL}`,
      );
      boot.close();
      const rep = await startReplicator(ctx, cfg, path.join(dir, "replicator.log"));
      await waitFor(async () => (await readStatus(port))?.databases[0]?.replicas[0]?.lastSnapshot, {
        what: "the first snapshot",
        timeoutMs: STARTUP_TIMEOUT_MS,
        processes: [rep],
      });
      const journal = path.join(dir, "journal.jsonl");
      const appOpts: AppOptions = {
        db,
        seed: ctx.seed + round,
        journal,
        pauseMinMs: 3,
        pauseMaxMs: 40,
        maxRows: 3000,
        maxBlobs: 8,
        maxBlobBytes: 60_000,
        checkpointChance: 0.02,
      };
      const app = startApp(appOpts, path.join(dir, "app.log"));
      await appReady(app);
      await new Promise((res) => setTimeout(res, roundSeconds * 1000));
      app.kill("SIGTERM");
      const appExit = await app.exited;
      if (appExit.code !== 0) fail(`round ${round}: the app exited ${JSON.stringify(appExit)}`);
      const caught = await waitCaughtUp(port, rep, STARTUP_TIMEOUT_MS);
      if (caught) fail(`round ${round}: ${caught}`);
      const stop = await rep.stop({ signal: "SIGTERM", graceMs: 60_000 });
      if (stop.code !== 0) fail(`round ${round}: the replicator exited ${JSON.stringify(stop)}`);

      const lines = readFileSync(journal, "utf8")
        .split("\n")
        .filter(Boolean)
        .map((l) => JSON.parse(l) as JournalLine);
      const bySeq = new Map(lines.map((l) => [l.seq, l]));
      f.commits += lines.length;
      const config = await loadConfig(cfg, {
        expandEnv: true,
        env: { ...process.env, ...(await ctx.toolEnv()) },
      });
      const client = await createReplicaClient(config.dbs[0]!.replicas[0]!, "replicas[0]");
      const clients = [{ name: dest.name, client }];

      // 1. Every stamped commit position, and the stamp of each application commit.
      const stamps: Stamp[] = [];
      for (const gen of await client.generations()) {
        for (const key of await client.listExtras(keys.commitTimesDir(gen))) {
          const seg = parseSegmentName(`${path.basename(key, ".json")}.wal.lz4`);
          if (!seg) continue;
          const doc = JSON.parse(Buffer.from(await client.getExtra(key)).toString()) as CommitTimesDoc;
          for (const [end, time] of doc.commits) stamps.push({ gen, index: seg.index, end, time });
        }
      }
      stamps.sort((a, b) => (a.gen === b.gen ? a.index - b.index || a.end - b.end : a.gen < b.gen ? -1 : 1));
      const stampOf = new Map<number, number>();
      let prevSeq = 0;
      const out = path.join(dir, "pos.db");
      for (const s of stamps) {
        rmSync(out, { force: true });
        f.positionRestores++;
        let got: ReturnType<typeof checkDb>;
        try {
          await restore(clients, { generation: s.gen, index: s.index, offset: s.end, outputPath: out });
          got = checkDb(out);
        } catch (err) {
          f.positionMismatches++;
          fail(`round ${round}: restore at ${s.gen}/${s.index}:${s.end}: ${(err as Error).message}`);
          continue;
        }
        const want = bySeq.get(got.seq);
        const why =
          judge(got) ?? (got.seq > 0 && want?.h !== got.hash ? "not any state of the source" : undefined);
        if (why) {
          f.positionMismatches++;
          fail(`round ${round}: restore at ${s.gen}/${s.index}:${s.end} (seq ${got.seq}): ${why}`);
        }
        if (got.seq > prevSeq + 1) {
          f.unstampedCommits += got.seq - prevSeq - 1;
          fail(`round ${round}: commits ${prevSeq + 1}..${got.seq - 1} have no stamp of their own`);
        }
        if (got.seq > prevSeq) {
          stampOf.set(got.seq, s.time);
          const l = bySeq.get(got.seq);
          if (l) {
            delays.push(s.time - l.e);
            if (s.time < l.s) {
              f.stampBeforeBegin++;
              fail(`round ${round}: commit ${got.seq} stamped ${s.time}, before it began (${l.s})`);
            }
          }
          prevSeq = got.seq;
        }
      }
      rmSync(out, { force: true });

      // 2. Restores to instants around commits.
      const seqs = [...stampOf.keys()].filter((k) => k >= 2 && bySeq.has(k) && bySeq.has(k - 1));
      const stampList = [...stampOf.entries()].sort((a, b) => a[0] - b[0]);
      const expectedAt = (t: number): number => {
        let k = 0;
        for (const [seq, time] of stampList) if (time <= t) k = seq;
        return k;
      };
      const perRound = Math.min(target - f.timestampRestores, Math.max(1, Math.ceil(target / rounds)));
      for (let i = 0; i < perRound && seqs.length > 0; i++) {
        const k = seqs[Math.floor(r() * seqs.length)]!;
        const kindOf = KINDS[f.timestampRestores % KINDS.length]!;
        const l = bySeq.get(k)!;
        const st = stampOf.get(k)!;
        const next = stampOf.get(k + 1) ?? st + 50;
        const T = {
          "stamp-1": st - 1,
          stamp: st,
          "stamp+1": st + 1,
          "return-1": l.e - 1,
          return: l.e,
          "return+1": l.e + 1,
          "begin-1": l.s - 1,
          between: st + Math.floor(r() * Math.max(1, next - st)),
        }[kindOf];
        f.byKind[kindOf]++;
        const tout = path.join(dir, `ts-${i}.db`);
        f.timestampRestores++;
        const err = await restoreWith(ctx, "walship", cfg, dest.name, db, tout, [
          "-timestamp",
          new Date(T).toISOString(),
        ]);
        const got = err ? undefined : checkDb(tout);
        rmSync(tout, { force: true });
        const K = expectedAt(T);
        const why =
          err ??
          judge(got!) ??
          (got!.seq !== K || got!.hash !== bySeq.get(K)?.h
            ? `restored seq ${got!.seq}, the source's state at seq ${K} expected`
            : undefined);
        if (why) {
          f.timestampMismatches++;
          fail(`round ${round}: -timestamp ${new Date(T).toISOString()} (${kindOf} of commit ${k}): ${why}`);
          continue;
        }
        const K2 = got!.seq;
        const began = bySeq.get(K2)?.s ?? 0;
        if (began > T) {
          f.neverLaterViolations++;
          fail(`round ${round}: -timestamp ${T} restored commit ${K2}, begun at ${began}, after T`);
        }
        const inFlight = lines.some((x) => x.s <= T && T < x.e);
        const real = lines.filter((x) => x.e <= T).reduce((m, x) => Math.max(m, x.seq), 0);
        if (inFlight) f.byAppClock.inFlight++;
        else if (K2 === real) f.byAppClock.equal++;
        else f.byAppClock.behindByObservation++;
      }
      log(
        `  pitr: round ${round} (${dest.kind}): ${lines.length} commits, ${stamps.length} positions, ${f.timestampRestores}/${target} timestamp restores, ${f.positionMismatches + f.timestampMismatches} mismatches so far`,
      );
      rmSync(path.join(dir, "replica"), { recursive: true, force: true });
    }
    f.observationDelayMs = { p50: pct(delays, 50), p99: pct(delays, 99), max: pct(delays, 100) };
    return { figures: { ...f, seconds: seconds(Date.now() - started), destinations: destKinds }, failures };
  },
};
