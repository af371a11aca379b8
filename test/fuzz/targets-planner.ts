/**
 * The restore planner (planRestore) on arbitrary bucket listings: generations, snapshots and WAL
 * segments with holes, duplicates, odd offsets and times, Walship's side objects valid, foreign or
 * garbage, and any target (index, offset, timestamp, generation, replica). It must return a plan that
 * holds together, nothing, or a WalshipError; never a TypeError from a foreign object.
 *
 * The listings come from FakeListingClient: an in-memory stand-in for a destination (a fake, named as
 * such), because the planner only lists and reads small side objects; the real clients' listings are
 * covered by the contract suite.
 */
import type { Readable } from "node:stream";
import fc from "fast-check";
import { planRestore, type RestoreTarget } from "../../src/replicator/restore.ts";
import type { ReplicaClient } from "../../src/replicator/storage/client.ts";
import { sortSegments, sortSnapshots } from "../../src/replicator/storage/client.ts";
import type { SnapshotInfo, WalSegmentInfo } from "../../src/replicator/types.ts";
import { ErrorCodes, NotFoundError, WalshipError } from "../../src/shared/errors.ts";
import { Invariant, type Target } from "./harness.ts";

export interface PlannerScenario {
  gens: Array<{
    name: string;
    snapshots: Array<{ index: number; t: number }>;
    segments: Array<{ index: number; offset: number; t: number }>;
    /** Side objects by key (relative to the root), as text. */
    extras: Record<string, string>;
  }>;
  target: { index?: number; offset?: number; timestamp?: number; generation?: string; replica?: string };
}

const T0 = 1_700_000_000_000;
const GEN_NAMES = ["0000000000000001", "7bf3ecb4b368a0b2", "ffffffffffffffff"];
const hex8 = (n: number) => n.toString(16).padStart(8, "0");
const commitKey = (g: string, i: number, o: number) =>
  `walship/generations/${g}/commits/${hex8(i)}_${hex8(o)}.json`;
const metaKey = (g: string, i: number) => `walship/generations/${g}/snapshots/${hex8(i)}.json`;

/** An in-memory destination holding only listings and side objects (a fake for the planner). */
class FakeListingClient implements ReplicaClient {
  readonly type = "fake";
  readonly location = "fake://planner";
  readonly #s: PlannerScenario;
  constructor(s: PlannerScenario) {
    this.#s = s;
  }
  async generations(): Promise<string[]> {
    return [...new Set(this.#s.gens.map((g) => g.name))].sort();
  }
  async snapshots(generation: string): Promise<SnapshotInfo[]> {
    const g = this.#s.gens.find((x) => x.name === generation);
    const seen = new Set<number>();
    const out: SnapshotInfo[] = [];
    for (const s of g?.snapshots ?? []) {
      if (seen.has(s.index)) continue; // one object per key, as a store has
      seen.add(s.index);
      out.push({ generation, index: s.index, size: 100, createdAt: new Date(s.t) });
    }
    return sortSnapshots(out);
  }
  async walSegments(generation: string): Promise<WalSegmentInfo[]> {
    const g = this.#s.gens.find((x) => x.name === generation);
    const seen = new Set<string>();
    const out: WalSegmentInfo[] = [];
    for (const s of g?.segments ?? []) {
      const k = `${s.index}/${s.offset}`;
      if (seen.has(k)) continue;
      seen.add(k);
      out.push({ generation, index: s.index, offset: s.offset, size: 100, createdAt: new Date(s.t) });
    }
    return sortSegments(out);
  }
  #extras(): Map<string, string> {
    const m = new Map<string, string>();
    for (const g of this.#s.gens) for (const [k, v] of Object.entries(g.extras)) m.set(k, v);
    return m;
  }
  async listExtras(prefix: string): Promise<string[]> {
    return [...this.#extras().keys()].filter((k) => k.startsWith(prefix)).sort();
  }
  async getExtra(key: string): Promise<Uint8Array> {
    const v = this.#extras().get(key);
    if (v === undefined) throw new NotFoundError(key);
    return Buffer.from(v);
  }
  #no(): never {
    throw new WalshipError(ErrorCodes.STORAGE, "fake planner client: not a listing call");
  }
  deleteGeneration = async (): Promise<void> => this.#no();
  writeSnapshot = async (): Promise<SnapshotInfo> => this.#no();
  snapshotReader = async (): Promise<Readable> => this.#no();
  deleteSnapshot = async (): Promise<void> => this.#no();
  writeWalSegment = async (): Promise<WalSegmentInfo> => this.#no();
  walSegmentReader = async (): Promise<Readable> => this.#no();
  deleteWalSegments = async (): Promise<void> => this.#no();
  putExtra = async (): Promise<void> => this.#no();
  deleteExtras = async (): Promise<void> => this.#no();
}

const timeArb = fc.integer({ min: T0, max: T0 + 100_000 });
/** Side-object bodies: valid documents, foreign JSON, and garbage. */
const foreignJson = fc.jsonValue({ maxDepth: 3 }).map((v) => JSON.stringify(v));
const commitsDoc = fc
  .array(fc.tuple(fc.nat(200_000), timeArb), { maxLength: 5 })
  .map((c) => JSON.stringify({ v: 1, commits: c.sort((a, b) => a[0] - b[0]) }));
const metaDoc = fc
  .record({ index: fc.nat(7), offset: fc.nat(100_000), time: timeArb })
  .map((m) => JSON.stringify({ v: 1, ...m }));
const oddDoc = fc.oneof(
  foreignJson,
  fc.string({ maxLength: 40 }),
  fc.constantFrom(
    '{"v":1,"commits":"x"}',
    '{"v":1,"commits":[[1]]}',
    '{"v":1,"commits":[["a","b"]]}',
    '{"v":1,"commits":[null]}',
    '{"v":1,"commits":{}}',
    '{"v":1,"time":"soon"}',
    '{"v":1,"time":null}',
    "null",
    "[]",
    '"text"',
  ),
);

const genArb = fc
  .record({
    name: fc.constantFrom(...GEN_NAMES),
    snapshots: fc.array(fc.record({ index: fc.nat(6), t: timeArb }), { maxLength: 3 }),
    segments: fc.array(
      fc.record({
        index: fc.nat(7),
        offset: fc.oneof(fc.constant(0), fc.constantFrom(4152, 8272, 12392), fc.nat(50_000)),
        t: timeArb,
      }),
      { maxLength: 10 },
    ),
    docs: fc.array(fc.tuple(fc.nat(20), fc.boolean(), fc.oneof(commitsDoc, metaDoc, oddDoc)), {
      maxLength: 6,
    }),
  })
  .map(({ name, snapshots, segments, docs }) => {
    const extras: Record<string, string> = {};
    for (const [which, isMeta, body] of docs) {
      if (isMeta && snapshots.length > 0)
        extras[metaKey(name, snapshots[which % snapshots.length]!.index)] = body;
      else if (segments.length > 0) {
        const s = segments[which % segments.length]!;
        extras[commitKey(name, s.index, s.offset)] = body;
      }
    }
    return { name, snapshots, segments, extras };
  });

const targetArb = fc.record(
  {
    index: fc.nat(7),
    offset: fc.oneof(fc.constant(0), fc.constantFrom(4152, 8272), fc.nat(50_000)),
    timestamp: fc.integer({ min: T0 - 1000, max: T0 + 101_000 }),
    generation: fc.constantFrom(...GEN_NAMES, "nothex"),
    replica: fc.constantFrom("a", "b"),
  },
  { requiredKeys: [] },
);

function check(cond: boolean, message: string): void {
  if (!cond) throw new Invariant(message);
}

export async function runPlanner(s: PlannerScenario): Promise<void> {
  const target: RestoreTarget = {};
  if (s.target.index !== undefined) target.index = s.target.index;
  if (s.target.offset !== undefined) target.offset = s.target.offset;
  if (s.target.timestamp !== undefined) target.timestamp = new Date(s.target.timestamp);
  if (s.target.generation !== undefined) target.generation = s.target.generation;
  if (s.target.replica !== undefined) target.replica = s.target.replica;
  const client = new FakeListingClient(s);
  const plan = await planRestore([{ name: "a", client }], target);
  if (!plan) return;
  const gen = s.gens.find((g) => g.name === plan.generation);
  check(gen !== undefined, `plan picks an unlisted generation ${plan.generation}`);
  check(target.replica === undefined || target.replica === "a", "plan ignores the replica asked for");
  check(
    target.generation === undefined || target.generation === plan.generation,
    "plan ignores the generation",
  );
  check(
    gen!.snapshots.some((x) => x.index === plan.snapshot.index),
    `plan starts from snapshot ${plan.snapshot.index}, which is not listed`,
  );
  if (target.index !== undefined)
    check(plan.snapshot.index <= target.index, "snapshot past the index asked for");
  let prev: { index: number; offset: number } | undefined;
  for (const seg of plan.segments) {
    check(
      gen!.segments.some((x) => x.index === seg.index && x.offset === seg.offset),
      `plan uses an unlisted segment ${seg.index}/${seg.offset}`,
    );
    if (target.index !== undefined) check(seg.index <= target.index, "segment past the index asked for");
    if (!prev)
      check(
        seg.index === plan.snapshot.index && seg.offset === 0,
        "the first segment is not the snapshot's index at 0",
      );
    else if (seg.index !== prev.index)
      check(seg.index === prev.index + 1 && seg.offset === 0, "a gap between WAL indexes");
    else check(seg.offset > prev.offset, "segments out of order");
    prev = seg;
  }
  if (plan.cut && plan.segments.length > 0)
    check(plan.cut.index >= plan.segments.at(-1)!.index, "cut before the last segment");
  if (target.timestamp !== undefined && plan.lastCommitTime)
    check(
      plan.lastCommitTime.getTime() <= target.timestamp.getTime(),
      "a commit after the timestamp is restored",
    );
}

export const planner: Target<PlannerScenario> = {
  name: "planner",
  what: "restore planner on arbitrary listings and side objects",
  arbitrary: () => fc.record({ gens: fc.array(genArb, { maxLength: 3 }), target: targetArb }),
  decode: (b) => JSON.parse(Buffer.from(b).toString("utf8")) as PlannerScenario,
  encode: (s) => Buffer.from(JSON.stringify(s)),
  run: runPlanner,
};

const g1 = GEN_NAMES[1]!;
/** Hand-written scenarios for the corpus (make-corpus.ts writes them). */
export const PLANNER_SEEDS: PlannerScenario[] = [
  {
    gens: [
      {
        name: g1,
        snapshots: [{ index: 0, t: T0 }],
        segments: [
          { index: 0, offset: 0, t: T0 + 10 },
          { index: 0, offset: 4152, t: T0 + 20 },
          { index: 1, offset: 0, t: T0 + 30 },
        ],
        extras: {
          [commitKey(g1, 0, 0)]: JSON.stringify({ v: 1, commits: [[4152, T0 + 5]] }),
          [commitKey(g1, 0, 4152)]: JSON.stringify({ v: 1, commits: [[8272, T0 + 15]] }),
          [metaKey(g1, 0)]: JSON.stringify({ v: 1, index: 0, offset: 0, time: T0 }),
        },
      },
    ],
    target: { timestamp: T0 + 16 },
  },
  {
    gens: [
      {
        name: g1,
        snapshots: [{ index: 2, t: T0 }],
        segments: [
          { index: 2, offset: 0, t: T0 },
          { index: 4, offset: 0, t: T0 },
        ],
        extras: {},
      },
    ],
    target: {},
  },
  {
    gens: [
      {
        name: g1,
        snapshots: [{ index: 0, t: T0 }],
        segments: [{ index: 0, offset: 0, t: T0 }],
        extras: { [commitKey(g1, 0, 0)]: '{"v":1,"commits":"x"}' },
      },
    ],
    target: { timestamp: T0 + 1 },
  },
  { gens: [], target: { index: 3, offset: 4152 } },
];
