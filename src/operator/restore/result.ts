/**
 * What the Jobs' termination messages say, pure. They are the last lines of
 * `walship restore -log-format json`: the restore's `restored` line carries `replica`, `generation`,
 * `position` (`<generation>/<index hex>:<offset>`) and `lastCommit`; the plan's (-dry-run)
 * `restore plan` line carries `replica`, `generation`, `upTo` and `lastCommit`.
 */
import type { z } from "zod";
import type { RestoredPosition } from "../../api/v1alpha1/index.ts";

export type RestoreResult = z.output<typeof RestoredPosition>;

/** The last JSON log line whose `msg` is `msg` and which has string `field`. */
function lastLine(text: string, msg: string, field: string): Record<string, unknown> | undefined {
  for (const line of text.split("\n").reverse()) {
    try {
      const o = JSON.parse(line) as Record<string, unknown> | null;
      if (o?.msg === msg && typeof o[field] === "string") return o;
    } catch {
      // not a JSON line (the tail may start mid-line)
    }
  }
  return undefined;
}

export function parseRestoreResult(text: string): RestoreResult | undefined {
  const o = lastLine(text, "restored", "position");
  if (!o || typeof o.position !== "string") return undefined;
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

/**
 * The plan Job's finding, as one phrase for status and Events: the `restore plan` line of
 * `walship restore -dry-run -log-format json` (destination, generation, the last WAL index to apply,
 * the commit time it reaches). "plan passed" when the message holds no such line.
 */
export function describePlan(text: string): string {
  const o = lastLine(text, "restore plan", "generation");
  if (!o) return "plan passed";
  const parts = [`plan: generation ${o.generation}`];
  if (typeof o.upTo === "string") parts.push(`up to ${o.upTo}`);
  if (typeof o.lastCommit === "string") parts.push(`last commit ${o.lastCommit}`);
  if (typeof o.replica === "string") parts.push(`from destination ${o.replica}`);
  return parts.join(", ");
}
