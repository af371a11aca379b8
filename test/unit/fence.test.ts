/**
 * The claim protocol (src/replicator/fence.ts) on a real file destination: two claimers at the same
 * instant (exactly one wins), a renewal that finds another holder (writing stops at once), a release
 * (the other takes over at its next look), and the fenced client (no object written while not held).
 */
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { Readable } from "node:stream";
import { after, describe, it } from "node:test";
import { CLAIM_KEY, type ClaimHolder, claimDoc } from "../../src/replicator/claim.ts";
import { encodeJson } from "../../src/replicator/extras.ts";
import { Fence, FencedClient } from "../../src/replicator/fence.ts";
import { FileReplicaClient } from "../../src/replicator/storage/file.ts";
import { ErrorCodes } from "../../src/shared/errors.ts";
import { assertCode } from "../helpers/assert.ts";

const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function root(): string {
  const d = mkdtempSync(path.join(os.tmpdir(), "walship-fence-unit-"));
  dirs.push(d);
  return path.join(d, "replica");
}

const pod = (name: string, uid: string): ClaimHolder => ({
  pod: { namespace: "ns", name, uid },
  host: name,
  pid: 1,
});

describe("Fence on a file destination", () => {
  it("two claimers at the same instant: exactly one holds, the other names it", async () => {
    for (let round = 0; round < 5; round++) {
      const r = root();
      const a = new Fence(new FileReplicaClient(r), { name: "d", ttlMs: 3000, holder: pod("a-0", "ua") });
      const b = new Fence(new FileReplicaClient(r), { name: "d", ttlMs: 3000, holder: pod("b-0", "ub") });
      // Never both; one within a few looks. Two writes of one file at once can fail or tear (a torn
      // claim is no claim): the run loop logs such a look's error and looks again, as here.
      const look = (f: Fence) => f.step().catch(() => undefined);
      for (let n = 0; n < 5 && !a.held && !b.held; n++) {
        await Promise.all([look(a), look(b)]);
        assert.ok(!(a.held && b.held), `round ${round}: never two holders`);
      }
      assert.equal(Number(a.held) + Number(b.held), 1, `round ${round}: one holder`);
      const [winner, loser] = a.held ? [a, b] : [b, a];
      assert.deepEqual(loser.fencedBy?.holder, winner.holder);
      assert.equal(winner.fencedBy, undefined);
      // The loser's next look changes nothing; the winner renews.
      await Promise.all([look(winner), look(loser)]);
      assert.equal(winner.held, true);
      assert.equal(loser.held, false);
    }
  });

  it("a renewal that finds another holder stops writing at once", async () => {
    const r = root();
    const client = new FileReplicaClient(r);
    const a = new Fence(client, { name: "d", ttlMs: 3000, holder: pod("a-0", "ua") });
    await a.step();
    assert.equal(a.held, true);
    // Another writer overwrites the claim (last-writer-wins on a store without conditional writes).
    const other = pod("b-0", "ub");
    await client.putExtra(CLAIM_KEY, encodeJson(claimDoc(other, "theirs", Date.now(), 3000)));
    await a.step();
    assert.equal(a.held, false);
    assert.deepEqual(a.fencedBy?.holder, other);
    const fenced = new FencedClient(client, a);
    await assertCode(fenced.putExtra("walship/x", new Uint8Array(1)), ErrorCodes.FENCED);
  });

  it("a release lets the other take over at its next look; a claim held elsewhere waits for expiry", async () => {
    const r = root();
    const a = new Fence(new FileReplicaClient(r), { name: "d", ttlMs: 1500, holder: pod("a-0", "ua") });
    const b = new Fence(new FileReplicaClient(r), { name: "d", ttlMs: 1500, holder: pod("b-0", "ub") });
    await a.step();
    await b.step();
    assert.equal(b.held, false);
    await a.release();
    assert.equal(a.held, false);
    assert.equal(existsSync(path.join(r, "walship", "claim.json")), false, "the claim object is gone");
    await b.step();
    assert.equal(b.held, true);
    assert.equal(b.fencedBy, undefined);

    // b stops renewing (as if killed): a waits until the claim expired by its stamp AND has been
    // seen unchanged for a TTL.
    await a.step();
    assert.equal(a.held, false);
    const t0 = Date.now();
    while (!a.held) {
      await new Promise((res) => setTimeout(res, 100));
      await a.step();
    }
    const waited = Date.now() - t0;
    assert.ok(waited >= 1400, `took over after ${waited} ms, not before the claim expired`);
  });

  it("the fenced client writes and deletes nothing while not held, and passes reads", async () => {
    const r = root();
    const inner = new FileReplicaClient(r);
    const fence = new Fence(inner, { name: "d", ttlMs: 3000, holder: pod("a-0", "ua") });
    const c = new FencedClient(inner, fence);
    const gen = "0123456789abcdef";
    await assertCode(c.writeSnapshot(gen, 0, Readable.from([Buffer.from("x")])), ErrorCodes.FENCED);
    await assertCode(c.writeWalSegment(gen, 0, 0, new Uint8Array(4)), ErrorCodes.FENCED);
    await assertCode(c.putExtra("walship/a", new Uint8Array(1)), ErrorCodes.FENCED);
    await assertCode(c.deleteGeneration(gen), ErrorCodes.FENCED);
    await assertCode(c.deleteSnapshot(gen, 0), ErrorCodes.FENCED);
    await assertCode(c.deleteWalSegments([{ generation: gen, index: 0, offset: 0 }]), ErrorCodes.FENCED);
    await assertCode(c.deleteExtras(["walship/a"]), ErrorCodes.FENCED);
    assert.equal(existsSync(r) ? readdirSync(r).length : 0, 0, "nothing written");
    assert.deepEqual(await c.generations(), []);
    await fence.step();
    assert.equal(fence.held, true);
    await c.writeWalSegment(gen, 0, 0, new Uint8Array(4));
    assert.deepEqual(await c.generations(), [gen]);
  });
});
