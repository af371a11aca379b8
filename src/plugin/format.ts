/** How the plugin writes times, ages and sizes for people. Pure. */
import { table } from "../shared/flags.ts";

/**
 * A duration as kubectl shows ages: `45s`, `3m12s`, `45m`, `3h45m`, `40h`, `5d3h`, `30d`. Negative
 * durations (a clock ahead of ours) read as `0s`.
 */
export function humanDuration(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  const m = Math.floor(s / 60);
  const h = Math.floor(m / 60);
  const d = Math.floor(h / 24);
  if (s < 120) return `${s}s`;
  if (m < 10) return s % 60 === 0 ? `${m}m` : `${m}m${s % 60}s`;
  if (h < 3) return `${m}m`;
  if (h < 8) return m % 60 === 0 ? `${h}h` : `${h}h${m % 60}m`;
  if (h < 48) return `${h}h`;
  if (d < 8) return h % 24 === 0 ? `${d}d` : `${d}d${h % 24}h`;
  return `${d}d`;
}

/** How long ago `iso` was, from `now`: `12s ago`; `-` when unknown. */
export function ago(iso: string | undefined, now: Date): string {
  if (!iso) return "-";
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return "-";
  return `${humanDuration(now.getTime() - t)} ago`;
}

/** A lag in seconds: `0s`, `0.4s` below ten seconds, then as a duration (`3m12s`); `-` when unknown. */
export function lag(seconds: number | undefined): string {
  if (seconds === undefined) return "-";
  if (seconds === 0) return "0s";
  if (seconds < 10) return `${(Math.round(seconds * 10) / 10).toFixed(1)}s`;
  return humanDuration(seconds * 1000);
}

/** Bytes in binary units: `0B`, `512B`, `1.5KiB`, `10MiB`. */
export function bytes(n: number | undefined): string {
  if (n === undefined) return "-";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  const text = u === 0 || v >= 10 ? String(Math.round(v)) : (Math.round(v * 10) / 10).toString();
  return `${text}${units[u]}`;
}

/** The restorable window as ages: `2h3m ago..1s ago`; `none` when nothing is restorable yet. */
export function windowAges(oldest: string | undefined, newest: string | undefined, now: Date): string {
  if (!oldest || !newest) return "none";
  return `${ago(oldest, now).replace(/ ago$/, "")}..${ago(newest, now)}`;
}

/** An RFC 3339 time without fractional seconds: `2026-05-01T10:00:00Z`. */
export function isoSeconds(iso: string | undefined): string {
  if (!iso) return "-";
  const t = Date.parse(iso);
  return Number.isNaN(t) ? iso : new Date(t).toISOString().replace(/\.\d{3}Z$/, "Z");
}

/** A one-line cell: newlines folded, cut at `max` characters with an ellipsis. */
export function cell(text: string | undefined, max = 80): string {
  if (!text) return "";
  const one = text.replace(/\s*\n\s*/g, " ");
  return one.length > max ? `${one.slice(0, max - 1)}…` : one;
}

/** A boolean as kubectl prints one in tables: True / False; `-` when unknown. */
export function bool(v: boolean | undefined): string {
  return v === undefined ? "-" : v ? "True" : "False";
}

/** Rows as aligned columns (the CLI's tables), each line indented by `indent` spaces. */
export function indentTable(header: string[], rows: string[][], indent = 2): string {
  const pad = " ".repeat(indent);
  return table(header, rows)
    .split("\n")
    .map((line) => `${pad}${line}`.trimEnd())
    .join("\n");
}
