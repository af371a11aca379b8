/**
 * What a destination still has pending once a WAL segment is durable there (`stillPending`,
 * src/replicator/replica.ts): the count behind `pendingTransactions`, which /status readers take as
 * "every commit read before walReadAt is on this destination" when it is 0 (docs/metrics.md).
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { CommitRecord } from "../../src/replicator/db.ts";
import { stillPending } from "../../src/replicator/replica.ts";

const commit = (generation: string, index: number, end: number): CommitRecord => ({
  generation,
  index,
  end,
  time: 1_000 + end,
});

describe("commits still pending after an upload", () => {
  it("drops what the segment carried and what came before it; keeps what comes after", () => {
    const pending = [commit("a", 0, 4152), commit("a", 1, 4152), commit("a", 1, 8272), commit("a", 2, 4152)];
    assert.deepEqual(stillPending(pending, { generation: "a", index: 1, offset: 32 }, 4152, "a"), [
      commit("a", 1, 8272),
      commit("a", 2, 4152),
    ]);
    assert.deepEqual(stillPending(pending, { generation: "a", index: 2, offset: 32 }, 4152, "a"), []);
  });

  it("keeps the current generation's commits when an upload of the one before it lands late", () => {
    // Generation b began while a's last segment was in flight: b's commits are on no destination yet.
    const pending = [commit("a", 3, 8272), commit("b", 0, 4152), commit("b", 0, 8272)];
    assert.deepEqual(stillPending(pending, { generation: "a", index: 3, offset: 32 }, 8272, "b"), [
      commit("b", 0, 4152),
      commit("b", 0, 8272),
    ]);
  });

  it("gives up commits of a generation that is neither the uploaded one nor the current one", () => {
    const pending = [commit("a", 0, 4152), commit("b", 0, 4152), commit("c", 0, 4152)];
    assert.deepEqual(stillPending(pending, { generation: "b", index: 0, offset: 32 }, 4152, "c"), [
      commit("c", 0, 4152),
    ]);
    assert.deepEqual(stillPending(pending, { generation: "c", index: 0, offset: 32 }, 4152, "c"), []);
  });
});
