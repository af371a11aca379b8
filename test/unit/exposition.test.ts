/**
 * The replicator's Prometheus text (src/replicator/exposition.ts and runtime-metrics.ts, written
 * without a client library) against prom-client, which wrote it before and stays a dependency of
 * the operator: for the same series, the same text; and the same process and runtime family names
 * and types as prom-client's default metrics, which docs/metrics.md and the dashboards name.
 */
import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { Counter, collectDefaultMetrics, Gauge, Histogram as PromHistogram, Registry } from "prom-client";
import { type Family, Histogram, render } from "../../src/replicator/exposition.ts";
import { RuntimeMetrics } from "../../src/replicator/runtime-metrics.ts";
import { rng } from "../helpers/rng.ts";

/** Blank lines are where the two differ and Prometheus ignores them. */
const lines = (text: string) => text.split("\n").filter((l) => l !== "");

const TRICKY = ["/data/app.db", 'a "quoted" name', "back\\slash", "line\nfeed", "ünïcödé", "", "{}=,"];

describe("Prometheus text against prom-client", () => {
  it("counters and gauges with generated labels and values: the same text", async () => {
    for (let seed = 1; seed <= 200; seed++) {
      const r = rng(seed);
      const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)] as T;
      const value = () =>
        pick([0, 1, 42, 1e21, 2 ** 53, -3, 0.1 + 0.2, 1 / 3, 1796535853.5, Number.POSITIVE_INFINITY]);
      const registry = new Registry();
      const families: Family[] = [];
      const n = 1 + Math.floor(r() * 4);
      for (let i = 0; i < n; i++) {
        const type = pick(["counter", "gauge"] as const);
        const name = `walship_test_${i}_${type}`;
        const help = pick(["Plain help.", "Help with a \\ backslash.", "Help over\ntwo lines."]);
        const labelNames = ["db", "name"].slice(0, Math.floor(r() * 3));
        // A family without labels has its one value (prom-client shows 0 for one never set).
        const count = labelNames.length === 0 ? 1 : Math.floor(r() * 4);
        const samples = Array.from({ length: count }, (_, j) => {
          const v = value();
          return {
            labels: Object.fromEntries(labelNames.map((l) => [l, `${pick(TRICKY)}${j}`])),
            value: type === "counter" ? Math.abs(Number.isFinite(v) ? v : 5) : v,
          };
        });
        // One sample per label set, as a family has.
        const unique = [...new Map(samples.map((s) => [JSON.stringify(s.labels), s])).values()];
        families.push({ name, help, type, samples: () => unique });
        const Kind = type === "counter" ? Counter : Gauge;
        const m = new Kind({ name, help, labelNames, registers: [registry] });
        for (const s of unique) {
          if (m instanceof Counter) m.inc(s.labels, s.value);
          else m.set(s.labels, s.value);
        }
      }
      assert.deepEqual(lines(render(families)), lines(await registry.metrics()), `seed ${seed}`);
    }
  });

  it("NaN and the infinities as the format spells them (prom-client writes NaN as Nan)", () => {
    const samples = [
      { value: Number.NaN },
      { labels: { x: "+" }, value: Number.POSITIVE_INFINITY },
      { labels: { x: "-" }, value: Number.NEGATIVE_INFINITY },
    ];
    assert.deepEqual(lines(render([{ name: "g", help: "h", type: "gauge", samples: () => samples }])), [
      "# HELP g h",
      "# TYPE g gauge",
      "g NaN",
      'g{x="+"} +Inf',
      'g{x="-"} -Inf',
    ]);
  });

  it("a histogram: the same buckets, sum and count", async () => {
    const bounds = [0.001, 0.01, 0.1, 1, 2, 5];
    const ours = new Histogram(bounds);
    const registry = new Registry();
    const theirs = new PromHistogram({
      name: "nodejs_gc_duration_seconds",
      help: "Garbage collection duration by kind, one of major, minor, incremental or weakcb.",
      labelNames: ["kind"],
      buckets: bounds,
      registers: [registry],
    });
    const r = rng(7);
    for (let i = 0; i < 500; i++) {
      const kind = ["minor", "major", "incremental"][i % 3] as string;
      const v = [0.001, 1, 5, 6][i % 4] ?? r() * r() * 3;
      ours.observe({ kind }, v);
      theirs.observe({ kind }, v);
    }
    const family: Family = {
      name: "nodejs_gc_duration_seconds",
      help: "Garbage collection duration by kind, one of major, minor, incremental or weakcb.",
      type: "histogram",
      samples: () => ours.samples(),
    };
    assert.deepEqual(lines(render([family])), lines(await registry.metrics()));
  });
});

describe("process and runtime metrics", () => {
  const runtime = new RuntimeMetrics();
  after(() => runtime.close());

  it("the names and types of prom-client's default metrics, every one", async () => {
    const registry = new Registry();
    collectDefaultMetrics({ register: registry });
    const theirs = lines(await registry.metrics()).filter((l) => l.startsWith("# TYPE"));
    // A garbage collection, so the histogram has a series on both sides.
    globalThis.gc?.();
    await new Promise((r) => setTimeout(r, 50));
    const ours = lines(render(runtime.families(await RuntimeMetrics.measureLag()))).filter((l) =>
      l.startsWith("# TYPE"),
    );
    assert.deepEqual(ours.sort(), theirs.sort());
  });

  it("values that mean what they say", () => {
    const text = render(runtime.families(0.002));
    const value = (name: string) => {
      const m = new RegExp(`^${name} (\\S+)$`, "m").exec(text);
      assert.ok(m, `${name} in\n${text}`);
      return Number(m[1]);
    };
    const rss = value("process_resident_memory_bytes");
    assert.ok(rss > 20 * 2 ** 20 && rss < 2 ** 32, `rss ${rss}`);
    assert.ok(value("process_open_fds") >= 3);
    assert.ok(value("process_cpu_seconds_total") > 0);
    assert.equal(
      value("process_cpu_seconds_total").toFixed(3),
      (value("process_cpu_user_seconds_total") + value("process_cpu_system_seconds_total")).toFixed(3),
    );
    const start = value("process_start_time_seconds");
    assert.ok(Math.abs(start - (Date.now() / 1000 - process.uptime())) <= 1, `start ${start}`);
    assert.equal(value("nodejs_eventloop_lag_seconds"), 0.002);
    assert.ok(value("nodejs_heap_size_used_bytes") <= value("nodejs_heap_size_total_bytes"));
    assert.match(text, new RegExp(`^nodejs_version_info\\{version="${process.version}",major="\\d+",`, "m"));
    assert.match(text, /^nodejs_heap_space_size_used_bytes\{space="old"\} \d+$/m);
  });
});
