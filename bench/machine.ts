/**
 * What a bench run records about where it ran, beside its figures: the machine, both tools'
 * versions, the commit and any uncommitted files, the load at the start. Shared by bench/run.ts and
 * bench/destinations.ts.
 */
import { execFileSync } from "node:child_process";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { LITESTREAM_VERSION, litestreamBin } from "../test/helpers/litestream.ts";
import { round } from "./measure.ts";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

/** A command's trimmed output, or why it could not run. */
function sh(cmd: string, args: string[]): string {
  try {
    return execFileSync(cmd, args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] }).trim();
  } catch (err) {
    return `unavailable: ${(err as Error).message.split("\n")[0]}`;
  }
}

/** The machine and versions of a run that measures the walship executable `walship`. */
export function machineInfo(walship: string): Record<string, unknown> {
  return {
    nproc: os.availableParallelism(),
    cpuModel: os.cpus()[0]?.model,
    memGiB: round(os.totalmem() / 2 ** 30, 1),
    kernel: os.release(),
    node: process.version,
    litestream: sh(litestreamBin(), ["version"]),
    litestreamExpected: LITESTREAM_VERSION,
    walship: sh(walship, ["version"]),
    walshipBinary: walship,
    commit: sh("git", ["-C", ROOT, "rev-parse", "HEAD"]),
    /** Files changed since that commit (the figures are of the working tree); empty when clean. */
    uncommitted: sh("git", ["-C", ROOT, "status", "--porcelain", "--untracked-files=no"])
      .split("\n")
      .filter(Boolean),
    loadAverageAtStart: os.loadavg().map((x) => round(x, 2)),
    minio: sh(path.join(path.dirname(litestreamBin()), "minio"), ["--version"]).split("\n")[0],
  };
}
