/**
 * Bad input, CLI arguments: each case gets a usage or config error with its code that names the flag,
 * file or argument, fails fast (never starts replicating), writes no output, and leaves the replica
 * and the database as they were. Case ids (A1...) are the rows of the table in
 * docs/reliability-bad-input.md.
 */
import assert from "node:assert/strict";
import { mkdirSync, readdirSync } from "node:fs";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import {
  assertNothingLost,
  errorCode,
  type Replicated,
  replicateSample,
  walshipWithin,
} from "../helpers/bad-input.ts";
import { makeTempDir, removeTempDir } from "../helpers/proc.ts";

let dir = "";
let r: Replicated;
let outDir = "";

before(async () => {
  dir = makeTempDir("badargs");
  r = await replicateSample(dir, 23);
  outDir = path.join(dir, "out");
  mkdirSync(outDir);
});
after(() => removeTempDir(dir));

interface Case {
  id: string;
  what: string;
  args: () => string[];
  exit: number;
  code: string;
  mention: RegExp;
}

const out = () => path.join(outDir, "x.db");
const url = () => `file://${r.replica}`;

const CASES: Case[] = [
  {
    id: "A1",
    what: "restore with no database or URL",
    args: () => ["restore"],
    exit: 2,
    code: "USAGE",
    mention: /database path or replica URL is required/,
  },
  {
    id: "A2",
    what: "a flag without its value (-o)",
    args: () => ["restore", "-o"],
    exit: 2,
    code: "USAGE",
    mention: /-o needs a value/,
  },
  {
    id: "A3",
    what: "-index not hex",
    args: () => ["restore", "-index", "zz", "-o", out(), url()],
    exit: 2,
    code: "USAGE",
    mention: /invalid -index "zz"/,
  },
  {
    id: "A4",
    what: "-index with -timestamp",
    args: () => ["restore", "-index", "1", "-timestamp", "2024-01-01T00:00:00Z", "-o", out(), url()],
    exit: 2,
    code: "USAGE",
    mention: /-index and -timestamp cannot be combined/,
  },
  {
    id: "A5",
    what: "-timestamp not RFC 3339",
    args: () => ["restore", "-timestamp", "yesterday", "-o", out(), url()],
    exit: 2,
    code: "USAGE",
    mention: /invalid -timestamp "yesterday".*RFC 3339/,
  },
  {
    id: "A6",
    what: "-timestamp out of range (month 13)",
    args: () => ["restore", "-timestamp", "2024-13-45T99:00:00Z", "-o", out(), url()],
    exit: 2,
    code: "USAGE",
    mention: /invalid -timestamp/,
  },
  {
    id: "A7",
    what: "-parallelism 0",
    args: () => ["restore", "-parallelism", "0", "-o", out(), url()],
    exit: 2,
    code: "USAGE",
    mention: /-parallelism must be a positive integer/,
  },
  {
    id: "A8",
    what: "-parallelism not a number",
    args: () => ["restore", "-parallelism", "many", "-o", out(), url()],
    exit: 2,
    code: "USAGE",
    mention: /-parallelism/,
  },
  {
    id: "A9",
    what: "-generation not a generation name",
    args: () => ["restore", "-generation", "xyz", "-o", out(), url()],
    exit: 2,
    code: "USAGE",
    mention: /invalid -generation "xyz"/,
  },
  {
    id: "A10",
    what: "-replica naming no replica of the database",
    args: () => ["restore", "-config", r.config, "-replica", "nosuch", "-o", out(), r.db],
    exit: 2,
    code: "USAGE",
    mention: /no replica named "nosuch"/,
  },
  {
    id: "A11",
    what: "a boolean flag given a non-boolean",
    args: () => ["restore", "-if-db-not-exists=maybe", "-o", out(), url()],
    exit: 2,
    code: "USAGE",
    mention: /-if-db-not-exists takes true or false/,
  },
  {
    id: "A12",
    what: "an unknown flag",
    args: () => ["restore", "-bogus", "-o", out(), url()],
    exit: 2,
    code: "USAGE",
    mention: /unknown flag -bogus/,
  },
  {
    id: "A13",
    what: "an unknown command",
    args: () => ["frobnicate"],
    exit: 1,
    code: "USAGE",
    mention: /walship frobnicate: unknown command/,
  },
  {
    id: "A14",
    what: "replicate a database with no replica URL",
    args: () => ["replicate", r.db],
    exit: 2,
    code: "USAGE",
    mention: /needs at least one replica URL/,
  },
  {
    id: "A15",
    what: "a replica URL of an unknown scheme",
    args: () => ["restore", "-o", out(), "ftp://host/x"],
    exit: 1,
    code: "CONFIG",
    mention: /unknown replica type "ftp"/,
  },
  {
    id: "A16",
    what: "-config naming a missing file",
    args: () => ["replicate", "-config", path.join(dir, "nope.yml")],
    exit: 1,
    code: "CONFIG",
    mention: /read config .*nope\.yml: file not found/,
  },
  {
    id: "A17",
    what: "-config naming a directory",
    args: () => ["replicate", "-config", dir],
    exit: 1,
    code: "CONFIG",
    mention: /read config .*: cannot read file/,
  },
  {
    id: "A18",
    what: "a database that is not in the config",
    args: () => ["restore", "-config", r.config, "-o", out(), path.join(dir, "other.db")],
    exit: 1,
    code: "CONFIG",
    mention: /other\.db is not in config/,
  },
  {
    id: "A19",
    what: "-exec without a command",
    args: () => ["replicate", "-exec"],
    exit: 2,
    code: "USAGE",
    mention: /-exec needs a value/,
  },
  {
    id: "A20",
    what: "restore from a URL without -o",
    args: () => ["restore", url()],
    exit: 2,
    code: "USAGE",
    mention: /-o is required when restoring from a URL/,
  },
];

describe("bad input: CLI arguments", () => {
  for (const c of CASES) {
    it(`${c.id} ${c.what}`, async () => {
      const res = await walshipWithin(c.args(), 20_000);
      assert.equal(res.timedOut, false, "fails fast");
      assert.equal(res.code, c.exit, res.stderr);
      assert.equal(errorCode(res.stderr), `WALSHIP_ERR_${c.code}`, res.stderr);
      assert.match(res.stderr, c.mention);
      assert.deepEqual(readdirSync(outDir), [], "no output written");
    });
  }
  it("nothing already replicated is lost", async () => {
    await assertNothingLost(r, dir);
  });
});
