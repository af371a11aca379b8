/**
 * Crash torture: the replicator is SIGKILLed at random moments, cycle after cycle, while the
 * application writes and runs its own checkpoints of every mode (torture/app.ts), replicating to a
 * file and an S3 (MinIO) destination at once. In some cycles the application is SIGKILLed too: alone,
 * mid-cycle, or at the same instant as the replicator (a pod lost: no connection survives).
 *
 * Every TORTURE_CRASH_VERIFY_EVERY cycles the application stops, a replicator runs until both
 * destinations hold the last commit and stops cleanly, and the database is restored from each
 * destination with Walship and with stock Litestream v0.3.13: each restore must pass integrity_check,
 * hold a whole ledger, and equal the source logically. Every generation finished since the previous
 * check is restored too (Walship, file destination) and must pass integrity_check with a whole ledger
 * (a generation's last state is not the source's any more, but a lost frame shows as a gap).
 *
 * Knobs: TORTURE_CRASH_CYCLES (1000), TORTURE_CRASH_VERIFY_EVERY (100), TORTURE_CRASH_MINUTES (0: no
 * limit; stops early at the next check), TORTURE_CRASH_DESTS (file,s3).
 */
import { readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import Database from "better-sqlite3";
import { freePort } from "../test/helpers/ports.ts";
import type { ManagedProcess } from "../test/helpers/proc.ts";
import type { AppOptions } from "./app.ts";
import {
  appReady,
  checkDb,
  checkOpen,
  type Dest,
  judge,
  log,
  type PartResult,
  restoreEverywhere,
  restoreWith,
  STARTUP_TIMEOUT_MS,
  seconds,
  startApp,
  startReplicator,
  type TortureCtx,
  type TorturePart,
  writeConfig,
} from "./common.ts";
import { waitCaughtUp } from "./status.ts";

export const crash: TorturePart = {
  name: "crash",
  summary: "SIGKILLs of the replicator, the app and both, restores compared every N cycles",
  byDefault: true,
  async run(ctx: TortureCtx): Promise<PartResult> {
    const cycles = ctx.knob("CRASH_CYCLES", 1000, 12);
    const every = Math.max(1, ctx.knob("CRASH_VERIFY_EVERY", 100, 6));
    const minutes = ctx.knob("CRASH_MINUTES", 0);
    const destNames = ctx.list("CRASH_DESTS", ["file", "s3"]);
    const dir = ctx.dir("crash");
    const db = path.join(dir, "app.db");
    const cfg = path.join(dir, "walship.yml");
    const port = await freePort();
    const dests: Dest[] = destNames.map((n) =>
      n === "s3"
        ? { name: "s3", kind: "s3", bucket: "torture-crash", prefix: `run-${ctx.seed}` }
        : { name: "file", kind: "file", path: path.join(dir, "replica-file") },
    );
    await writeConfig(ctx, cfg, db, dests, { addr: `127.0.0.1:${port}` });
    const r = ctx.rng(1);
    const appOpts: AppOptions = {
      db,
      seed: ctx.seed,
      autocheckpoint: 200,
      checkpointChance: 0.03,
      pauseMaxMs: 3,
    };
    const appLog = path.join(dir, "app.log");
    const repLog = path.join(dir, "replicator.log");
    const failures: string[] = [];
    const f = {
      cycles: 0,
      replicatorKills: 0,
      appKills: 0,
      bothKills: 0,
      verifications: 0,
      restores: 0,
      mismatches: 0,
      generations: 0,
      generationsChecked: 0,
      generationsWithoutSnapshot: 0,
      transactions: 0,
      replicatorExitedOnItsOwn: 0,
      appExitedOnItsOwn: 0,
    };
    const started = Date.now();
    const deadline = minutes > 0 ? started + minutes * 60_000 : Number.POSITIVE_INFINITY;
    let app = startApp(appOpts, appLog);
    const checkedGens = new Set<string>();

    const fail = (line: string) => {
      failures.push(line);
      log(`  crash: FAILURE ${line}`);
    };
    const unexpectedExit = (p: ManagedProcess, what: "replicator" | "app"): boolean => {
      if (p.exitInfo === undefined) return false;
      if (what === "replicator") f.replicatorExitedOnItsOwn++;
      else f.appExitedOnItsOwn++;
      fail(
        `cycle ${f.cycles}: the ${what} exited on its own (${JSON.stringify(p.exitInfo)}); log ${p.logFile}`,
      );
      return true;
    };

    const verify = async (): Promise<void> => {
      f.verifications++;
      const vdir = ctx.dir(`crash/verify-${f.verifications}`);
      // Our connection keeps the WAL in place when the application closes (it would be the last).
      const holder = new Database(db);
      try {
        await appReady(app);
        app.kill("SIGTERM");
        const exit = await app.exited;
        if (exit.code !== 0) fail(`check ${f.verifications}: the app exited ${JSON.stringify(exit)}`);
        const rep = await startReplicator(ctx, cfg, repLog);
        const caught = await waitCaughtUp(port, rep, STARTUP_TIMEOUT_MS);
        if (caught) fail(`check ${f.verifications}: ${caught}`);
        const stop = await rep.stop({ signal: "SIGTERM", graceMs: 60_000 });
        if (stop.code !== 0)
          fail(`check ${f.verifications}: the replicator's clean stop exited ${JSON.stringify(stop)}`);
        const src = checkOpen(holder);
        f.transactions = src.seq;
        if (src.integrity !== "ok" || src.ledger)
          fail(`check ${f.verifications}: the SOURCE is damaged: ${src.integrity} ${src.ledger ?? ""}`);
        const res = await restoreEverywhere(ctx, cfg, db, dests, src, vdir);
        f.restores += res.restores;
        f.mismatches += res.problems.length;
        for (const p of res.problems) fail(`check ${f.verifications} after cycle ${f.cycles}, ${p}`);
        await checkGenerations(vdir);
      } finally {
        app = startApp(appOpts, appLog);
        await sleep(200);
        holder.close();
        rmSync(vdir, { recursive: true, force: true });
      }
      log(
        `  crash: check ${f.verifications} after ${f.cycles} cycles: ${f.transactions} transactions, ${f.generations} generations, ${f.mismatches} mismatches so far`,
      );
    };

    const checkGenerations = async (vdir: string): Promise<void> => {
      const fileDest = dests.find((d) => d.kind === "file");
      if (fileDest?.kind !== "file") return;
      const gens = listDir(path.join(fileDest.path, "generations")).sort();
      f.generations = gens.length;
      // The newest generation was checked whole above; the others end where they were left.
      const latest = latestGeneration(fileDest.path, gens);
      for (const g of gens) {
        if (g === latest || checkedGens.has(g)) continue;
        checkedGens.add(g);
        const snaps = listDir(path.join(fileDest.path, "generations", g, "snapshots")).filter((n) =>
          n.endsWith(".lz4"),
        );
        if (snaps.length === 0) {
          f.generationsWithoutSnapshot++;
          continue;
        }
        const out = path.join(vdir, `gen-${g}.db`);
        f.restores++;
        f.generationsChecked++;
        const err = await restoreWith(ctx, "walship", cfg, fileDest.name, db, out, ["-generation", g]);
        const why = err ?? judge(checkDb(out));
        if (why) {
          f.mismatches++;
          fail(`generation ${g}: ${why}`);
        }
        rmSync(out, { force: true });
      }
    };

    try {
      for (let c = 1; c <= cycles; c++) {
        f.cycles = c;
        const rep = await startReplicator(ctx, cfg, repLog);
        const life = 200 + r() * 2300;
        let lived = 0;
        if (r() < 0.15) {
          // The application dies alone, mid-cycle, and comes back.
          const at = life * r();
          await sleep(at);
          lived = at;
          if (!unexpectedExit(app, "app")) app.kill("SIGKILL");
          await app.exited;
          f.appKills++;
          await sleep(r() * 300);
          app = startApp(appOpts, appLog);
        }
        await sleep(Math.max(0, life - lived));
        const both = r() < 0.15;
        const repGone = unexpectedExit(rep, "replicator");
        rep.kill("SIGKILL");
        if (both && !unexpectedExit(app, "app")) app.kill("SIGKILL");
        await rep.exited;
        if (!repGone) f.replicatorKills++;
        if (both) {
          await app.exited;
          f.bothKills++;
        }
        // Down: the application writes and checkpoints on its own, nothing pins the WAL.
        await sleep(r() * 500);
        if (both || app.exitInfo !== undefined) {
          if (!both) unexpectedExit(app, "app");
          app = startApp(appOpts, appLog);
        }
        const last = c === cycles || Date.now() >= deadline;
        if (c % every === 0 || last) await verify();
        if (last) break;
        if (c % 10 === 0) log(`  crash: ${c}/${cycles} cycles, ${seconds(Date.now() - started)} s`);
      }
    } catch (err) {
      // A fault of the harness itself ends the part, keeping what was found so far.
      fail(`the crash part stopped at cycle ${f.cycles}: ${(err as Error).stack ?? String(err)}`);
    } finally {
      app.kill("SIGKILL");
      await app.exited;
    }
    return {
      figures: {
        ...f,
        newGenerationReasons: newGenerationReasons(repLog),
        seconds: seconds(Date.now() - started),
        destinations: destNames,
      },
      failures,
    };
  },
};

function listDir(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

/** Why the replicator started each new generation, counted from its JSON log. */
function newGenerationReasons(logFile: string): Record<string, number> {
  const out: Record<string, number> = {};
  let text = "";
  try {
    text = readFileSync(logFile, "utf8");
  } catch {
    return out;
  }
  for (const line of text.split("\n")) {
    if (!line.includes('"new generation"')) continue;
    try {
      const reason = String((JSON.parse(line) as { reason?: string }).reason ?? "?");
      out[reason] = (out[reason] ?? 0) + 1;
    } catch {
      // a line cut by SIGKILL
    }
  }
  return out;
}

/** The generation holding the newest object: the one a latest restore picks. */
function latestGeneration(root: string, gens: string[]): string | undefined {
  let best: string | undefined;
  let bestTime = -1;
  for (const g of gens) {
    for (const sub of ["snapshots", "wal"]) {
      const d = path.join(root, "generations", g, sub);
      let names: string[] = [];
      try {
        names = readdirSync(d);
      } catch {
        // no such directory yet
      }
      for (const n of names) {
        const t = statSync(path.join(d, n), { throwIfNoEntry: false })?.mtimeMs ?? -1;
        if (t > bestTime) {
          bestTime = t;
          best = g;
        }
      }
    }
  }
  return best;
}
