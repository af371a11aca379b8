/**
 * The short variant of every `make torture` part (TORTURE_QUICK): the same code as the long runs,
 * a few cycles, restores and minutes each, so a broken torture harness or a regression it catches
 * shows in `make test`. The figures of the long runs are in docs/reliability.md.
 */
import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { TortureCtx } from "../../torture/common.ts";
import { PARTS } from "../../torture/parts.ts";
import { makeTempDir, stopAll } from "../helpers/proc.ts";

const ctx = new TortureCtx({
  work: makeTempDir("torture"),
  quick: true,
  env: { ...process.env, TORTURE_QUICK: "1" },
});
after(async () => {
  await ctx.close();
  await stopAll();
});

describe(`torture, short variants (seed ${ctx.seed})`, () => {
  for (const part of PARTS) {
    if (part.shortVariantElsewhere) continue; // e.g. faults: storage-faults.test.ts runs it
    it(`${part.name}: ${part.summary}`, async () => {
      const res = await part.run(ctx);
      console.log(`${part.name}: ${JSON.stringify(res.figures)}`);
      assert.deepEqual(res.failures, [], `${part.name} (seed ${ctx.seed})`);
    });
  }
});
