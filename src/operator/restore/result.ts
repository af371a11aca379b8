/**
 * The restored position, read from the restore Job's termination message: the last lines of
 * `walship restore -log-format json`, whose `restored` line carries `replica`, `generation`,
 * `position` (`<generation>/<index hex>:<offset>`) and `lastCommit`. Pure.
 */
import type { z } from "zod";
import type { RestoredPosition } from "../../api/v1alpha1/index.ts";

export type RestoreResult = z.output<typeof RestoredPosition>;

export function parseRestoreResult(text: string): RestoreResult | undefined {
  for (const line of text.split("\n").reverse()) {
    let o: Record<string, unknown>;
    try {
      o = JSON.parse(line) as Record<string, unknown>;
    } catch {
      continue;
    }
    if (o.msg !== "restored" || typeof o.position !== "string") continue;
    const m = /^([0-9a-f]{16})\/([0-9a-f]{8}):(\d+)$/.exec(o.position);
    if (!m) return undefined;
    return {
      ...(typeof o.replica === "string" ? { destination: o.replica } : {}),
      generation: m[1] ?? "",
      index: Number.parseInt(m[2] ?? "0", 16),
      offset: Number(m[3]),
      position: o.position,
      ...(typeof o.lastCommit === "string" ? { lastCommitTime: o.lastCommit } : {}),
    };
  }
  return undefined;
}
