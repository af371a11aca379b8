/**
 * The log lines (src/shared/log.ts). Its JSON lines are held to pino's (the library it replaced,
 * configured as Walship configured it; a dev dependency kept as the oracle) on generated records,
 * byte for byte but for the time; the text format, the levels, values JSON cannot write, and a
 * full non-blocking pipe (a real one, to a real child process) are checked on their own.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import path from "node:path";
import { describe, it } from "node:test";
import { pino } from "pino";
import { createLogger, type LogFields, type LogLevel, nullLogger } from "../../src/shared/log.ts";
import { rng } from "../helpers/rng.ts";

const TIME = /"time":"[^"]*"/;
const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;

/** pino as src/shared/log.ts configured it before it replaced pino, its lines into `lines`. */
function pinoAsBefore(lines: string[]) {
  return pino(
    {
      level: "debug",
      base: null,
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    { write: (l: string) => void lines.push(l) },
  );
}

/** A generated value: what the code logs (strings, numbers, booleans, null, arrays, objects). */
function value(r: () => number, depth = 0): unknown {
  const k = Math.floor(r() * (depth > 1 ? 6 : 8));
  switch (k) {
    case 0:
      return text(r);
    case 1:
      return Math.floor(r() * 2 ** 40) - 2 ** 39;
    case 2:
      return [0.5, -0, 1e21, 2.5e-7, Number.MAX_SAFE_INTEGER, Number.NaN, Number.POSITIVE_INFINITY][
        Math.floor(r() * 7)
      ];
    case 3:
      return r() < 0.5;
    case 4:
      return null;
    case 5:
      return undefined;
    case 6:
      return Array.from({ length: Math.floor(r() * 4) }, () => value(r, depth + 1));
    default:
      return fields(r, depth + 1);
  }
}

const PIECES = [
  "db",
  "/data/app.db",
  " ",
  "\n",
  '"',
  "\\",
  "é",
  "日本",
  "\u0001",
  "\u007f",
  "\u2028",
  "😀",
  "=",
  "",
];

function text(r: () => number): string {
  let s = "";
  for (let n = Math.floor(r() * 6); n > 0; n--) s += PIECES[Math.floor(r() * PIECES.length)];
  return s;
}

function fields(r: () => number, depth = 0): LogFields {
  const out: LogFields = {};
  for (let n = Math.floor(r() * 5); n > 0; n--) {
    const key = text(r) || "k";
    // pino writes the line's own keys first; a field of the same name is a duplicate key in both.
    if (key === "level" || key === "time" || key === "msg") continue;
    out[key] = value(r, depth);
  }
  return out;
}

describe("log lines", () => {
  it("JSON lines are pino's, byte for byte but the time, on 3,000 generated records", () => {
    for (const seed of [1, 2, 3]) {
      const r = rng(seed);
      for (let i = 0; i < 1000; i++) {
        const ours: string[] = [];
        const theirs: string[] = [];
        let a = createLogger({ level: "debug", sink: (l) => void ours.push(l) });
        let b = pinoAsBefore(theirs);
        for (let c = Math.floor(r() * 3); c > 0; c--) {
          const bound = fields(r);
          a = a.child(bound);
          b = b.child(bound);
        }
        const level = (["debug", "info", "warn", "error"] as const)[Math.floor(r() * 4)] as LogLevel;
        const f = fields(r);
        const msg = text(r) || "m";
        // The same call to both: fields and message, fields alone, or a message alone.
        const calls: unknown[][] = [[f, msg], [f], [msg]];
        const call = calls[Math.floor(r() * 3)] as unknown[];
        (a[level] as (...x: unknown[]) => void)(...call);
        (b[level] as (...x: unknown[]) => void)(...call);
        assert.equal(ours.length, 1, `seed ${seed} record ${i}`);
        assert.equal(theirs.length, 1, `seed ${seed} record ${i}`);
        const mine = ours[0] as string;
        assert.match(JSON.parse(mine).time, ISO);
        assert.equal(
          mine.replace(TIME, '"time":"T"'),
          (theirs[0] as string).replace(TIME, '"time":"T"'),
          `seed ${seed} record ${i}`,
        );
      }
    }
  });

  it("writes nothing below its level, and a null logger nothing at all", () => {
    const lines: string[] = [];
    const log = createLogger({ level: "warn", sink: (l) => void lines.push(l) });
    log.debug("d");
    log.info({ a: 1 }, "i");
    log.child({ c: 1 }).info("i");
    log.warn("w");
    log.child({ c: 1 }).error({ e: 2 }, "e");
    assert.deepEqual(
      lines.map((l) => JSON.parse(l).msg),
      ["w", "e"],
    );
    assert.deepEqual(JSON.parse(lines[1] as string), {
      level: "error",
      time: JSON.parse(lines[1] as string).time,
      c: 1,
      e: 2,
      msg: "e",
    });
    const silent = nullLogger();
    silent.error("nothing");
    silent.child({ a: 1 }).error({ b: 2 }, "nothing");
  });

  it("writes a line for values JSON cannot write: bigints, cycles", () => {
    const lines: string[] = [];
    const log = createLogger({ sink: (l) => void lines.push(l) });
    const cyc: Record<string, unknown> = { name: "x" };
    cyc.self = cyc;
    log.info({ big: 12345678901234567890n, cyc, fn: () => 1, u: undefined }, "odd values");
    const rec = JSON.parse(lines[0] as string);
    assert.equal(rec.big, "12345678901234567890");
    assert.deepEqual(rec.cyc, { name: "x", self: "[Circular]" });
    assert.ok(!("fn" in rec) && !("u" in rec));
    assert.equal(rec.msg, "odd values");
  });

  it("text lines: time, level, message, then the fields as key=value", () => {
    const lines: string[] = [];
    const log = createLogger({ format: "text", sink: (l) => void lines.push(l) }).child({
      db: "/data/app.db",
    });
    log.warn({ reason: "two words", n: 3, empty: "", skip: undefined, o: { a: [1] } }, "new generation");
    log.info("plain");
    const [first, second] = lines as [string, string];
    const m =
      /^(\S+) WARN new generation db=\/data\/app\.db reason="two words" n=3 empty="" o=\{"a":\[1\]\}\n$/.exec(
        first,
      );
    assert.ok(m, first);
    assert.match(m[1] as string, ISO);
    assert.match(second, /^\S+ INFO plain db=\/data\/app\.db\n$/);
  });

  it("loses no line to a full non-blocking stdout (EAGAIN): a real child, read slowly", async () => {
    // Python makes the child's stdout non-blocking (as another process sharing the descriptor may)
    // and execs Node, which leaves it so; the child logs 4 MiB and nothing is read for a second, so
    // the socket's buffer fills and its writes answer EAGAIN.
    const logModule = path.join(import.meta.dirname, "../../src/shared/log.ts");
    const script = `
      import { createLogger } from ${JSON.stringify(logModule)};
      const log = createLogger();
      const pad = "x".repeat(4000);
      for (let i = 0; i < 1024; i++) log.info({ i, pad }, "line");
    `;
    const nonBlocking = "import os, sys; os.set_blocking(1, False); os.execv(sys.argv[1], sys.argv[1:])";
    const child = spawn(
      "python3",
      ["-c", nonBlocking, process.execPath, "--input-type=module", "-e", script],
      {
        stdio: ["ignore", "pipe", "pipe"],
      },
    );
    let err = "";
    child.stderr.on("data", (d: Buffer) => {
      err += d.toString();
    });
    const exited = new Promise<number | null>((r) => child.on("close", r));
    const chunks: Buffer[] = [];
    child.stdout.pause();
    await new Promise((r) => setTimeout(r, 1000));
    child.stdout.on("data", (d: Buffer) => chunks.push(d));
    child.stdout.resume();
    assert.equal(await exited, 0, err);
    const lines = Buffer.concat(chunks).toString().split("\n").filter(Boolean);
    assert.equal(lines.length, 1024);
    lines.forEach((l, i) => {
      assert.equal(JSON.parse(l).i, i);
    });
  });
});
