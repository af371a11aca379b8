/**
 * The listing commands: snapshots, generations, wal (of a target's destinations) and databases (of
 * the config).
 */

import { timeSpan } from "../replicator/types.ts";
import { ErrorCodes, WalshipError } from "../shared/errors.ts";
import { table } from "../shared/flags.ts";
import { isoSeconds } from "../shared/format.ts";
import { type Command, configFlags, jsonFlag, readConfig, replicaFlag, resolveTarget } from "./common.ts";

export const snapshotsCommand: Command = {
  usage: "walship snapshots [flags] DB_PATH|REPLICA_URL",
  description: "Lists the snapshots of every generation, sorted by generation and index.",
  flags: [...configFlags, replicaFlag, jsonFlag],
  run: (f, a) => runListing("snapshots", f, a),
};

export const generationsCommand: Command = {
  usage: "walship generations [flags] DB_PATH|REPLICA_URL",
  description: "Lists generations with their time span and how far each lags the database.",
  flags: [...configFlags, replicaFlag, jsonFlag],
  run: (f, a) => runListing("generations", f, a),
};

export const walCommand: Command = {
  usage: "walship wal [flags] DB_PATH|REPLICA_URL",
  description: "Lists WAL segments, sorted by generation, index and offset.",
  flags: [
    ...configFlags,
    replicaFlag,
    { name: "generation", type: "string", metavar: "ID", help: "only this generation" },
    jsonFlag,
  ],
  run: (f, a) => runListing("wal", f, a),
};

export const databasesCommand: Command = {
  usage: "walship databases [flags]",
  description: "Lists each configured database and its destinations.",
  flags: [...configFlags, jsonFlag],
  run: runDatabases,
};

async function runListing(
  kind: "snapshots" | "generations" | "wal",
  flags: Record<string, string | boolean | undefined>,
  args: string[],
): Promise<number> {
  const { clients, dbPath } = await resolveTarget(flags, args);
  const rows: Array<Record<string, string | number>> = [];
  for (const { name, client } of clients) {
    for (const gen of await client.generations()) {
      if (kind === "wal" && typeof flags.generation === "string" && gen !== flags.generation) continue;
      if (kind === "snapshots") {
        for (const s of await client.snapshots(gen)) {
          rows.push({
            replica: name,
            generation: gen,
            index: s.index,
            size: s.size,
            created: isoSeconds(s.createdAt),
          });
        }
      } else if (kind === "wal") {
        for (const s of await client.walSegments(gen)) {
          rows.push({
            replica: name,
            generation: gen,
            index: s.index,
            offset: s.offset,
            size: s.size,
            created: isoSeconds(s.createdAt),
          });
        }
      } else {
        const span = timeSpan(await client.snapshots(gen), await client.walSegments(gen));
        if (!span) continue;
        const { start, end } = span;
        const ref = dbPath ? await dbModTime(dbPath) : Date.now();
        rows.push({
          name,
          generation: gen,
          lag: formatLag(ref - end),
          start: isoSeconds(new Date(start)),
          end: isoSeconds(new Date(end)),
        });
      }
    }
  }
  if (flags.json) {
    process.stdout.write(`${JSON.stringify(rows, null, 2)}\n`);
  } else {
    const header =
      kind === "snapshots"
        ? ["replica", "generation", "index", "size", "created"]
        : kind === "wal"
          ? ["replica", "generation", "index", "offset", "size", "created"]
          : ["name", "generation", "lag", "start", "end"];
    process.stdout.write(
      `${table(
        header,
        rows.map((r) => header.map((h) => String(r[h]))),
      )}\n`,
    );
  }
  return 0;
}

async function dbModTime(dbPath: string): Promise<number> {
  const { stat } = await import("node:fs/promises");
  const times = await Promise.all(
    [dbPath, `${dbPath}-wal`].map((p) =>
      stat(p).then(
        (s) => s.mtimeMs,
        () => 0,
      ),
    ),
  );
  return Math.max(...times) || Date.now();
}

function formatLag(ms: number): string {
  const neg = ms < 0 ? "-" : "";
  const a = Math.abs(ms);
  if (a >= 10_000) return `${neg}${Math.floor(a / 1000)}s`;
  if (a >= 1000) return `${neg}${(Math.floor(a / 100) / 10).toFixed(1)}s`;
  return `${neg}${Math.floor(a)}ms`;
}

async function runDatabases(
  flags: Record<string, string | boolean | undefined>,
  args: string[],
): Promise<number> {
  if (args.length > 0) throw new WalshipError(ErrorCodes.USAGE, `unexpected arguments: ${args.join(" ")}`);
  const config = await readConfig(flags);
  const rows = config.dbs.map((d) => ({ path: d.path, replicas: d.replicas.map((r) => r.name).join(",") }));
  if (flags.json) process.stdout.write(`${JSON.stringify(rows, null, 2)}\n`);
  else
    process.stdout.write(
      `${table(
        ["path", "replicas"],
        rows.map((r) => [r.path, r.replicas]),
      )}\n`,
    );
  return 0;
}
