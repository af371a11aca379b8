/**
 * The fuzzing harness: property tests with fast-check, run for a set time or a set number of inputs.
 *
 * A target is a function of one input that must either succeed or throw a WalshipError (the error
 * catalogue in src/shared/errors.ts); anything else (a TypeError, a RangeError, a hang, a broken
 * invariant reported with `Invariant`) is a finding. Byte targets draw their inputs from the
 * committed corpus (test/fuzz/corpus/<target>/), mutated: bit flips, interesting u32 values at
 * aligned offsets, truncations, insertions, deletions, duplicated runs and splices with another
 * corpus entry, plus plain random bytes. Structured targets (the restore planner, the config loader)
 * bring their own arbitraries.
 *
 * A finding is shrunk by fast-check and written to test/fuzz/corpus/<target>/crash-<hash>, so the
 * corpus replay (test/unit/fuzz.test.ts) fails until it is fixed, and keeps the fix honest afterwards.
 */
import { createHash } from "node:crypto";
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import fc from "fast-check";
import { WalshipError } from "../../src/shared/errors.ts";

export const CORPUS_ROOT = path.join(path.dirname(fileURLToPath(import.meta.url)), "corpus");

/** A property that does not hold for an input the code accepted (a wrong answer, not a crash). */
export class Invariant extends Error {
  override name = "Invariant";
}

export interface Target<T> {
  name: string;
  /** What it covers, for the report. */
  what: string;
  /** The inputs; byte targets build theirs from the corpus with `mutatedBytes`. */
  arbitrary(corpus: Uint8Array[]): fc.Arbitrary<T>;
  /** Corpus file bytes -> input (the replay). */
  decode(bytes: Uint8Array): T;
  /** Input -> corpus file bytes (to save a finding). */
  encode(input: T): Uint8Array;
  /** Runs one input: returns, or throws a WalshipError; anything else is a finding. */
  run(input: T): void | Promise<void>;
}

/** Runs one input and turns anything but success or a WalshipError into a thrown finding. */
export async function runOne<T>(target: Target<T>, input: T): Promise<void> {
  try {
    await target.run(input);
  } catch (err) {
    if (err instanceof WalshipError) return;
    throw err;
  }
}

export function corpusDir(name: string): string {
  return path.join(CORPUS_ROOT, name);
}

/** The corpus files of a target, sorted by name (empty if it has none yet). */
export function loadCorpus(name: string): Array<{ file: string; bytes: Uint8Array }> {
  const dir = corpusDir(name);
  let names: string[];
  try {
    names = readdirSync(dir).sort();
  } catch {
    return [];
  }
  return names.map((n) => ({
    file: path.join(dir, n),
    bytes: new Uint8Array(readFileSync(path.join(dir, n))),
  }));
}

export function saveCorpusEntry(name: string, bytes: Uint8Array, prefix = ""): string {
  const dir = corpusDir(name);
  mkdirSync(dir, { recursive: true });
  const file = path.join(dir, `${prefix}${createHash("sha1").update(bytes).digest("hex").slice(0, 16)}`);
  writeFileSync(file, bytes);
  return file;
}

// ---------------------------------------------------------------------------------------------------
// Byte mutations

/** Values that break length and offset arithmetic when they land in a u32 field. */
const INTERESTING_U32 = [
  0, 1, 2, 7, 8, 24, 32, 255, 256, 511, 512, 1024, 4096, 4097, 32768, 65535, 65536, 65537, 0x7fff, 0x8000,
  0xffff, 0x10000, 0x3fffff, 0x400000, 0x400001, 0x7fffffff, 0x80000000, 0x80000001, 0xfffffffe, 0xffffffff,
  0x377f0682, 0x377f0683, 3007000, 0x184d2204, 0x184d2a50,
];

type Mutation =
  | { k: "flip"; at: number; bit: number }
  | { k: "set"; at: number; v: number }
  | { k: "u32"; at: number; v: number; le: boolean }
  | { k: "truncate"; at: number }
  | { k: "insert"; at: number; bytes: Uint8Array }
  | { k: "delete"; at: number; len: number }
  | { k: "dup"; at: number; len: number }
  | { k: "splice"; at: number; other: number; from: number };

const mutationArb: fc.Arbitrary<Mutation> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ k: fc.constant("flip" as const), at: fc.nat(), bit: fc.nat(7) }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant("set" as const), at: fc.nat(), v: fc.nat(255) }) },
  {
    weight: 3,
    arbitrary: fc.record({
      k: fc.constant("u32" as const),
      at: fc.nat(),
      v: fc.oneof(fc.constantFrom(...INTERESTING_U32), fc.nat({ max: 0xffffffff })),
      le: fc.boolean(),
    }),
  },
  { weight: 2, arbitrary: fc.record({ k: fc.constant("truncate" as const), at: fc.nat() }) },
  {
    weight: 1,
    arbitrary: fc.record({
      k: fc.constant("insert" as const),
      at: fc.nat(),
      bytes: fc.uint8Array({ minLength: 1, maxLength: 64 }),
    }),
  },
  { weight: 1, arbitrary: fc.record({ k: fc.constant("delete" as const), at: fc.nat(), len: fc.nat(600) }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant("dup" as const), at: fc.nat(), len: fc.nat(600) }) },
  {
    weight: 1,
    arbitrary: fc.record({
      k: fc.constant("splice" as const),
      at: fc.nat(),
      other: fc.nat(),
      from: fc.nat(),
    }),
  },
);

/** Applies mutations in order; positions are taken modulo the current length. */
export function mutate(
  base: Uint8Array,
  muts: readonly Mutation[],
  corpus: readonly Uint8Array[],
): Uint8Array {
  let b: Uint8Array = Uint8Array.from(base);
  for (const m of muts) {
    const n = b.length;
    switch (m.k) {
      case "flip":
        if (n > 0) b[m.at % n]! ^= 1 << m.bit;
        break;
      case "set":
        if (n > 0) b[m.at % n] = m.v;
        break;
      case "u32": {
        if (n < 4) break;
        // Mostly on 4-byte boundaries, where the formats keep their fields.
        const at = (m.at % (n - 3)) & ~3;
        new DataView(b.buffer, b.byteOffset, b.byteLength).setUint32(at, m.v >>> 0, m.le);
        break;
      }
      case "truncate":
        b = b.subarray(0, n === 0 ? 0 : m.at % n);
        break;
      case "insert": {
        const at = n === 0 ? 0 : m.at % (n + 1);
        b = concat(b.subarray(0, at), m.bytes, b.subarray(at));
        break;
      }
      case "delete": {
        const at = n === 0 ? 0 : m.at % n;
        b = concat(b.subarray(0, at), b.subarray(at + m.len));
        break;
      }
      case "dup": {
        const at = n === 0 ? 0 : m.at % n;
        const run = b.subarray(at, at + m.len);
        b = concat(b.subarray(0, at + run.length), run, b.subarray(at + run.length));
        break;
      }
      case "splice": {
        const other = corpus.length > 0 ? corpus[m.other % corpus.length]! : new Uint8Array(0);
        const at = n === 0 ? 0 : m.at % n;
        const from = other.length === 0 ? 0 : m.from % other.length;
        b = concat(b.subarray(0, at), other.subarray(from));
        break;
      }
    }
  }
  return b;
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((s, p) => s + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** Corpus entries as they are, mutated a few times, or random bytes. */
export function mutatedBytes(corpus: readonly Uint8Array[], maxRandom = 2048): fc.Arbitrary<Uint8Array> {
  const random = fc.uint8Array({ maxLength: maxRandom });
  if (corpus.length === 0) return random;
  return fc.oneof(
    { weight: 1, arbitrary: random },
    { weight: 1, arbitrary: fc.nat(corpus.length - 1).map((i) => corpus[i]!) },
    {
      weight: 8,
      arbitrary: fc
        .tuple(fc.nat(corpus.length - 1), fc.array(mutationArb, { minLength: 1, maxLength: 6 }))
        .map(([i, muts]) => mutate(corpus[i]!, muts, corpus)),
    },
  );
}

/** How a byte stream is cut into chunks: cut points as fractions, so they shrink well. */
export const chunkingArb = fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { maxLength: 6 });

export function chunks(bytes: Uint8Array, cuts: readonly number[]): Uint8Array[] {
  const at = [...new Set(cuts.map((c) => Math.floor(c * bytes.length)))].sort((a, b) => a - b);
  const out: Uint8Array[] = [];
  let prev = 0;
  for (const c of at) {
    out.push(bytes.subarray(prev, c));
    prev = c;
  }
  out.push(bytes.subarray(prev));
  return out;
}

// ---------------------------------------------------------------------------------------------------
// Running

export interface FuzzFigures {
  target: string;
  what: string;
  /** Inputs run (corpus replay not included). */
  executions: number;
  ms: number;
  corpusEntries: number;
  seed: number;
  /** Findings: the shrunk input saved to the corpus and the error it raised. */
  failures: Array<{ file: string; error: string }>;
}

/** Replays every corpus entry of a target; returns the entries that fail. */
export async function replayCorpus<T>(target: Target<T>): Promise<Array<{ file: string; error: unknown }>> {
  const bad: Array<{ file: string; error: unknown }> = [];
  for (const { file, bytes } of loadCorpus(target.name)) {
    try {
      await runOne(target, target.decode(bytes));
    } catch (error) {
      bad.push({ file, error });
    }
  }
  return bad;
}

/**
 * Runs a target on generated inputs for `ms` milliseconds (or `runs` inputs, whichever ends first).
 * A finding is shrunk, saved to the corpus (unless `save` is false) and returned in `failures`.
 */
export async function fuzzTarget<T>(
  target: Target<T>,
  opts: { ms: number; runs?: number; seed?: number; save?: boolean },
): Promise<FuzzFigures> {
  const corpus = loadCorpus(target.name)
    .filter((e) => !path.basename(e.file).startsWith("crash-"))
    .map((e) => e.bytes);
  const seed = opts.seed ?? (Date.now() ^ (Math.random() * 0x7fffffff)) | 0;
  let executions = 0;
  const started = performance.now();
  const prop = fc.asyncProperty(target.arbitrary(corpus), async (input) => {
    executions++;
    await runOne(target, input);
  });
  const details = await fc.check(prop, {
    seed,
    numRuns: opts.runs ?? Number.MAX_SAFE_INTEGER,
    interruptAfterTimeLimit: opts.ms,
    markInterruptAsFailure: false,
    endOnFailure: false,
  });
  const failures: FuzzFigures["failures"] = [];
  if (details.failed && details.counterexample) {
    const input = details.counterexample[0] as T;
    const bytes = target.encode(input);
    const file = opts.save === false ? "(not saved)" : saveCorpusEntry(target.name, bytes, "crash-");
    const err = details.errorInstance;
    failures.push({
      file,
      error: err instanceof Error ? `${err.name}: ${err.message}`.slice(0, 500) : String(err),
    });
  }
  return {
    target: target.name,
    what: target.what,
    executions,
    ms: Math.round(performance.now() - started),
    corpusEntries: corpus.length,
    seed,
    failures,
  };
}
