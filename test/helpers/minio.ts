/**
 * A real MinIO S3 server for tests, single drive, on 127.0.0.1 (or `host`: the real node's bridge
 * gateway, where pods reach it) with a free port and a temp data dir. Optionally over TLS (a
 * self-signed certificate made here with openssl; clients trust `caFile`) and with MinIO's static KMS
 * key, which server-side encryption (SSE-S3, SSE-KMS) needs; SSE-C needs TLS.
 *
 *   const s3 = await startMinio();
 *   await s3.createBucket("replica");
 *   await s3.stop();      // outage: the process is gone, data dir and port kept
 *   await s3.restart();   // back, same data and endpoint
 *   await s3.close();     // stop and delete the data dir (also happens at process exit)
 */

import { randomBytes } from "node:crypto";
import { mkdirSync, readFileSync } from "node:fs";
import { request } from "node:http";
import { Agent as HttpsAgent, request as httpsRequest } from "node:https";
import { join } from "node:path";
import { CreateBucketCommand, S3Client } from "@aws-sdk/client-s3";
import { binPath } from "./cache.ts";
import { freePort } from "./ports.ts";
import {
  type ManagedProcess,
  makeTempDir,
  removeTempDir,
  runCommand,
  spawnManaged,
  waitFor,
} from "./proc.ts";

export interface MinioOptions {
  accessKeyId?: string;
  secretAccessKey?: string;
  region?: string;
  /** The address to listen on; default 127.0.0.1. Pods on the real node reach the bridge gateway. */
  host?: string;
  /** How long to wait for readiness; default 60 s. */
  timeoutMs?: number;
  /** Serve https with a self-signed certificate for `host` (SSE-C needs TLS). Default false. */
  tls?: boolean;
  /**
   * Give MinIO a static KMS key (MINIO_KMS_SECRET_KEY) named `kmsKeyId`, so that SSE-S3 and SSE-KMS
   * work. Default false.
   */
  kms?: boolean;
}

/** The name of the static KMS key a `kms: true` server holds (the SSE-KMS key id to use). */
export const MINIO_KMS_KEY_ID = "walship-test-key";

export interface Minio {
  /** http://<host>:port, or https:// with `tls` (use path-style addressing). */
  endpoint: string;
  /** With `tls`: the certificate to trust (PEM), e.g. as NODE_EXTRA_CA_CERTS or SSL_CERT_FILE. */
  caFile?: string;
  port: number;
  accessKeyId: string;
  secretAccessKey: string;
  region: string;
  /** The drive directory (objects live under <dataDir>/<bucket>/). */
  dataDir: string;
  /** The server log (appended across restarts). */
  logFile: string;
  /** The running process, undefined while stopped. */
  readonly process: ManagedProcess | undefined;
  /** A new S3 client for this server (path-style, static credentials). */
  client(): S3Client;
  createBucket(name: string): Promise<void>;
  /** Stops the server (SIGTERM, or SIGKILL with hard), keeping data dir and port for restart(). */
  stop(opts?: { hard?: boolean }): Promise<void>;
  /** Starts it again on the same port and data dir (stopping it first if it runs); waits until ready. */
  restart(): Promise<void>;
  /** Stops it and removes its temp dir. Safe to call twice. */
  close(): Promise<void>;
}

function getStatus(url: string, ca?: Buffer): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = (ca ? httpsRequest : request)(url, { timeout: 2_000, ...(ca ? { ca } : {}) }, (res) => {
      res.resume();
      res.on("end", () => resolve(res.statusCode ?? 0));
    });
    req.on("timeout", () => req.destroy(new Error(`GET ${url}: timed out`)));
    req.on("error", reject);
    req.end();
  });
}

/** A self-signed server certificate for `host` (and localhost) in `<dir>/certs`, as MinIO reads it. */
async function makeCert(dir: string, host: string): Promise<string> {
  const certs = join(dir, "certs");
  mkdirSync(certs, { recursive: true });
  const san = /^[0-9.]+$/.test(host) ? `IP:${host}` : `DNS:${host}`;
  await runCommand(
    "openssl",
    ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
      .concat([
        "-keyout",
        "private.key",
        "-out",
        "public.crt",
        "-days",
        "30",
        "-subj",
        "/CN=walship-test-minio",
      ])
      .concat(["-addext", `subjectAltName=${san},IP:127.0.0.1,DNS:localhost`])
      .concat(["-addext", "extendedKeyUsage=serverAuth"]),
    { cwd: certs, timeoutMs: 30_000 },
  );
  return join(certs, "public.crt");
}

export async function startMinio(opts: MinioOptions = {}): Promise<Minio> {
  const bin = binPath("minio");
  const dir = makeTempDir("minio");
  const dataDir = join(dir, "data");
  const logFile = join(dir, "minio.log");
  const port = await freePort();
  const host = opts.host ?? "127.0.0.1";
  const caFile = opts.tls ? await makeCert(dir, host) : undefined;
  const ca = caFile ? readFileSync(caFile) : undefined;
  const endpoint = `${caFile ? "https" : "http"}://${host}:${port}`;
  const kmsKey = opts.kms ? `${MINIO_KMS_KEY_ID}:${randomBytes(32).toString("base64")}` : undefined;
  const accessKeyId = opts.accessKeyId ?? "walship-test";
  const secretAccessKey = opts.secretAccessKey ?? "walship-test-secret";
  const region = opts.region ?? "us-east-1";
  const timeoutMs = opts.timeoutMs ?? 60_000;
  let proc: ManagedProcess | undefined;
  let closed = false;

  const start = async (): Promise<void> => {
    const args = ["server", "--quiet", "--address", `${host}:${port}`];
    if (caFile) args.push("--certs-dir", join(dir, "certs"));
    const p = spawnManaged(bin, [...args, dataDir], {
      name: "minio",
      logFile,
      env: {
        MINIO_ROOT_USER: accessKeyId,
        MINIO_ROOT_PASSWORD: secretAccessKey,
        MINIO_SITE_REGION: region,
        MINIO_BROWSER: "off",
        MINIO_UPDATE: "off",
        // Keep MinIO's config and certs dirs inside the temp dir, not in $HOME.
        HOME: dir,
        ...(kmsKey ? { MINIO_KMS_SECRET_KEY: kmsKey } : {}),
      },
    });
    proc = p;
    await waitFor(async () => (await getStatus(`${endpoint}/minio/health/ready`, ca)) === 200, {
      what: `minio ready at ${endpoint}`,
      timeoutMs,
      processes: [p],
    });
  };

  const stop = async (stopOpts?: { hard?: boolean }): Promise<void> => {
    const p = proc;
    proc = undefined;
    if (p) await p.stop({ signal: stopOpts?.hard ? "SIGKILL" : "SIGTERM", graceMs: 10_000 });
  };

  const m: Minio = {
    endpoint,
    ...(caFile ? { caFile } : {}),
    port,
    accessKeyId,
    secretAccessKey,
    region,
    dataDir,
    logFile,
    get process() {
      return proc;
    },
    client() {
      return new S3Client({
        endpoint,
        region,
        forcePathStyle: true,
        credentials: { accessKeyId, secretAccessKey },
        ...(ca ? { requestHandler: { httpsAgent: new HttpsAgent({ ca }) } } : {}),
      });
    },
    async createBucket(name) {
      const c = m.client();
      try {
        await c.send(new CreateBucketCommand({ Bucket: name }));
      } finally {
        c.destroy();
      }
    },
    stop,
    async restart() {
      if (closed) throw new Error("restart minio: it was closed");
      await stop();
      await start();
    },
    async close() {
      if (closed) return;
      closed = true;
      await stop();
      removeTempDir(dir);
    },
  };

  try {
    await start();
  } catch (err) {
    await m.close();
    throw err;
  }
  return m;
}
