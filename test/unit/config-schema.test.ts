/**
 * The config's shape checks (src/replicator/config/schema.ts, written out without a schema library)
 * against the zod schema they replaced (test/helpers/config-schema-zod.ts, kept as the oracle), on
 * generated configs: each gives the same data, or the same first problem at the same key path.
 * Generated from a fixed seed, so a failure repeats; the mix of valid, invalid and wrongly typed
 * values at every level is what a hand-made list would leave out.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  checkAgeBlock,
  checkRoot,
  dbShape,
  loggingShape,
  replicaShape,
  rootShape,
} from "../../src/replicator/config/schema.ts";
import * as oracle from "../helpers/config-schema-zod.ts";
import { rng } from "../helpers/rng.ts";

const STRINGS = [
  "",
  "x",
  "s3",
  "true",
  "false",
  "yes",
  "Off",
  "TRUE",
  "maybe",
  "0",
  "12",
  "-3",
  "+7",
  "0x1f",
  "0o17",
  "1_000",
  "1.5",
  "1s",
  "500ms",
  "1h30m",
  "-1s",
  "10",
  "abc",
  "~",
  "null",
];

function gen(seed: number) {
  const r = rng(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
  const str = () => pick(STRINGS);
  /** Something of the wrong type for a scalar, or a scalar for a mapping or list. */
  const wrong = (): unknown =>
    pick([
      () => null,
      () => [],
      () => [str()],
      () => ({ a: str() }),
      () => [null],
      () => [str(), { b: 1 }],
      str,
    ])();
  const scalar = (): unknown => (r() < 0.8 ? str() : wrong());
  const mapping = (shape: Record<string, string>, nested: Record<string, () => unknown>): unknown => {
    if (r() < 0.05) return wrong();
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(shape)) {
      if (r() < 0.25)
        out[k] = nested[k] ? nested[k]() : k === "host-key" && r() < 0.5 ? [str(), str()] : scalar();
    }
    if (r() < 0.2) out[`unknown-${Math.floor(r() * 3)}`] = str();
    return out;
  };
  const list = (item: () => unknown): unknown =>
    r() < 0.1 ? wrong() : Array.from({ length: Math.floor(r() * 3) }, item);
  const age = (): unknown => {
    if (r() < 0.15) return wrong();
    const out: Record<string, unknown> = {};
    for (const k of ["identities", "recipients", "identity-files", "recipient-files"]) {
      if (r() < 0.5)
        out[k] =
          r() < 0.2
            ? wrong()
            : Array.from({ length: Math.floor(r() * 3) }, () => (r() < 0.8 ? str() : wrong()));
    }
    if (r() < 0.3) out["allow-plaintext-generations"] = scalar();
    if (r() < 0.15) out[pick(["identity", "recipient", "keys"])] = str();
    return out;
  };
  const replica = () => mapping(replicaShape, { age });
  const db = () =>
    mapping(dbShape, { replicas: () => list(replica), replica: () => (r() < 0.2 ? null : replica()) });
  const root = () =>
    mapping(rootShape, {
      logging: () => (r() < 0.2 ? null : mapping(loggingShape, {})),
      dbs: () => list(db),
    });
  return { root, age };
}

const viaZod = <T>(p: {
  success: boolean;
  data?: T;
  error?: { issues: Array<{ path: PropertyKey[]; message: string }> };
}) =>
  p.success
    ? { ok: true, data: p.data }
    : {
        ok: false,
        path: p.error!.issues[0]!.path.filter((s) => typeof s === "string" || typeof s === "number"),
        message: p.error!.issues[0]!.message,
      };

describe("config shape checks, against the zod schema they replaced", () => {
  it("read 4,000 generated configs as zod did: the same data, or the same first problem and key path", () => {
    let failed = 0;
    let passed = 0;
    for (let seed = 1; seed <= 4000; seed++) {
      const plain = gen(seed).root();
      const mine = checkRoot(plain);
      assert.deepEqual(
        mine,
        viaZod(oracle.rootSchema.safeParse(plain)),
        `seed ${seed}: ${JSON.stringify(plain)}`,
      );
      if (mine.ok) passed++;
      else failed++;
    }
    // Both outcomes were exercised, plenty of each.
    assert.ok(passed > 400 && failed > 400, `${passed} read, ${failed} refused`);
  });

  it("check 4,000 generated age: blocks as zod did", () => {
    let failed = 0;
    for (let seed = 1; seed <= 4000; seed++) {
      const block = gen(seed).age();
      const mine = checkAgeBlock(block);
      assert.deepEqual(mine, oracle.checkAgeBlock(block), `seed ${seed}: ${JSON.stringify(block)}`);
      if (!mine.ok) failed++;
    }
    assert.ok(failed > 400 && failed < 3600, `${failed} refused of 4000`);
  });

  it("keeps a key the input has, even empty, and leaves out one it does not", () => {
    const r = checkRoot({ dbs: [{ path: "/a.db", replicas: null, replica: { url: "", age: null } }] });
    assert.ok(r.ok);
    assert.deepEqual(r.data, {
      dbs: [{ path: "/a.db", replicas: null, replica: { url: undefined, age: null } }],
    });
    assert.ok("age" in r.data.dbs![0]!.replica! && !("logging" in r.data));
  });
});
