/** litestream.yml text (or a file) to a Config: YAML, schema, build, warnings, redaction. */
import { readFile } from "node:fs/promises";
import os from "node:os";
import { LineCounter, parseDocument } from "yaml";
import { ErrorCodes, WalshipError } from "../../shared/errors.ts";
import { buildDb, buildLogging, type Ctx, checkAddr } from "./build.ts";
import { expandEnvText, redactUrlPasswords } from "./env.ts";
import { checkAgeBlock, checkRoot } from "./schema.ts";
import type { Config } from "./types.ts";
import { expandPath } from "./url.ts";
import { collectWarnings } from "./warnings.ts";
import { formatKeyPath, type Seg, toPlain } from "./yaml.ts";

/**
 * Parses litestream.yml text. Throws a CONFIG `WalshipError` naming the file and the key
 * (`details.path`, e.g. `dbs[0].replicas[1].sync-interval`, and `details.line` when known).
 */
export function parseConfig(
  textIn: string,
  opts: {
    source?: string;
    expandEnv?: boolean;
    env?: NodeJS.ProcessEnv;
    cwd?: string;
    homedir?: string;
  } = {},
): Config {
  const env = opts.env ?? process.env;
  const prefix = opts.source ? `parse config ${opts.source}` : "parse config";
  const source = opts.source !== undefined ? { source: opts.source } : {};
  // Values that came from the environment: never quoted back in an error or a warning.
  const fromEnv = new Set<string>();
  const expand =
    opts.expandEnv === false
      ? undefined
      : (value: string): string => {
          const out = expandEnvText(value, env);
          if (out !== value && out !== "") fromEnv.add(out);
          return out;
        };
  const redact = (message: string): string => {
    let out = redactUrlPasswords(message);
    for (const v of fromEnv) {
      out = out.split(JSON.stringify(v)).join("(a value from the environment)");
      if (v.length >= 8) out = out.split(v).join("(a value from the environment)");
    }
    return out;
  };

  const lineCounter = new LineCounter();
  const doc = parseDocument(textIn, { schema: "failsafe", version: "1.1", uniqueKeys: true, lineCounter });
  const first = doc.errors[0];
  if (first) {
    const pos = first.linePos?.[0];
    const where = pos ? `line ${pos.line}, column ${pos.col}` : "yaml";
    // The parser's first line only: the lines after it quote the source, which may hold a value.
    throw new WalshipError(
      ErrorCodes.CONFIG,
      `${prefix}: ${where}: ${first.message.split("\n")[0]?.replace(/ at line \d+, column \d+:?$/, "")}`,
      {
        details: { path: "(root)", ...(pos ? { line: pos.line } : {}), ...source },
        cause: first,
      },
    );
  }

  const lineOf = (segs: Seg[]): number | undefined => {
    for (let n = segs.length; n >= 0; n--) {
      try {
        const node = n === 0 ? doc.contents : doc.getIn(segs.slice(0, n), true);
        const range = (node as { range?: [number, number, number] } | null | undefined)?.range;
        if (range) return lineCounter.linePos(range[0]).line;
      } catch {
        // a path through an alias or a merge key: try the parent
      }
    }
    return undefined;
  };
  const fail: (segs: Seg[], problem: string) => never = (segs, problem) => {
    const keyPath = formatKeyPath(segs);
    const line = lineOf(segs);
    throw new WalshipError(ErrorCodes.CONFIG, `${prefix}: ${keyPath}: ${redact(problem)}`, {
      details: { path: keyPath, ...(line !== undefined ? { line } : {}), ...source },
    });
  };

  const plain = toPlain(doc, fail, expand) ?? {};
  const parsed = checkRoot(plain);
  if (!parsed.ok) fail(parsed.path, parsed.message);
  const raw = parsed.data;

  const warnings: string[] = [];
  collectWarnings(plain, warnings);
  const ctx: Ctx = {
    env,
    cwd: opts.cwd ?? process.cwd(),
    homedir: opts.homedir ?? os.homedir(),
    warnings,
    fail,
    checkAge: checkAgeBlock,
  };
  if (raw["access-key-id"] !== undefined) ctx.globalAccessKeyId = raw["access-key-id"];
  if (raw["secret-access-key"] !== undefined) ctx.globalSecretAccessKey = raw["secret-access-key"];

  const config: Config = { logging: buildLogging(raw, ctx), dbs: [], warnings };
  if (raw["shutdown-sync-timeout"] !== undefined) config.shutdownSyncTimeoutMs = raw["shutdown-sync-timeout"];
  if (raw["probe-interval"] !== undefined) config.probeIntervalMs = raw["probe-interval"];
  if (raw["claim-ttl"] !== undefined) {
    // Below a second the read-back and the renewals cannot keep up with a real store.
    const ttl = raw["claim-ttl"];
    if (ttl !== 0 && ttl < 1000) fail(["claim-ttl"], "must be 0 (no claim) or at least 1s");
    config.claimTtlMs = ttl;
  }
  if (raw.addr !== undefined) config.addr = checkAddr(raw.addr, ctx);
  if (raw.exec !== undefined) config.exec = raw.exec;
  if (opts.source !== undefined) config.source = opts.source;

  const seen = new Map<string, number>();
  (raw.dbs ?? []).forEach((rdb, i) => {
    const db = buildDb(rdb, ["dbs", i], ctx);
    const prev = seen.get(db.path);
    if (prev !== undefined) fail(["dbs", i, "path"], `database ${db.path} is already listed at dbs[${prev}]`);
    seen.set(db.path, i);
    config.dbs.push(db);
  });
  config.warnings = warnings.map(redact);
  return config;
}

/** Reads and parses a config file (`~` expanded). CONFIG error naming the file if it cannot be read. */
export async function loadConfig(
  file: string,
  opts: { expandEnv?: boolean; env?: NodeJS.ProcessEnv } = {},
): Promise<Config> {
  const resolved = expandPath(file, process.cwd(), os.homedir());
  let body: string;
  try {
    body = await readFile(resolved, "utf8");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why =
      code === "ENOENT" ? "file not found" : code === "EACCES" ? "permission denied" : "cannot read file";
    throw new WalshipError(ErrorCodes.CONFIG, `read config ${file}: ${why}`, {
      cause: err,
      details: { path: "(file)", file: resolved },
    });
  }
  const parseOpts: Parameters<typeof parseConfig>[1] = { source: file };
  if (opts.expandEnv !== undefined) parseOpts.expandEnv = opts.expandEnv;
  if (opts.env !== undefined) parseOpts.env = opts.env;
  return parseConfig(body, parseOpts);
}
