/**
 * The real node itself (test/helpers/node): the kubelet, containerd and runc run the project's image
 * (built from the Dockerfile by buildah) under Pod Security `restricted`; logs and exec work; a claim
 * binds through the default StorageClass and a pod writes into it as its own user; pods reach the API
 * server through the `kubernetes` Service and cannot reach anything off the machine; stop() puts every
 * host setting back, and a run killed with SIGKILL is swept by the next start.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { after, before, describe, it } from "node:test";
import { getPod, RESTRICTED } from "../helpers/e2e.ts";
import { type Cluster, hostSnapshot, IMAGES, startCluster } from "../helpers/node/index.ts";
import { waitFor } from "../helpers/proc.ts";

const NS = "smoke";

describe("the real node (kubelet, containerd, runc, CNI, kube-proxy, local-path storage)", {
  timeout: 900_000,
}, () => {
  let c: Cluster;
  let before0: Record<string, string>;

  before(async () => {
    before0 = hostSnapshot();
    c = await startCluster();
    await c.createNamespace(NS);
  });
  after(async () => {
    await c?.stop();
  });

  const podDone = (name: string) =>
    waitFor(
      async () => {
        const p = await getPod(c, NS, name);
        return p?.status?.phase === "Succeeded" || p?.status?.phase === "Failed" ? p : undefined;
      },
      { what: `pod ${name} finished`, timeoutMs: 120_000, intervalMs: 250 },
    ).catch(async (err) => {
      throw new Error(`${(err as Error).message}\n${await c.describe(NS)}`);
    });

  it("runs the walship image as a restricted pod: a containerd:// container, kubectl logs", async () => {
    await c.apply({
      apiVersion: "v1",
      kind: "Pod",
      metadata: { name: "version", namespace: NS },
      spec: {
        restartPolicy: "Never",
        containers: [
          {
            name: "walship",
            image: IMAGES.walship,
            imagePullPolicy: "IfNotPresent",
            args: ["version"],
            securityContext: { ...RESTRICTED, readOnlyRootFilesystem: true },
          },
        ],
      },
    });
    const p = await podDone("version");
    assert.equal(p.status?.phase, "Succeeded");
    assert.match(p.status?.containerStatuses?.[0]?.containerID ?? "", /^containerd:\/\/[0-9a-f]{64}$/);
    assert.match(await c.logs(NS, "version", "walship"), /^v\d+\.\d+\.\d+/);
  });

  it("a root pod is refused by the restricted namespace", async () => {
    const r = await c.kubectl(
      ["-n", NS, "run", "root", `--image=${IMAGES.busybox}`, "--restart=Never", "--", "true"],
      { allowFailure: true },
    );
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /violates PodSecurity "restricted/);
  });

  it("a claim binds through the default StorageClass; a pod writes into it as uid 10001; kubectl exec works", async () => {
    await c.apply([
      {
        apiVersion: "v1",
        kind: "PersistentVolumeClaim",
        metadata: { name: "data", namespace: NS },
        spec: { accessModes: ["ReadWriteOnce"], resources: { requests: { storage: "64Mi" } } },
      },
      {
        apiVersion: "v1",
        kind: "Pod",
        metadata: { name: "writer", namespace: NS },
        spec: {
          securityContext: { runAsUser: 10001, runAsGroup: 10001, fsGroup: 10001 },
          containers: [
            {
              name: "w",
              image: IMAGES.walship,
              imagePullPolicy: "IfNotPresent",
              command: ["sh", "-c", "id -u > /data/who && sleep 3600"],
              volumeMounts: [{ name: "data", mountPath: "/data" }],
              securityContext: RESTRICTED,
            },
          ],
          volumes: [{ name: "data", persistentVolumeClaim: { claimName: "data" } }],
          terminationGracePeriodSeconds: 1,
        },
      },
    ]);
    await waitFor(
      async () => ((await getPod(c, NS, "writer"))?.status?.phase === "Running" ? true : undefined),
      {
        what: "pod writer Running",
        timeoutMs: 120_000,
      },
    ).catch(async (err) => {
      throw new Error(`${(err as Error).message}\n${await c.describe(NS)}`);
    });
    const dir = await c.pvcDir(NS, "data");
    await waitFor(async () => (fs.existsSync(path.join(dir, "who")) ? true : undefined), {
      what: "the pod's file on the host",
      timeoutMs: 30_000,
    });
    assert.equal(fs.readFileSync(path.join(dir, "who"), "utf8").trim(), "10001");
    assert.equal(fs.statSync(path.join(dir, "who")).uid, 10001, "owned by the pod's user on the host");
    const r = await c.exec(NS, "writer", "w", ["cat", "/data/who"]);
    assert.equal(r.stdout.trim(), "10001");
  });

  it("pods reach the API server through the kubernetes Service, and nothing off the machine", async () => {
    // An in-cluster request with the pod's ServiceAccount token: 403 (no RBAC) proves TLS and the
    // Service's data path; anything else in or out of the node's range is unreachable.
    const script = [
      "const https = require('node:https'); const net = require('node:net'); const fs = require('node:fs');",
      "const sa = '/var/run/secrets/kubernetes.io/serviceaccount/';",
      "const out = {};",
      "const done = () => { if (Object.keys(out).length === 3) { console.log(JSON.stringify(out)); process.exit(0); } };",
      "https.get({ host: process.env.KUBERNETES_SERVICE_HOST, port: process.env.KUBERNETES_SERVICE_PORT, path: '/api/v1/nodes',",
      "  ca: fs.readFileSync(sa + 'ca.crt'), headers: { authorization: 'Bearer ' + fs.readFileSync(sa + 'token', 'utf8') } },",
      "  (res) => { out.api = res.statusCode; res.resume(); done(); }).on('error', (e) => { out.api = e.code; done(); });",
      "for (const [k, host] of [['off', '203.0.113.1'], ['range', '10.214.5.5']]) {",
      "  const s = net.connect({ host, port: 80, timeout: 3000 }, () => { out[k] = 'connected'; s.destroy(); done(); });",
      "  s.on('error', (e) => { out[k] = e.code; done(); }); s.on('timeout', () => { out[k] = 'timeout'; s.destroy(); done(); });",
      "}",
    ].join("\n");
    await c.apply({
      apiVersion: "v1",
      kind: "Pod",
      metadata: { name: "net", namespace: NS },
      spec: {
        restartPolicy: "Never",
        containers: [
          {
            name: "net",
            image: IMAGES.walship,
            imagePullPolicy: "IfNotPresent",
            command: ["node", "-e", script],
            securityContext: RESTRICTED,
          },
        ],
      },
    });
    const p = await podDone("net");
    const out = JSON.parse((await c.logs(NS, "net", "net")).trim()) as Record<string, unknown>;
    assert.equal(p.status?.phase, "Succeeded");
    assert.equal(out.api, 403, "the API server answered through 10.214.1.1");
    assert.equal(out.off, "ENETUNREACH", "no route off the machine");
    assert.equal(out.range, "ENETUNREACH", "no route elsewhere in the range");
  });

  it("stop() puts every host setting back; a SIGKILLed run is swept by the next start", async () => {
    await c.stop();
    assert.deepEqual(hostSnapshot(), before0, "the host as it was before the node started");
    // A run that dies without stopping its node: a child process starts one and is SIGKILLed.
    const child = spawn(
      process.execPath,
      [
        "-e",
        `import(${JSON.stringify(path.join(import.meta.dirname, "../helpers/node/index.ts"))}).then(async (m) => { await m.startCluster(); console.log("UP"); setInterval(() => {}, 1000); })`,
      ],
      { stdio: ["ignore", "pipe", "inherit"] },
    );
    await new Promise<void>((resolve, reject) => {
      child.stdout.on("data", (b: Buffer) => {
        if (b.toString().includes("UP")) resolve();
      });
      child.on("exit", (code) => reject(new Error(`the child exited with ${code} before its node was up`)));
    });
    child.kill("SIGKILL");
    await new Promise((r) => child.once("exit", r));
    assert.notDeepEqual(hostSnapshot(), before0, "the killed run left its node behind");
    c = await startCluster();
    await c.stop();
    assert.deepEqual(hostSnapshot(), before0, "swept and put back");
  });
});
