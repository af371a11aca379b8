/**
 * What the release workflow (.github/workflows/release.yml, which cannot run here; actionlint checks
 * it in `make check`) builds, built here the same way:
 *   - `helm package` of the chart from a clean checkout (only the tracked files, the links to crds/
 *     and deploy/rbac as git stores them): the package holds the CRDs and the RBAC rules as files,
 *     and renders the same objects as the chart directory;
 *   - the kubectl plugin's archive (scripts/plugin-dist.ts): one file that runs with no
 *     node_modules beside it, reproducible byte for byte, installed by the real krew (built from the
 *     Go module proxy) from the filled-in manifest;
 *   - the chart's default image is the image the workflow publishes, at the chart's appVersion.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import {
  copyFileSync,
  existsSync,
  lstatSync,
  mkdirSync,
  readFileSync,
  readlinkSync,
  symlinkSync,
} from "node:fs";
import path from "node:path";
import { before, describe, it } from "node:test";
import { parse, parseAllDocuments } from "yaml";
import { pluginDist, renderKrewManifest } from "../../scripts/plugin-dist.ts";
import { DEFAULT_IMAGE } from "../../src/operator/specs/names.ts";
import { binPath } from "../helpers/cache.ts";
import { helm } from "../helpers/helm.ts";
import { makeTempDir, runCommand } from "../helpers/proc.ts";

const ROOT = path.resolve(import.meta.dirname, "../..");
const NODE_DIR = path.dirname(process.execPath);

interface Workflow {
  on: Record<string, unknown>;
  env?: Record<string, string>;
  jobs: Record<
    string,
    {
      needs?: string | string[];
      uses?: string;
      permissions?: Record<string, string>;
      steps?: Array<{ uses?: string; run?: string; with?: Record<string, unknown>; id?: string }>;
    }
  >;
}

const workflow = (name: string) =>
  parse(readFileSync(path.join(ROOT, ".github/workflows", name), "utf8")) as Workflow;
const values = parse(readFileSync(path.join(ROOT, "charts/walship/values.yaml"), "utf8")) as {
  image: { repository: string; tag: string };
};
const chartYaml = parse(readFileSync(path.join(ROOT, "charts/walship/Chart.yaml"), "utf8")) as {
  version: string;
  appVersion: string;
};
const pkg = JSON.parse(readFileSync(path.join(ROOT, "package.json"), "utf8")) as { version: string };

/** A clean checkout of `paths`: the tracked files only, symlinks kept as links (as git stores them). */
function cleanCheckout(paths: string[]): string {
  const dir = makeTempDir("checkout");
  const files = execFileSync("git", ["ls-files", "-z", "--", ...paths], { cwd: ROOT, encoding: "utf8" })
    .split("\0")
    .filter(Boolean);
  for (const f of files) {
    mkdirSync(path.dirname(path.join(dir, f)), { recursive: true });
    const src = path.join(ROOT, f);
    if (lstatSync(src).isSymbolicLink()) symlinkSync(readlinkSync(src), path.join(dir, f));
    else copyFileSync(src, path.join(dir, f));
  }
  return dir;
}

function tarList(archive: string): string[] {
  return execFileSync("tar", ["-tzf", archive], { encoding: "utf8" }).split("\n").filter(Boolean).sort();
}

function tarFile(archive: string, member: string): string {
  return execFileSync("tar", ["-xzOf", archive, member], { encoding: "utf8", maxBuffer: 64 * 1024 * 1024 });
}

describe("helm package from a clean checkout", { timeout: 120_000 }, () => {
  let tgz = "";
  let checkout = "";

  before(async () => {
    checkout = cleanCheckout(["charts/walship", "crds", "deploy/rbac"]);
    assert.ok(
      lstatSync(path.join(checkout, "charts/walship/crds")).isSymbolicLink(),
      "the checkout has the link",
    );
    assert.equal(readlinkSync(path.join(checkout, "charts/walship/files/rbac")), "../../../deploy/rbac");
    const out = makeTempDir("chart-package");
    await helm(["package", path.join(checkout, "charts/walship"), "--destination", out]);
    tgz = path.join(out, `walship-${chartYaml.version}.tgz`);
    assert.ok(existsSync(tgz), tgz);
  });

  it("holds the CRDs and the RBAC rules as files, with their content", () => {
    const list = tarList(tgz);
    for (const crd of ["walship.dev_sqlitereplicas.yaml", "walship.dev_sqliterestores.yaml"]) {
      assert.ok(list.includes(`walship/crds/${crd}`), `${crd} in ${list.join(", ")}`);
      assert.equal(tarFile(tgz, `walship/crds/${crd}`), readFileSync(path.join(ROOT, "crds", crd), "utf8"));
    }
    for (const f of ["clusterrole.yaml", "replicator.yaml", "role.yaml"]) {
      assert.equal(
        tarFile(tgz, `walship/files/rbac/${f}`),
        readFileSync(path.join(ROOT, "deploy/rbac", f), "utf8"),
      );
    }
    assert.ok(list.includes("walship/files/dashboards/walship.json"));
    assert.ok(list.includes("walship/values.schema.json"));
  });

  it("renders what the chart directory renders, and passes helm lint", async () => {
    const args = ["--namespace", "walship-system", "--set", "monitoring.prometheusRule.enabled=true"];
    const fromDir = await helm(["template", "walship", path.join(ROOT, "charts/walship"), ...args]);
    const fromTgz = await helm(["template", "walship", tgz, ...args]);
    assert.equal(fromTgz.stdout, fromDir.stdout);
    const kinds = parseAllDocuments(fromTgz.stdout).map((d) => (d.toJS() as { kind: string }).kind);
    assert.ok(kinds.includes("ClusterRole") && kinds.includes("PrometheusRule"), kinds.join(","));
    const crds = await helm(["show", "crds", tgz]);
    assert.match(crds.stdout, /name: sqlitereplicas\.walship\.dev/);
    const lint = await helm(["lint", "--strict", tgz]);
    assert.match(lint.stdout, /1 chart\(s\) linted, 0 chart\(s\) failed/);
  });
});

describe("the kubectl plugin's release archive and krew manifest", { timeout: 180_000 }, () => {
  const version = "v9.8.7";
  let dist: Awaited<ReturnType<typeof pluginDist>>;

  before(async () => {
    dist = await pluginDist({ version, out: makeTempDir("plugin-dist") });
  });

  it("is one executable file, reproducible byte for byte", async () => {
    assert.deepEqual(tarList(dist.archive), ["kubectl-walship"]);
    const mode = execFileSync("tar", ["-tvzf", dist.archive], { encoding: "utf8" });
    assert.match(mode, /^-rwxr-xr-x 0\/0 /);
    const again = await pluginDist({ version, out: makeTempDir("plugin-dist") });
    assert.equal(again.sha256, dist.sha256);
    assert.equal(
      readFileSync(`${dist.archive}.sha256`, "utf8"),
      `${dist.sha256}  kubectl-walship_${version}.tar.gz\n`,
    );
  });

  it("runs from the unpacked archive alone, with the Node on the PATH", async () => {
    const dir = makeTempDir("plugin-unpacked");
    execFileSync("tar", ["-xzf", dist.archive, "-C", dir]);
    const env = { PATH: `${NODE_DIR}:/usr/bin:/bin`, NODE_PATH: "" };
    const v = await runCommand(path.join(dir, "kubectl-walship"), ["version"], { cwd: dir, env });
    assert.equal(v.stdout, `kubectl-walship ${version}\n`);
    const bad = await runCommand(path.join(dir, "kubectl-walship"), ["status"], {
      cwd: dir,
      env,
      allowFailure: true,
    });
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /\[WALSHIP_ERR_USAGE\]/);
  });

  it("the manifest names the archive, its sha256 and the four platforms; the real krew installs it", async () => {
    const m = parse(readFileSync(dist.manifest, "utf8")) as {
      apiVersion: string;
      kind: string;
      metadata: { name: string };
      spec: {
        version: string;
        platforms: Array<{
          selector: { matchLabels: Record<string, string> };
          uri: string;
          sha256: string;
          bin: string;
        }>;
      };
    };
    assert.equal(m.apiVersion, "krew.googlecontainertools.github.com/v1alpha2");
    assert.equal(m.kind, "Plugin");
    assert.equal(m.metadata.name, "walship");
    assert.equal(m.spec.version, version);
    assert.deepEqual(
      m.spec.platforms.map((p) => `${p.selector.matchLabels.os}/${p.selector.matchLabels.arch}`),
      ["linux/amd64", "linux/arm64", "darwin/amd64", "darwin/arm64"],
    );
    for (const p of m.spec.platforms) {
      assert.equal(
        p.uri,
        `https://github.com/walship/walship/releases/download/${version}/kubectl-walship_${version}.tar.gz`,
      );
      assert.equal(p.sha256, dist.sha256);
      assert.equal(p.bin, "kubectl-walship");
    }
    // krew checks the archive against the manifest's sha256 and links the plugin into its bin/.
    const root = makeTempDir("krew-root");
    const env = {
      KREW_ROOT: root,
      KREW_NO_UPGRADE_CHECK: "1",
      HOME: root,
      PATH: `${NODE_DIR}:/usr/bin:/bin`,
    };
    await runCommand(
      binPath("kubectl-krew"),
      ["install", `--manifest=${dist.manifest}`, `--archive=${dist.archive}`],
      {
        env,
      },
    );
    const v = await runCommand(path.join(root, "bin/kubectl-walship"), ["version"], { env });
    assert.equal(v.stdout, `kubectl-walship ${version}\n`);
    // An archive that is not the one the manifest names is refused.
    const other = await pluginDist({ version: "v9.8.8", out: makeTempDir("plugin-dist") });
    const refused = await runCommand(
      binPath("kubectl-krew"),
      ["install", `--manifest=${dist.manifest}`, `--archive=${other.archive}`],
      { env: { ...env, KREW_ROOT: makeTempDir("krew-root") }, allowFailure: true },
    );
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /sha256|checksum/i);
  });

  it("the template has no placeholder left unfilled, and refuses a bad version", async () => {
    assert.throws(() => renderKrewManifest("a {{VERSION}} {{OTHER}}", "v1.0.0", "u", "s"), /\{\{OTHER\}\}/);
    await assert.rejects(
      pluginDist({ version: "1.0", out: makeTempDir("plugin-dist") }),
      /not a version tag/,
    );
  });
});

describe("the release workflow publishes what the chart installs", () => {
  const release = workflow("release.yml");
  const steps = (job: string) => release.jobs[job]?.steps ?? [];

  it("on a v* tag, after the tests: the image for amd64 and arm64 with an SBOM and provenance", () => {
    assert.deepEqual((release.on.push as { tags: string[] }).tags, ["v*"]);
    assert.equal(release.jobs.test?.uses, "./.github/workflows/ci.yml");
    assert.equal(release.jobs.image?.needs, "test");
    const build = steps("image").find((s) => s.uses?.startsWith("docker/build-push-action@"));
    assert.ok(build?.with);
    assert.equal(build.with.platforms, "linux/amd64,linux/arm64");
    assert.equal(build.with.push, true);
    assert.equal(build.with.sbom, true);
    assert.equal(build.with.provenance, "mode=max");
    assert.equal(release.jobs.image?.permissions?.packages, "write");
  });

  it("the chart's default image is the one pushed: same repository, tagged with the chart's appVersion", () => {
    assert.equal(release.env?.IMAGE, values.image.repository);
    assert.equal(values.image.tag, "", "the tag defaults to the chart's appVersion");
    const meta = steps("image").find((s) => s.uses?.startsWith("docker/metadata-action@"));
    assert.match(String(meta?.with?.tags), /^type=semver,pattern=\{\{version\}\}$/m);
    assert.equal(chartYaml.appVersion, pkg.version, "Chart.yaml appVersion is package.json's version");
    assert.equal(chartYaml.version, pkg.version, "Chart.yaml version is package.json's version");
    assert.equal(DEFAULT_IMAGE.split(":")[0], values.image.repository, "the operator's fallback image");
  });

  it("packages and pushes the chart, and attaches the plugin's archive, sha256 and krew manifest", () => {
    const chartRuns = steps("chart")
      .map((s) => s.run ?? "")
      .join("\n");
    assert.match(chartRuns, /make chart-package/);
    assert.match(
      chartRuns,
      /helm" push "dist\/release\/walship-\$\{GITHUB_REF_NAME#v\}\.tgz" "\$CHART_REGISTRY"/,
    );
    assert.match(String(release.env?.CHART_REGISTRY), /^oci:\/\//);
    assert.match(
      steps("plugin")
        .map((s) => s.run ?? "")
        .join("\n"),
      /make plugin-dist VERSION="\$GITHUB_REF_NAME"/,
    );
    const upload = steps("plugin").find((s) => s.uses?.startsWith("actions/upload-artifact@"));
    assert.deepEqual(String(upload?.with?.path).trim().split("\n"), [
      "dist/release/kubectl-walship_*.tar.gz",
      "dist/release/kubectl-walship_*.tar.gz.sha256",
      "dist/release/walship.yaml",
    ]);
    assert.match(
      steps("release")
        .map((s) => s.run ?? "")
        .join("\n"),
      /gh release create .* release\/\*/,
    );
  });

  it("ci.yml runs make test as .ci/run does, on every push", () => {
    const ci = workflow("ci.yml");
    assert.deepEqual((ci.on.push as { branches: string[] }).branches, ["**"]);
    assert.ok("workflow_call" in ci.on);
    assert.match(ci.jobs.test?.steps?.map((s) => s.run ?? "").join("\n") ?? "", /bash \.ci\/run/);
    assert.match(readFileSync(path.join(ROOT, ".ci/run"), "utf8"), /^make test$/m);
  });
});
