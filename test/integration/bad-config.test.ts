/**
 * Bad input, configs: each broken config makes `replicate` and `restore` fail fast with a CONFIG error
 * that names the key (or the line, for YAML syntax), and leaves the replica and the database as they
 * were. Case ids (C1...) are the rows of the table in docs/reliability-bad-input.md; hostile Secret
 * values are in bad-secrets.test.ts.
 */
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
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

before(async () => {
  dir = makeTempDir("badconfig");
  r = await replicateSample(dir, 29);
});
after(() => removeTempDir(dir));

/** A config for the sample database: `db` lines go under the database, `rep` replaces its replica list. */
function cfg(o: { top?: string; db?: string; rep?: string; whole?: string }): string {
  if (o.whole !== undefined) return o.whole;
  return `${o.top ?? ""}dbs:
  - path: ${r.db}
${o.db ?? ""}    replicas:
${o.rep ?? `      - url: file://${r.replica}\n`}`;
}
const rep = (lines: string) => `      - url: file://${r.replica}\n${lines}`;

interface Case {
  id: string;
  what: string;
  text: () => string;
  /** What the error must name: the key path, or the line for YAML syntax. */
  names: RegExp;
}

const ALIAS_BOMB = ["a: &a [x,x,x,x,x,x,x,x,x,x]"]
  .concat(["b", "c", "d", "e"].map((k, i) => `${k}: &${k} [${Array(10).fill(`*${"abcd"[i]}`).join(",")}]`))
  .join("\n");

const CASES: Case[] = [
  {
    id: "C1",
    what: "a duration with an unknown unit",
    text: () => cfg({ rep: rep("        sync-interval: 5parsecs\n") }),
    names: /dbs\[0\]\.replicas\[0\]\.sync-interval: invalid duration "5parsecs"/,
  },
  {
    id: "C2",
    what: "an unknown replica type",
    text: () => cfg({ rep: "      - type: ftp\n        path: /x\n" }),
    names: /dbs\[0\]\.replicas\[0\]\.type: unknown replica type "ftp"/,
  },
  {
    id: "C3",
    what: "a replica URL of an unknown scheme",
    text: () => cfg({ rep: "      - url: ftp://host/x\n" }),
    names: /dbs\[0\]\.replicas\[0\]\.url: unknown replica type "ftp"/,
  },
  {
    id: "C4",
    what: "an S3 URL without a bucket",
    text: () => cfg({ rep: "      - url: s3://\n" }),
    names: /dbs\[0\]\.replicas\[0\]\.url: bucket required/,
  },
  {
    id: "C5",
    what: "a negative retention",
    text: () => cfg({ rep: rep("        retention: -1h\n") }),
    names: /dbs\[0\]\.replicas\[0\]\.retention: .*must not be negative/,
  },
  {
    id: "C6",
    what: "a database interval that is not a duration",
    text: () => cfg({ db: "    monitor-interval: abc\n" }),
    names: /dbs\[0\]\.monitor-interval: invalid duration/,
  },
  {
    id: "C7",
    what: "dbs is not a list",
    text: () => cfg({ whole: "dbs: foo\n" }),
    names: /dbs: expected a list/,
  },
  {
    id: "C8",
    what: "a database without a path",
    text: () => cfg({ whole: `dbs:\n  - replicas:\n      - url: file://${r.replica}\n` }),
    names: /dbs\[0\]\.path: database path required/,
  },
  {
    id: "C9",
    what: "the same database twice",
    text: () => cfg({ whole: `dbs:\n  - path: ${r.db}\n  - path: ${r.db}\n` }),
    names: /dbs\[1\]\.path: database .* is already listed at dbs\[0\]/,
  },
  {
    id: "C10",
    what: "a key given twice",
    text: () => cfg({ db: "    monitor-interval: 1s\n    monitor-interval: 2s\n" }),
    names: /line 4, column 5: Map keys must be unique/,
  },
  {
    id: "C11",
    what: "a tab as indentation",
    text: () => cfg({ whole: `dbs:\n\t- path: ${r.db}\n` }),
    names: /line 2, column 1: Tabs are not allowed/,
  },
  {
    id: "C12",
    what: "a listen address with port 99999",
    text: () => cfg({ top: "addr: 127.0.0.1:99999\n" }),
    names: /addr: invalid listen address "127\.0\.0\.1:99999"/,
  },
  {
    id: "C13",
    what: "a listen address that is not one",
    text: () => cfg({ top: "addr: not an address\n" }),
    names: /addr: invalid listen address/,
  },
  {
    id: "C14",
    what: "a negative page count",
    text: () => cfg({ db: "    min-checkpoint-page-count: -5\n" }),
    names: /dbs\[0\]\.min-checkpoint-page-count: must be greater than 0/,
  },
  {
    id: "C15",
    what: "a page count that is not a number",
    text: () => cfg({ db: "    min-checkpoint-page-count: abc\n" }),
    names: /dbs\[0\]\.min-checkpoint-page-count: invalid integer "abc"/,
  },
  {
    id: "C16",
    what: "both replica and replicas",
    text: () => cfg({ db: `    replica:\n      url: file://${r.replica}\n` }),
    names: /dbs\[0\]\.replica: cannot set both replica and replicas/,
  },
  {
    id: "C17",
    what: "a boolean that is not one (skip-verify)",
    text: () => cfg({ rep: "      - url: s3://b/p\n        skip-verify: maybe\n" }),
    names: /dbs\[0\]\.replicas\[0\]\.skip-verify: invalid boolean "maybe"/,
  },
  {
    id: "C18",
    what: "a boolean that is not one (force-path-style)",
    text: () => cfg({ rep: "      - url: s3://b/p\n        force-path-style: perhaps\n" }),
    names: /dbs\[0\]\.replicas\[0\]\.force-path-style: invalid boolean/,
  },
  {
    id: "C19",
    what: "binary garbage instead of YAML",
    text: () => cfg({ whole: "\u0000\u0001\u0002garbage\u00ff" }),
    names: /\(root\): expected a mapping/,
  },
  {
    id: "C20",
    what: "an SFTP URL with port 99999",
    text: () => cfg({ rep: "      - url: sftp://u@h:99999/x\n" }),
    names: /dbs\[0\]\.replicas\[0\]\.url: invalid url/,
  },
  {
    id: "C21",
    what: "retention-check-interval not a duration",
    text: () => cfg({ rep: rep("        retention-check-interval: abc\n") }),
    names: /dbs\[0\]\.replicas\[0\]\.retention-check-interval: invalid duration/,
  },
  {
    id: "C22",
    what: "a list where a path belongs",
    text: () => cfg({ rep: "      - type: file\n        path: [a, b]\n" }),
    names: /dbs\[0\]\.replicas\[0\]\.path: expected a string/,
  },
  {
    id: "C23",
    what: "both url and path on a replica",
    text: () => cfg({ rep: rep("        path: /tmp/q\n") }),
    names: /dbs\[0\]\.replicas\[0\]\.url: cannot set both url and path/,
  },
  {
    id: "C24",
    what: "a duration in exponent notation",
    text: () => cfg({ rep: rep("        sync-interval: 1e309s\n") }),
    names: /dbs\[0\]\.replicas\[0\]\.sync-interval: invalid duration "1e309s"/,
  },
  {
    id: "C25",
    what: "a duration out of range",
    text: () => cfg({ rep: rep("        sync-interval: 99999999999999h\n") }),
    names: /sync-interval: invalid duration "99999999999999h": out of range/,
  },
  {
    id: "C26",
    what: "two replicas with one name",
    text: () =>
      cfg({
        rep: `      - name: a\n        url: file://${r.replica}\n      - name: a\n        url: file://${dir}/q\n`,
      }),
    names: /dbs\[0\]\.replicas\[1\]\.name: duplicate replica name "a"/,
  },
  {
    id: "C27",
    what: "a YAML alias bomb",
    text: () => cfg({ top: `${ALIAS_BOMB}\n` }),
    names: /document too large/,
  },
  {
    id: "C28",
    what: "an S3 endpoint that is not a URL",
    text: () => cfg({ rep: "      - url: s3://b/p\n        endpoint: ://nope\n" }),
    names: /dbs\[0\]\.replicas\[0\]\.endpoint: invalid endpoint "\/\/nope"|endpoint: invalid endpoint/,
  },
  {
    id: "C29",
    what: "a GCS URL without a bucket",
    text: () => cfg({ rep: "      - url: gcs://\n" }),
    names: /dbs\[0\]\.replicas\[0\]\.url: bucket required for gcs replica/,
  },
  {
    id: "C30",
    what: "validation-interval not a duration",
    text: () => cfg({ rep: rep("        validation-interval: soon\n") }),
    names: /validation-interval: invalid duration "soon"/,
  },
  {
    id: "C31",
    what: "a negative busy-timeout",
    text: () => cfg({ db: "    busy-timeout: -1s\n" }),
    names: /dbs\[0\]\.busy-timeout: .*must not be negative/,
  },
  {
    id: "C32",
    what: "checkpoint-interval not a duration",
    text: () => cfg({ db: "    checkpoint-interval: abc\n" }),
    names: /dbs\[0\]\.checkpoint-interval: invalid duration/,
  },
  {
    id: "C33",
    what: "shutdown-sync-timeout not a duration",
    text: () => cfg({ top: "shutdown-sync-timeout: abc\n" }),
    names: /shutdown-sync-timeout: invalid duration/,
  },
  {
    id: "C34",
    what: "exec given as a list",
    text: () => cfg({ top: "exec: [a, b]\n" }),
    names: /exec: expected a string/,
  },
  {
    id: "C35",
    what: "meta-path given as a list",
    text: () => cfg({ db: "    meta-path: [a]\n" }),
    names: /dbs\[0\]\.meta-path: expected a string/,
  },
  {
    id: "C36",
    what: "region given as a list",
    text: () => cfg({ rep: "      - url: s3://b/p\n        region: [us]\n" }),
    names: /dbs\[0\]\.replicas\[0\]\.region: expected a string/,
  },
];

describe("bad input: configs", () => {
  for (const c of CASES) {
    it(`${c.id} ${c.what}`, async () => {
      const file = path.join(dir, `${c.id}.yml`);
      writeFileSync(file, c.text());
      for (const args of [
        ["replicate", "-config", file],
        ["restore", "-config", file, "-o", path.join(dir, `${c.id}.db`), r.db],
      ]) {
        const res = await walshipWithin(args, 20_000);
        assert.equal(res.timedOut, false, `${args[0]} fails fast`);
        assert.equal(res.code, 1, res.stderr);
        assert.equal(errorCode(res.stderr), "WALSHIP_ERR_CONFIG", res.stderr);
        assert.match(res.stderr, c.names);
        assert.match(res.stderr, new RegExp(`${c.id}\\.yml`), "the error names the file");
      }
    });
  }

  it("C37 access-key-id without secret-access-key", async () => {
    const file = path.join(dir, "C37.yml");
    writeFileSync(
      file,
      cfg({
        rep: "      - url: s3://bucket/p\n        endpoint: http://127.0.0.1:1\n        access-key-id: AKIAEXAMPLE\n",
      }),
    );
    for (const args of [
      ["replicate", "-config", file],
      ["restore", "-config", file, "-o", path.join(dir, "C37.db"), r.db],
    ]) {
      const res = await walshipWithin(args, 20_000, { AWS_EC2_METADATA_DISABLED: "true" });
      assert.equal(res.timedOut, false, `${args[0]} fails fast`);
      assert.equal(errorCode(res.stderr), "WALSHIP_ERR_CONFIG", res.stderr);
      assert.match(res.stderr, /secret-access-key is empty while the other key is set/);
      assert.doesNotMatch(res.stderr, /AKIAEXAMPLE/, "the key id is not echoed");
    }
  });

  it("nothing already replicated is lost", async () => {
    await assertNothingLost(r, dir);
  });
});
