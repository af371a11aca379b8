/** Every fuzz target, by name. */
import type { Target } from "./harness.ts";
import { BYTE_TARGETS } from "./targets-bytes.ts";
import { configSecret, configText } from "./targets-config.ts";
import { planner } from "./targets-planner.ts";

export const TARGETS: ReadonlyArray<Target<unknown>> = [
  ...BYTE_TARGETS,
  configText,
  configSecret,
  planner,
] as ReadonlyArray<Target<unknown>>;
