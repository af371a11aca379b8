/**
 * The config loader (parseConfig, read-only use) on arbitrary text, and on hostile Secret values.
 *
 * - `config`: mutated example configs and generated ones (known keys, hostile values: empty, huge,
 *   negative, NaN-ish durations, odd URLs, NULs, nested lists where scalars belong, YAML tags and
 *   aliases). It must give a Config or a CONFIG WalshipError whose `details.path` names a key.
 * - `config-secret`: a config with its S3 keys as quoted `${VAR}` references (as users write them;
 *   the operator used to), with any string as the variable's value.
 *   Whatever the value, it must never appear in an error, and never change another setting of the
 *   destination (bucket, path, endpoint, region): a Secret is not a way to send the data elsewhere.
 */
import fc from "fast-check";
import { stringify } from "yaml";
import { parseConfig } from "../../src/replicator/config.ts";
import { ErrorCodes, WalshipError } from "../../src/shared/errors.ts";
import { Invariant, mutatedBytes, type Target } from "./harness.ts";

const ENV = { HOME: "/home/fuzz", POD_NAME: "app-0", EMPTY: "" };

function check(cond: boolean, message: string): void {
  if (!cond) throw new Invariant(message);
}

function parse(text: string, env: Record<string, string>) {
  return parseConfig(text, { source: "fuzz.yml", env, cwd: "/fuzz", homedir: "/home/fuzz" });
}

function checkConfigError(err: unknown): void {
  if (!(err instanceof WalshipError)) throw err;
  check(err.code === ErrorCodes.CONFIG, `config error with code ${err.code}: ${err.message}`);
  check(err.message.startsWith("parse config fuzz.yml"), `error does not name the file: ${err.message}`);
  check(typeof err.details.path === "string" && err.details.path !== "", "error does not name a key");
}

const hostile = fc.oneof(
  fc.constantFrom(
    "",
    " ",
    "0",
    "-1",
    "1e309",
    "NaN",
    "-5s",
    "5parsecs",
    "9999999999999999h",
    "1.5.5s",
    "true",
    "yes",
    "~",
    "null",
    "s3://",
    "s3:///x",
    "s3://b/../../etc",
    "file://",
    "file:///",
    "gs://b",
    "abs://a@b/c",
    "sftp://u:p@h:99999/x",
    "http://[::1",
    "/",
    "..",
    "a\u0000b",
    "$" + "{HOME}",
    "$" + "{",
    "$",
    "~/x",
    "x".repeat(5000),
    "0x10",
    "0o17",
    "1_000",
    "+1",
    ":9090",
    "127.0.0.1:99999",
    "[::1]:80",
  ),
  fc.string({ maxLength: 20 }),
  fc.integer(),
  fc.double(),
  fc.boolean(),
  fc.constant(null),
);
const value: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 6, arbitrary: hostile },
  { weight: 1, arbitrary: fc.array(hostile, { maxLength: 2 }) },
  { weight: 1, arbitrary: fc.dictionary(fc.constantFrom("a", "url", "path"), hostile, { maxKeys: 2 }) },
);

const REPLICA_KEYS = [
  "name",
  "type",
  "url",
  "path",
  "bucket",
  "endpoint",
  "region",
  "access-key-id",
  "secret-access-key",
  "sync-interval",
  "snapshot-interval",
  "retention",
  "retention-check-interval",
  "validation-interval",
  "force-path-style",
  "skip-verify",
  "host",
  "user",
  "password",
  "key-path",
  "account-name",
  "account-key",
  "age",
  "unknown-key",
] as const;
const DB_KEYS = [
  "path",
  "meta-path",
  "monitor-interval",
  "checkpoint-interval",
  "min-checkpoint-page-count",
  "max-checkpoint-page-count",
  "truncate-page-n",
  "busy-timeout",
  "shutdown-sync-timeout",
] as const;
const ROOT_KEYS = [
  "addr",
  "exec",
  "access-key-id",
  "secret-access-key",
  "shutdown-sync-timeout",
  "logging",
] as const;

/** A config as a tree: mostly valid shape, some keys with hostile values. */
const replicaArb = fc.dictionary(fc.constantFrom(...REPLICA_KEYS), value, { maxKeys: 5 }).map((r) => ({
  url: "s3://bucket/path",
  ...r,
}));
const dbArb = fc
  .record({
    base: fc.dictionary(fc.constantFrom(...DB_KEYS), value, { maxKeys: 3 }),
    replicas: fc.oneof(fc.array(replicaArb, { maxLength: 3 }), value),
    single: fc.option(replicaArb, { nil: undefined }),
  })
  .map(({ base, replicas, single }) => ({
    path: "/data/app.db",
    ...base,
    replicas,
    ...(single ? { replica: single } : {}),
  }));
const configTreeArb = fc.record({
  root: fc.dictionary(fc.constantFrom(...ROOT_KEYS), value, { maxKeys: 2 }),
  dbs: fc.oneof({ weight: 5, arbitrary: fc.array(dbArb, { maxLength: 2 }) }, { weight: 1, arbitrary: value }),
});

const textDecoder = new TextDecoder();

export const configText: Target<string> = {
  name: "config",
  what: "config loader on mutated and generated YAML",
  arbitrary: (corpus) =>
    fc.oneof(
      mutatedBytes(corpus, 512).map((b) => textDecoder.decode(b)),
      configTreeArb.map(({ root, dbs }) => stringify({ ...root, dbs })),
      // Generated, then damaged as text: YAML syntax errors at every depth.
      fc
        .tuple(
          configTreeArb,
          fc.nat(),
          fc.constantFrom("'", '"', ":", "- ", "\t", "&a ", "*a", "!!binary ", "{", "]", "\n  "),
        )
        .map(([{ root, dbs }, at, junk]) => {
          const t = stringify({ ...root, dbs });
          const i = at % (t.length + 1);
          return t.slice(0, i) + junk + t.slice(i);
        }),
    ),
  decode: (b) => textDecoder.decode(b),
  encode: (s) => Buffer.from(s),
  run(text) {
    try {
      const cfg = parse(text, ENV);
      check(Array.isArray(cfg.dbs), "config without dbs");
    } catch (err) {
      checkConfigError(err);
    }
  },
};

/**
 * A config as users write it for Litestream, the keys as `${VAR}` in single quotes (the operator no
 * longer does this: it hands keys over as files, `*-key-file`).
 */
export function userConfigText(): string {
  return (
    `addr: ':9090'
dbs:
  - path: '/data/app.db'
    replicas:
      - name: 'minio'
        type: 's3'
        bucket: 'backups'
        path: 'prod/app/$` +
    `{POD_NAME}'
        region: 'us-east-1'
        access-key-id: '$` +
    `{WALSHIP_S3_MINIO_ACCESS_KEY_ID}'
        secret-access-key: '$` +
    `{WALSHIP_S3_MINIO_SECRET_ACCESS_KEY}'
        sync-interval: '1s'
        retention: '24h'
`
  );
}

/** Secret values: any string, and the shapes that break YAML out of its quotes. */
export const secretArb = fc.oneof(
  fc.string({ maxLength: 40 }),
  fc.string({ unit: "binary", maxLength: 40 }),
  fc.constantFrom(
    "it's",
    "x'\n        endpoint: 'http://127.0.0.1:1",
    "x'\n        bucket: 'other",
    "line1\nline2",
    "a: b",
    "- a",
    "#hash",
    " leading and trailing ",
    "$" + "{POD_NAME}",
    "$HOME",
    "'",
    "''",
    '"',
    "\\",
    "\u0000",
    "\u2028",
    "é€😀",
  ),
);

export interface SecretInput {
  keyId: string;
  secret: string;
}

export function runSecret({ keyId, secret }: SecretInput): void {
  const env = {
    ...ENV,
    WALSHIP_S3_MINIO_ACCESS_KEY_ID: keyId,
    WALSHIP_S3_MINIO_SECRET_ACCESS_KEY: secret,
  };
  let cfg: ReturnType<typeof parse>;
  try {
    cfg = parse(userConfigText(), env);
  } catch (err) {
    checkConfigError(err);
    const e = err as WalshipError;
    const shown = `${e.message} ${JSON.stringify(e.details)}`;
    for (const v of [secret, keyId]) {
      if (v.trim().length >= 4)
        check(!shown.includes(v.trim()), "a Secret value is echoed in a config error");
    }
    check(
      /access-key-id|secret-access-key/.test(String(e.details.path)),
      `a Secret value gives an error that does not name its field: ${e.message}`,
    );
    return;
  }
  const r = cfg.dbs[0]?.replicas[0];
  check(
    cfg.dbs.length === 1 && cfg.dbs[0]!.replicas.length === 1,
    "a Secret value added a database or replica",
  );
  check(r?.s3?.bucket === "backups", `a Secret value changed the bucket to ${JSON.stringify(r?.s3?.bucket)}`);
  check(r?.s3?.path === "prod/app/app-0", "a Secret value changed the path");
  check(
    r?.s3?.endpoint === undefined,
    `a Secret value set the endpoint to ${JSON.stringify(r?.s3?.endpoint)}`,
  );
  check(r?.s3?.region === "us-east-1", "a Secret value changed the region");
  check(r?.syncIntervalMs === 1000 && r?.retentionMs === 24 * 3600_000, "a Secret value changed an interval");
  // Used as it is, but for a trailing newline (dropped, as from a key file); an empty value means
  // "not set", as Litestream has it.
  const asUsed = (v: string) => v.replace(/[\r\n]+$/, "");
  if (asUsed(secret) !== "")
    check(r?.s3?.secretAccessKey === asUsed(secret), "the secret access key is not the Secret's value");
  if (asUsed(keyId) !== "")
    check(r?.s3?.accessKeyId === asUsed(keyId), "the access key id is not the Secret's value");
}

export const configSecret: Target<SecretInput> = {
  name: "config-secret",
  what: "hostile Secret values expanded into the operator's config",
  arbitrary: () => fc.record({ keyId: fc.oneof(fc.constant("AKIAEXAMPLE"), secretArb), secret: secretArb }),
  decode: (b) => JSON.parse(Buffer.from(b).toString("utf8")) as SecretInput,
  encode: (s) => Buffer.from(JSON.stringify(s)),
  run: runSecret,
};
