/**
 * The replicator's collection once quiet (src/replicator/idle-gc.ts): V8's real full collection
 * frees buffers nothing refers to, without putting `gc` on the global object; and the collector runs
 * it once per quiet spell after work, never while work goes on, never before any.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { fullCollection, IdleCollector } from "../../src/replicator/idle-gc.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("idle collection", () => {
  it("V8's full collection frees dropped buffers; the global object gets no gc", async () => {
    const collect = fullCollection();
    assert.ok(collect, "the collection is available");
    let held: Buffer[] | undefined = Array.from({ length: 40 }, () => Buffer.alloc(1 << 20, 1));
    const withBuffers = process.memoryUsage().external;
    assert.ok(held.length === 40);
    held = undefined;
    collect();
    // Backing stores are released by V8's sweeper after the collection itself.
    let after = process.memoryUsage().external;
    for (let i = 0; i < 50 && withBuffers - after <= 30 * 2 ** 20; i++) {
      await sleep(20);
      after = process.memoryUsage().external;
    }
    assert.ok(withBuffers - after > 30 * 2 ** 20, `external ${withBuffers} -> ${after}`);
    if (!process.execArgv.some((a) => a.startsWith("--expose-gc") || a.startsWith("--expose_gc"))) {
      assert.equal((globalThis as { gc?: unknown }).gc, undefined);
    }
  });

  it("collects once per quiet spell after work, not during it, not before any", async () => {
    let activity = 0;
    let calls = 0;
    const c = new IdleCollector(() => activity, { idleMs: 150, checkMs: 20, collect: () => calls++ });
    try {
      await sleep(300);
      assert.equal(calls, 0, "nothing done yet: nothing to collect");
      // Busy: the signature moves at every check.
      for (let i = 0; i < 15; i++) {
        activity++;
        await sleep(20);
      }
      assert.equal(calls, 0, "no collection while work goes on");
      await sleep(400);
      assert.equal(calls, 1, "one collection once quiet");
      await sleep(300);
      assert.equal(calls, 1, "and only one while it stays quiet");
      activity++;
      await sleep(400);
      assert.deepEqual([calls, c.collections], [2, 2]);
    } finally {
      c.close();
    }
  });
});
