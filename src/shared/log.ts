/**
 * Structured logs. Messages are constant phrases; the facts go in fields:
 * `log.child({ db }).info({ reason }, "new generation")`. JSON lines (pino) by default; `text` gives a
 * one-line human format for terminals.
 */
import { type Logger, pino } from "pino";

export type { Logger } from "pino";

export type LogFormat = "json" | "text";
export type LogLevel = "debug" | "info" | "warn" | "error";

export interface LogOptions {
  level?: LogLevel;
  format?: LogFormat;
  /** Write to stderr instead of stdout (Litestream's `logging.stderr`). */
  stderr?: boolean;
}

export function createLogger(opts: LogOptions = {}): Logger {
  const fd = opts.stderr ? 2 : 1;
  const level = opts.level ?? "info";
  if (opts.format === "text") {
    return pino({ level, base: null, timestamp: false }, textDestination(fd));
  }
  return pino(
    {
      level,
      base: null,
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    pino.destination({ fd, sync: true }),
  );
}

/** A silent logger for library use and tests. */
export function nullLogger(): Logger {
  return pino({ level: "silent" });
}

function textDestination(fd: number): { write(line: string): void } {
  const out = fd === 2 ? process.stderr : process.stdout;
  return {
    write(line: string) {
      let rec: Record<string, unknown>;
      try {
        rec = JSON.parse(line) as Record<string, unknown>;
      } catch {
        out.write(line);
        return;
      }
      const { level, msg, time: _time, ...rest } = rec;
      const label = typeof level === "number" ? levelName(level) : String(level);
      const fields = Object.entries(rest)
        .map(([k, v]) => `${k}=${typeof v === "string" && !/\s/.test(v) ? v : JSON.stringify(v)}`)
        .join(" ");
      out.write(
        `${new Date().toISOString()} ${label.toUpperCase()} ${String(msg ?? "")}${fields ? ` ${fields}` : ""}\n`,
      );
    },
  };
}

function levelName(n: number): string {
  if (n >= 50) return "error";
  if (n >= 40) return "warn";
  if (n >= 30) return "info";
  return "debug";
}
