/**
 * V8's own collector, for the few places that ask for a collection instead of waiting for V8's
 * heuristics (src/replicator/idle-gc.ts, src/replicator/lz4/native.ts).
 *
 * `gc` is on the global object only with --expose-gc on the command line; a context made after the
 * flag is set gets it, and the process's global object stays as it was. The modules are taken with
 * `process.getBuiltinModule` on first use, so importing this costs a command nothing.
 */

/** V8's `gc`: a full collection by default, a young-generation one (a scavenge) with `type: "minor"`. */
export type Collect = (opts?: { type?: "major" | "minor" }) => void;

let exposed: Collect | null | undefined;

/** The collector, or undefined where V8 will not give it. */
export function v8Collector(): Collect | undefined {
  if (exposed === undefined) {
    try {
      process.getBuiltinModule("node:v8").setFlagsFromString("--expose-gc");
      const gc = process.getBuiltinModule("node:vm").runInNewContext("gc") as unknown;
      exposed = typeof gc === "function" ? (gc as Collect) : null;
    } catch {
      exposed = null;
    }
  }
  return exposed ?? undefined;
}
