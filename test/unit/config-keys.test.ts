/**
 * The replica keys build.ts checks without zod (replica-keys.ts) are exactly the keys the config
 * schema takes (schema.ts replicaShape): a key added to one and not the other fails here.
 */
import assert from "node:assert/strict";
import { it } from "node:test";
import { REPLICA_KEYS } from "../../src/replicator/config/replica-keys.ts";
import { replicaShape } from "../../src/replicator/config/schema.ts";

it("replica-keys.ts lists exactly the replica keys of the schema", () => {
  assert.deepEqual([...REPLICA_KEYS].sort(), Object.keys(replicaShape).sort());
});
