/** One probe attempt: httpGet, tcpSocket or exec, as the kubelet runs them. */
import * as http from "node:http";
import * as https from "node:https";
import * as net from "node:net";
import type { V1Container, V1Probe } from "@kubernetes/client-node";

export interface ProbeTarget {
  podIP: string;
  container: V1Container;
  /** Runs argv in the container (its mount namespace and env); resolves to the exit code. */
  exec(argv: string[], timeoutMs: number): Promise<number | null>;
}

function resolvePort(port: number | string, c: V1Container): number {
  if (typeof port === "number") return port;
  if (/^[0-9]+$/.test(port)) return Number(port);
  const named = c.ports?.find((p) => p.name === port);
  if (named === undefined) throw new Error(`port "${port}" is not a named port of container ${c.name}`);
  return named.containerPort;
}

function httpProbe(p: NonNullable<V1Probe["httpGet"]>, t: ProbeTarget, timeoutMs: number): Promise<boolean> {
  const port = resolvePort(p.port as number | string, t.container);
  const mod = p.scheme === "HTTPS" ? https : http;
  const headers: Record<string, string> = { "User-Agent": "kube-probe/process-kubelet", Accept: "*/*" };
  for (const h of p.httpHeaders ?? []) headers[h.name] = h.value;
  return new Promise((resolve) => {
    const req = mod.request(
      {
        host: p.host || t.podIP,
        port,
        path: p.path ?? "/",
        method: "GET",
        headers,
        timeout: timeoutMs,
        rejectUnauthorized: false,
      },
      (res) => {
        res.resume();
        const code = res.statusCode ?? 0;
        resolve(code >= 200 && code < 400);
      },
    );
    req.on("timeout", () => req.destroy(new Error("probe timeout")));
    req.on("error", () => resolve(false));
    req.end();
  });
}

function tcpProbe(p: NonNullable<V1Probe["tcpSocket"]>, t: ProbeTarget, timeoutMs: number): Promise<boolean> {
  const port = resolvePort(p.port as number | string, t.container);
  return new Promise((resolve) => {
    const sock = net.connect({ host: p.host || t.podIP, port, timeout: timeoutMs });
    sock.once("connect", () => {
      sock.destroy();
      resolve(true);
    });
    sock.once("timeout", () => {
      sock.destroy();
      resolve(false);
    });
    sock.once("error", () => resolve(false));
  });
}

/** Runs one attempt of a probe; true on success. gRPC probes are not supported and always fail. */
export async function runProbe(probe: V1Probe, t: ProbeTarget): Promise<boolean> {
  const timeoutMs = (probe.timeoutSeconds ?? 1) * 1000;
  try {
    if (probe.httpGet !== undefined) return await httpProbe(probe.httpGet, t, timeoutMs);
    if (probe.tcpSocket !== undefined) return await tcpProbe(probe.tcpSocket, t, timeoutMs);
    if (probe.exec !== undefined) return (await t.exec(probe.exec.command ?? [], timeoutMs)) === 0;
  } catch {
    return false;
  }
  return false;
}
