/**
 * Crash safety: the replicator is killed with SIGKILL at random moments during heavy writes, many
 * times, then restarted and allowed to catch up; the restored database must equal the source. A second
 * run has the application checkpointing on its own too (autocheckpoint on, plus PASSIVE, FULL, RESTART
 * and TRUNCATE at random).
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, describe, it } from "node:test";
import { setImmediate as yieldLoop } from "node:timers/promises";
import Database from "better-sqlite3";
import { integrityCheck, logicalHash, logicalHashOf, openWorkload, rng } from "../helpers/sqlite.ts";
import { fileReplicaConfig, sleep, startReplicator, walship, writeConfig } from "../helpers/walship.ts";

const ROUNDS = Number(process.env.WALSHIP_CRASH_ROUNDS ?? 10);
const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

async function crashRun(appCheckpoints: boolean): Promise<void> {
  const dir = mkdtempSync(path.join(os.tmpdir(), "walship-crash-"));
  dirs.push(dir);
  const cfg = writeConfig(
    dir,
    fileReplicaConfig(`${dir}/app.db`, `${dir}/replica`, {
      dbKeys: {
        "monitor-interval": "50ms",
        "min-checkpoint-page-count": 200,
        "max-checkpoint-page-count": 2000,
      },
      replicaKeys: { "sync-interval": "50ms" },
    }),
  );
  const seed = Number(process.env.WALSHIP_TEST_SEED ?? Date.now() % 100000);
  const r = rng(seed);
  const app = openWorkload(path.join(dir, "app.db"), seed, { autocheckpoint: appCheckpoints ? 200 : 0 });
  const modes = ["PASSIVE", "FULL", "RESTART", "TRUNCATE"];
  const ran = new Set<string>();
  let writing = true;
  // The application's own checkpoints run on a second connection of the app, with a short busy
  // timeout: RESTART and TRUNCATE wait for readers, and the replicator is always one.
  const ckpt = new Database(path.join(dir, "app.db"));
  ckpt.pragma("busy_timeout = 50");
  const writer = (async () => {
    while (writing) {
      app.step();
      if (appCheckpoints && r() < 0.05) {
        const mode = modes[Math.floor(r() * modes.length)]!;
        ckpt.pragma(`wal_checkpoint(${mode})`);
        ran.add(mode);
      }
      await yieldLoop();
    }
  })();
  try {
    for (let round = 0; round < ROUNDS; round++) {
      const rep = startReplicator(["-config", cfg]);
      await sleep(300 + Math.floor(r() * 1200));
      await rep.kill9();
      await sleep(Math.floor(r() * 300));
    }
    writing = false;
    await writer;
    const rep = startReplicator(["-config", cfg]);
    // Stopped only once running: on a loaded machine Node's start-up alone can outlast a fixed
    // sleep, and a SIGTERM before the replicator's handlers are in kills it (exit code null).
    for (let i = 0; i < 600 && !rep.output().includes('"initialized db"'); i++) await sleep(100);
    await sleep(1500);
    assert.equal(await rep.stop(), 0, rep.output());
  } finally {
    writing = false;
    await writer;
  }
  if (appCheckpoints)
    assert.deepEqual([...ran].sort(), [...modes].sort(), "the app ran every checkpoint mode");
  const want = logicalHashOf(app.db);
  ckpt.close();
  app.close();
  const out = path.join(dir, "restored.db");
  const res = await walship(["restore", "-config", cfg, "-o", out, path.join(dir, "app.db")]);
  assert.equal(res.code, 0, res.stderr);
  assert.equal(integrityCheck(out), "ok");
  assert.equal(logicalHash(out), want, `restored database differs from the source (seed ${seed})`);
}

describe("crash safety", () => {
  it(`survives ${ROUNDS} SIGKILLs during heavy writes`, async () => {
    await crashRun(false);
  });
  it(`survives ${ROUNDS} SIGKILLs while the app runs its own checkpoints of every mode`, async () => {
    await crashRun(true);
  });
});
