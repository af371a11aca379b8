/**
 * The bench's table: one row per figure, walship beside litestream and their ratio, and over several
 * passes (BENCH_REPEATS) each figure's median with the range of the ratio. See docs/benchmarks.md.
 */
import { round } from "./measure.ts";

export interface Row {
  figure: string;
  walship: number | undefined;
  litestream: number | undefined;
  ratio: number | undefined;
  /** Over the repeats: the lowest and highest ratio (for a figure with no ratio, walship's value). */
  spread?: [number, number];
  /** Every repeat's figures, in order. */
  all?: { walship: Array<number | null>; litestream: Array<number | null>; ratio: Array<number | null> };
}

export function median(xs: number[]): number | undefined {
  if (!xs.length) return undefined;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1]! + s[m]!) / 2;
}

/**
 * One row per figure over the repeats: the median of each tool's figure and the median of the
 * per-repeat ratios (each ratio pairs the two tools of the same repeat, so a machine that slows down
 * between repeats moves both), with the spread of those ratios.
 */
export function aggregate(runs: Row[][]): Row[] {
  if (runs.length === 1) return runs[0]!;
  const figures = [...new Set(runs.flatMap((r) => r.map((row) => row.figure)))];
  return figures.map((figure) => {
    const rows = runs.map((r) => r.find((row) => row.figure === figure));
    const pick = (k: "walship" | "litestream" | "ratio") =>
      rows.map((row) => row?.[k]).filter((x): x is number => x !== undefined && Number.isFinite(x));
    const all = (k: "walship" | "litestream" | "ratio") => rows.map((row) => row?.[k] ?? null);
    const ratios = pick("ratio");
    const base = ratios.length ? ratios : pick("walship");
    const w = median(pick("walship"));
    const l = median(pick("litestream"));
    const r = median(ratios);
    return {
      figure,
      walship: w === undefined ? undefined : round(w, 2),
      litestream: l === undefined ? undefined : round(l, 2),
      ratio: r === undefined ? undefined : round(r, 2),
      ...(base.length ? { spread: [Math.min(...base), Math.max(...base)] as [number, number] } : {}),
      all: { walship: all("walship"), litestream: all("litestream"), ratio: all("ratio") },
    };
  });
}

export function fmt(x: number | undefined): string {
  if (x === undefined || Number.isNaN(x)) return "-";
  if (!Number.isFinite(x)) return String(x);
  return Math.abs(x) >= 100 ? String(Math.round(x)) : String(round(x, 2));
}

export function table(rows: Row[]): string {
  const spread = rows.some((r) => r.spread);
  const cells = [
    ["figure", "walship", "litestream", "walship/litestream", ...(spread ? ["range"] : [])],
    ...rows.map((r) => [
      r.figure,
      fmt(r.walship),
      fmt(r.litestream),
      fmt(r.ratio),
      ...(spread ? [r.spread ? `${fmt(r.spread[0])}–${fmt(r.spread[1])}` : "-"] : []),
    ]),
  ];
  const w = cells[0]!.map((_, i) => Math.max(...cells.map((c) => c[i]!.length)));
  const line = (c: string[]) =>
    `| ${c.map((x, i) => (i === 0 ? x.padEnd(w[i]!) : x.padStart(w[i]!))).join(" | ")} |`;
  return [
    line(cells[0]!),
    `|${w.map((n, i) => (i === 0 ? "-" : "").padEnd(n + 1, "-") + (i === 0 ? "-" : ":")).join("|")}|`,
  ]
    .concat(cells.slice(1).map(line))
    .join("\n");
}
