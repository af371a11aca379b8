/**
 * Prometheus's text exposition format (version 0.0.4) for the replicator's `/metrics`, with no
 * client library: the families are built from an observation at each scrape (metrics.ts) and from
 * the process itself (runtime-metrics.ts). prom-client (and the OpenTelemetry API it imports) added
 * about 25 ms to the start of every sidecar serving metrics, for what is here a few string joins
 * (docs/benchmarks.md, "The sidecar's memory"). test/unit/exposition.test.ts holds the output to
 * prom-client's for the same series.
 */

export const CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

export type MetricType = "counter" | "gauge" | "histogram";

export interface Sample {
  /** Appended to the family's name (`_bucket`, `_sum`, `_count` of a histogram). */
  suffix?: string;
  labels?: Readonly<Record<string, string | number>>;
  value: number;
}

/** One metric family: its samples are read at each render, so a series that is gone stops showing. */
export interface Family {
  name: string;
  help: string;
  type: MetricType;
  samples(): Iterable<Sample>;
}

/** The text of `families`, in their order. */
export function render(families: readonly Family[]): string {
  const out: string[] = [];
  for (const f of families) {
    out.push(`# HELP ${f.name} ${escapeHelp(f.help)}\n# TYPE ${f.name} ${f.type}\n`);
    for (const s of f.samples()) {
      out.push(`${f.name}${s.suffix ?? ""}${labelText(s.labels)} ${formatValue(s.value)}\n`);
    }
  }
  return out.join("");
}

function labelText(labels: Sample["labels"]): string {
  if (!labels) return "";
  const parts: string[] = [];
  for (const [k, v] of Object.entries(labels)) parts.push(`${k}="${escapeLabel(String(v))}"`);
  return parts.length === 0 ? "" : `{${parts.join(",")}}`;
}

/** Label values escape backslash, double quote and line feed; HELP text the first and last. */
function escapeLabel(v: string): string {
  return v.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, '\\"');
}

function escapeHelp(v: string): string {
  return v.replace(/\\/g, "\\\\").replace(/\n/g, "\\n");
}

function formatValue(v: number): string {
  if (Number.isNaN(v)) return "NaN";
  if (v === Number.POSITIVE_INFINITY) return "+Inf";
  if (v === Number.NEGATIVE_INFINITY) return "-Inf";
  return String(v);
}

/** A histogram's samples: cumulative `_bucket`s (`le`, ending at +Inf), `_sum` and `_count`, per label set. */
export class Histogram {
  readonly #bounds: readonly number[];
  readonly #series = new Map<
    string,
    { labels: Record<string, string>; counts: number[]; sum: number; n: number }
  >();

  constructor(bounds: readonly number[]) {
    this.#bounds = bounds;
  }

  observe(labels: Record<string, string>, v: number): void {
    const key = JSON.stringify(labels);
    let s = this.#series.get(key);
    if (!s) {
      s = { labels, counts: this.#bounds.map(() => 0), sum: 0, n: 0 };
      this.#series.set(key, s);
    }
    for (let i = 0; i < this.#bounds.length; i++) if (v <= (this.#bounds[i] as number)) s.counts[i]!++;
    s.sum += v;
    s.n++;
  }

  *samples(): Iterable<Sample> {
    for (const s of this.#series.values()) {
      for (let i = 0; i < this.#bounds.length; i++) {
        yield {
          suffix: "_bucket",
          labels: { le: this.#bounds[i] as number, ...s.labels },
          value: s.counts[i] as number,
        };
      }
      yield { suffix: "_bucket", labels: { le: "+Inf", ...s.labels }, value: s.n };
      yield { suffix: "_sum", labels: s.labels, value: s.sum };
      yield { suffix: "_count", labels: s.labels, value: s.n };
    }
  }
}
