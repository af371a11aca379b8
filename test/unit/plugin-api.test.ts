/**
 * kubectl walship against the real control plane (etcd and kube-apiserver, no operator and no node):
 * the kubeconfig, context and namespace flags and KUBECONFIG; a missing SqliteReplica; a user without
 * rights; `restore` creating the SqliteRestore and `--wait` following it to Succeeded (exit 0) or
 * Failed (exit 1) as the status written here (standing in for the operator) moves; `pause`/`resume`
 * setting the annotation the operator honours; a SqliteReplica of a Deployment, whose pods (made here,
 * standing in for the ReplicaSet controller) are found by the Deployment's selector and which every
 * command names by kind. The real node runs the rest (test/e2e/plugin.test.ts).
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { after, before, describe, it } from "node:test";
import { stringify } from "yaml";
import { type Io, run } from "../../src/plugin/cli.ts";
import { type ControlPlane, startControlPlane } from "../helpers/controlplane.ts";
import { runCommand, waitFor } from "../helpers/proc.ts";
import { s3Replica } from "./operator-fixtures.ts";

const ROOT = path.resolve(import.meta.dirname, "../..");
const NS = "plugin-ns";
const CRS = `/apis/walship.dev/v1alpha1/namespaces/${NS}`;

function io(): Io & { stdout: string; stderr: string } {
  const o = {
    stdout: "",
    stderr: "",
    env: {},
    out(t: string) {
      o.stdout += t;
    },
    err(t: string) {
      o.stderr += t;
    },
  };
  return o;
}

describe("kubectl walship against a real kube-apiserver", { timeout: 180_000 }, () => {
  let cp: ControlPlane;
  /** A kubeconfig with two contexts: walship-test (namespace default, current) and `other` (plugin-ns). */
  let twoContexts = "";
  const kc = () => ["--kubeconfig", cp.kubeconfig];

  before(async () => {
    cp = await startControlPlane({ controllerManager: false });
    await cp.kubectl(["apply", "-f", path.join(ROOT, "crds")]);
    await cp.kubectl(["wait", "--for=condition=Established", "crd", "--all"]);
    await cp.kubectl(["create", "namespace", NS]);
    // An Established CRD may still answer 429 "storage is (re)initializing" for a moment.
    await waitFor(
      async () =>
        (await cp.request("GET", `${CRS}/sqliterestores`)).status === 200 &&
        (await cp.request("GET", `${CRS}/sqlitereplicas`)).status === 200,
      { what: "the CRDs served", timeoutMs: 30_000, intervalMs: 100 },
    );
    const file = path.join(cp.dir, "db.yaml");
    fs.writeFileSync(file, stringify(s3Replica(NS, "http://127.0.0.1:1")));
    await cp.kubectl(["apply", "-f", file]);
    const cfg = JSON.parse(fs.readFileSync(cp.kubeconfig, "utf8")) as {
      contexts: Array<{ name: string; context: Record<string, string> }>;
    };
    cfg.contexts.push({ name: "other", context: { ...cfg.contexts[0]!.context, namespace: NS } });
    twoContexts = path.join(cp.dir, "two-contexts.json");
    fs.writeFileSync(twoContexts, JSON.stringify(cfg));
  });

  after(async () => {
    await cp?.stop();
  });

  it("finds the namespace from -n, else from the chosen context; a missing object is exit 1 NOT_FOUND", async () => {
    let o = io();
    assert.equal(await run(["status", "db", ...kc(), "-n", NS, "-o", "json"], o, "v0"), 0, o.stderr);
    const rep = JSON.parse(o.stdout) as {
      name: string;
      namespace: string;
      workload: { kind: string; name: string };
      workloadFound: boolean;
    };
    assert.equal(rep.namespace, NS);
    assert.deepEqual(rep.workload, { kind: "StatefulSet", name: "app" });
    assert.equal(rep.workloadFound, false);
    o = io();
    assert.equal(
      await run(["status", "db", "--kubeconfig", twoContexts, "--context", "other", "-o", "json"], o, "v0"),
      0,
    );
    assert.equal((JSON.parse(o.stdout) as { namespace: string }).namespace, NS);
    o = io();
    assert.equal(await run(["status", "db", "--kubeconfig", twoContexts], o, "v0"), 1);
    assert.match(o.stderr, /SqliteReplica db: not found in namespace default \[WALSHIP_ERR_NOT_FOUND\]/);
    o = io();
    assert.equal(await run(["status", "db", "--kubeconfig", twoContexts, "--context", "nope"], o, "v0"), 1);
    assert.match(o.stderr, /no context "nope" \[WALSHIP_ERR_CONFIG\]/);
  });

  it("bin/kubectl-walship reads KUBECONFIG and prints text", async () => {
    const r = await runCommand(path.join(ROOT, "bin/kubectl-walship"), ["status", "db", "--context=other"], {
      env: { KUBECONFIG: twoContexts },
    });
    assert.match(r.stdout, /^SqliteReplica: +plugin-ns\/db$/m);
    assert.match(r.stdout, /^StatefulSet: +app \(not found\), database \/data\/app\.db$/m);
  });

  it("a user without rights gets exit 1 with the API server's 'forbidden'", async () => {
    await cp.kubectl(["-n", NS, "create", "serviceaccount", "nobody"]);
    const weak = await cp.kubeconfigFor(await cp.tokenFor(NS, "nobody"));
    const o = io();
    assert.equal(await run(["status", "db", "--kubeconfig", weak, "-n", NS], o, "v0"), 1);
    assert.match(o.stderr, /forbidden.*\[WALSHIP_ERR_KUBE\]$/m);
  });

  it("restore creates the SqliteRestore; a second of the same name is refused", async () => {
    let o = io();
    const args = [
      "restore",
      "db",
      ...kc(),
      "-n",
      NS,
      "--to",
      "2026-01-01T00:00:00Z",
      "--new-claim",
      "copy",
      "--name",
      "r0",
    ];
    assert.equal(await run(args, o, "v0"), 0, o.stderr);
    assert.match(o.stdout, /^sqliterestore\.walship\.dev\/r0 created$/m);
    const created = await cp.request<{ spec: Record<string, unknown> }>("GET", `${CRS}/sqliterestores/r0`);
    assert.deepEqual(created.body.spec, {
      sqliteReplicaName: "db",
      mode: "NewClaim",
      target: { timestamp: "2026-01-01T00:00:00Z" },
      newClaim: { name: "copy" },
      timeout: "1h",
      previousDatabase: "Retain",
    });
    o = io();
    assert.equal(await run(args, o, "v0"), 1);
    assert.match(o.stderr, /\[WALSHIP_ERR_EXISTS\]$/m);
    o = io();
    assert.equal(
      await run(["restore", "nosuch", ...kc(), "-n", NS, "--to", "latest", "--in-place"], o, "v0"),
      1,
    );
    assert.match(o.stderr, /SqliteReplica nosuch: not found .*\[WALSHIP_ERR_NOT_FOUND\]$/m);
  });

  /** Walks a SqliteRestore's status through `phases` (as the operator would), one every 300 ms. */
  const drive = async (name: string, phases: Array<Record<string, unknown>>) => {
    for (let i = 0; i < 100; i++) {
      const r = await cp.request("GET", `${CRS}/sqliterestores/${name}`);
      if (r.status === 200) break;
      await new Promise((res) => setTimeout(res, 50));
    }
    for (const status of phases) {
      await new Promise((res) => setTimeout(res, 300));
      const file = path.join(cp.dir, `status-${Math.random().toString(16).slice(2)}.json`);
      fs.writeFileSync(file, JSON.stringify({ status }));
      await cp.kubectl([
        "-n",
        NS,
        "patch",
        "sqliterestore",
        name,
        "--subresource=status",
        "--type=merge",
        "--patch-file",
        file,
      ]);
    }
  };

  it("restore --wait follows the phases to Succeeded (exit 0)", async () => {
    const o = io();
    const waiting = run(
      ["restore", "db", ...kc(), "-n", NS, "--to", "latest", "--in-place", "--name", "r1", "--wait"],
      o,
      "v0",
    );
    await drive("r1", [
      { phase: "Planning", message: "checking the target" },
      { phase: "ScalingDown", message: "scaling app to 0" },
      { phase: "Restoring", message: "restoring" },
      {
        phase: "Succeeded",
        message: "restored",
        restored: {
          generation: "0123456789abcdef",
          index: 2,
          offset: 100,
          position: "0123456789abcdef/00000002:100",
        },
      },
    ]);
    assert.equal(await waiting, 0, o.stderr);
    const phases = o.stdout
      .split("\n")
      .slice(1)
      .filter(Boolean)
      .map((l) => l.split(/\s+/)[1]);
    assert.deepEqual(phases, ["Pending", "Planning", "ScalingDown", "Restoring", "Succeeded"]);
    assert.match(o.stdout, /Succeeded +restored \(restored to 0123456789abcdef\/00000002:100\)$/m);
  });

  it("restore --wait ends with exit 1 WALSHIP_ERR_RESTORE when the restore fails", async () => {
    const o = io();
    const waiting = run(
      ["restore", "db", ...kc(), "-n", NS, "--to", "latest", "--in-place", "--name", "r2", "--wait"],
      o,
      "v0",
    );
    await drive("r2", [
      { phase: "Planning", message: "checking the target" },
      {
        phase: "Failed",
        message: "no snapshot",
        failure: { phase: "Planning", reason: "NothingToRestore", message: "no snapshot on minio" },
      },
    ]);
    assert.equal(await waiting, 1);
    assert.match(
      o.stderr,
      /SqliteRestore r2 failed: NothingToRestore in phase Planning: no snapshot on minio \[WALSHIP_ERR_RESTORE\]/,
    );
  });

  it("restore --wait --timeout gives up waiting (exit 1) and leaves the restore in place", async () => {
    const o = io();
    const code = await run(
      [
        "restore",
        "db",
        ...kc(),
        "-n",
        NS,
        "--to",
        "latest",
        "--in-place",
        "--name",
        "r3",
        "--wait",
        "--timeout",
        "2s",
      ],
      o,
      "v0",
    );
    assert.equal(code, 1);
    assert.match(
      o.stderr,
      /not done after 2s, in phase Pending; the restore goes on .*\[WALSHIP_ERR_ABORTED\]/,
    );
    assert.equal((await cp.request("GET", `${CRS}/sqliterestores/r3`)).status, 200);
  });

  it("pause and resume set and remove the annotation", async () => {
    const annotations = async () =>
      (
        await cp.request<{ metadata: { annotations?: Record<string, string> } }>(
          "GET",
          `${CRS}/sqlitereplicas/db`,
        )
      ).body.metadata.annotations ?? {};
    let o = io();
    assert.equal(await run(["pause", "db", ...kc(), "-n", NS], o, "v0"), 0, o.stderr);
    assert.match(o.stdout, /db paused: the operator removes the replicator from StatefulSet app/);
    assert.equal((await annotations())["walship.dev/paused"], "true");
    o = io();
    assert.equal(await run(["pause", "db", ...kc(), "-n", NS], o, "v0"), 0);
    assert.match(o.stdout, /was already paused/);
    o = io();
    assert.equal(await run(["resume", "db", ...kc(), "-n", NS], o, "v0"), 0);
    assert.match(o.stdout, /db resumed/);
    assert.equal((await annotations())["walship.dev/paused"], undefined);
    o = io();
    assert.equal(await run(["pause", "nosuch", ...kc(), "-n", NS], o, "v0"), 1);
    assert.match(o.stderr, /\[WALSHIP_ERR_NOT_FOUND\]$/m);
  });
  it("drill sets the annotation; --wait prints each destination's result when the run answering it completed", async () => {
    const annotation = async () =>
      (
        await cp.request<{ metadata: { annotations?: Record<string, string> } }>(
          "GET",
          `${CRS}/sqlitereplicas/db`,
        )
      ).body.metadata.annotations?.["walship.dev/drill-requested"];
    let o = io();
    assert.equal(await run(["drill", "db", ...kc(), "-n", NS], o, "v0"), 0, o.stderr);
    const first = await annotation();
    assert.ok(first && !Number.isNaN(Date.parse(first)), String(first));
    assert.match(
      o.stdout,
      /drill requested on sqlitereplica.walship.dev\/db \(walship.dev\/drill-requested=/,
    );
    // --wait: the status written here stands in for the operator's, for the new request only.
    const answer = async (outcome: "Passed" | "Failed") => {
      const value = await waitFor(
        async () => {
          const v = await annotation();
          return v && v !== first ? v : undefined;
        },
        { what: "a new drill request", timeoutMs: 10_000, intervalMs: 50 },
      );
      const drill = {
        destination: "minio",
        at: "2026-12-03T10:00:05Z",
        outcome,
        job: "db-drill-x",
        ...(outcome === "Passed"
          ? { position: "0123456789abcdef/00000003:4152", restoreSeconds: 1.5, sizeBytes: 8192 }
          : { message: "restore: -verify-sql returned no row" }),
      };
      const file = path.join(cp.dir, `drill-${outcome}.json`);
      const status = {
        drillRun: {
          job: "db-drill-x",
          startedAt: "2026-12-03T10:00:00Z",
          completedAt: "2026-12-03T10:00:06Z",
          request: value,
        },
        drills: [drill],
      };
      fs.writeFileSync(file, JSON.stringify({ status }));
      await cp.kubectl([
        "-n",
        NS,
        "patch",
        "sqlitereplica",
        "db",
        "--subresource=status",
        "--type=merge",
        "--patch-file",
        file,
      ]);
    };
    o = io();
    let waiting = run(["drill", "db", ...kc(), "-n", NS, "--wait"], o, "v0");
    await answer("Passed");
    assert.equal(await waiting, 0, o.stderr);
    assert.equal(
      o.stdout,
      "minio: Passed: restored to 0123456789abcdef/00000003:4152 in 1.5s (8192 bytes)\n",
    );
    o = io();
    const second = await annotation();
    waiting = run(["drill", "db", ...kc(), "-n", NS, "--wait"], o, "v1");
    await waitFor(async () => ((await annotation()) !== second ? true : undefined), {
      what: "the third request",
      timeoutMs: 10_000,
      intervalMs: 50,
    });
    await answer("Failed");
    assert.equal(await waiting, 1);
    assert.match(o.stdout, /^minio: Failed: restore: -verify-sql returned no row$/m);
    assert.match(o.stderr, /drill db: 1 destination\(s\) failed \[WALSHIP_ERR_RESTORE\]/);
  });

  it("a Deployment's SqliteReplica: its pods by the Deployment's selector, the Deployment named by kind", async () => {
    const pod = "web-6b7c9d5f8-x2k4p";
    const podOf = (name: string, labels: Record<string, string>) => ({
      apiVersion: "v1",
      kind: "Pod",
      metadata: { name, namespace: NS, labels },
      spec: { containers: [{ name: "app", image: "walship-test/app:1" }] },
    });
    const onDeployment = (name: string, deployment: string) => {
      const r = s3Replica(NS, "http://127.0.0.1:1") as {
        metadata: { name: string };
        spec: Record<string, unknown>;
      };
      r.metadata.name = name;
      delete r.spec.statefulSetName;
      r.spec.workloadRef = { kind: "Deployment", name: deployment };
      return r;
    };
    const labels = { app: "web", tier: "db" };
    const objects = [
      {
        apiVersion: "apps/v1",
        kind: "Deployment",
        metadata: { name: "web", namespace: NS },
        spec: {
          replicas: 1,
          strategy: { type: "Recreate" },
          selector: {
            matchLabels: { app: "web" },
            matchExpressions: [{ key: "tier", operator: "In", values: ["db"] }],
          },
          template: { metadata: { labels }, spec: podOf("", labels).spec },
        },
      },
      podOf(pod, { ...labels, "pod-template-hash": "6b7c9d5f8" }),
      // Not the Deployment's: the same app label, another tier (its selector's expression leaves it out).
      podOf("web-cache-0", { app: "web", tier: "cache" }),
      onDeployment("webdb", "web"),
      onDeployment("gonedb", "nosuch"),
    ];
    const file = path.join(cp.dir, "deployment.yaml");
    fs.writeFileSync(file, objects.map((x) => stringify(x)).join("---\n"));
    await cp.kubectl(["apply", "-f", file]);

    let o = io();
    assert.equal(await run(["status", "webdb", ...kc(), "-n", NS, "-o", "json"], o, "v0"), 0, o.stderr);
    const rep = JSON.parse(o.stdout) as {
      workload: { kind: string; name: string };
      workloadFound: boolean;
      pods: Array<{ name: string; phase: string }>;
    };
    assert.deepEqual(rep.workload, { kind: "Deployment", name: "web" });
    assert.equal(rep.workloadFound, true);
    assert.deepEqual(
      rep.pods.map((p) => [p.name, p.phase]),
      [[pod, "Pending"]],
    );
    o = io();
    assert.equal(await run(["status", "webdb", ...kc(), "-n", NS], o, "v0"), 0, o.stderr);
    assert.match(o.stdout, /^Deployment: +web, database \/data\/app\.db$/m);
    assert.match(o.stdout, new RegExp(`^ {2}${pod} +Pending +False `, "m"));
    o = io();
    assert.equal(await run(["status", "gonedb", ...kc(), "-n", NS], o, "v0"), 0, o.stderr);
    assert.match(o.stdout, /^Deployment: +nosuch \(not found\), database /m);

    // snapshots/generations go to the Deployment's pods (here one without a running sidecar).
    o = io();
    assert.equal(await run(["snapshots", "webdb", ...kc(), "-n", NS], o, "v0"), 1);
    assert.match(o.stdout, new RegExp(`^pod ${pod}: not read: the walship container is not running$`, "m"));
    assert.match(o.stderr, new RegExp(`no pod could be read \\(${pod}\\) \\[WALSHIP_ERR_KUBE\\]$`, "m"));
    o = io();
    assert.equal(await run(["generations", "webdb", ...kc(), "-n", NS, "--pod", "app-0"], o, "v0"), 1);
    assert.match(o.stderr, /pod app-0 is not a pod of Deployment web \[WALSHIP_ERR_NOT_FOUND\]$/m);
    o = io();
    assert.equal(await run(["generations", "gonedb", ...kc(), "-n", NS], o, "v0"), 1);
    assert.match(o.stderr, /Deployment plugin-ns\/nosuch not found \[WALSHIP_ERR_NOT_FOUND\]$/m);

    o = io();
    assert.equal(await run(["pause", "webdb", ...kc(), "-n", NS], o, "v0"), 0, o.stderr);
    assert.match(o.stdout, /webdb paused: the operator removes the replicator from Deployment web /);
    o = io();
    assert.equal(await run(["resume", "webdb", ...kc(), "-n", NS], o, "v0"), 0, o.stderr);
    assert.match(o.stdout, /webdb resumed: the operator injects the replicator into Deployment web again/);

    // --pod picks one of a StatefulSet's replicas; a Deployment's pods share one: refused, nothing made.
    o = io();
    const restore = ["restore", "webdb", ...kc(), "-n", NS, "--to", "latest", "--in-place"];
    assert.equal(await run([...restore, "--pod", pod, "--name", "rd0"], o, "v0"), 2);
    assert.match(o.stderr, /--pod: the pods of Deployment web share one replica.*\[WALSHIP_ERR_USAGE\]$/m);
    assert.equal((await cp.request("GET", `${CRS}/sqliterestores/rd0`)).status, 404);
    o = io();
    assert.equal(await run([...restore, "--name", "rd1"], o, "v0"), 0, o.stderr);
    assert.match(o.stdout, /^sqliterestore\.walship\.dev\/rd1 created$/m);
  });
});
