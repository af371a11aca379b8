/**
 * Storage faults and fuzzing as a `make torture` part: the proxy chain in front of MinIO with each
 * fault in turn and a MinIO outage (test/torture/storage-faults.ts), then every fuzz target
 * (test/fuzz/run.ts). `make torture-faults` runs this part alone (FAULT_SECONDS, OUTAGE_SECONDS,
 * FAULTS_MEMORY and FUZZ_SECONDS as make variables).
 *
 * Knobs: TORTURE_FAULT_SECONDS (60), TORTURE_OUTAGE_SECONDS (300), TORTURE_FAULTS_MEMORY (384Mi, the
 * sidecar's default limit; `none` for none), TORTURE_FUZZ_SECONDS (60 per target).
 * Its short variant is test/integration/storage-faults.test.ts and test/unit/fuzz.test.ts, which
 * `make test` runs on their own.
 */
import { fuzzPart } from "../test/fuzz/run.ts";
import { storageFaultsPart } from "../test/torture/storage-faults.ts";
import { log, type PartResult, type TortureCtx, type TorturePart } from "./common.ts";
import { parseMemory } from "./memcg.ts";

export const faults: TorturePart = {
  name: "faults",
  summary: "storage faults between the replicator and MinIO, a MinIO outage, then fuzzing",
  byDefault: false,
  shortVariantElsewhere: "test/integration/storage-faults.test.ts, test/unit/fuzz.test.ts",
  async run(ctx: TortureCtx): Promise<PartResult> {
    const memory = process.env.TORTURE_FAULTS_MEMORY ?? "384Mi";
    const storage = await storageFaultsPart({
      faultSeconds: ctx.knob("FAULT_SECONDS", 60, 4),
      outageSeconds: ctx.knob("OUTAGE_SECONDS", 300, 15),
      seed: ctx.seed,
      ...(memory !== "none" ? { memoryLimitBytes: parseMemory(memory) } : {}),
      log: (l) => log(`  ${l}`),
    });
    const fuzz = await fuzzPart({
      seconds: ctx.knob("FUZZ_SECONDS", 60, 2),
      seed: ctx.seed,
      log: (l) => log(`  ${l}`),
    });
    const failures = [...storage.problems];
    if (fuzz.findings + fuzz.corpusReplayFailures > 0)
      failures.push(`fuzzing: ${fuzz.findings} findings, ${fuzz.corpusReplayFailures} corpus replays failed`);
    return { figures: { storage, fuzz }, failures };
  },
};
