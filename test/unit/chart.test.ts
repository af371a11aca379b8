/**
 * charts/walship without a cluster or helm: it links crds/ and deploy/rbac rather than copying, every
 * alert links a runbook that exists, and every metric an alert or a dashboard panel names is one
 * that walship really exports: the names are parsed out of the rules and the dashboard JSON and
 * compared with a live /metrics scrape of a real `walship replicate` that has replicated (file
 * destination) and with the operator's metrics registry.
 */
import assert from "node:assert/strict";
import {
  existsSync,
  lstatSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  realpathSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { createOperatorMetrics } from "../../src/operator/metrics.ts";
import { freePort } from "../helpers/ports.ts";
import { openWorkload } from "../helpers/sqlite.ts";
import { type Replicator, sleep, startReplicator } from "../helpers/walship.ts";

const ROOT = path.resolve(import.meta.dirname, "../..");
const CHART = path.join(ROOT, "charts/walship");
const RULES = readFileSync(path.join(CHART, "templates/prometheusrule.yaml"), "utf8");
const DASHBOARD = JSON.parse(readFileSync(path.join(CHART, "files/dashboards/walship.json"), "utf8")) as {
  panels: Array<{ type: string; title: string; targets?: Array<{ expr: string }> }>;
  templating: { list: Array<{ query?: string | { query: string } }> };
};

/** Series that Prometheus makes itself for every target. */
const PROMETHEUS_SYNTHETIC = new Set(["up", "scrape_duration_seconds", "scrape_samples_scraped"]);
const PROMQL_KEYWORDS = new Set(["and", "or", "unless", "bool", "offset", "inf", "nan"]);

/** The metric names a PromQL expression selects (Helm template actions removed first). */
export function metricNames(expr: string): string[] {
  const s = expr
    .replace(/\{\{.*?\}\}/g, " ")
    .replace(/"(?:[^"\\]|\\.)*"/g, '""')
    .replace(/\{[^{}]*\}/g, " ")
    .replace(/\[[^\]]*\]/g, " ")
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, " ");
  const out: string[] = [];
  for (const m of s.matchAll(/(?<![\w.$])[A-Za-z_:][A-Za-z0-9_:]*/g)) {
    const rest = s.slice(m.index + m[0].length).trimStart();
    if (rest.startsWith("(")) continue; // a function or an aggregation
    if (PROMQL_KEYWORDS.has(m[0].toLowerCase())) continue;
    out.push(m[0]);
  }
  return [...new Set(out)];
}

/** `expr:` values of the PrometheusRule template, folded (`>-`) ones included. */
function ruleExprs(text: string): Array<{ alert: string; expr: string }> {
  const lines = text.split("\n");
  const out: Array<{ alert: string; expr: string }> = [];
  let alert = "";
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    const a = /^\s*- alert: (\S+)/.exec(line);
    if (a) alert = a[1]!;
    const e = /^(\s*)expr: (.*)$/.exec(line);
    if (!e) continue;
    let expr = e[2]!;
    if (expr === ">-" || expr === "|") {
      const parts: string[] = [];
      while (i + 1 < lines.length && /^\s+/.exec(lines[i + 1]!)![0].length > e[1]!.length)
        parts.push(lines[++i]!);
      expr = parts.join(" ");
    }
    out.push({ alert, expr });
  }
  return out;
}

function alertNames(text: string): string[] {
  return [...text.matchAll(/^\s*- alert: (\S+)$/gm)].map((m) => m[1]!);
}

describe("chart files", () => {
  it("the chart's crds/ and files/rbac are links to crds/ and deploy/rbac: one source, nothing to sync", () => {
    for (const [link, target] of [
      ["crds", "crds"],
      ["files/rbac", "deploy/rbac"],
    ] as const) {
      const p = path.join(CHART, link);
      assert.ok(lstatSync(p).isSymbolicLink(), `${p} is a symlink`);
      assert.equal(realpathSync(p), realpathSync(path.join(ROOT, target)));
    }
    assert.deepEqual(readdirSync(path.join(CHART, "files/rbac")).sort(), [
      "clusterrole.yaml",
      "replicator.yaml",
      "role.yaml",
    ]);
  });

  it("every alert links its own runbook page, and the runbook index lists each", () => {
    const alerts = alertNames(RULES);
    assert.ok(alerts.length >= 10, `alerts: ${alerts.join(", ")}`);
    const links = [...RULES.matchAll(/"alert" "([A-Za-z]+)"/g)].map((m) => m[1]);
    assert.deepEqual(links, alerts, "each rule's runbook_url names the alert itself, in order");
    const index = readFileSync(path.join(ROOT, "docs/runbooks/README.md"), "utf8");
    for (const a of alerts) {
      assert.ok(existsSync(path.join(ROOT, "docs/runbooks", `${a}.md`)), `docs/runbooks/${a}.md`);
      assert.ok(index.includes(`(${a}.md)`), `README lists ${a}`);
    }
  });

  it("has the alerts Litestream users run, and recoverability-window alerts", () => {
    const alerts = new Set(alertNames(RULES));
    for (const a of [
      "WalshipReplicatorDown",
      "WalshipSyncErrors",
      "WalshipReplicationStalled",
      "WalshipReplicationDead",
      "WalshipCheckpointErrors",
      "WalshipWALTooLarge",
      "WalshipReplicationLag",
      "WalshipSlowSync",
      "WalshipNotRestorable",
      "WalshipRecoverabilityWindowShort",
    ])
      assert.ok(alerts.has(a), a);
    const exprOf = (a: string) => ruleExprs(RULES).find((r) => r.alert === a)!.expr;
    assert.match(exprOf("WalshipReplicationStalled"), /> 300\b/);
    assert.match(exprOf("WalshipReplicationStalled"), /\[5m\]\) == 0/);
    assert.match(exprOf("WalshipReplicationDead"), /> 900\b/);
    assert.match(exprOf("WalshipReplicationDead"), /\[15m\]\) == 0/);
  });

  it("metricNames parses PromQL as expected", () => {
    assert.deepEqual(
      metricNames(
        'sum by (le, db) (rate(a_b_bucket{x="y", z=~"$ns"}[$__rate_interval])) / on(instance) b > 1e3 and c{ {{- $sel -}} } offset 5m',
      ),
      ["a_b_bucket", "b", "c"],
    );
    assert.deepEqual(metricNames("time() - x_seconds > {{ $t.lag }} unless y"), ["x_seconds", "y"]);
  });
});

describe("every metric an alert or a dashboard panel uses is exported", { timeout: 120_000 }, () => {
  let dir = "";
  let rep: Replicator | undefined;
  let replicatorScrape = "";
  let operatorScrape = "";

  /** Names a scrape exports: TYPE lines (with histogram/summary series) and sample lines. */
  const exported = (text: string) => {
    const names = new Set<string>();
    for (const m of text.matchAll(/^# TYPE (\S+) (\S+)$/gm)) {
      names.add(m[1]!);
      if (m[2] === "histogram") for (const s of ["_bucket", "_sum", "_count"]) names.add(m[1]! + s);
      if (m[2] === "summary") for (const s of ["_sum", "_count"]) names.add(m[1]! + s);
    }
    return names;
  };
  const sampled = (text: string) =>
    new Set([...text.matchAll(/^([A-Za-z_:][\w:]*)[{ ]/gm)].map((m) => m[1]!));

  before(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), "walship-chart-metrics-"));
    const port = await freePort();
    const cfg = path.join(dir, "walship.yml");
    writeFileSync(
      cfg,
      `addr: 127.0.0.1:${port}
dbs:
  - path: ${dir}/app.db
    monitor-interval: 50ms
    min-checkpoint-page-count: 16
    replicas:
      - name: backup
        url: file://${dir}/replica
        sync-interval: 100ms
        snapshot-interval: 1s
        validation-interval: 1s
`,
    );
    const app = openWorkload(path.join(dir, "app.db"), 7);
    rep = startReplicator(["-config", cfg]);
    const deadline = Date.now() + 60_000;
    for (;;) {
      app.step();
      await sleep(50);
      const res = await fetch(`http://127.0.0.1:${port}/metrics`).catch(() => undefined);
      if (res?.ok) {
        replicatorScrape = await res.text();
        // Replicated something: a snapshot is known (the window exists) and a validation ran.
        if (
          /^walship_replica_window_oldest_timestamp_seconds\{/m.test(replicatorScrape) &&
          /^litestream_replica_validation_total\{[^}]*status="ok"[^}]*\} [1-9]/m.test(replicatorScrape)
        )
          break;
      }
      assert.ok(Date.now() < deadline, `replicator did not replicate:\n${rep.output().slice(-3000)}`);
    }
    app.close();
    const op = createOperatorMetrics(() => 0);
    op.reconcileSeconds.observe(0.01);
    operatorScrape = await op.registry.metrics();
  });
  after(async () => {
    await rep?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const used = () => {
    const out: Array<{ where: string; name: string }> = [];
    for (const r of ruleExprs(RULES))
      for (const name of metricNames(r.expr)) out.push({ where: `alert ${r.alert}`, name });
    for (const p of DASHBOARD.panels)
      for (const t of p.targets ?? [])
        for (const name of metricNames(t.expr)) out.push({ where: `panel "${p.title}"`, name });
    for (const v of DASHBOARD.templating.list) {
      const q = typeof v.query === "string" ? v.query : v.query?.query;
      const m = q ? /^label_values\((\w+)/.exec(q) : null;
      if (m) out.push({ where: "dashboard variable", name: m[1]! });
    }
    return out;
  };

  it("finds the metric names in the rules and the dashboard", () => {
    const names = new Set(used().map((u) => u.name));
    for (const n of [
      "walship_replica_lag_seconds",
      "litestream_sync_count",
      "walship_operator_workqueue_depth",
    ])
      assert.ok(names.has(n), n);
    assert.ok(names.size >= 20, [...names].join(" "));
  });

  it("each is in the live scrape of walship replicate or the operator, or made by Prometheus", () => {
    const rep = exported(replicatorScrape);
    const op = exported(operatorScrape);
    const missing = used().filter(
      (u) => !rep.has(u.name) && !op.has(u.name) && !PROMETHEUS_SYNTHETIC.has(u.name),
    );
    assert.deepEqual(missing, []);
  });

  it("each replicator metric they use has a sample once the replicator has replicated", () => {
    const rep = exported(replicatorScrape);
    const samples = sampled(replicatorScrape);
    const noSample = used().filter((u) => rep.has(u.name) && !samples.has(u.name));
    assert.deepEqual(noSample, []);
  });
});
