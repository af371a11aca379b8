/**
 * Smoke: a StatefulSet on the real control plane (etcd, kube-apiserver, kube-controller-manager),
 * run by the process kubelet. The pod writes SQLite into its PVC at the real mountPath, gets a
 * ConfigMap env and a Secret volume, runs a native sidecar beside it, is Running and Ready through
 * the API, and its PVC survives a pod delete. Fails (does not skip) when the binaries are missing.
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as http from "node:http";
import * as path from "node:path";
import { after, before, describe, it } from "node:test";
import {
  AppsV1Api,
  BatchV1Api,
  CoreV1Api,
  KubeConfig,
  type V1Pod,
  type V1StatefulSet,
} from "@kubernetes/client-node";
import { type ControlPlane, startControlPlane } from "../helpers/controlplane.ts";
import { type Kubelet, startKubelet } from "../helpers/kubelet/index.ts";
import { waitFor } from "../helpers/proc.ts";

const APP = path.resolve(import.meta.dirname, "../fixtures/apps/app.ts");
const NS = "kubelet-smoke";
const DATA_MOUNT = "/var/lib/walship-kubelet-smoke/data";

function get(url: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { timeout: 3000 }, (res) => {
      let body = "";
      res.on("data", (d: Buffer) => {
        body += d.toString();
      });
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on("timeout", () => req.destroy(new Error(`GET ${url}: timeout`)));
    req.on("error", reject);
  });
}

function condition(pod: V1Pod | undefined, type: string): string | undefined {
  return pod?.status?.conditions?.find((c) => c.type === type)?.status;
}

function statefulSet(): V1StatefulSet {
  const image = "walship-test/app:1";
  const shared = { name: "shared", mountPath: "/shared" };
  return {
    apiVersion: "apps/v1",
    kind: "StatefulSet",
    metadata: { name: "app", namespace: NS },
    spec: {
      serviceName: "app",
      replicas: 1,
      selector: { matchLabels: { app: "app" } },
      template: {
        metadata: { labels: { app: "app" } },
        spec: {
          terminationGracePeriodSeconds: 5,
          initContainers: [
            {
              name: "sidecar",
              image,
              args: ["sidecar"],
              restartPolicy: "Always",
              env: [{ name: "SIDECAR_PORT", value: "8081" }],
              volumeMounts: [shared],
              startupProbe: { httpGet: { path: "/", port: 8081 }, periodSeconds: 1, failureThreshold: 30 },
              readinessProbe: { httpGet: { path: "/", port: 8081 }, periodSeconds: 1 },
            },
            { name: "init", image, args: ["init"], volumeMounts: [shared] },
          ],
          containers: [
            {
              name: "app",
              image,
              args: ["serve"],
              ports: [{ name: "http", containerPort: 8080 }],
              env: [
                { name: "DATA_DIR", value: DATA_MOUNT },
                { name: "GREETING", valueFrom: { configMapKeyRef: { name: "app-config", key: "greeting" } } },
                { name: "MY_POD", valueFrom: { fieldRef: { fieldPath: "metadata.name" } } },
                { name: "MY_IP", valueFrom: { fieldRef: { fieldPath: "status.podIP" } } },
              ],
              envFrom: [{ prefix: "CFG_", configMapRef: { name: "app-config" } }],
              volumeMounts: [
                { name: "data", mountPath: DATA_MOUNT },
                { name: "secret", mountPath: "/etc/walship-kubelet-smoke/secret", readOnly: true },
                shared,
              ],
              readinessProbe: { httpGet: { path: "/ready", port: "http" }, periodSeconds: 1 },
              livenessProbe: { httpGet: { path: "/healthz", port: 8080 }, periodSeconds: 2 },
            },
          ],
          volumes: [
            { name: "secret", secret: { secretName: "app-secret" } },
            { name: "shared", emptyDir: {} },
          ],
        },
      },
      volumeClaimTemplates: [
        {
          metadata: { name: "data" },
          spec: { accessModes: ["ReadWriteOnce"], resources: { requests: { storage: "1Gi" } } },
        },
      ],
    },
  };
}

describe("process kubelet on the real control plane", { timeout: 300_000 }, () => {
  let cp: ControlPlane | undefined;
  let kubelet: Kubelet | undefined;
  let core: CoreV1Api;
  let apps: AppsV1Api;
  let batch: BatchV1Api;
  const lines: string[] = [];

  before(async () => {
    // Throws INFRA_MISSING_BINARY (naming test/infra/install) when the binaries are not built.
    cp = await startControlPlane({ controllerManager: true });
    const kc = new KubeConfig();
    kc.loadFromFile(cp.kubeconfig);
    core = kc.makeApiClient(CoreV1Api);
    apps = kc.makeApiClient(AppsV1Api);
    batch = kc.makeApiClient(BatchV1Api);
    kubelet = await startKubelet({
      kubeconfig: cp.kubeconfig,
      images: { "walship-test/app": { command: [process.execPath, APP] } },
      log: (l) => lines.push(l),
      restartBackoffMs: { initial: 500, max: 5000 },
    });
  });

  after(async () => {
    await kubelet?.stop();
    await cp?.stop();
    if (process.env.KUBELET_DEBUG) console.log(lines.join("\n"));
  });

  async function readyPod(name: string, notUid?: string): Promise<V1Pod> {
    return waitFor(
      async () => {
        const p = await core.readNamespacedPod({ name, namespace: NS });
        if (notUid !== undefined && p.metadata?.uid === notUid) return undefined;
        return p.status?.phase === "Running" && condition(p, "Ready") === "True" ? p : undefined;
      },
      { what: `pod ${NS}/${name} Running and Ready`, timeoutMs: 90_000, intervalMs: 250 },
    ).catch(async (err) => {
      const logs = await Promise.all(["sidecar", "init", "app"].map((c) => kubelet?.logs(NS, name, c)));
      throw new Error(
        `${(err as Error).message}\nkubelet:\n${lines.slice(-30).join("\n")}\nlogs:\n${logs.join("\n")}`,
      );
    });
  }

  it("runs a Job to completion: restart on failure, native sidecar stopped after the main container", async () => {
    assert.ok(kubelet !== undefined);
    const ns = "kubelet-job";
    await core.createNamespace({ body: { metadata: { name: ns } } });
    const image = "walship-test/app";
    const shared = { name: "shared", mountPath: "/shared" };
    await batch.createNamespacedJob({
      namespace: ns,
      body: {
        metadata: { name: "once" },
        spec: {
          backoffLimit: 3,
          template: {
            spec: {
              restartPolicy: "OnFailure",
              terminationGracePeriodSeconds: 5,
              initContainers: [
                {
                  name: "sidecar",
                  image,
                  args: ["sidecar"],
                  restartPolicy: "Always",
                  volumeMounts: [shared],
                  readinessProbe: {
                    exec: { command: ["test", "-f", "/shared/sidecar-started"] },
                    periodSeconds: 1,
                  },
                },
              ],
              containers: [{ name: "main", image, args: ["fail-once"], volumeMounts: [shared] }],
              volumes: [{ name: "shared", emptyDir: {} }],
            },
          },
        },
      },
    });
    const job = await waitFor(
      async () => {
        const j = await batch.readNamespacedJob({ name: "once", namespace: ns });
        return j.status?.conditions?.some((c) => c.type === "Complete" && c.status === "True")
          ? j
          : undefined;
      },
      { what: "Job once Complete", timeoutMs: 90_000, intervalMs: 250 },
    );
    assert.equal(job.status?.succeeded, 1);
    const pods = await core.listNamespacedPod({ namespace: ns });
    assert.equal(pods.items.length, 1, "one pod: the failure was a container restart, not a new pod");
    const pod = pods.items[0];
    assert.equal(pod?.status?.phase, "Succeeded");
    const main = pod?.status?.containerStatuses?.[0];
    assert.equal(main?.restartCount, 1);
    assert.equal(main?.state?.terminated?.exitCode, 0);
    assert.equal(main?.lastState?.terminated?.exitCode, 1);
    const sidecar = pod?.status?.initContainerStatuses?.[0];
    assert.ok(
      sidecar?.state?.terminated !== undefined,
      `the sidecar is stopped once the main container is done: ${JSON.stringify(sidecar?.state)}`,
    );
    const name = pod?.metadata?.name ?? "";
    assert.match(await kubelet.logs(ns, name, "sidecar"), /sidecar: SIGTERM/);
    assert.match(
      await kubelet.logs(ns, name, "main"),
      /first attempt: failing[\s\S]*second attempt: success/,
    );
  });

  it("runs a StatefulSet pod that is Ready, with its PVC surviving a pod delete", async () => {
    assert.ok(kubelet !== undefined);
    await core.createNamespace({ body: { metadata: { name: NS } } });
    await core.createNamespacedConfigMap({
      namespace: NS,
      body: { metadata: { name: "app-config" }, data: { greeting: "hello from a configmap" } },
    });
    await core.createNamespacedSecret({
      namespace: NS,
      body: { metadata: { name: "app-secret" }, stringData: { password: "s3cret" } },
    });
    await apps.createNamespacedStatefulSet({ namespace: NS, body: statefulSet() });

    const pod = await readyPod("app-0");
    const ip = pod.status?.podIP ?? "";
    assert.match(ip, /^127\.100\.\d+\.\d+$/);
    assert.equal(pod.spec?.nodeName, kubelet.nodeName);
    const app = pod.status?.containerStatuses?.find((c) => c.name === "app");
    assert.equal(app?.ready, true);
    assert.ok(app?.state?.running !== undefined);
    const [sidecar, init] = pod.status?.initContainerStatuses ?? [];
    assert.equal(sidecar?.name, "sidecar");
    assert.ok(sidecar?.state?.running !== undefined, "the native sidecar keeps running beside the app");
    assert.equal(sidecar?.ready, true);
    assert.equal(init?.state?.terminated?.exitCode, 0);
    for (const t of ["PodScheduled", "Initialized", "ContainersReady", "Ready"])
      assert.equal(condition(pod, t), "True", t);

    // The claim from the volumeClaimTemplate is Bound.
    const pvc = await waitFor(
      async () => {
        const c = await core.readNamespacedPersistentVolumeClaim({ name: "data-app-0", namespace: NS });
        return c.status?.phase === "Bound" ? c : undefined;
      },
      { what: "PVC data-app-0 Bound", timeoutMs: 20_000 },
    );
    assert.ok(pvc.spec?.volumeName);

    // Env from the ConfigMap (valueFrom and envFrom), the downward API, a Secret volume, the sidecar.
    const base = `http://${ip}:8080`;
    assert.equal((await get(`${base}/env?name=GREETING`)).body, "hello from a configmap");
    assert.equal((await get(`${base}/env?name=CFG_greeting`)).body, "hello from a configmap");
    assert.equal((await get(`${base}/env?name=MY_POD`)).body, "app-0");
    assert.equal((await get(`${base}/env?name=MY_IP`)).body, ip);
    assert.equal((await get(`${base}/env?name=POD_IP`)).body, ip);
    assert.equal((await get(`${base}/file?path=/etc/walship-kubelet-smoke/secret/password`)).body, "s3cret");
    assert.equal(
      (await get(`${base}/file?path=/shared/init-done`)).body,
      "sidecar-started-before-init=true\n",
    );
    const beat1 = (await get(`${base}/file?path=/shared/heartbeat`)).body;
    await waitFor(async () => (await get(`${base}/file?path=/shared/heartbeat`)).body !== beat1, {
      what: "the sidecar's heartbeat to change",
      timeoutMs: 5000,
    });
    assert.equal((await get(`http://${ip}:8081/`)).status, 200);

    // The app wrote SQLite at the real mountPath; the file is in the PVC directory, not on the host path.
    const rows1 = JSON.parse((await get(`${base}/rows`)).body) as { pod: string }[];
    assert.deepEqual(
      rows1.map((r) => r.pod),
      ["app-0"],
    );
    const pvcDir = kubelet.pvcDir(NS, "data-app-0");
    assert.ok(fs.existsSync(path.join(pvcDir, "app.db")));
    assert.equal(
      fs.existsSync(path.join(DATA_MOUNT, "app.db")),
      false,
      "the mount is private to the container",
    );
    const wrote = await kubelet.exec(NS, "app-0", "app", ["sh", "-c", `echo kept > ${DATA_MOUNT}/marker`]);
    assert.equal(wrote.code, 0, wrote.stderr);
    assert.equal(fs.readFileSync(path.join(pvcDir, "marker"), "utf8"), "kept\n");

    // Delete the pod: SIGTERM, the controller recreates it, and the PVC still holds the marker and row.
    const oldUid = pod.metadata?.uid;
    const oldPid = Number(app?.containerID?.replace("process://", ""));
    await core.deleteNamespacedPod({ name: "app-0", namespace: NS });
    const pod2 = await readyPod("app-0", oldUid);
    assert.notEqual(pod2.metadata?.uid, oldUid);
    assert.throws(() => process.kill(oldPid, 0), { code: "ESRCH" }, "the old container process is gone");
    assert.match(await kubelet.logs(NS, "app-0", "app"), /serve: SIGTERM/);
    const base2 = `http://${pod2.status?.podIP}:8080`;
    assert.equal((await get(`${base2}/file?path=${DATA_MOUNT}/marker`)).body, "kept\n");
    const rows2 = JSON.parse((await get(`${base2}/rows`)).body) as { pod: string }[];
    assert.equal(rows2.length, 2);

    // A second replica: its own IP, the same port, its own PVC.
    await apps.patchNamespacedStatefulSetScale({
      name: "app",
      namespace: NS,
      body: [{ op: "replace", path: "/spec/replicas", value: 2 }],
    });
    const pod3 = await readyPod("app-1");
    assert.notEqual(pod3.status?.podIP, pod2.status?.podIP);
    const rows3 = JSON.parse((await get(`http://${pod3.status?.podIP}:8080/rows`)).body) as { pod: string }[];
    assert.deepEqual(
      rows3.map((r) => r.pod),
      ["app-1"],
    );

    // stop() leaves no process behind.
    const pids = [pod2, pod3].map((p) =>
      Number(p.status?.containerStatuses?.[0]?.containerID?.replace("process://", "")),
    );
    await kubelet.stop();
    for (const pid of pids)
      assert.throws(() => process.kill(pid, 0), { code: "ESRCH" }, `pid ${pid} is gone`);
    // (The mount point it created on the host goes with the last kubelet holding it: not asserted, test
    // files may run concurrently.)
  });
});
