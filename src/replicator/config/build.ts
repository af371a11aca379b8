/**
 * From the schema's data to the config: each database and replica built and checked across keys,
 * every problem a CONFIG error naming the key (`ctx.fail`), every doubt a warning.
 */

import { splitListenAddr } from "../../shared/listen-addr.ts";
import { buildAbs, buildAge, buildFile, buildGcs, buildS3, buildSftp, type KeyFn } from "./destinations.ts";
import { formatKeyPath, type Seg, YAML_FALSE, YAML_TRUE } from "./keypath.ts";
import { COMMON_REPLICA_KEYS, REPLICA_KEYS, TYPE_KEYS } from "./replica-keys.ts";
import type { RawAge, RawDb, RawReplica, RawRoot } from "./schema.ts";
import { type Config, type DbConfig, REPLICA_TYPES, type ReplicaConfig, type ReplicaType } from "./types.ts";
import { expandPath, isUrl, parseUrl, type UrlParts } from "./url.ts";

export interface Ctx {
  env: NodeJS.ProcessEnv;
  cwd: string;
  homedir: string;
  warnings: string[];
  fail: (segs: Seg[], problem: string) => never;
  globalAccessKeyId?: string;
  globalSecretAccessKey?: string;
  /**
   * Checks an `age:` block (schema.ts checkAgeBlock). Set by parse.ts, which loads the schema anyway;
   * a replica given as a URL has no `age:`, so its path never loads zod.
   */
  checkAge?: (value: unknown) => AgeCheck;
}

/** An `age:` block, checked: its settings, or the key path and problem of the first error. */
export type AgeCheck = { ok: true; data: RawAge } | { ok: false; path: Seg[]; message: string };

export function buildLogging(raw: RawRoot, ctx: Ctx): Config["logging"] {
  const lg = raw.logging;
  let level: Config["logging"]["level"] = "info";
  const rawLevel = lg?.level?.toLowerCase();
  if (rawLevel === "debug" || rawLevel === "info" || rawLevel === "warn" || rawLevel === "error")
    level = rawLevel;
  else if (rawLevel === "warning") level = "warn";
  else if (rawLevel !== undefined) {
    ctx.warnings.push(
      `logging.level: unknown level ${JSON.stringify(lg?.level)}, using info (as Litestream does)`,
    );
  }
  const rawType = lg?.type?.toLowerCase();
  if (rawType !== undefined && rawType !== "text" && rawType !== "json") {
    ctx.fail(["logging", "type"], `invalid log type ${JSON.stringify(lg?.type)}: use text or json`);
  }
  return { level, type: rawType === "json" ? "json" : "text", stderr: lg?.stderr ?? false };
}

export function checkAddr(addr: string, ctx: Ctx): string {
  if (!splitListenAddr(addr)) {
    ctx.fail(
      ["addr"],
      `invalid listen address ${JSON.stringify(addr)}: write host:port or :port, e.g. ":9090"`,
    );
  }
  return addr;
}

export function buildDb(rdb: RawDb, at: Seg[], ctx: Ctx): DbConfig {
  if (rdb.path === undefined) ctx.fail([...at, "path"], "database path required");
  // Only what the file sets: the Db fills in its own defaults for the rest (db.ts).
  const db: DbConfig = { path: expandPath(rdb.path, ctx.cwd, ctx.homedir), replicas: [] };
  if (rdb["meta-path"] !== undefined) db.metaPath = expandPath(rdb["meta-path"], ctx.cwd, ctx.homedir);
  if (rdb["monitor-interval"] !== undefined) db.monitorIntervalMs = rdb["monitor-interval"];
  if (rdb["checkpoint-interval"] !== undefined) db.checkpointIntervalMs = rdb["checkpoint-interval"];
  if (rdb["busy-timeout"] !== undefined) db.busyTimeoutMs = rdb["busy-timeout"];
  const minPages = rdb["min-checkpoint-page-count"];
  if (minPages !== undefined) {
    if (minPages <= 0)
      ctx.fail([...at, "min-checkpoint-page-count"], `must be greater than 0, got ${minPages}`);
    db.minCheckpointPageCount = minPages;
  }
  const nonNegative = (key: "max-checkpoint-page-count" | "truncate-page-count"): number | undefined => {
    const v = rdb[key];
    if (v !== undefined && v < 0) ctx.fail([...at, key], `must not be negative, got ${v}`);
    return v;
  };
  const maxPages = nonNegative("max-checkpoint-page-count");
  if (maxPages !== undefined) db.maxCheckpointPageCount = maxPages;
  const truncatePages = nonNegative("truncate-page-count");
  if (truncatePages !== undefined) db.truncatePageCount = truncatePages;

  let list: Array<{ raw: RawReplica; at: Seg[] }>;
  if (rdb.replica && rdb.replicas && rdb.replicas.length > 0) {
    ctx.fail([...at, "replica"], "cannot set both replica and replicas; move it into the replicas list");
  }
  if (rdb.replica) list = [{ raw: rdb.replica, at: [...at, "replica"] }];
  else list = (rdb.replicas ?? []).map((raw, j) => ({ raw, at: [...at, "replicas", j] }));

  const names = new Map<string, string>();
  for (const { raw, at: rat } of list) {
    const r = buildReplica(raw, rat, ctx);
    if (names.has(r.name) && (raw.name === undefined || raw.name === "")) {
      // Litestream v0.3.13 rejects two unnamed replicas of one type (both default to the type's name),
      // which turns away a common two-region setup. Walship names the later ones instead.
      let n = 2;
      while (names.has(`${r.name}-${n}`)) n++;
      ctx.warnings.push(
        `${formatKeyPath([...rat, "name"])}: no name given and ${JSON.stringify(r.name)} is taken by ${names.get(r.name)}; named ${JSON.stringify(`${r.name}-${n}`)} (Litestream would reject this file)`,
      );
      r.name = `${r.name}-${n}`;
    }
    const prev = names.get(r.name);
    if (prev !== undefined) {
      ctx.fail(
        [...rat, "name"],
        `duplicate replica name ${JSON.stringify(r.name)} (also ${prev}); give each replica a distinct name`,
      );
    }
    names.set(r.name, formatKeyPath(rat));
    db.replicas.push(r);
  }
  return db;
}

export function buildReplica(rawIn: RawReplica, at: Seg[], ctx: Ctx): ReplicaConfig {
  let raw = rawIn;
  const key = (k: string): Seg[] => [...at, k];
  if (raw.path !== undefined && isUrl(raw.path)) {
    ctx.fail(key("path"), `replica path cannot be a URL, use the url key instead: ${raw.path}`);
  }
  if (raw.url !== undefined && raw.path !== undefined) ctx.fail(key("url"), "cannot set both url and path");

  let url: UrlParts | undefined;
  if (raw.url !== undefined) {
    const u = parseUrl(raw.url);
    if ("problem" in u) return ctx.fail(key("url"), u.problem);
    url = u;
  }
  // `gs` (gsutil's scheme) is an alias of `gcs`; Litestream v0.3.13 refuses it (#336).
  const declared = gcsAlias(raw.type?.toLowerCase());
  const typeName = gcsAlias(url?.scheme) ?? declared ?? "file";
  if (!(REPLICA_TYPES as readonly string[]).includes(typeName)) {
    ctx.fail(key(url ? "url" : "type"), `unknown replica type ${JSON.stringify(typeName)}`);
  }
  const type = typeName as ReplicaType;
  if (url) raw = withUrlQuery(raw, url, type, key, ctx);
  if (url && declared !== undefined && declared !== type) {
    ctx.warnings.push(
      `${formatKeyPath(key("type"))}: type ${JSON.stringify(raw.type)} ignored, the url scheme says ${type}`,
    );
  }
  const used = new Set([...COMMON_REPLICA_KEYS, ...TYPE_KEYS[type]]);
  for (const k of REPLICA_KEYS) {
    if (!used.has(k) && (raw as Record<string, unknown>)[k] !== undefined) {
      ctx.warnings.push(`${formatKeyPath(key(k))}: not used by ${type} replicas, ignored`);
    }
  }

  // Only what the file sets: the Replica fills in its own defaults for the rest (replica.ts).
  const r: ReplicaConfig = { name: raw.name ?? type, type };
  if (raw["sync-interval"] !== undefined) r.syncIntervalMs = raw["sync-interval"];
  if (raw.retention !== undefined) r.retentionMs = raw.retention;
  if (raw["retention-check-interval"] !== undefined) {
    r.retentionCheckIntervalMs = raw["retention-check-interval"];
  }
  if (raw["snapshot-interval"]) r.snapshotIntervalMs = raw["snapshot-interval"];
  if (raw["validation-interval"]) r.validationIntervalMs = raw["validation-interval"];
  if ("age" in raw) r.age = buildAge(raw.age, key, ctx);

  switch (type) {
    case "file":
      r.file = buildFile(raw, url, key, ctx);
      break;
    case "s3":
      r.s3 = buildS3(raw, url, key, ctx);
      break;
    case "gcs":
      r.gcs = buildGcs(raw, url, key, ctx);
      break;
    case "abs":
      r.abs = buildAbs(raw, url, key, ctx);
      break;
    case "sftp":
      r.sftp = buildSftp(raw, url, key, ctx);
      break;
  }
  return r;
}

function gcsAlias(t: string | undefined): string | undefined {
  return t === "gs" ? "gcs" : t;
}

/**
 * A gcs, abs or sftp URL's query parameters set that type's keys (a Walship extension, so that
 * `restore URL` can reach an emulator endpoint or name a key file): `?endpoint=...`,
 * `?key-path=...&host-key=...`. Keys set in YAML win; unknown parameters are an error.
 */
function withUrlQuery(raw: RawReplica, url: UrlParts, type: ReplicaType, key: KeyFn, ctx: Ctx): RawReplica {
  if (type !== "gcs" && type !== "abs" && type !== "sftp") return raw;
  const out: Record<string, unknown> = { ...raw };
  for (const [k, v] of url.query) {
    if (!TYPE_KEYS[type].includes(k) || k === "bucket" || k === "host" || k === "password") {
      ctx.fail(
        key("url"),
        `unknown query parameter ${JSON.stringify(k)} for a ${type} url (it takes: ${TYPE_KEYS[type].filter((t) => !["bucket", "host", "password"].includes(t)).join(", ")})`,
      );
    }
    if (out[k] !== undefined) continue;
    if (k === "insecure-ignore-host-key") {
      if (!YAML_TRUE.has(v) && !YAML_FALSE.has(v))
        ctx.fail(key("url"), `invalid boolean ${JSON.stringify(v)} for ${k}`);
      out[k] = YAML_TRUE.has(v);
    } else if (k === "host-key") {
      out[k] = [...((out[k] as string[] | undefined) ?? []), v];
    } else {
      out[k] = v;
    }
  }
  return out as RawReplica;
}
