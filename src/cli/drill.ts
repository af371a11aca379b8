/**
 * `walship drill`: a restore drill. For each database named (all of the config's when none is) and
 * each of its destinations, restores the latest state into a scratch directory, which `restore`
 * checks with `PRAGMA integrity_check` and the -verify-sql query before it counts as restored; with
 * -point-in-time, also a random time in that destination's recoverability window. Measures how long
 * each restore took (the time to recover) and the restored file's size, removes the file, and prints
 * one JSON line (shared/drill.ts), also written to -result-file (a pod's /dev/termination-log, where
 * the operator reads it from the pod's status with no extra rights).
 *
 * Exit 0 when every drill passed, 1 when one failed (the line says which and why): a drill failure is
 * a finding, not a crash, so every destination is drilled whatever the others did.
 */
import { mkdtemp, rm, stat, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { createReplicaClient, type DbConfig, findDb, type ReplicaConfig } from "../replicator/config.ts";
import { type RestoreResult, restore } from "../replicator/restore.ts";
import type { ReplicaClient } from "../replicator/storage/client.ts";
import { oldestRestorableTime } from "../replicator/window.ts";
import {
  DRILL_MESSAGE_MAX,
  DRILL_REPORT_KIND,
  type DrillReport,
  type DrillRestore,
  type DrillResult,
} from "../shared/drill.ts";
import { describeError, ErrorCodes, WalshipError } from "../shared/errors.ts";
import { hex8 } from "../shared/format.ts";
import { createLogger, type Logger } from "../shared/log.ts";
import { opened } from "./clients.ts";
import { type Command, configFlags, logFormat, readConfig } from "./common.ts";

export const drillCommand: Command = {
  usage: "walship drill [flags] [DB_PATH...]",
  description:
    "Restores each database (all in the config when none is named) from each destination into a\n" +
    "scratch directory, checks it (PRAGMA integrity_check, -verify-sql), measures the time and size,\n" +
    "removes it, and prints one JSON result line. The databases themselves are never touched.",
  flags: [
    ...configFlags,
    {
      name: "replicas",
      type: "string",
      metavar: "NAME[,NAME...]",
      help: "only these destinations (default: all)",
    },
    {
      name: "point-in-time",
      type: "boolean",
      help: "also restore a random time in each destination's recoverability window",
    },
    {
      name: "verify-sql",
      type: "string",
      metavar: "QUERY",
      help: "a query that must run and return a row on each restored database",
    },
    {
      name: "scratch",
      type: "string",
      metavar: "DIR",
      help: "where the restores are written, then removed (default: the system's temporary directory)",
    },
    {
      name: "result-file",
      type: "string",
      metavar: "PATH",
      help: "also write the result line here (a pod's /dev/termination-log)",
    },
    {
      name: "log-format",
      type: "string",
      metavar: "text|json",
      help: "log format (default text on a terminal, json otherwise)",
    },
  ],
  run: runDrill,
};

/** What one destination's drill is asked to do. */
interface DrillInput {
  db: DbConfig;
  replica: ReplicaConfig;
  client: ReplicaClient;
  scratch: string;
  pointInTime: boolean;
  verifySql?: string;
  log: Logger;
  /** A number in [0, 1) for the random time (Math.random unless a test fixes it). */
  random: () => number;
}

function short(message: string): string {
  return message.length <= DRILL_MESSAGE_MAX ? message : `${message.slice(0, DRILL_MESSAGE_MAX - 3)}...`;
}

/** One timed restore into `out`, removed afterwards; throws what restore throws. */
async function timedRestore(
  input: DrillInput,
  out: string,
  timestamp?: Date,
): Promise<{ result: RestoreResult; facts: DrillRestore }> {
  const started = performance.now();
  try {
    const result = await restore([{ name: input.replica.name, client: input.client }], {
      outputPath: out,
      replica: input.replica.name,
      ...(timestamp ? { timestamp } : {}),
      ...(input.verifySql ? { verifySql: input.verifySql } : {}),
      log: input.log,
    });
    // Neither ifDbNotExists nor ifReplicaExists is asked: anything else is a RestoreResult.
    if (typeof result === "string") throw new WalshipError(ErrorCodes.RESTORE, `restore: ${result}`);
    const seconds = Math.round((performance.now() - started) / 10) / 100;
    const { size } = await stat(result.outputPath);
    return {
      result,
      facts: {
        position: `${result.generation}/${hex8(result.index)}:${result.offset}`,
        ...(result.lastCommitTime ? { lastCommit: result.lastCommitTime.toISOString() } : {}),
        seconds,
        sizeBytes: size,
      },
    };
  } finally {
    await rm(out, { force: true });
  }
}

/** A random time in [oldest snapshot, newest restorable], whole milliseconds. */
export function randomTimeIn(oldest: Date, newest: Date, random: number): Date {
  const span = Math.max(0, newest.getTime() - oldest.getTime());
  return new Date(oldest.getTime() + Math.floor(span * random));
}

/** One destination's drill: latest, then (optionally) a random time in its window. */
async function drillOne(input: DrillInput): Promise<DrillResult> {
  const base = { database: input.db.path, destination: input.replica.name };
  const out = path.join(input.scratch, `${input.replica.name}-${path.basename(input.db.path)}`);
  try {
    const latest = await timedRestore(input, out);
    let pointInTime: DrillResult["pointInTime"];
    if (input.pointInTime) {
      const oldest = await oldestRestorableTime(input.client);
      if (!oldest)
        throw new WalshipError(ErrorCodes.RESTORE, "point in time: the destination holds no snapshot");
      // The newest restorable time is now: the latest restore above holds every commit before it.
      const newest = new Date();
      const at = randomTimeIn(oldest, newest < oldest ? oldest : newest, input.random());
      try {
        const pit = await timedRestore(input, out, at);
        pointInTime = { timestamp: at.toISOString(), ...pit.facts };
      } catch (err) {
        throw new WalshipError(
          ErrorCodes.RESTORE,
          `point in time ${at.toISOString()}: ${describeError(err)}`,
          {
            cause: err,
          },
        );
      }
    }
    return {
      ...base,
      outcome: "Passed",
      at: new Date().toISOString(),
      ...latest.facts,
      ...(pointInTime ? { pointInTime } : {}),
    };
  } catch (err) {
    const code = err instanceof WalshipError ? ` [${err.code}]` : "";
    return {
      ...base,
      outcome: "Failed",
      at: new Date().toISOString(),
      message: short(`${describeError(err)}${code}`),
    };
  }
}

/** The databases named (by path, in the config), or all of the config's. */
function selectDbs(dbs: DbConfig[], args: string[], find: (p: string) => DbConfig | undefined): DbConfig[] {
  if (args.length === 0) return dbs;
  return args.map((a) => {
    const db = find(a);
    if (!db) throw new WalshipError(ErrorCodes.CONFIG, `database ${path.resolve(a)} is not in the config`);
    return db;
  });
}

async function runDrill(
  flags: Record<string, string | boolean | undefined>,
  args: string[],
): Promise<number> {
  const config = await readConfig(flags);
  const dbs = selectDbs(config.dbs, args, (p) => findDb(config, p));
  if (dbs.length === 0) throw new WalshipError(ErrorCodes.USAGE, "the config names no database to drill");
  const only = typeof flags.replicas === "string" ? flags.replicas.split(",").filter(Boolean) : undefined;
  for (const name of only ?? []) {
    if (!dbs.some((d) => d.replicas.some((r) => r.name === name)))
      throw new WalshipError(ErrorCodes.USAGE, `-replicas: no destination named "${name}"`);
  }
  const log = createLogger({ format: logFormat(flags["log-format"]), stderr: true });
  const scratch = await mkdtemp(
    path.join(typeof flags.scratch === "string" ? flags.scratch : os.tmpdir(), "walship-drill-"),
  );
  const results: DrillResult[] = [];
  try {
    for (const db of dbs) {
      for (const [i, replica] of db.replicas.entries()) {
        if (only && !only.includes(replica.name)) continue;
        let client: ReplicaClient;
        try {
          client = await createReplicaClient(replica, `replicas[${i}]`);
          opened.push(client);
        } catch (err) {
          results.push({
            database: db.path,
            destination: replica.name,
            outcome: "Failed",
            at: new Date().toISOString(),
            message: short(describeError(err)),
          });
          continue;
        }
        const r = await drillOne({
          db,
          replica,
          client,
          scratch,
          pointInTime: flags["point-in-time"] === true,
          ...(typeof flags["verify-sql"] === "string" ? { verifySql: flags["verify-sql"] } : {}),
          log: log.child({ db: db.path, replica: replica.name }),
          random: Math.random,
        });
        if (r.outcome === "Passed")
          log.info(
            { db: db.path, replica: replica.name, seconds: r.seconds, position: r.position },
            "drill passed",
          );
        else log.error({ db: db.path, replica: replica.name, reason: r.message }, "drill failed");
        results.push(r);
      }
    }
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
  const report: DrillReport = { kind: DRILL_REPORT_KIND, results };
  const line = JSON.stringify(report);
  process.stdout.write(`${line}\n`);
  if (typeof flags["result-file"] === "string") {
    await writeFile(flags["result-file"], `${line}\n`).catch((err: unknown) =>
      log.warn({ path: flags["result-file"], err: describeError(err) }, "result file not written"),
    );
  }
  return results.every((r) => r.outcome === "Passed") ? 0 : 1;
}
