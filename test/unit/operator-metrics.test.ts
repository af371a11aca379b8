/**
 * walship_operator_kube_requests_total: every request of a KubeClient is counted by verb, resource and
 * code; and requests share one kept-alive connection. The API server here is a fake (a node:http server answering fixed JSON): what is under test is
 * the client's counting, not Kubernetes.
 */
import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, it } from "node:test";
import { KubeConfig } from "@kubernetes/client-node";
import { describeRequest, KubeApiError, KubeClient } from "../../src/operator/kube/client.ts";
import { createOperatorMetrics } from "../../src/operator/metrics.ts";
import { ErrorCodes } from "../../src/shared/errors.ts";
import { freePort } from "../helpers/ports.ts";

function clientFor(server: string): KubeClient {
  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [{ name: "c", server, skipTLSVerify: true }],
    users: [{ name: "u", token: "t" }],
    contexts: [{ name: "x", cluster: "c", user: "u" }],
    currentContext: "x",
  });
  return new KubeClient(kc);
}

/** The value of one series in Prometheus text, or undefined when absent. */
function sample(text: string, series: string): number | undefined {
  const line = text.split("\n").find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

describe("describeRequest", () => {
  it("names verbs and resources as the API server does", () => {
    const cases: Array<[Parameters<typeof describeRequest>, string, string]> = [
      [["GET", "/api/v1/namespaces/ns/pods"], "list", "pods"],
      [["GET", "/api/v1/namespaces/ns/pods/p"], "get", "pods"],
      [["GET", "/apis/apps/v1/statefulsets"], "list", "statefulsets"],
      [["GET", "/apis/apps/v1/statefulsets", undefined, true], "watch", "statefulsets"],
      [
        ["PUT", "/apis/walship.dev/v1alpha1/namespaces/ns/sqlitereplicas/r/status"],
        "update",
        "sqlitereplicas/status",
      ],
      [
        ["PATCH", "/api/v1/namespaces/ns/configmaps/c", "application/apply-patch+yaml"],
        "apply",
        "configmaps",
      ],
      [
        [
          "PATCH",
          "/apis/walship.dev/v1alpha1/namespaces/ns/sqlitereplicas/r",
          "application/merge-patch+json",
        ],
        "patch",
        "sqlitereplicas",
      ],
      [["POST", "/api/v1/namespaces/ns/events"], "create", "events"],
      [["DELETE", "/apis/batch/v1/namespaces/ns/jobs/j"], "delete", "jobs"],
      [["GET", "/api/v1/namespaces/ns"], "get", "namespaces"],
    ];
    for (const [args, verb, resource] of cases) {
      assert.deepEqual(describeRequest(...args), { verb, resource }, args.join(" "));
    }
  });
});

describe("walship_operator_kube_requests_total", () => {
  let fake: Server;
  let url = "";
  before(async () => {
    fake = createServer((req, res) => {
      req.resume();
      if (req.url?.includes("watch=true")) {
        res.writeHead(200, { "content-type": "application/json" });
        res.end(
          `${JSON.stringify({ type: "ADDED", object: { metadata: { name: "a", resourceVersion: "2" } } })}\n`,
        );
      } else if (req.url?.startsWith("/api/v1/namespaces/ns/secrets/missing")) {
        res.writeHead(404, { "content-type": "application/json" });
        res.end(JSON.stringify({ kind: "Status", reason: "NotFound", message: "not found" }));
      } else {
        res.writeHead(200, { "content-type": "application/json" });
        res.end(JSON.stringify({ items: [], metadata: { resourceVersion: "1" } }));
      }
    });
    await new Promise<void>((r) => fake.listen(0, "127.0.0.1", r));
    url = `http://127.0.0.1:${(fake.address() as AddressInfo).port}`;
  });
  after(
    () =>
      new Promise<void>((r) => {
        fake.close(() => r());
        fake.closeAllConnections();
      }),
  );

  it("keeps the connection alive across requests (no new connection per request)", async () => {
    let connections = 0;
    const count = () => connections++;
    fake.on("connection", count);
    try {
      const client = clientFor(url);
      for (let i = 0; i < 5; i++) await client.get("/api/v1/namespaces/ns/pods");
      assert.equal(connections, 1);
    } finally {
      fake.off("connection", count);
    }
  });

  it("counts each request once by verb, resource and code, failures as 'error'", async () => {
    const metrics = createOperatorMetrics(() => 0);
    const before = await metrics.registry.metrics();
    const client = clientFor(url);
    await client.get("/api/v1/namespaces/ns/pods");
    await client.get("/api/v1/namespaces/ns/pods");
    await client.request("PUT", "/apis/walship.dev/v1alpha1/namespaces/ns/sqlitereplicas/r/status", {
      body: {},
    });
    await client.apply("/apis/apps/v1/namespaces/ns/statefulsets/s", {}, "walship", false);
    await assert.rejects(client.get("/api/v1/namespaces/ns/secrets/missing"), (err: unknown) => {
      assert.ok(err instanceof KubeApiError);
      assert.equal(err.code, ErrorCodes.KUBE);
      return true;
    });
    const events = [];
    for await (const ev of client.watch("/apis/apps/v1/statefulsets", {}, new AbortController().signal)) {
      events.push(ev);
    }
    assert.equal(events.length, 1);
    const closed = clientFor(`http://127.0.0.1:${await freePort()}`);
    await assert.rejects(closed.get("/api/v1/namespaces/ns/pods/p"));

    const text = await metrics.registry.metrics();
    const delta = (labels: string) => {
      const series = `walship_operator_kube_requests_total{${labels}}`;
      return (sample(text, series) ?? 0) - (sample(before, series) ?? 0);
    };
    assert.equal(delta('verb="list",resource="pods",code="200"'), 2);
    assert.equal(delta('verb="update",resource="sqlitereplicas/status",code="200"'), 1);
    assert.equal(delta('verb="apply",resource="statefulsets",code="200"'), 1);
    assert.equal(delta('verb="get",resource="secrets",code="404"'), 1);
    assert.equal(delta('verb="watch",resource="statefulsets",code="200"'), 1);
    assert.equal(delta('verb="get",resource="pods",code="error"'), 1);
  });

  it("appears in every operator registry with the same process-wide counts", async () => {
    const a = createOperatorMetrics(() => 0);
    await clientFor(url).get("/api/v1/namespaces/ns/configmaps");
    const b = createOperatorMetrics(() => 0);
    const series = 'walship_operator_kube_requests_total{verb="list",resource="configmaps",code="200"}';
    const inA = sample(await a.registry.metrics(), series);
    assert.ok(inA !== undefined && inA >= 1);
    assert.equal(sample(await b.registry.metrics(), series), inA);
  });
});
