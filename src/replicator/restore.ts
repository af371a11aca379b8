/**
 * Restore: plan which destination, generation, snapshot and WAL segments to use, then download,
 * verify and apply them to a temporary file that is renamed into place only after
 * `PRAGMA integrity_check` passes and the file is fsynced.
 *
 * How: WAL segments download ahead (in order, within a byte budget) while the snapshot streams in;
 * each WAL index is applied as a complete SQLite checkpoint of it would, byte for byte, without
 * opening the database: every frame is verified, then its page written (sqlite/wal-apply.ts). All
 * writes to the file run in order on a worker thread (sqlite/file-writer.ts), beside the downloads.
 *
 * Where Walship goes past Litestream v0.3.13: listings are sorted, WAL indexes below the snapshot are
 * ignored, segments must be contiguous (each offset = previous offset + its decompressed length), every
 * frame's checksum is verified before SQLite sees it, no temporary or -wal/-shm file is left behind,
 * and with Walship's commit-time index a timestamp restores exactly the transactions seen committed at
 * or before it.
 */
import { stat } from "node:fs/promises";
import path from "node:path";
import { ErrorCodes, WalshipError } from "../shared/errors.ts";
import { executeRestore } from "./restore/execute.ts";
import { planRestore } from "./restore/plan.ts";
import type { NamedClient, RestoreOptions, RestoreResult } from "./restore/types.ts";

// The parts: restore/plan.ts chooses (planRestore), restore/execute.ts runs a plan (with the segment
// fetcher, fetcher.ts, and the checks, verify.ts), restore/types.ts holds what they share.
export { executeRestore } from "./restore/execute.ts";
export { planRestore } from "./restore/plan.ts";
export {
  DEFAULT_RESTORE_PARALLELISM,
  type NamedClient,
  type RestoreOptions,
  type RestorePlan,
  type RestoreProgress,
  type RestoreResult,
  type RestoreTarget,
  type TimeRule,
} from "./restore/types.ts";

/**
 * Plans and runs a restore. Returns "no-replica" when there is nothing to restore and
 * `ifReplicaExists` allowed that, "db-exists" when the output exists and `ifDbNotExists` asked to
 * leave it.
 */
export async function restore(
  clients: NamedClient[],
  opts: RestoreOptions & { ifDbNotExists?: boolean; ifReplicaExists?: boolean },
): Promise<RestoreResult | "db-exists" | "no-replica"> {
  const out = path.resolve(opts.outputPath);
  const exists = await stat(out).then(
    () => true,
    () => false,
  );
  if (exists && opts.ifDbNotExists) return "db-exists";
  if (exists && !opts.overwrite) {
    throw new WalshipError(
      ErrorCodes.EXISTS,
      `restore: output database ${out} already exists; it was left untouched`,
    );
  }
  const plan = await planRestore(clients, opts, opts.signal);
  if (!plan) {
    if (opts.ifReplicaExists) return "no-replica";
    throw new WalshipError(ErrorCodes.RESTORE, "restore: no matching backups found");
  }
  return executeRestore(plan, { ...opts, outputPath: out });
}
