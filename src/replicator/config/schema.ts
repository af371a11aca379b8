/**
 * The shape of litestream.yml and each setting's scalar type, checked over the plain data of yaml.ts
 * (strings, lists and mappings: YAML's failsafe schema); rules across keys come after (build.ts), and
 * so do defaults (their owners: Db, Replica).
 *
 * Written out rather than with a schema library: zod took about 40 ms to load even from the compile
 * cache, a sixth of a small restore's start from a config file, which the restore init container runs
 * at every start of a pod (docs/benchmarks.md, Start-up). test/unit/config-schema.test.ts holds these
 * checks to the zod schema they replaced, on generated configs.
 *
 * The problem reported is the first found going through the shapes below in their order, depth
 * first; a key the input does not have is not in the output, one it has (even empty) is.
 */
import { tryParseGoDuration } from "../../shared/duration.ts";
import type { AgeCheck } from "./build.ts";
import { parseYamlInt, type Seg, YAML_FALSE, YAML_TRUE } from "./keypath.ts";

/** How a setting is read; the last four hold the nested parts (null, like absent, is "not set"). */
type Kind =
  | "text"
  | "flag"
  | "integer"
  | "duration"
  | "host-keys"
  | "any"
  | "replicas"
  | "replica"
  | "logging"
  | "dbs";

/** What a setting of each kind becomes (undefined for an empty value). */
interface KindValue {
  text: string;
  flag: boolean;
  integer: number;
  duration: number;
  "host-keys": string[];
  any: unknown;
  replicas: RawReplica[] | null;
  replica: RawReplica | null;
  logging: RawLogging | null;
  dbs: RawDb[] | null;
}

class Problem {
  readonly path: Seg[];
  readonly message: string;
  constructor(path: Seg[], message: string) {
    this.path = path;
    this.message = message;
  }
}

const DURATION_HINT = "expected a duration such as 1s, 500ms or 1h30m";

function read(kind: Kind, v: unknown, at: Seg[]): unknown {
  if (kind === "any") return v;
  if (v === null || v === undefined)
    return kind === "replicas" || kind === "replica" || kind === "logging" || kind === "dbs" ? v : undefined;
  switch (kind) {
    case "text":
      if (typeof v !== "string") throw new Problem(at, "expected a string");
      return v === "" ? undefined : v;
    case "flag":
      if (typeof v !== "string") throw new Problem(at, "expected true or false");
      if (YAML_TRUE.has(v)) return true;
      if (YAML_FALSE.has(v)) return false;
      throw new Problem(at, `invalid boolean ${JSON.stringify(v)}`);
    case "integer": {
      if (typeof v !== "string") throw new Problem(at, "expected an integer");
      const n = parseYamlInt(v);
      if (n === undefined) throw new Problem(at, `invalid integer ${JSON.stringify(v)}`);
      return n;
    }
    case "duration": {
      if (typeof v !== "string") throw new Problem(at, DURATION_HINT);
      const r = tryParseGoDuration(v);
      if ("problem" in r) throw new Problem(at, r.problem);
      if (r.ms < 0) throw new Problem(at, `invalid duration ${JSON.stringify(v)}: must not be negative`);
      return r.ms;
    }
    case "host-keys":
      if (typeof v === "string") return [v];
      if (Array.isArray(v) && v.every((k) => typeof k === "string")) return v;
      throw new Problem(at, "expected a public key line or a list of them");
    case "replicas":
      return readList(v, at, replicaShape);
    case "replica":
      return readMapping(v, at, replicaShape);
    case "logging":
      return readMapping(v, at, loggingShape);
    case "dbs":
      return readList(v, at, dbShape);
  }
}

type Mapping = Record<string, unknown>;

/** The keys of `shape` that the mapping `v` has, each read as its kind. */
function readMapping(v: unknown, at: Seg[], shape: Record<string, Kind>): Mapping {
  if (typeof v !== "object" || v === null || Array.isArray(v)) throw new Problem(at, "expected a mapping");
  const input = v as Mapping;
  const out: Mapping = {};
  for (const [key, kind] of Object.entries(shape)) {
    if (key in input) out[key] = read(kind, input[key], [...at, key]);
  }
  return out;
}

function readList(v: unknown, at: Seg[], shape: Record<string, Kind>): Mapping[] {
  if (!Array.isArray(v)) throw new Problem(at, "expected a list");
  return v.map((item, i) => readMapping(item, [...at, i], shape));
}

export const replicaShape = {
  type: "text",
  name: "text",
  path: "text",
  url: "text",
  retention: "duration",
  "retention-check-interval": "duration",
  "sync-interval": "duration",
  "snapshot-interval": "duration",
  "validation-interval": "duration",
  "access-key-id": "text",
  "secret-access-key": "text",
  "access-key-id-file": "text",
  "secret-access-key-file": "text",
  region: "text",
  bucket: "text",
  endpoint: "text",
  "force-path-style": "flag",
  "skip-verify": "flag",
  "account-name": "text",
  "account-key": "text",
  host: "text",
  user: "text",
  password: "text",
  "key-path": "text",
  // Walship extensions (a Litestream config never needs them).
  "host-key": "host-keys",
  "known-hosts-file": "text",
  "insecure-ignore-host-key": "flag",
  "key-passphrase-file": "text",
  "host-key-file": "text",
  "password-file": "text",
  "credentials-file": "text",
  "sas-token": "text",
  "account-key-file": "text",
  "sas-token-file": "text",
  // Checked by build.ts (checkAgeBlock) once it knows the replica.
  age: "any",
  "server-side-encryption": "text",
  "sse-kms-key-id": "text",
  "sse-customer-key": "text",
  "sse-customer-key-path": "text",
  "sse-customer-algorithm": "text",
} as const satisfies Record<string, Kind>;

export const dbShape = {
  path: "text",
  "meta-path": "text",
  "monitor-interval": "duration",
  "checkpoint-interval": "duration",
  "busy-timeout": "duration",
  "min-checkpoint-page-count": "integer",
  "max-checkpoint-page-count": "integer",
  "truncate-page-count": "integer",
  replicas: "replicas",
  replica: "replica",
} as const satisfies Record<string, Kind>;

export const loggingShape = { level: "text", type: "text", stderr: "flag" } as const satisfies Record<
  string,
  Kind
>;

export const rootShape = {
  addr: "text",
  exec: "text",
  "access-key-id": "text",
  "secret-access-key": "text",
  "shutdown-sync-timeout": "duration",
  "probe-interval": "duration",
  "claim-ttl": "duration",
  logging: "logging",
  dbs: "dbs",
} as const satisfies Record<string, Kind>;

type Read<S extends Record<string, Kind>> = { [K in keyof S]?: KindValue[S[K]] | undefined };
export type RawReplica = Read<typeof replicaShape>;
export type RawDb = Read<typeof dbShape>;
export type RawLogging = Read<typeof loggingShape>;
export type RawRoot = Read<typeof rootShape>;

/** The whole config's plain data checked and read; the first problem with where it is otherwise. */
export function checkRoot(
  plain: unknown,
): { ok: true; data: RawRoot } | { ok: false; path: Seg[]; message: string } {
  try {
    return { ok: true, data: readMapping(plain, [], rootShape) as RawRoot };
  } catch (err) {
    if (err instanceof Problem) return { ok: false, path: err.path, message: err.message };
    throw err;
  }
}

const AGE_KEY_LISTS = ["identities", "recipients", "identity-files", "recipient-files"] as const;
const AGE_KEYS = [...AGE_KEY_LISTS, "allow-plaintext-generations"] as const;

/**
 * `age:`: Litestream's two lists, and Walship's key files and opt-in. Strict where Litestream is lax
 * (config.ts): an unknown key under it would otherwise leave the replica in plaintext.
 */
export type RawAge = {
  [K in (typeof AGE_KEY_LISTS)[number]]?: string[] | null | undefined;
} & { "allow-plaintext-generations"?: boolean | undefined };

/** An `age:` block checked (build.ts Ctx.checkAge). */
export function checkAgeBlock(value: unknown): AgeCheck {
  try {
    if (typeof value !== "object" || value === null || Array.isArray(value)) {
      throw new Problem([], "expected a mapping with identities and recipients");
    }
    const input = value as Mapping;
    const out: Mapping = {};
    for (const key of AGE_KEY_LISTS) {
      if (!(key in input)) continue;
      const list = input[key];
      if (list === null || list === undefined) {
        out[key] = list;
        continue;
      }
      if (!Array.isArray(list)) throw new Problem([key], "expected a list of strings");
      out[key] = list.map((item, i) => {
        if (item === null) return "";
        if (typeof item !== "string") throw new Problem([key, i], "expected a string");
        return item;
      });
    }
    if ("allow-plaintext-generations" in input) {
      out["allow-plaintext-generations"] = read("flag", input["allow-plaintext-generations"], [
        "allow-plaintext-generations",
      ]);
    }
    const unknown = Object.keys(input).filter((k) => !(AGE_KEYS as readonly string[]).includes(k));
    if (unknown.length > 0) {
      throw new Problem(
        [],
        `unknown key ${unknown.map((k) => JSON.stringify(k)).join(", ")} (age takes identities, recipients, identity-files, recipient-files, allow-plaintext-generations; Litestream would ignore it and write plaintext)`,
      );
    }
    return { ok: true, data: out as RawAge };
  } catch (err) {
    if (err instanceof Problem) return { ok: false, path: err.path, message: err.message };
    throw err;
  }
}

export const DURATION_KEYS = new Set(
  Object.entries({ ...replicaShape, ...dbShape, ...rootShape })
    .filter(([, kind]) => kind === "duration")
    .map(([k]) => k),
);

// Re-exported for the schema's other users; build.ts imports them from replica-keys.ts.
export { COMMON_REPLICA_KEYS, TYPE_KEYS } from "./replica-keys.ts";
