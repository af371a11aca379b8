/**
 * The parts `make torture` can run, by name. A part is one file under torture/ exporting a
 * TorturePart (see common.ts); add it here and it can be picked with TORTURE_PARTS.
 */
import type { TorturePart } from "./common.ts";
import { crash } from "./crash.ts";
import { faults } from "./faults.ts";
import { pitr } from "./pitr.ts";
import { soak } from "./soak.ts";

export const PARTS: readonly TorturePart[] = [crash, pitr, soak, faults];
