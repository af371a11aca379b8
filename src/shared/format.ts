/** How both roles print numbers and times in names, messages and logs. Pure. */

/** An index or offset as Litestream names it: 8 lowercase hex digits (`0000002a`). */
export function hex8(n: number): string {
  return n.toString(16).padStart(8, "0");
}

/** RFC 3339 in UTC to the second (`2026-01-01T00:00:00Z`), as Kubernetes and the listings print times. */
export function isoSeconds(d: Date): string {
  return d.toISOString().replace(/\.\d{3}Z$/, "Z");
}
