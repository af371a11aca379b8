/**
 * kubectl walship end to end on the real node: the real kubectl finds the plugin on the PATH
 * (bin/kubectl-walship) and runs it with KUBECONFIG, against the helm-installed operator, the test
 * app's StatefulSet replicating to MinIO on the node's bridge. `status` shows each pod's destination
 * as its sidecar reports it (through the API server's pod proxy), and `wait` returns once the sidecar
 * has read the WAL since it started with nothing pending; `snapshots` and `generations` list
 * what MinIO holds, read by the sidecar with the pod's own credentials (pods/exec); `restore --wait`
 * follows a NewClaim restore to Succeeded (exit 0) and an InPlace restore to a time before the
 * backups to Failed (exit 1, the app untouched); `pause` removes the replicator (the pod rolls
 * without it, phase Paused) and `resume` brings it back; a one-replica Deployment's SqliteReplica is
 * read the same (its pod found by the Deployment's selector, its replica `<path>/<Deployment name>`).
 * The release bundle (scripts/plugin-dist.ts) reads the same, alone.
 */
import assert from "node:assert/strict";
import * as path from "node:path";
import { after, before, describe, it } from "node:test";
import { ListObjectsV2Command } from "@aws-sdk/client-s3";
import { pluginDist } from "../../scripts/plugin-dist.ts";
import { binPath } from "../helpers/cache.ts";
import {
  appDeployment,
  appStatefulSet,
  createS3Secret,
  installOperator,
  type PodLite,
  ROOT,
  readyPod,
  s3SqliteReplica,
} from "../helpers/e2e.ts";
import { type Minio, startMinio } from "../helpers/minio.ts";
import { type Cluster, startCluster } from "../helpers/node/index.ts";
import { makeTempDir, type RunResult, runCommand, waitFor } from "../helpers/proc.ts";

const NS = "e2e-plugin";
const DATA_MOUNT = "/var/lib/walship-e2e-plugin/data";
const BUCKET = "plugin";

interface Report {
  phase: string;
  paused: boolean;
  generation?: string;
  windowOldest?: string;
  pods: Array<{
    name: string;
    ready: boolean;
    generation?: string;
    destinations: Array<{
      name: string;
      ready: boolean;
      generation?: string;
      position?: string;
      windowOldest?: string;
      windowNewest?: string;
    }>;
    sidecarError?: string;
  }>;
  conditions: Array<{ type: string; status: string; reason: string }>;
  events: Array<{ reason: string }>;
  restores: Array<{ name: string; phase: string }>;
}

describe("kubectl walship (real node, helm-installed operator, MinIO)", { timeout: 1_200_000 }, () => {
  let c: Cluster;
  let minio: Minio;

  /** `kubectl walship ARGS` through the real kubectl, which finds kubectl-walship on the PATH. */
  const plugin = (args: string[], timeoutMs = 300_000): Promise<RunResult> =>
    runCommand(binPath("kubectl"), ["walship", ...args, "-n", NS], {
      env: { KUBECONFIG: c.cp.kubeconfig, PATH: `${path.join(ROOT, "bin")}:${process.env.PATH}` },
      allowFailure: true,
      timeoutMs,
    });
  const report = async (): Promise<Report> => {
    const r = await plugin(["status", "db", "-o", "json"]);
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout) as Report;
  };
  const phase = async () =>
    (
      await c.cp.request<{ status?: { phase?: string } }>(
        "GET",
        `/apis/walship.dev/v1alpha1/namespaces/${NS}/sqlitereplicas/db`,
      )
    ).body.status?.phase;
  const waitPhase = (want: string) =>
    waitFor(async () => ((await phase()) === want ? true : undefined), {
      what: `SqliteReplica db ${want}`,
      timeoutMs: 180_000,
      intervalMs: 500,
    }).catch(async (err) => {
      throw new Error(`${(err as Error).message} (is ${await phase()})\n${await c.describe(NS)}`);
    });
  const hasSidecar = (p: PodLite) => (p.spec.initContainers ?? []).some((x) => x.name === "walship");

  before(async () => {
    c = await startCluster();
    minio = await startMinio({ host: c.gateway });
    await minio.createBucket(BUCKET);
    await installOperator(c);
    await c.createNamespace(NS);
    await createS3Secret(c, NS, minio);
    await c.apply(appStatefulSet(NS, DATA_MOUNT));
    await c.apply(s3SqliteReplica(NS, "db", minio, { mount: DATA_MOUNT, bucket: BUCKET }));
    await waitPhase("Replicating");
    // The window needs a snapshot the sidecar knows of: wait until the pod reports one.
    await waitFor(
      async () => {
        const rep = await report();
        return rep.pods[0]?.destinations[0]?.windowOldest ? true : undefined;
      },
      { what: "a restorable window on app-0's destination", timeoutMs: 120_000, intervalMs: 1000 },
    );
  });

  after(async () => {
    await minio?.close();
    await c?.stop();
  });

  it("status: each pod's destination as its sidecar sees it, the conditions and Events; text and JSON", async () => {
    const rep = await report();
    assert.equal(rep.phase, "Replicating");
    assert.equal(rep.paused, false);
    assert.equal(rep.pods.length, 1);
    const pod = rep.pods[0]!;
    assert.equal(pod.name, "app-0");
    assert.equal(pod.ready, true);
    assert.equal(pod.sidecarError, undefined);
    const dest = pod.destinations[0]!;
    assert.equal(dest.name, "minio");
    assert.equal(dest.ready, true);
    assert.equal(dest.generation, rep.generation, "the sidecar's generation is the one on the status");
    assert.match(dest.position ?? "", /^[0-9a-f]{16}\/[0-9a-f]{8}:\d+$/);
    assert.ok(Date.parse(dest.windowOldest!) <= Date.parse(dest.windowNewest!));
    assert.equal(rep.conditions.find((x) => x.type === "Ready")?.status, "True");
    assert.ok(rep.events.length > 0, "recent Events");

    const text = await plugin(["status", "db"]);
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout, /^Phase: +Replicating \(Ready True: Replicating\)$/m);
    assert.match(text.stdout, /^ {2}app-0 +Running +True +[0-9a-f]{16} /m);
    assert.match(
      text.stdout,
      new RegExp(`^ {2}app-0 +minio +True +${rep.generation}/[0-9a-f]{8}:\\d+ `, "m"),
    );
    assert.match(text.stdout, /^Events:$/m);
  });

  it("wait: the sidecar has read the WAL since the command started and nothing is pending on MinIO", async () => {
    const started = Date.now();
    const r = await plugin(["wait", "db", "--timeout", "120s"]);
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}\n${await c.describe(NS)}`);
    const m = /^app-0: every commit made before (\S+) is on every destination$/m.exec(r.stdout);
    assert.ok(m, `the pod's line: ${r.stdout}`);
    // The sidecar's own time at the first reading (its clock is this machine's: the node is here).
    const since = Date.parse(m[1]!);
    assert.ok(since >= started - 1000 && since <= Date.now(), `${m[1]} within the command's run`);
    // A database the SqliteReplica does not have is refused before anything is read.
    const bad = await plugin(["wait", "db", "--database", "other"]);
    assert.equal(bad.code, 2, `${bad.stdout}\n${bad.stderr}`);
    assert.match(bad.stderr, /--database: SqliteReplica db replicates one database/);
  });

  it("the release bundle (one file, no node_modules beside it) reads the same through the cluster", async () => {
    const dist = await pluginDist({ version: "v0.0.0-e2e", out: makeTempDir("plugin-dist") });
    const dir = makeTempDir("plugin-unpacked");
    await runCommand("tar", ["-xzf", dist.archive, "-C", dir]);
    const env = { KUBECONFIG: c.cp.kubeconfig, PATH: `${path.dirname(process.execPath)}:/usr/bin:/bin` };
    const st = await runCommand(path.join(dir, "kubectl-walship"), ["status", "db", "-n", NS, "-o", "json"], {
      env,
      cwd: dir,
    });
    const rep = JSON.parse(st.stdout) as Report;
    assert.equal(rep.pods[0]?.destinations[0]?.ready, true);
    const snaps = await runCommand(
      path.join(dir, "kubectl-walship"),
      ["snapshots", "db", "-n", NS, "-o", "json"],
      {
        env,
        cwd: dir,
        allowFailure: true,
      },
    );
    assert.equal(snaps.code, 0, snaps.stderr);
    const items = (JSON.parse(snaps.stdout) as { items: Array<{ generation: string }> }).items;
    assert.ok(
      items.some((x) => x.generation === rep.generation),
      snaps.stdout,
    );
  });

  it("snapshots and generations: what MinIO holds, read by the sidecar with the pod's credentials", async () => {
    const rep = await report();
    const snaps = await plugin(["snapshots", "db", "-o", "json"]);
    assert.equal(snaps.code, 0, snaps.stderr);
    const s = JSON.parse(snaps.stdout) as {
      items: Array<{ pod: string; replica: string; generation: string; size: number }>;
      problems: unknown[];
    };
    assert.deepEqual(s.problems, []);
    const current = s.items.filter((x) => x.generation === rep.generation);
    assert.ok(current.length >= 1, JSON.stringify(s.items));
    assert.equal(current[0]!.pod, "app-0");
    assert.equal(current[0]!.replica, "minio");
    assert.ok(current[0]!.size > 0);
    // The same snapshot as a listing of the bucket: <path>/<pod>/generations/<gen>/snapshots/.
    const listed = await minio.client().send(
      new ListObjectsV2Command({
        Bucket: BUCKET,
        Prefix: `app/app-0/generations/${rep.generation}/snapshots/`,
      }),
    );
    const keys = (listed.Contents ?? []).map((o) => o.Key ?? "");
    assert.ok(keys.length >= current.length, `bucket: ${keys.join(", ")}`);

    const gens = await plugin(["generations", "db", "--destination", "minio"]);
    assert.equal(gens.code, 0, gens.stderr);
    assert.match(gens.stdout, /^POD +DESTINATION +GENERATION +LAG +START +END$/m);
    assert.match(gens.stdout, new RegExp(`^app-0 +minio +${rep.generation} `, "m"));

    const none = await plugin(["snapshots", "db", "--pod", "app-9"]);
    assert.equal(none.code, 1);
    assert.match(none.stderr, /\[WALSHIP_ERR_NOT_FOUND\]$/m);
  });

  it("restore --new-claim --wait follows the restore to Succeeded", async () => {
    const r = await plugin([
      "restore",
      "db",
      "--to",
      "latest",
      "--new-claim",
      "db-copy",
      "--name",
      "copy",
      "--wait",
    ]);
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}\n${await c.describe(NS)}`);
    assert.match(r.stdout, /^sqliterestore\.walship\.dev\/copy created; following it$/m);
    assert.match(r.stdout, /Planning/);
    assert.match(r.stdout, /Succeeded .*\(restored to [0-9a-f]{16}\/[0-9a-f]{8}:\d+/);
    const pvc = await c.cp.request("GET", `/api/v1/namespaces/${NS}/persistentvolumeclaims/db-copy`);
    assert.equal(pvc.status, 200);
    const rep = await report();
    assert.deepEqual(
      rep.restores.map((x) => [x.name, x.phase]),
      [["copy", "Succeeded"]],
    );
  });

  it("restore --in-place --wait to a time before the backups fails (exit 1) and leaves the app alone", async () => {
    const before = await readyPod(c, NS, "app-0");
    const r = await plugin([
      "restore",
      "db",
      "--to",
      "2001-01-01T00:00:00Z",
      "--in-place",
      "--name",
      "too-old",
      "--wait",
    ]);
    assert.equal(r.code, 1, r.stdout);
    assert.match(r.stdout, /Failed/);
    assert.match(r.stderr, /SqliteRestore too-old failed: .* \[WALSHIP_ERR_RESTORE\]$/m);
    const still = await readyPod(c, NS, "app-0");
    assert.equal(still.metadata.uid, before.metadata.uid, "the app's pod was never scaled away");
  });

  it("pause removes the replicator (the pod rolls without it); resume brings it back", async () => {
    const first = await readyPod(c, NS, "app-0", hasSidecar);
    const paused = await plugin(["pause", "db"]);
    assert.equal(paused.code, 0, paused.stderr);
    assert.match(paused.stdout, /paused: the operator removes the replicator from StatefulSet app/);
    await waitPhase("Paused");
    const bare = await readyPod(
      c,
      NS,
      "app-0",
      (p) => p.metadata.uid !== first.metadata.uid && !hasSidecar(p),
    );
    assert.equal(bare.spec.initContainers, undefined, "neither the sidecar nor the restore container");
    const rep = await report();
    assert.equal(rep.paused, true);
    assert.equal(rep.phase, "Paused");
    assert.equal(rep.conditions.find((x) => x.type === "Ready")?.reason, "Paused");
    const text = await plugin(["status", "db"]);
    assert.match(text.stdout, /^Phase: +Paused \(Ready False: Paused\), paused$/m);
    const snaps = await plugin(["snapshots", "db"]);
    assert.equal(snaps.code, 1, "no sidecar to read through while paused");
    assert.match(snaps.stdout, /pod app-0: not read: the walship container is not running/);

    const resumed = await plugin(["resume", "db"]);
    assert.equal(resumed.code, 0, resumed.stderr);
    assert.match(resumed.stdout, /resumed/);
    await readyPod(c, NS, "app-0", (p) => p.metadata.uid !== bare.metadata.uid && hasSidecar(p));
    await waitPhase("Replicating");
    const back = await report();
    assert.equal(back.paused, false);
    assert.equal(back.pods[0]?.destinations[0]?.ready, true);
  });
  it("a Deployment's SqliteReplica: status and snapshots through its pod, found by the Deployment's selector", async () => {
    await c.apply(appDeployment(NS, DATA_MOUNT));
    const spec = s3SqliteReplica(NS, "web-db", minio, { mount: DATA_MOUNT, bucket: BUCKET }) as {
      spec: Record<string, unknown>;
    };
    delete spec.spec.statefulSetName;
    spec.spec.workloadRef = { kind: "Deployment", name: "web" };
    await c.apply(spec);
    const rep = await waitFor(
      async () => {
        const r = await plugin(["status", "web-db", "-o", "json"]);
        const x = JSON.parse(r.stdout || "{}") as Report & { workload?: unknown; workloadFound?: boolean };
        const d = x.pods?.length === 1 ? x.pods[0]?.destinations[0] : undefined;
        return x.phase === "Replicating" && d?.ready && d.windowOldest ? x : undefined;
      },
      {
        what: "web-db Replicating with a window on the Deployment's pod",
        timeoutMs: 180_000,
        intervalMs: 1000,
      },
    ).catch(async (err) => {
      throw new Error(`${(err as Error).message}\n${await c.describe(NS)}`);
    });
    assert.deepEqual(rep.workload, { kind: "Deployment", name: "web" });
    assert.equal(rep.workloadFound, true);
    const pod = rep.pods[0]!.name;
    assert.match(pod, /^web-[a-z0-9]+-[a-z0-9]{5}$/);
    const text = await plugin(["status", "web-db"]);
    assert.match(text.stdout, /^Deployment: +web, database /m);

    const snaps = await plugin(["snapshots", "web-db", "-o", "json"]);
    assert.equal(snaps.code, 0, snaps.stderr);
    const items = (JSON.parse(snaps.stdout) as { items: Array<{ pod: string; generation: string }> }).items;
    const current = items.filter((x) => x.generation === rep.pods[0]!.generation);
    assert.ok(current.length >= 1 && current.every((x) => x.pod === pod), snaps.stdout);
    // The replica is named after the Deployment: <path>/web, not the pod's name.
    const listed = await minio.client().send(
      new ListObjectsV2Command({
        Bucket: BUCKET,
        Prefix: `app/web/generations/${rep.pods[0]!.generation}/snapshots/`,
      }),
    );
    assert.ok((listed.KeyCount ?? 0) >= current.length, `bucket: ${listed.KeyCount}`);
  });
});
