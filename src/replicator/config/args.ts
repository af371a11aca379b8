/** The command-line forms of a config: a bare replica URL, `replicate DB URL...`, a DB path to find. */
import os from "node:os";
import { ErrorCodes, WalshipError } from "../../shared/errors.ts";
import { buildReplica, type Ctx } from "./build.ts";
import { redactUrlPasswords } from "./env.ts";
import { formatKeyPath, type Seg } from "./keypath.ts";
import type { RawReplica } from "./schema.ts";
import type { Config, DbConfig, ReplicaConfig } from "./types.ts";
import { expandPath, isUrl } from "./url.ts";

/**
 * A replica from a URL (`s3://`, `file://`, `gcs://`, `abs://`, `sftp://`), with defaults, as
 * `walship replicate DB URL` and the read commands build them. `base` supplies the common settings
 * (name, intervals); the URL decides type and backend settings.
 */
export function replicaFromUrl(url: string, base: Partial<ReplicaConfig> = {}): ReplicaConfig {
  const fail: Ctx["fail"] = (segs, problem) => {
    throw new WalshipError(ErrorCodes.CONFIG, `parse replica url: ${problem}`, {
      details: { path: formatKeyPath(segs), url: redactUrlPasswords(url) },
    });
  };
  const ctx: Ctx = { env: process.env, cwd: process.cwd(), homedir: os.homedir(), warnings: [], fail };
  return replicaFromUrlIn(url, base, ctx, ["url"]);
}

function replicaFromUrlIn(url: string, base: Partial<ReplicaConfig>, ctx: Ctx, at: Seg[]): ReplicaConfig {
  // For a bare URL every problem is the URL's, so errors name `at` itself.
  const urlFail: Ctx["fail"] = (_segs, problem) => ctx.fail(at, problem);
  const built = buildReplica({ url } as RawReplica, at, { ...ctx, fail: urlFail });
  const { type: _t, file: _f, s3: _s, gcs: _g, abs: _a, sftp: _sf, ...common } = base;
  return { ...built, ...common, name: base.name ?? built.name };
}

/** The config `walship replicate DB URL...` runs with: one database, one replica per URL, defaults. */
export function configFromArgs(dbPath: string, urls: string[], opts: { cwd?: string } = {}): Config {
  const cwd = opts.cwd ?? process.cwd();
  const fail: Ctx["fail"] = (segs, problem) => {
    throw new WalshipError(ErrorCodes.CONFIG, `parse arguments: ${formatKeyPath(segs)}: ${problem}`, {
      details: { path: formatKeyPath(segs) },
    });
  };
  const ctx: Ctx = { env: process.env, cwd, homedir: os.homedir(), warnings: [], fail };
  if (dbPath === "") fail(["args", 0], "database path required");
  const db: DbConfig = { path: expandPath(dbPath, cwd, ctx.homedir), replicas: [] };
  const names = new Map<string, number>();
  urls.forEach((u, i) => {
    const at: Seg[] = ["args", i + 1];
    if (!isUrl(u)) fail(at, `not a replica URL: ${JSON.stringify(redactUrlPasswords(u))}`);
    const r = replicaFromUrlIn(u, {}, ctx, at);
    const prev = names.get(r.name);
    if (prev !== undefined) {
      fail(
        at,
        `duplicate replica name ${JSON.stringify(r.name)} (also args[${prev}]); use a config file to name them`,
      );
    }
    names.set(r.name, i + 1);
    db.replicas.push(r);
  });
  return {
    logging: { level: "info", type: "text", stderr: false },
    dbs: [db],
    warnings: ctx.warnings,
  };
}

/** The database entry for `dbPath` (`~` expanded, made absolute against `cwd`), if the config has it. */
export function findDb(config: Config, dbPath: string, opts: { cwd?: string } = {}): DbConfig | undefined {
  const want = expandPath(dbPath, opts.cwd ?? process.cwd(), os.homedir());
  return config.dbs.find((db) => db.path === want);
}
