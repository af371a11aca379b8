/** The reference Litestream v0.3.13 binary (built with cgo by test/infra/install). */
import { binPath } from "./cache.ts";
import {
  type ManagedProcess,
  type RunOptions,
  type RunResult,
  runCommand,
  type SpawnOptions,
  spawnManaged,
} from "./proc.ts";

/** The version test/infra/install builds; `litestream version` prints it. */
export const LITESTREAM_VERSION = "v0.3.13";

/** Absolute path of the cached litestream binary (throws INFRA_MISSING_BINARY if not built). */
export function litestreamBin(): string {
  return binPath("litestream");
}

/** Runs `litestream <args>` to completion (throws INFRA_COMMAND_FAILED on non-zero unless allowFailure). */
export function runLitestream(args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  return runCommand(litestreamBin(), args, opts);
}

/** Starts a long-running `litestream <args>` (e.g. `replicate -config f`), tracked for cleanup. */
export function spawnLitestream(args: readonly string[], opts: SpawnOptions = {}): ManagedProcess {
  return spawnManaged(litestreamBin(), args, { name: "litestream", ...opts });
}
