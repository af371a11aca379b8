/**
 * The faults branch's torture parts in one run, until `make torture` takes them: storage faults
 * (test/torture/storage-faults.ts) and fuzzing (test/fuzz/run.ts). Prints the figures and writes them
 * to a JSON file; exits 1 when a part finds a problem.
 *
 *   node test/torture/faults.ts --fault-seconds 60 --outage-seconds 300 --fuzz-seconds 60 --out f.json
 *   make torture-faults                      # the same, with those defaults
 *
 * The replicator runs under the sidecar's default memory limit (`--memory`, 384Mi; `none` for none),
 * as in its pod: Node sizes V8's heap from it.
 */
import { writeFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { parseMemory } from "../../torture/memcg.ts";
import { fuzzPart } from "../fuzz/run.ts";
import { storageFaultsPart } from "./storage-faults.ts";

const { values } = parseArgs({
  options: {
    "fault-seconds": { type: "string", default: "60" },
    "outage-seconds": { type: "string", default: "300" },
    "fuzz-seconds": { type: "string", default: "60" },
    out: { type: "string", default: ".torture/faults.json" },
    memory: { type: "string", default: "384Mi" },
  },
});
const log = (l: string) => console.log(l);
const started = Date.now();
const storage = await storageFaultsPart({
  faultSeconds: Number(values["fault-seconds"]),
  outageSeconds: Number(values["outage-seconds"]),
  replicatorLog: `${values.out}.replicator.log`,
  ...(values.memory !== "none" ? { memoryLimitBytes: parseMemory(values.memory) } : {}),
  log,
});
const fuzz = await fuzzPart({ seconds: Number(values["fuzz-seconds"]), log });
const figures = {
  startedAt: new Date(started).toISOString(),
  seconds: Math.round((Date.now() - started) / 1000),
  parts: [storage, fuzz],
};
console.log(JSON.stringify(figures, null, 2));
writeFileSync(values.out, `${JSON.stringify(figures, null, 2)}\n`);
process.exitCode = storage.ok && fuzz.findings + fuzz.corpusReplayFailures === 0 ? 0 : 1;
