/**
 * The chart's alerts and dashboard, checked by Prometheus's own promtool (built by test/infra/install
 * from the Go module proxy). The PrometheusRule is rendered with `helm template` (default values)
 * and its groups written as a rules file: `promtool check rules` parses every rule, and `promtool
 * test rules` runs test/fixtures/alerts/walship.rules.test.yaml, where every alert fires on the
 * series that should fire it, with its exact labels and annotations (runbook_url included), and
 * stays silent on healthy ones. Each panel and variable query of the Grafana dashboard becomes a
 * recording rule that `promtool check rules` must parse. (That each metric exists is
 * test/unit/chart.test.ts's live-scrape comparison.)
 */
import assert from "node:assert/strict";
import { copyFileSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { before, describe, it } from "node:test";
import { parse, stringify } from "yaml";
import { binPath } from "../helpers/cache.ts";
import { helm } from "../helpers/helm.ts";
import { makeTempDir, runCommand } from "../helpers/proc.ts";

const ROOT = path.resolve(import.meta.dirname, "../..");
const CHART = path.join(ROOT, "charts/walship");
const TESTS = path.join(ROOT, "test/fixtures/alerts/walship.rules.test.yaml");
const DASHBOARD = path.join(CHART, "files/dashboards/walship.json");

interface RuleGroup {
  name: string;
  rules: Array<{ alert?: string; record?: string; expr: string }>;
}

/** The chart's PrometheusRule groups, rendered with `sets` (helm --set). */
async function renderRules(sets: string[] = []): Promise<RuleGroup[]> {
  const r = await helm([
    "template",
    "walship",
    CHART,
    "--namespace",
    "walship-system",
    "--set",
    "monitoring.prometheusRule.enabled=true",
    ...sets.flatMap((s) => ["--set", s]),
    "--show-only",
    "templates/prometheusrule.yaml",
  ]);
  return (parse(r.stdout) as { spec: { groups: RuleGroup[] } }).spec.groups;
}

/** A directory with rules.yaml (the rendered groups) beside a copy of the unit tests. */
function workDir(groups: RuleGroup[]): string {
  const dir = makeTempDir("alert-rules");
  writeFileSync(path.join(dir, "rules.yaml"), stringify({ groups }));
  copyFileSync(TESTS, path.join(dir, "walship.rules.test.yaml"));
  return dir;
}

function promtool(args: string[], cwd: string) {
  return runCommand(binPath("promtool"), args, { cwd, allowFailure: true, timeoutMs: 120_000 });
}

interface UnitTests {
  tests: Array<{
    name: string;
    alert_rule_test: Array<{
      alertname: string;
      exp_alerts: Array<{ exp_labels: Record<string, string>; exp_annotations: Record<string, string> }>;
    }>;
  }>;
}

/**
 * A dashboard query as PromQL: Grafana's variables replaced by what they stand for at query time
 * ($__rate_interval by a range, $namespace and $db by a regex matching anything).
 */
export function dashboardPromql(expr: string): string {
  return expr
    .replace(/\$__rate_interval|\$__interval|\$__range/g, "5m")
    .replace(/\$\{?[A-Za-z_]\w*\}?/g, ".*");
}

/** The PromQL inside a variable query: `label_values(SELECTOR, label)` -> SELECTOR. */
export function variablePromql(query: string): string {
  const m = /^label_values\((.*),\s*\w+\)$/.exec(query.trim());
  return dashboardPromql(m ? m[1]! : query);
}

describe("the chart's alerts, tested by promtool", { timeout: 300_000 }, () => {
  let groups: RuleGroup[] = [];
  let alerts: string[] = [];

  before(async () => {
    groups = await renderRules();
    alerts = groups.flatMap((g) => g.rules.map((r) => r.alert ?? "")).filter(Boolean);
  });

  it("promtool check rules parses every rule", async () => {
    const dir = workDir(groups);
    const r = await promtool(["check", "rules", "rules.yaml"], dir);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, new RegExp(`SUCCESS: ${alerts.length} rules found`));
    assert.ok(alerts.length >= 15, alerts.join(", "));
  });

  it("promtool test rules: each alert fires on its series with exact labels and annotations, silent when healthy", async () => {
    const dir = workDir(groups);
    const r = await promtool(["test", "rules", "walship.rules.test.yaml"], dir);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /SUCCESS/);
  });

  it("the unit tests cover every alert: one firing case and one silent case each, runbook_url included", () => {
    const unit = parse(readFileSync(TESTS, "utf8")) as UnitTests;
    const cases = unit.tests.flatMap((t) => t.alert_rule_test);
    for (const a of alerts) {
      const mine = cases.filter((c) => c.alertname === a);
      assert.ok(
        mine.some((c) => c.exp_alerts.length > 0),
        `${a}: a case where it fires`,
      );
      assert.ok(
        mine.some((c) => c.exp_alerts.length === 0),
        `${a}: a case where it stays silent`,
      );
      for (const e of mine.flatMap((c) => c.exp_alerts)) {
        assert.ok(e.exp_labels.severity, `${a}: severity label`);
        assert.deepEqual(Object.keys(e.exp_annotations).sort(), ["description", "runbook_url", "summary"], a);
        assert.equal(
          e.exp_annotations.runbook_url,
          `https://github.com/walship/walship/blob/main/docs/runbooks/${a}.md`,
        );
      }
    }
    const unknown = cases.map((c) => c.alertname).filter((n) => !alerts.includes(n));
    assert.deepEqual(unknown, [], "no test names an alert the chart does not have");
  });

  it("the tests can fail: another threshold or runbook base URL is caught", async () => {
    const lag = await promtool(
      ["test", "rules", "walship.rules.test.yaml"],
      workDir(await renderRules(["monitoring.prometheusRule.thresholds.lagSeconds=120"])),
    );
    assert.equal(lag.code, 1);
    assert.match(lag.stdout + lag.stderr, /alertname: WalshipReplicationLag/);
    const runbooks = await promtool(
      ["test", "rules", "walship.rules.test.yaml"],
      workDir(await renderRules(["monitoring.runbookBaseUrl=https://runbooks.example/walship"])),
    );
    assert.equal(runbooks.code, 1);
    assert.match(runbooks.stdout + runbooks.stderr, /runbooks\.example\/walship\/WalshipReplicatorDown\.md/);
  });
});

describe("the dashboard's queries parse as PromQL (promtool)", { timeout: 120_000 }, () => {
  const dashboard = JSON.parse(readFileSync(DASHBOARD, "utf8")) as {
    panels: Array<{ title: string; targets?: Array<{ expr: string }> }>;
    templating: { list: Array<{ name: string; type: string; query?: string | { query: string } }> };
  };

  /** Each query as a recording rule, named after its panel (or variable) and position. */
  function recordingRules(): Array<{ record: string; expr: string }> {
    const rules: Array<{ record: string; expr: string }> = [];
    dashboard.panels.forEach((p, i) => {
      (p.targets ?? []).forEach((t, j) => {
        rules.push({ record: `dashboard:panel${i}:target${j}`, expr: dashboardPromql(t.expr) });
      });
    });
    for (const v of dashboard.templating.list.filter((x) => x.type === "query")) {
      const q = typeof v.query === "string" ? v.query : (v.query?.query ?? "");
      rules.push({ record: `dashboard:variable:${v.name}`, expr: variablePromql(q) });
    }
    return rules;
  }

  it("maps Grafana's variables to PromQL", () => {
    assert.equal(
      // biome-ignore lint/suspicious/noTemplateCurlyInString: Grafana's ${db}, meant literally
      dashboardPromql('rate(x{namespace=~"$namespace", db=~"${db}"}[$__rate_interval])'),
      'rate(x{namespace=~".*", db=~".*"}[5m])',
    );
    assert.equal(
      variablePromql('label_values(litestream_db_size{namespace=~"$namespace"}, db)'),
      'litestream_db_size{namespace=~".*"}',
    );
  });

  it("every panel and variable query parses", async () => {
    const rules = recordingRules();
    assert.ok(rules.length >= 25, `${rules.length} queries`);
    const dir = makeTempDir("dashboard-rules");
    writeFileSync(path.join(dir, "dashboard.yaml"), stringify({ groups: [{ name: "dashboard", rules }] }));
    const r = await promtool(["check", "rules", "dashboard.yaml"], dir);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, new RegExp(`SUCCESS: ${rules.length} rules found`));
  });

  it("a query that does not parse is caught", async () => {
    const dir = makeTempDir("dashboard-rules");
    const broken = [
      {
        record: "dashboard:broken",
        expr: dashboardPromql("rate(walship_replica_errors_total[$__rate_interval]"),
      },
    ];
    writeFileSync(
      path.join(dir, "dashboard.yaml"),
      stringify({ groups: [{ name: "dashboard", rules: broken }] }),
    );
    const r = await promtool(["check", "rules", "dashboard.yaml"], dir);
    assert.equal(r.code, 1);
    assert.match(r.stdout + r.stderr, /dashboard:broken|parse error|unclosed/);
  });
});
