/** The warnings of a config: keys Walship does not read, and bare-integer durations (nanoseconds). */
import { isBareIntegerDuration } from "../../shared/duration.ts";
import { formatKeyPath, type Seg } from "./keypath.ts";
import { DURATION_KEYS, dbShape, loggingShape, replicaShape, rootShape } from "./schema.ts";
import type { Plain } from "./yaml.ts";

/** Warnings for keys Walship does not read, and for bare-integer durations (nanoseconds). */
export function collectWarnings(plain: Plain, out: string[]): void {
  const check = (
    obj: Plain | undefined,
    known: readonly string[],
    segs: Seg[],
  ): obj is { [k: string]: Plain } => {
    if (obj === null || obj === undefined || typeof obj !== "object" || Array.isArray(obj)) return false;
    for (const [k, v] of Object.entries(obj)) {
      if (!known.includes(k)) {
        const misplaced = segs.length === 2 && segs[0] === "dbs" && k in replicaShape;
        out.push(
          `${formatKeyPath([...segs, k])}: unknown key, ignored${misplaced ? " (a replica setting: move it into a replica)" : ""}`,
        );
      } else if (
        DURATION_KEYS.has(k) &&
        typeof v === "string" &&
        isBareIntegerDuration(v) &&
        Number(v) !== 0
      ) {
        out.push(
          `${formatKeyPath([...segs, k])}: bare number ${v} is read as nanoseconds (Go/yaml.v2 rule); add a unit such as s or h`,
        );
      }
    }
    return true;
  };
  const replica = (r: Plain | undefined, segs: Seg[]) => {
    check(r, Object.keys(replicaShape), segs);
  };
  if (!check(plain, Object.keys(rootShape), [])) return;
  check(plain.logging, Object.keys(loggingShape), ["logging"]);
  const dbs = plain.dbs;
  if (!Array.isArray(dbs)) return;
  dbs.forEach((db, i) => {
    if (!check(db, Object.keys(dbShape), ["dbs", i])) return;
    replica(db.replica, ["dbs", i, "replica"]);
    if (Array.isArray(db.replicas)) {
      db.replicas.forEach((r, j) => {
        replica(r, ["dbs", i, "replicas", j]);
      });
    }
  });
}
