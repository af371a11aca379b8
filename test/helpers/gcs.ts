/**
 * fake-gcs-server (built from the Go proxy by test/infra/install), the Google Cloud Storage emulator,
 * for tests: JSON and XML APIs over plain HTTP on 127.0.0.1 (or a given listen host), a free port and
 * a temp directory for its objects (so a restart keeps them).
 *
 *   const gcs = await startGcs();
 *   await gcs.createBucket("replica");
 *   gcs.endpoint;                 // http://127.0.0.1:PORT: the Node client's apiEndpoint
 *   gcs.emulatorHost;             // 127.0.0.1:PORT: STORAGE_EMULATOR_HOST, for litestream's Go client ONLY
 *   await gcs.close();
 *
 * `-public-host` must match the address clients use: the Go client's XML reads route to the download
 * handler only when the Host header matches it (without it Litestream's restores fail). The Node
 * client must get `apiEndpoint` and must NOT see STORAGE_EMULATOR_HOST (it uses that value verbatim
 * as its JSON base URL and then misses every route).
 */
import { join } from "node:path";
import { binPath } from "./cache.ts";
import { lifecycle } from "./lifecycle.ts";
import { freePort } from "./ports.ts";
import { type ManagedProcess, makeTempDir, removeTempDir, spawnManaged, waitFor } from "./proc.ts";

export interface GcsOptions {
  /** Default 127.0.0.1 (pods use the node's bridge gateway). */
  listenHost?: string;
  timeoutMs?: number;
}

export interface FakeGcs {
  /** http://host:port */
  endpoint: string;
  /** host:port (STORAGE_EMULATOR_HOST for the Go client only). */
  emulatorHost: string;
  port: number;
  dataDir: string;
  logFile: string;
  readonly process: ManagedProcess | undefined;
  createBucket(name: string): Promise<void>;
  /** Object names under a prefix, straight from the JSON API (no Walship code involved). */
  listObjects(
    bucket: string,
    prefix?: string,
  ): Promise<Array<{ name: string; size: number; timeCreated: string }>>;
  stop(): Promise<void>;
  restart(): Promise<void>;
  close(): Promise<void>;
}

export async function startGcs(opts: GcsOptions = {}): Promise<FakeGcs> {
  const bin = binPath("fake-gcs-server");
  const dir = makeTempDir("gcs");
  const dataDir = join(dir, "data");
  const logFile = join(dir, "fake-gcs-server.log");
  const host = opts.listenHost ?? "127.0.0.1";
  const port = await freePort();
  const emulatorHost = `${host}:${port}`;
  const endpoint = `http://${emulatorHost}`;
  const args = [
    "-scheme",
    "http",
    "-host",
    host,
    "-port",
    String(port),
    "-backend",
    "filesystem",
    "-filesystem-root",
    dataDir,
    "-public-host",
    emulatorHost,
    "-external-url",
    endpoint,
    "-log-level",
    "warn",
  ];
  const life = lifecycle(
    "fake-gcs-server",
    async (track) => {
      const p = spawnManaged(bin, args, { name: "fake-gcs-server", logFile, env: { HOME: dir } });
      track(p);
      await waitFor(
        async () => {
          try {
            return (await fetch(`${endpoint}/storage/v1/b`)).ok;
          } catch {
            return false;
          }
        },
        { what: `fake-gcs-server ready at ${endpoint}`, timeoutMs: opts.timeoutMs ?? 30_000, processes: [p] },
      );
    },
    () => removeTempDir(dir),
    5_000,
  );

  const gcs: FakeGcs = {
    endpoint,
    emulatorHost,
    port,
    dataDir,
    logFile,
    get process() {
      return life.process;
    },
    async createBucket(name) {
      const res = await fetch(`${endpoint}/storage/v1/b`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ name }),
      });
      if (!res.ok && res.status !== 409) {
        throw new Error(`create bucket ${name}: HTTP ${res.status}: ${await res.text()}`);
      }
    },
    async listObjects(bucket, prefix = "") {
      const out: Array<{ name: string; size: number; timeCreated: string }> = [];
      let token = "";
      for (;;) {
        const q = new URLSearchParams({ prefix, ...(token ? { pageToken: token } : {}) });
        const res = await fetch(`${endpoint}/storage/v1/b/${bucket}/o?${q}`);
        if (!res.ok) throw new Error(`list gs://${bucket}/${prefix}: HTTP ${res.status}`);
        const page = (await res.json()) as {
          items?: Array<{ name: string; size: string; timeCreated: string }>;
          nextPageToken?: string;
        };
        for (const o of page.items ?? [])
          out.push({ name: o.name, size: Number(o.size), timeCreated: o.timeCreated });
        if (!page.nextPageToken) return out;
        token = page.nextPageToken;
      }
    },
    stop: life.stop,
    restart: life.restart,
    close: life.close,
  };
  try {
    await life.start();
  } catch (err) {
    await gcs.close();
    throw err;
  }
  return gcs;
}
