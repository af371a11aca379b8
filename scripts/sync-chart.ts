/**
 * Copies what the chart shares with the rest of the repo into charts/walship (make chart-sync):
 * crds/*.yaml into charts/walship/crds/ (Helm installs them before the templates) and
 * deploy/rbac/*.yaml into charts/walship/files/rbac/ (the chart's ClusterRole and Role take their
 * rules from there); then re-renders deploy/walship.yaml from the chart (scripts/render-deploy.ts),
 * when helm is built. With --check, writes nothing and exits 1 when the chart's copies differ or a
 * stale copy is left (make check, test/unit/chart.test.ts); it needs no helm, so deploy/walship.yaml
 * is checked by test/e2e/chart.test.ts instead.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { DEPLOY_FILE, helmPath, renderDeploy } from "./render-deploy.ts";

const ROOT = path.resolve(import.meta.dirname, "..");
const PAIRS: Array<[from: string, to: string]> = [
  ["crds", "charts/walship/crds"],
  ["deploy/rbac", "charts/walship/files/rbac"],
];

export interface Drift {
  file: string;
  problem: "missing" | "differs" | "stale";
}

/** What differs between the sources and the chart's copies; writes the copies unless check. */
export function syncChart(opts: { check: boolean; root?: string }): Drift[] {
  const root = opts.root ?? ROOT;
  const drift: Drift[] = [];
  for (const [from, to] of PAIRS) {
    const src = path.join(root, from);
    const dst = path.join(root, to);
    const want = readdirSync(src).filter((f) => f.endsWith(".yaml"));
    if (!opts.check) mkdirSync(dst, { recursive: true });
    for (const f of want) {
      const text = readFileSync(path.join(src, f), "utf8");
      const target = path.join(dst, f);
      const have = existsSync(target) ? readFileSync(target, "utf8") : undefined;
      if (have === text) continue;
      drift.push({ file: path.join(to, f), problem: have === undefined ? "missing" : "differs" });
      if (!opts.check) writeFileSync(target, text);
    }
    for (const f of existsSync(dst) ? readdirSync(dst) : []) {
      if (want.includes(f)) continue;
      drift.push({ file: path.join(to, f), problem: "stale" });
      if (!opts.check) rmSync(path.join(dst, f));
    }
  }
  return drift;
}

if (import.meta.main) {
  const check = process.argv.includes("--check");
  const drift = syncChart({ check });
  for (const d of drift)
    process.stderr.write(
      check
        ? `sync-chart: ${d.file} is ${d.problem === "differs" ? "out of date" : d.problem}; run make chart-sync\n`
        : `sync-chart: ${d.problem === "stale" ? "removed" : "wrote"} ${d.file}\n`,
    );
  if (!check) {
    let want: string | undefined;
    try {
      want = renderDeploy(helmPath());
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
      process.stderr.write(
        "sync-chart: no helm (make infra builds it): deploy/walship.yaml not re-rendered\n",
      );
    }
    if (want !== undefined && (!existsSync(DEPLOY_FILE) || readFileSync(DEPLOY_FILE, "utf8") !== want)) {
      writeFileSync(DEPLOY_FILE, want);
      process.stderr.write("sync-chart: wrote deploy/walship.yaml\n");
    }
  }
  process.exit(check && drift.length > 0 ? 1 : 0);
}
