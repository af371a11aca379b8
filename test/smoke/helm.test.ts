import assert from "node:assert/strict";
import { cpSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { parseAllDocuments } from "yaml";
import { helm } from "../helpers/helm.ts";
import { makeTempDir } from "../helpers/proc.ts";

const chart = join(import.meta.dirname, "..", "fixtures", "smoke-chart");

test("helm: lint passes on the smoke chart", async () => {
  const r = await helm(["lint", "--strict", chart]);
  assert.match(r.stdout, /1 chart\(s\) linted, 0 chart\(s\) failed/);
});

test("helm: lint fails on a chart with a broken template", async () => {
  const broken = join(makeTempDir("helm-chart"), "smoke-chart");
  cpSync(chart, broken, { recursive: true });
  writeFileSync(join(broken, "templates", "broken.yaml"), '{{ include "no-such-template" . }}\n');
  const r = await helm(["lint", broken], { allowFailure: true });
  assert.equal(r.code, 1);
  assert.match(r.stdout, /\[ERROR\] templates\/: .*no-such-template/);
  assert.match(r.stderr, /1 chart\(s\) linted, 1 chart\(s\) failed/);
});

test("helm: template renders the chart with values and the test apiserver's KubeVersion", async () => {
  const r = await helm(["template", "demo", chart, "--set", "replicas=3"]);
  const docs = parseAllDocuments(r.stdout).map(
    (d) => d.toJS() as { kind: string; metadata: { name: string } },
  );
  assert.deepEqual(docs.map((d) => `${d.kind}/${d.metadata.name}`).sort(), [
    "ConfigMap/demo-config",
    "StatefulSet/demo",
  ]);
  const sts = docs.find((d) => d.kind === "StatefulSet") as unknown as { spec: { replicas: number } };
  assert.equal(sts.spec.replicas, 3);
  const cm = docs.find((d) => d.kind === "ConfigMap") as unknown as { data: { kubeVersion: string } };
  assert.equal(cm.data.kubeVersion, "v1.33.0");
});
