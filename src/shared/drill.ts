/**
 * The result line of `walship drill`, which the operator reads from the drill Job's termination
 * message (the CLI writes it to `-result-file /dev/termination-log`). One zod schema, both sides: the
 * CLI builds a `DrillReport`, the operator parses it with `DrillReportSchema`.
 *
 * The termination message holds at most 4096 bytes, so the line is compact: messages are cut to
 * DRILL_MESSAGE_MAX characters, and fields are only ever added (parsing drops keys it does not know).
 */
import { z } from "zod";

/** The longest message one result carries (16 databases x 8 destinations must fit the 4 KiB message in the common case). */
export const DRILL_MESSAGE_MAX = 300;
export const DRILL_REPORT_KIND = "DrillReport";

const Timestamp = z.iso.datetime({ offset: true });

/** A restore of one database from one destination into scratch space, and its checks. */
export const DrillRestoreSchema = z.object({
  /** The restored position, `<generation>/<index hex>:<offset>`. */
  position: z.string().optional(),
  /** The commit time of the last transaction restored, when known. */
  lastCommit: Timestamp.optional(),
  /** Wall-clock seconds of the restore (download, apply, integrity_check, verify query): the measured time to recover. */
  seconds: z.number().min(0).optional(),
  /** The restored file's size. */
  sizeBytes: z.number().int().min(0).optional(),
});

export const DrillResultSchema = DrillRestoreSchema.extend({
  /** The database's path in the config. */
  database: z.string(),
  destination: z.string(),
  outcome: z.enum(["Passed", "Failed"]),
  /** When this destination's drill finished. */
  at: Timestamp,
  /** With point in time: the random time in the window restored to, and that restore. */
  pointInTime: DrillRestoreSchema.extend({ timestamp: Timestamp }).optional(),
  /** Why it failed (the error, naming the object or the check); absent when it passed. */
  message: z.string().optional(),
});

export const DrillReportSchema = z.object({
  kind: z.literal(DRILL_REPORT_KIND),
  results: z.array(DrillResultSchema),
});

export type DrillRestore = z.output<typeof DrillRestoreSchema>;
export type DrillResult = z.output<typeof DrillResultSchema>;
export type DrillReport = z.output<typeof DrillReportSchema>;

/**
 * The report in `text` (a termination message: the last JSON line of the right kind wins; the tail of
 * a log may start mid-line), or undefined.
 */
export function parseDrillReport(text: string): DrillReport | undefined {
  for (const line of text.split("\n").reverse()) {
    if (!line.includes(DRILL_REPORT_KIND)) continue;
    try {
      const r = DrillReportSchema.safeParse(JSON.parse(line));
      if (r.success) return r.data;
    } catch {
      // not JSON
    }
  }
  return undefined;
}
