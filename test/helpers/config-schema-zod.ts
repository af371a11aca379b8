/**
 * TEST ORACLE, not product code: the zod schema of litestream.yml that src/replicator/config/schema.ts
 * replaced (it took zod's load time off every start from a config file). As it was at 432db1a, but
 * for these imports; test/unit/config-schema.test.ts holds the hand-written checks to it.
 */
import { z } from "zod";
import type { AgeCheck } from "../../src/replicator/config/build.ts";
import { parseYamlInt, type Seg, YAML_FALSE, YAML_TRUE } from "../../src/replicator/config/keypath.ts";
import { tryParseGoDuration } from "../../src/shared/duration.ts";

const text = z
  .string({ error: "expected a string" })
  .nullish()
  .transform((v) => (v === null || v === undefined || v === "" ? undefined : v));

const flag = z
  .string({ error: "expected true or false" })
  .nullish()
  .transform((v, ctx) => {
    if (v === null || v === undefined) return undefined;
    if (YAML_TRUE.has(v)) return true;
    if (YAML_FALSE.has(v)) return false;
    ctx.addIssue({ code: "custom", message: `invalid boolean ${JSON.stringify(v)}` });
    return z.NEVER;
  });

const integer = z
  .string({ error: "expected an integer" })
  .nullish()
  .transform((v, ctx) => {
    if (v === null || v === undefined) return undefined;
    const n = parseYamlInt(v);
    if (n === undefined) {
      ctx.addIssue({ code: "custom", message: `invalid integer ${JSON.stringify(v)}` });
      return z.NEVER;
    }
    return n;
  });

const duration = z
  .string({ error: "expected a duration such as 1s, 500ms or 1h30m" })
  .nullish()
  .transform((v, ctx) => {
    if (v === null || v === undefined) return undefined;
    const r = tryParseGoDuration(v);
    if ("problem" in r) {
      ctx.addIssue({ code: "custom", message: r.problem });
      return z.NEVER;
    }
    if (r.ms < 0) {
      ctx.addIssue({
        code: "custom",
        message: `invalid duration ${JSON.stringify(v)}: must not be negative`,
      });
      return z.NEVER;
    }
    return r.ms;
  });

export const replicaShape = {
  type: text,
  name: text,
  path: text,
  url: text,
  retention: duration,
  "retention-check-interval": duration,
  "sync-interval": duration,
  "snapshot-interval": duration,
  "validation-interval": duration,
  "access-key-id": text,
  "secret-access-key": text,
  "access-key-id-file": text,
  "secret-access-key-file": text,
  region: text,
  bucket: text,
  endpoint: text,
  "force-path-style": flag,
  "skip-verify": flag,
  "account-name": text,
  "account-key": text,
  host: text,
  user: text,
  password: text,
  "key-path": text,
  // Walship extensions (a Litestream config never needs them).
  "host-key": z
    .union([z.string(), z.array(z.string())], { error: "expected a public key line or a list of them" })
    .nullish()
    .transform((v) => (v === null || v === undefined ? undefined : Array.isArray(v) ? v : [v])),
  "known-hosts-file": text,
  "insecure-ignore-host-key": flag,
  "key-passphrase-file": text,
  "host-key-file": text,
  "password-file": text,
  "credentials-file": text,
  "sas-token": text,
  "account-key-file": text,
  "sas-token-file": text,
  age: z.unknown().optional(),
  "server-side-encryption": text,
  "sse-kms-key-id": text,
  "sse-customer-key": text,
  "sse-customer-key-path": text,
  "sse-customer-algorithm": text,
};

const keyList = z.array(
  z
    .string({ error: "expected a string" })
    .nullable()
    .transform((v) => v ?? ""),
  {
    error: "expected a list of strings",
  },
);
/**
 * `age:`: Litestream's two lists, and Walship's key files and opt-in. Strict where Litestream is lax
 * (config.ts): an unknown key under it would otherwise leave the replica in plaintext.
 */
export const ageSchema = z.strictObject(
  {
    identities: keyList.nullish(),
    recipients: keyList.nullish(),
    "identity-files": keyList.nullish(),
    "recipient-files": keyList.nullish(),
    "allow-plaintext-generations": flag,
  },
  {
    error: (iss) =>
      iss.code === "unrecognized_keys"
        ? `unknown key ${iss.keys.map((k) => JSON.stringify(k)).join(", ")} (age takes identities, recipients, identity-files, recipient-files, allow-plaintext-generations; Litestream would ignore it and write plaintext)`
        : "expected a mapping with identities and recipients",
  },
);
export type RawAge = z.output<typeof ageSchema>;

/** An `age:` block checked against ageSchema (build.ts Ctx.checkAge). */
export function checkAgeBlock(value: unknown): AgeCheck {
  const parsed = ageSchema.safeParse(value);
  if (parsed.success) return { ok: true, data: parsed.data };
  const issue = parsed.error.issues[0]!;
  const path = issue.path.filter((p): p is Seg => typeof p === "string" || typeof p === "number");
  return { ok: false, path, message: issue.message };
}

const replicaSchema = z.object(replicaShape, { error: "expected a mapping" });
export const dbShape = {
  path: text,
  "meta-path": text,
  "monitor-interval": duration,
  "checkpoint-interval": duration,
  "busy-timeout": duration,
  "min-checkpoint-page-count": integer,
  "max-checkpoint-page-count": integer,
  "truncate-page-count": integer,
  replicas: z.array(replicaSchema, { error: "expected a list" }).nullish(),
  replica: replicaSchema.nullish(),
};
export const loggingShape = { level: text, type: text, stderr: flag };
export const rootShape = {
  addr: text,
  exec: text,
  "access-key-id": text,
  "secret-access-key": text,
  "shutdown-sync-timeout": duration,
  "probe-interval": duration,
  "claim-ttl": duration,
  logging: z.object(loggingShape, { error: "expected a mapping" }).nullish(),
  dbs: z.array(z.object(dbShape, { error: "expected a mapping" }), { error: "expected a list" }).nullish(),
};
export const rootSchema = z.object(rootShape, { error: "expected a mapping" });

export type RawReplica = z.output<typeof replicaSchema>;
export type RawDb = z.output<z.ZodObject<typeof dbShape>>;
export type RawRoot = z.output<typeof rootSchema>;

export const DURATION_KEYS = new Set(
  Object.entries({ ...replicaShape, ...dbShape, ...rootShape })
    .filter(([, s]) => s === duration)
    .map(([k]) => k),
);
