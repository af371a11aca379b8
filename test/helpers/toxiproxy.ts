/**
 * Toxiproxy (the real one, built by `test/infra/install toxiproxy`) on 127.0.0.1: a TCP proxy in front
 * of a server that injects network faults on demand, driven over its HTTP API.
 *
 *   const tp = await startToxiproxy();
 *   const p = await tp.proxy("minio", minio.port);   // p.endpoint: http://127.0.0.1:<port>
 *   await p.add({ type: "latency", attributes: { latency: 500, jitter: 100 } });
 *   await p.add({ type: "bandwidth", attributes: { rate: 16 } });          // KB/s
 *   await p.add({ type: "reset_peer", attributes: { timeout: 0 } });       // every connection RST
 *   await p.add({ type: "timeout", attributes: { timeout: 0 } });          // data stops, never closes
 *   await p.clear();                                                      // every toxic removed
 *   await p.disable(); await p.enable();                                   // refuse connections / back
 *   await tp.close();
 */
import { binPath } from "./cache.ts";
import { freePort } from "./ports.ts";
import { type ManagedProcess, makeTempDir, removeTempDir, spawnManaged, waitFor } from "./proc.ts";

/** The toxics Toxiproxy v2.5 has, with the attributes the tests use. */
export type Toxic =
  | { type: "latency"; attributes: { latency: number; jitter?: number } }
  | { type: "bandwidth"; attributes: { rate: number } }
  | { type: "reset_peer"; attributes: { timeout: number } }
  | { type: "timeout"; attributes: { timeout: number } }
  | { type: "slow_close"; attributes: { delay: number } }
  | { type: "slicer"; attributes: { average_size: number; size_variation?: number; delay?: number } }
  | { type: "limit_data"; attributes: { bytes: number } };

export interface ToxicOptions {
  /** downstream = server to client (default), upstream = client to server. */
  stream?: "upstream" | "downstream";
  /** Share of connections affected, 0..1 (default 1). */
  toxicity?: number;
  name?: string;
}

export interface ToxicProxy {
  name: string;
  port: number;
  /** http://127.0.0.1:<port>, to use as the S3 endpoint. */
  endpoint: string;
  add(toxic: Toxic, opts?: ToxicOptions): Promise<string>;
  remove(name: string): Promise<void>;
  clear(): Promise<void>;
  /** Closes every connection and refuses new ones (an outage at the TCP level). */
  disable(): Promise<void>;
  enable(): Promise<void>;
}

export interface Toxiproxy {
  /** The API's base URL. */
  api: string;
  process: ManagedProcess;
  proxy(name: string, upstreamPort: number): Promise<ToxicProxy>;
  close(): Promise<void>;
}

async function call(api: string, method: string, path: string, body?: unknown): Promise<unknown> {
  const res = await fetch(`${api}${path}`, {
    method,
    headers: body === undefined ? {} : { "content-type": "application/json" },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`toxiproxy ${method} ${path}: HTTP ${res.status}: ${text}`);
  return text === "" ? undefined : JSON.parse(text);
}

export async function startToxiproxy(): Promise<Toxiproxy> {
  const bin = binPath("toxiproxy-server");
  const dir = makeTempDir("toxiproxy");
  const port = await freePort();
  const api = `http://127.0.0.1:${port}`;
  const proc = spawnManaged(bin, ["-host", "127.0.0.1", "-port", String(port)], {
    name: "toxiproxy",
    logDir: dir,
  });
  try {
    await waitFor(async () => (await fetch(`${api}/version`)).ok, {
      what: `toxiproxy API at ${api}`,
      timeoutMs: 20_000,
      processes: [proc],
    });
  } catch (err) {
    await proc.stop();
    removeTempDir(dir);
    throw err;
  }
  let toxics = 0;
  return {
    api,
    process: proc,
    async proxy(name, upstreamPort) {
      const listen = await freePort();
      await call(api, "POST", "/proxies", {
        name,
        listen: `127.0.0.1:${listen}`,
        upstream: `127.0.0.1:${upstreamPort}`,
        enabled: true,
      });
      const p: ToxicProxy = {
        name,
        port: listen,
        endpoint: `http://127.0.0.1:${listen}`,
        async add(toxic, opts = {}) {
          const toxicName = opts.name ?? `${toxic.type}-${++toxics}`;
          await call(api, "POST", `/proxies/${name}/toxics`, {
            name: toxicName,
            type: toxic.type,
            stream: opts.stream ?? "downstream",
            toxicity: opts.toxicity ?? 1,
            attributes: toxic.attributes,
          });
          return toxicName;
        },
        async remove(toxicName) {
          await call(api, "DELETE", `/proxies/${name}/toxics/${toxicName}`);
        },
        async clear() {
          const list = (await call(api, "GET", `/proxies/${name}/toxics`)) as Array<{ name: string }>;
          for (const t of list) await p.remove(t.name);
        },
        async disable() {
          await call(api, "POST", `/proxies/${name}`, { enabled: false });
        },
        async enable() {
          await call(api, "POST", `/proxies/${name}`, { enabled: true });
        },
      };
      return p;
    },
    async close() {
      await proc.stop();
      removeTempDir(dir);
    },
  };
}
