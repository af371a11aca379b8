/**
 * Go durations, as litestream.yml writes them (`time.ParseDuration` syntax), in milliseconds.
 *
 * Accepted: an optional sign, then one or more `<number><unit>` parts, e.g. `1h30m`, `500ms`, `1.5s`,
 * `.5s`, `300us`. Units: `ns`, `us`, `µs` (U+00B5), `μs` (U+03BC), `ms`, `s`, `m`, `h`. `0` alone is
 * zero.
 *
 * Two extensions over `time.ParseDuration`:
 * - A bare integer (`24`, or the number 24) means **nanoseconds**, because gopkg.in/yaml.v2 decodes a
 *   YAML integer into a `time.Duration` as a count of nanoseconds. Litestream behaves the same way, so
 *   `retention: 24` is 24 ns, not 24 hours; the config loader warns about it.
 * - A `d` unit (24 hours), e.g. `7d` or `1d12h`. This is Walship's own: Litestream rejects it, so a
 *   file that uses it works with Walship only.
 *
 * Results can be fractional (`300us` is 0.3 ms). Durations above Go's limit (2^63-1 ns, about 292
 * years) are rejected, as Go does.
 */
import { ErrorCodes, WalshipError } from "./errors.ts";

const NS_PER_MS = 1e6;
/** Go's `time.Duration` is an int64 count of nanoseconds: values must stay below 2^63. */
const NS_LIMIT = 2 ** 63;

const UNIT_NS: Readonly<Record<string, number>> = {
  ns: 1,
  us: 1e3,
  "\u00b5s": 1e3,
  "\u03bcs": 1e3,
  ms: 1e6,
  s: 1e9,
  m: 60e9,
  h: 3600e9,
  d: 86400e9,
};

const BARE_INT_RE = /^[-+]?\d+$/;

/** True for a bare integer (a YAML integer), which a Go duration field reads as nanoseconds. */
export function isBareIntegerDuration(value: string | number): boolean {
  return typeof value === "number" ? Number.isInteger(value) : BARE_INT_RE.test(value);
}

/**
 * Parses a duration without throwing: `{ ms }` on success, `{ problem }` (a short phrase such as
 * `invalid duration "5x": unknown unit "x"`) otherwise.
 */
export function tryParseGoDuration(value: string | number): { ms: number } | { problem: string } {
  if (typeof value === "number") {
    if (!Number.isInteger(value))
      return { problem: `invalid duration ${value}: a bare number must be an integer` };
    if (Math.abs(value) >= NS_LIMIT) return { problem: `invalid duration ${value}: out of range` };
    return { ms: value / NS_PER_MS };
  }
  const bad = (why?: string) => ({
    problem: `invalid duration ${JSON.stringify(value)}${why ? `: ${why}` : ""}`,
  });
  if (BARE_INT_RE.test(value)) {
    const n = Number(value);
    if (Math.abs(n) >= NS_LIMIT) return bad("out of range");
    return { ms: n / NS_PER_MS };
  }
  let s = value;
  let sign = 1;
  if (s.startsWith("-") || s.startsWith("+")) {
    if (s[0] === "-") sign = -1;
    s = s.slice(1);
  }
  if (s === "") return bad();
  let ns = 0;
  while (s !== "") {
    const m = /^(\d*)(?:\.(\d*))?/.exec(s);
    const whole = m?.[1] ?? "";
    const frac = m?.[2] ?? "";
    if (whole === "" && frac === "") return bad();
    s = s.slice(m?.[0].length ?? 0);
    const u = /^[^\d.]*/.exec(s)?.[0] ?? "";
    if (u === "") return bad("missing unit");
    const unit = UNIT_NS[u];
    if (unit === undefined) return bad(`unknown unit ${JSON.stringify(u)}`);
    s = s.slice(u.length);
    ns += (whole === "" ? 0 : Number(whole)) * unit;
    if (frac !== "") ns += Number(`0.${frac}`) * unit;
    if (ns >= NS_LIMIT) return bad("out of range");
  }
  return { ms: (sign * ns) / NS_PER_MS };
}

/**
 * Parses a Go duration into milliseconds. `key` names the setting for the error message. Throws a
 * CONFIG `WalshipError` with `details.path = key` on bad input.
 */
export function parseGoDuration(value: string | number, key: string): number {
  const r = tryParseGoDuration(value);
  if ("problem" in r) {
    throw new WalshipError(ErrorCodes.CONFIG, `parse duration: ${key}: ${r.problem}`, {
      details: { path: key },
    });
  }
  return r.ms;
}

/** Prints `ms` the way Go's `Duration.String()` does: `1h0m0s`, `1m30s`, `1.5s`, `500ms`, `300µs`, `0s`. */
export function formatGoDuration(ms: number): string {
  let ns = BigInt(Math.round(ms * NS_PER_MS));
  if (ns === 0n) return "0s";
  const neg = ns < 0n;
  if (neg) ns = -ns;
  const sign = neg ? "-" : "";
  if (ns < 1000n) return `${sign}${ns}ns`;
  if (ns < 1_000_000n) return `${sign}${frac(ns, 3)}µs`;
  if (ns < 1_000_000_000n) return `${sign}${frac(ns, 6)}ms`;
  const secs = ns / 1_000_000_000n;
  const subSec = ns % 1_000_000_000n;
  const fracText = subSec === 0n ? "" : `.${subSec.toString().padStart(9, "0").replace(/0+$/, "")}`;
  let out = `${secs % 60n}${fracText}s`;
  const mins = secs / 60n;
  if (mins > 0n) {
    out = `${mins % 60n}m${out}`;
    const hours = mins / 60n;
    if (hours > 0n) out = `${hours}h${out}`;
  }
  return sign + out;
}

/** `v` divided by 10^digits, printed with trailing fractional zeros removed. */
function frac(v: bigint, digits: number): string {
  const p = 10n ** BigInt(digits);
  const whole = v / p;
  const rest = (v % p).toString().padStart(digits, "0").replace(/0+$/, "");
  return rest === "" ? `${whole}` : `${whole}.${rest}`;
}
