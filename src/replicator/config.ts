/**
 * The replicator's configuration: Litestream v0.3.13's `litestream.yml` as users write it, plus a few
 * Walship keys. Parsing is data in, data out: no I/O except in `loadConfig`, no logging.
 *
 * Reading follows Litestream, with one safety difference:
 * - Environment expansion (`$VAR`, `${VAR}`, unset = empty; off with `expandEnv: false`, Litestream's
 *   `-no-expand-env`) applies to each scalar value after the YAML is parsed, not to the file text
 *   before it as in Litestream. A value can therefore never change the file's structure: a secret
 *   holding a quote, a newline and `exec: ...` stays one string instead of adding an `exec:` key.
 *   A plain scalar that expands to an empty (or YAML null) value is "not set", as it would be in
 *   Litestream. Keys and comments are not expanded.
 * - YAML 1.1 scalars as gopkg.in/yaml.v2 reads them: `yes`/`no`/`on`/`off` are booleans, a string
 *   setting keeps its text as written (`password: 0123` is "0123"), an empty value is "not set".
 * - Unknown keys are ignored, but each one is reported in `warnings` so the CLI can print it.
 * - Durations are Go durations (see duration.ts); a bare integer is nanoseconds.
 *
 * Walship keys and extensions (Litestream v0.3.13 does not read them):
 * - `shutdown-sync-timeout` (global): how long the final sync on SIGTERM may take, default 10s.
 * - `probe-interval` (global): how often a destination's failed self-test is tried again, default 1m;
 *   0s turns the self-test off (replicator/probe.ts).
 * - `truncate-page-count` (per db): WAL size in pages that forces a TRUNCATE checkpoint, default
 *   500000 (a constant in Litestream); 0 disables.
 * - `replica:` (per db, a single replica mapping): Litestream v0.5's spelling of a one-element
 *   `replicas:` list. v0.3.13 silently ignores it, leaving the database unreplicated.
 * - Durations accept a `d` (day) unit.
 * - S3 endpoints without a scheme get `https://` (as aws-sdk-go v1 does for Litestream).
 * - S3 region, when unset and an endpoint is set, comes from a known provider host in the endpoint
 *   (DigitalOcean Spaces, Hetzner, Cloudflare R2 = "auto", Backblaze, Scaleway, Linode, AWS);
 *   otherwise `us-east-1` as in Litestream. `s3://` URLs also recognise Hetzner
 *   (`B.R.your-objectstorage.com`) and R2 (`B.ACCOUNT.r2.cloudflarestorage.com`) hosts.
 * - `~` is expanded in `meta-path` and `key-path` too; `type:` is case-insensitive.
 * - Duplicate database paths are an error.
 * - `access-key-id-file`/`secret-access-key-file` (s3): files holding the keys, read by the S3 client
 *   each time it signs (so a rotated Kubernetes Secret mounted as files reaches a running
 *   replicator); the operator uses them so that no credential passes through the config text.
 * - Credentials lose trailing newlines (a Secret made from a file usually ends with one).
 * - Error messages and warnings never quote a value that came from the environment, nor the
 *   password of a URL.
 * - `age:` (client-side encryption, age/keys.ts) is strict where Litestream is lax: an unknown key
 *   under it (`recipient:`), an empty block, or a value that is not a list is an error, never a silent
 *   plaintext replica. Errors name the key's path and never quote a key (an identity is a secret).
 * - S3 server-side encryption (storage/s3-sse.ts): `server-side-encryption`, `sse-kms-key-id`,
 *   `sse-customer-key`, `sse-customer-key-path` (Litestream v0.5's names), checked together.
 */
export { configFromArgs, findDb, replicaFromUrl } from "./config/args.ts";
export { createReplicaClient } from "./config/clients.ts";
export {
  applyEnvCredentials,
  defaultConfigPath,
  expandEnvText,
  redactUrlPasswords,
  trimCredential,
} from "./config/env.ts";
export { formatKeyPath } from "./config/keypath.ts";
export { loadConfig, parseConfig } from "./config/parse.ts";
export { DEFAULT_S3_REGION, parseS3Host } from "./config/providers.ts";
export * from "./config/types.ts";
export { isUrl } from "./config/url.ts";
