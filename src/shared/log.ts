/**
 * Structured logs. Messages are constant phrases; the facts go in fields:
 * `log.child({ db }).info({ reason }, "new generation")`.
 *
 * JSON lines by default, one object per line, written synchronously (a line is on its way before the
 * call returns, so nothing is lost when the process exits or is killed right after):
 *
 *   {"level":"info","time":"2026-12-07T08:00:11.755Z","db":"/data/app.db","reason":"...","msg":"new generation"}
 *
 * the level as a word, an RFC 3339 time, the child's fields, the call's fields, then the message (the
 * shape pino gave these lines before this module replaced it: loading pino cost every command about
 * 14 ms of its start). `text` gives a one-line human format for terminals:
 *
 *   2026-12-07T08:00:11.755Z INFO new generation db=/data/app.db reason="..."
 */
import { writeSync } from "node:fs";

export type LogFormat = "json" | "text";
export type LogLevel = "debug" | "info" | "warn" | "error";

/** Fields of a line: a value is written as JSON (undefined leaves the field out). */
export type LogFields = Record<string, unknown>;

export interface LogFn {
  (msg: string): void;
  (fields: LogFields, msg?: string): void;
}

export interface Logger {
  debug: LogFn;
  info: LogFn;
  warn: LogFn;
  error: LogFn;
  /** A logger whose every line carries `fields` (after its parent's). */
  child(fields: LogFields): Logger;
}

export interface LogOptions {
  level?: LogLevel;
  format?: LogFormat;
  /** Write to stderr instead of stdout (Litestream's `logging.stderr`). */
  stderr?: boolean;
  /** Where each line goes instead of stdout or stderr (tests); it gets the line with its newline. */
  sink?: (line: string) => void;
}

const RANK: Record<LogLevel | "silent", number> = { debug: 20, info: 30, warn: 40, error: 50, silent: 100 };

export function createLogger(opts: LogOptions = {}): Logger {
  const fd = opts.stderr ? 2 : 1;
  const out = opts.sink ?? ((line: string) => writeLine(fd, line));
  return new LineLogger(RANK[opts.level ?? "info"], opts.format === "text", out, []);
}

/** A silent logger for library use and tests. */
export function nullLogger(): Logger {
  return new LineLogger(RANK.silent, false, () => {}, []);
}

/** One child's fields, written once for each format: `"k":v,...` for JSON, `k=v ...` for text. */
interface Bound {
  json: string;
  text: string;
}

class LineLogger implements Logger {
  readonly #min: number;
  readonly #text: boolean;
  readonly #out: (line: string) => void;
  readonly #bound: Bound[];
  readonly debug: LogFn;
  readonly info: LogFn;
  readonly warn: LogFn;
  readonly error: LogFn;

  constructor(min: number, text: boolean, out: (line: string) => void, bound: Bound[]) {
    this.#min = min;
    this.#text = text;
    this.#out = out;
    this.#bound = bound;
    this.debug = this.#fn("debug");
    this.info = this.#fn("info");
    this.warn = this.#fn("warn");
    this.error = this.#fn("error");
  }

  child(fields: LogFields): Logger {
    const json: string[] = [];
    const text: string[] = [];
    for (const [k, v] of Object.entries(fields)) {
      const j = jsonValue(v);
      if (j === undefined) continue;
      json.push(`${JSON.stringify(k)}:${j}`);
      text.push(`${k}=${textValue(v, j)}`);
    }
    return new LineLogger(this.#min, this.#text, this.#out, [
      ...this.#bound,
      { json: json.join(","), text: text.join(" ") },
    ]);
  }

  #fn(level: LogLevel): LogFn {
    if (RANK[level] < this.#min) return () => {};
    return ((a: LogFields | string, b?: string) => {
      const [fields, msg] = typeof a === "string" ? [undefined, a] : [a, b];
      this.#out(this.#text ? this.#textLine(level, fields, msg) : this.#jsonLine(level, fields, msg));
    }) as LogFn;
  }

  #jsonLine(level: LogLevel, fields: LogFields | undefined, msg: string | undefined): string {
    let line = `{"level":"${level}","time":"${new Date().toISOString()}"`;
    for (const b of this.#bound) if (b.json) line += `,${b.json}`;
    if (fields) {
      for (const k of Object.keys(fields)) {
        const j = jsonValue(fields[k]);
        if (j !== undefined) line += `,${JSON.stringify(k)}:${j}`;
      }
    }
    if (msg !== undefined) line += `,"msg":${JSON.stringify(msg)}`;
    return `${line}}\n`;
  }

  #textLine(level: LogLevel, fields: LogFields | undefined, msg: string | undefined): string {
    const rest: string[] = [];
    for (const b of this.#bound) if (b.text) rest.push(b.text);
    if (fields) {
      for (const [k, v] of Object.entries(fields)) {
        const j = jsonValue(v);
        if (j !== undefined) rest.push(`${k}=${textValue(v, j)}`);
      }
    }
    return `${new Date().toISOString()} ${level.toUpperCase()} ${msg ?? ""}${rest.length ? ` ${rest.join(" ")}` : ""}\n`;
  }
}

/** A text line's value: a string without spaces as it is, anything else as JSON (`json`). */
function textValue(v: unknown, json: string): string {
  return typeof v === "string" && v !== "" && !/\s/.test(v) ? v : json;
}

/**
 * A value as JSON, or undefined for a field to leave out (undefined, a function, a symbol, as JSON
 * leaves them out of an object). What JSON.stringify cannot write still makes a line: a bigint as a
 * string of its digits, a cycle as "[Circular]".
 */
function jsonValue(v: unknown): string | undefined {
  try {
    return JSON.stringify(v);
  } catch {
    const seen = new WeakSet<object>();
    return JSON.stringify(v, (_k, x: unknown) => {
      if (typeof x === "bigint") return x.toString();
      if (typeof x === "object" && x !== null) {
        if (seen.has(x)) return "[Circular]";
        seen.add(x);
      }
      return x;
    });
  }
}

/**
 * Writes a whole line to `fd`. A pipe left non-blocking by another reader of the descriptor can
 * answer EAGAIN when full: the write waits a moment and goes on, so no line is lost or cut. A reader
 * that has gone (EPIPE) gets nothing more; logging must not stop the work.
 */
function writeLine(fd: number, line: string): void {
  const buf = Buffer.from(line, "utf8");
  let done = 0;
  while (done < buf.length) {
    try {
      done += writeSync(fd, buf, done, buf.length - done);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === "EAGAIN") {
        Atomics.wait(PAUSE, 0, 0, 5);
        continue;
      }
      if (code === "EPIPE") return;
      throw err;
    }
  }
}

const PAUSE = new Int32Array(new SharedArrayBuffer(4));
