#!/usr/bin/env node
/**
 * The `kubectl-walship` executable: kubectl runs it as `kubectl walship ...` when it is on the PATH
 * (bin/kubectl-walship in a checkout, or the release archive's single file; see docs/operator.md).
 */
import { packageVersion } from "../shared/version.ts";
import { run } from "./cli.ts";

/** The version: injected into the release bundle at build time, else package.json's. */
declare const WALSHIP_PLUGIN_VERSION: string | undefined;

function version(): string {
  return typeof WALSHIP_PLUGIN_VERSION === "string" ? WALSHIP_PLUGIN_VERSION : packageVersion();
}

const abort = new AbortController();
// The first Ctrl-C stops following a restore (the restore goes on); a second one ends the process.
process.once("SIGINT", () => {
  abort.abort();
  process.once("SIGINT", () => process.exit(130));
});

run(
  process.argv.slice(2),
  {
    out: (t) => process.stdout.write(t),
    err: (t) => process.stderr.write(t),
    env: process.env,
    signal: abort.signal,
  },
  version(),
).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`kubectl walship: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  },
);
