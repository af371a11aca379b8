/**
 * Azurite (npm, a dev dependency), the Azure Blob Storage emulator, for tests: blob service only, on
 * 127.0.0.1 (or a given listen host) with a free port and a temp data dir.
 *
 * ALWAYS started with `--disableTelemetry`: by default Azurite sends telemetry to an outside endpoint.
 *
 *   const az = await startAzurite();
 *   await az.createContainer("replica");
 *   az.endpoint;        // http://127.0.0.1:PORT/devstoreaccount1 (path-style, as Litestream's endpoint key takes it)
 *   await az.close();
 *
 * With `https` it serves TLS with a fresh self-signed certificate for the listen host (`caFile`), and
 * with `oauth` it also accepts bearer tokens (Azurite's "basic" OAuth: issuer, audience and expiry are
 * checked, the signature is not), which is how workload identity is tested.
 */
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { request as httpRequest } from "node:http";
import { request as httpsRequest } from "node:https";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { BlobServiceClient, StorageSharedKeyCredential } from "@azure/storage-blob";
import { lifecycle } from "./lifecycle.ts";
import { freePort } from "./ports.ts";
import { type ManagedProcess, makeTempDir, removeTempDir, spawnManaged, waitFor } from "./proc.ts";

/** Azurite's well-known development account. */
export const AZURITE_ACCOUNT = "devstoreaccount1";
export const AZURITE_KEY =
  "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

export interface AzuriteOptions {
  /** Default 127.0.0.1 (pods use the node's bridge gateway). */
  listenHost?: string;
  /** Serve HTTPS with a self-signed certificate for the listen host. */
  https?: boolean;
  /** Accept OAuth bearer tokens too (needs https). */
  oauth?: boolean;
  timeoutMs?: number;
}

export interface Azurite {
  /** `http(s)://host:port/devstoreaccount1`: the path-style account URL. */
  endpoint: string;
  port: number;
  account: string;
  key: string;
  /** The certificate (PEM) to trust when `https` is set. */
  caFile: string | undefined;
  dataDir: string;
  logFile: string;
  readonly process: ManagedProcess | undefined;
  /** A client with the account key (its own https trust comes from NODE_EXTRA_CA_CERTS, if any). */
  client(): BlobServiceClient;
  createContainer(name: string): Promise<void>;
  stop(): Promise<void>;
  restart(): Promise<void>;
  close(): Promise<void>;
}

/** The azurite-blob entry point inside node_modules. */
function azuriteBlobMain(): string {
  const require = createRequire(import.meta.url);
  return join(dirname(require.resolve("azurite/package.json")), "dist", "src", "blob", "main.js");
}

export async function startAzurite(opts: AzuriteOptions = {}): Promise<Azurite> {
  const dir = makeTempDir("azurite");
  const dataDir = join(dir, "data");
  const logFile = join(dir, "azurite.log");
  const listenHost = opts.listenHost ?? "127.0.0.1";
  const port = await freePort();
  const scheme = opts.https ? "https" : "http";
  const endpoint = `${scheme}://${listenHost}:${port}/${AZURITE_ACCOUNT}`;
  let caFile: string | undefined;
  const tls: string[] = [];
  if (opts.https) {
    caFile = join(dir, "cert.pem");
    const keyFile = join(dir, "key.pem");
    const san =
      /^[\d.]+$/.test(listenHost) || listenHost.includes(":") ? `IP:${listenHost}` : `DNS:${listenHost}`;
    execFileSync(
      "openssl",
      [
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=walship-test-azurite",
        "-addext",
        `subjectAltName=${san}`,
        "-keyout",
        keyFile,
        "-out",
        caFile,
      ],
      { stdio: "ignore" },
    );
    tls.push("--cert", caFile, "--key", keyFile);
    if (opts.oauth) tls.push("--oauth", "basic");
  }
  const args = [
    azuriteBlobMain(),
    "--blobHost",
    listenHost,
    "--blobPort",
    String(port),
    "--location",
    dataDir,
    "--silent",
    "--disableTelemetry",
    "--debug",
    join(dir, "debug.log"),
    ...tls,
  ];
  const life = lifecycle(
    "azurite",
    async (track) => {
      const p = spawnManaged(process.execPath, args, {
        name: "azurite",
        logFile,
        // Its own config and workspace files stay in the temp dir.
        env: { HOME: dir, AZURITE_ACCOUNTS: undefined },
      });
      track(p);
      await waitFor(
        async () => {
          try {
            await fetchStatus(`${scheme}://${listenHost}:${port}/${AZURITE_ACCOUNT}?comp=list`, caFile);
            return true;
          } catch {
            return false;
          }
        },
        { what: `azurite ready at ${endpoint}`, timeoutMs: opts.timeoutMs ?? 60_000, processes: [p] },
      );
    },
    () => removeTempDir(dir),
  );

  const az: Azurite = {
    endpoint,
    port,
    account: AZURITE_ACCOUNT,
    key: AZURITE_KEY,
    caFile,
    dataDir,
    logFile,
    get process() {
      return life.process;
    },
    client() {
      return new BlobServiceClient(endpoint, new StorageSharedKeyCredential(AZURITE_ACCOUNT, AZURITE_KEY));
    },
    async createContainer(name) {
      if (!caFile) {
        await az.client().getContainerClient(name).createIfNotExists();
        return;
      }
      // This process does not trust the test certificate (NODE_EXTRA_CA_CERTS is read at start only):
      // a short child that does.
      const script = `import { BlobServiceClient, StorageSharedKeyCredential } from "@azure/storage-blob";
await new BlobServiceClient(${JSON.stringify(endpoint)}, new StorageSharedKeyCredential(${JSON.stringify(AZURITE_ACCOUNT)}, ${JSON.stringify(AZURITE_KEY)})).getContainerClient(${JSON.stringify(name)}).createIfNotExists();`;
      execFileSync(process.execPath, ["--input-type=module", "-e", script], {
        cwd: dirname(createRequire(import.meta.url).resolve("@azure/storage-blob")),
        env: { ...process.env, NODE_EXTRA_CA_CERTS: caFile },
        stdio: ["ignore", "ignore", "pipe"],
      });
    },
    stop: life.stop,
    restart: life.restart,
    close: life.close,
  };
  try {
    await life.start();
  } catch (err) {
    await az.close();
    throw err;
  }
  return az;
}

/** Any HTTP answer means the server is up (an unsigned list is refused with 403). */
function fetchStatus(url: string, caFile: string | undefined): Promise<number> {
  const send = url.startsWith("https:") ? httpsRequest : httpRequest;
  return new Promise((resolve, reject) => {
    const req = send(url, { timeout: 2_000, ...(caFile ? { ca: readFileSync(caFile) } : {}) }, (res) => {
      res.resume();
      res.on("end", () => resolve(res.statusCode ?? 0));
    });
    req.on("timeout", () => req.destroy(new Error(`GET ${url}: timed out`)));
    req.on("error", reject);
    req.end();
  });
}
