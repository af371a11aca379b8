/**
 * DestinationReachable on the real node (test/helpers/node: kubelet, containerd, the image built from
 * the Dockerfile), the operator helm-installed: each pod's sidecar tests its destination with the
 * pod's own credentials (a Secret mounted as files) and the operator turns the result into the
 * condition. A SqliteReplica whose bucket is missing shows DestinationReachable=False naming the pod,
 * the destination, the step, MinIO's NoSuchBucket and the missing-bucket hint (with a Warning Event);
 * once the bucket is created the sidecar's retry clears it. One with a good bucket shows True, and no
 * probe object is left in its bucket. `kubectl walship status` (the real kubectl and plugin) shows
 * the failure: the probe per destination in -o json, the SELF-TEST column and the hint in the text.
 */
import assert from "node:assert/strict";
import * as path from "node:path";
import { after, before, describe, it } from "node:test";
import { ListObjectsV2Command } from "@aws-sdk/client-s3";
import { binPath } from "../helpers/cache.ts";
import {
  appStatefulSet,
  type Condition,
  createS3Secret,
  installOperator,
  ROOT,
  readyPod,
  s3SqliteReplica,
} from "../helpers/e2e.ts";
import { type Minio, startMinio } from "../helpers/minio.ts";
import { type Cluster, startCluster } from "../helpers/node/index.ts";
import { runCommand, waitFor } from "../helpers/proc.ts";

const NS = "e2e-probe";
const MOUNT = "/var/lib/app";

describe("DestinationReachable from the pods' destination self-test (real node)", {
  timeout: 900_000,
}, () => {
  let c: Cluster;
  let minio: Minio;

  before(async () => {
    c = await startCluster();
    minio = await startMinio({ host: c.gateway });
    await minio.createBucket("good");
    await installOperator(c);
    await c.createNamespace(NS);
    await createS3Secret(c, NS, minio);
  });
  after(async () => {
    await minio?.close();
    await c?.stop();
  });

  interface Status {
    conditions?: Condition[];
    pods?: Array<{ name: string; probes?: Array<Record<string, string>> }>;
  }
  const status = async (name: string) =>
    (
      await c.cp.request<{ status?: Status }>(
        "GET",
        `/apis/walship.dev/v1alpha1/namespaces/${NS}/sqlitereplicas/${name}`,
      )
    ).body.status;

  /** Waits for the SqliteReplica's DestinationReachable to have `want` status; returns it. */
  const reachable = (name: string, want: string, timeoutMs = 120_000) =>
    waitFor(
      async () => {
        const cond = (await status(name))?.conditions?.find((x) => x.type === "DestinationReachable");
        return cond?.status === want ? cond : undefined;
      },
      { what: `SqliteReplica ${name} DestinationReachable=${want}`, timeoutMs, intervalMs: 500 },
    ).catch(async (err) => {
      throw new Error(
        `${(err as Error).message}: ${JSON.stringify(await status(name))}\n${await c.describe(NS)}`,
      );
    });

  it("a missing bucket: False with the pod, step, NoSuchBucket and the hint; True once created; a good bucket: True", async () => {
    await c.apply(appStatefulSet(NS, MOUNT, { name: "good" }));
    await c.apply(appStatefulSet(NS, MOUNT, { name: "bad" }));
    await c.apply(s3SqliteReplica(NS, "good", minio, { mount: MOUNT, bucket: "good", statefulSet: "good" }));
    // No restore on start: the restore init container would stop the pod at the missing bucket first.
    await c.apply(
      s3SqliteReplica(
        NS,
        "bad",
        minio,
        { mount: MOUNT, bucket: "missing", statefulSet: "bad" },
        {
          restoreOnStart: "None",
        },
      ),
    );
    const injected = (x: { spec: { initContainers?: Array<{ name: string }> } }) =>
      (x.spec.initContainers ?? []).some((i) => i.name === "walship");
    await readyPod(c, NS, "good-0", injected);
    await readyPod(c, NS, "bad-0", injected);

    const bad = await reachable("bad", "False");
    assert.equal(bad.reason, "DestinationUnreachable");
    assert.match(bad.message, /^pod bad-0: destination minio: write failed: /);
    assert.match(bad.message, /bucket "missing" does not exist .*\(NoSuchBucket\)/);
    assert.match(
      bad.message,
      /\(hint: missing bucket: bucket "missing" does not exist at http:\/\/[0-9.:]+; create it/,
    );
    const probes = (await status("bad"))?.pods?.find((p) => p.name === "bad-0")?.probes;
    assert.deepEqual(
      probes?.map((p) => [p.destination, p.outcome, p.step]),
      [["minio", "failed", "write"]],
    );
    const events = await c.kubectl([
      "-n",
      NS,
      "get",
      "events",
      "--field-selector",
      "reason=DestinationUnreachable",
      "-o",
      "json",
    ]);
    const items = (
      JSON.parse(events.stdout) as { items: Array<{ type: string; involvedObject: { name: string } }> }
    ).items;
    assert.ok(
      items.some((e) => e.type === "Warning" && e.involvedObject.name === "bad"),
      `a Warning Event DestinationUnreachable for bad: ${events.stdout.slice(0, 1500)}`,
    );

    const good = await reachable("good", "True");
    assert.equal(good.reason, "Reachable");
    assert.match(good.message, /1 probe\(s\) in 1 pod\(s\)$/);
    const listed = await minio.client().send(new ListObjectsV2Command({ Bucket: "good" }));
    const keys = (listed.Contents ?? []).map((o) => o.Key ?? "");
    assert.ok(
      keys.some((k) => k.includes("/generations/")),
      `the good bucket holds the replica: ${keys.join(", ")}`,
    );
    assert.deepEqual(
      keys.filter((k) => k.includes("/walship/probe/")),
      [],
      "no probe object left",
    );

    // `kubectl walship status` (the real kubectl, the plugin on the PATH) shows the failed self-test
    // from the pod's sidecar: in -o json per destination, in the text as a column and the hint.
    const plugin = async (args: string[]): Promise<string> => {
      const r = await runCommand(binPath("kubectl"), ["walship", ...args, "-n", NS], {
        env: { KUBECONFIG: c.cp.kubeconfig, PATH: `${path.join(ROOT, "bin")}:${process.env.PATH}` },
        allowFailure: true,
        timeoutMs: 120_000,
      });
      assert.equal(r.code, 0, r.stderr);
      return r.stdout;
    };
    const report = JSON.parse(await plugin(["status", "bad", "-o", "json"])) as {
      pods: Array<{ name: string; destinations: Array<{ name: string; probe?: Record<string, string> }> }>;
    };
    const probe = report.pods
      .find((p) => p.name === "bad-0")
      ?.destinations.find((d) => d.name === "minio")?.probe;
    assert.equal(probe?.outcome, "failed", JSON.stringify(report));
    assert.equal(probe?.step, "write");
    assert.match(probe?.hint ?? "", /^missing bucket: bucket "missing" does not exist/);
    const text = await plugin(["status", "bad"]);
    assert.match(text, /^ {2}bad-0 +minio +False .* failed at write\b/m);
    assert.match(text, /^ {2}bad-0 minio: write failed: .*NoSuchBucket/m);
    assert.match(text, /^ {4}hint: missing bucket: bucket "missing" does not exist at http:/m);
    assert.match(text, /^ {2}DestinationReachable +False +DestinationUnreachable /m);

    // The user creates the bucket: the sidecar's retry (every minute) clears the condition.
    await minio.createBucket("missing");
    const fixed = await reachable("bad", "True", 150_000);
    assert.equal(fixed.reason, "Reachable");
  });
});
