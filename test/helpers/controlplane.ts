/**
 * A real Kubernetes control plane for tests: etcd + kube-apiserver (+ kube-controller-manager), on
 * loopback with free ports, generated certificates (openssl) and a static admin token. Alone it has
 * no scheduler and no node: pods stay Pending. With `node` (what test/helpers/node starts) the API
 * server listens on the node's bridge gateway so pods can reach it, authorizes kubelets (Node,RBAC,
 * NodeRestriction, client certificates for the kubelet and kube-proxy), the controller manager runs
 * the node lifecycle controller (it lifts the not-ready taint of a new Node), and kube-scheduler runs.
 *
 *   const cp = await startControlPlane();
 *   try { await cp.kubectl(["apply", "-f", file]); } finally { await cp.stop(); }
 */
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { request as httpRequest } from "node:http";
import { request as httpsRequest } from "node:https";
import { join } from "node:path";
import { binPath } from "./cache.ts";
import { freePort } from "./ports.ts";
import {
  InfraError,
  type ManagedProcess,
  makeTempDir,
  type RunOptions,
  type RunResult,
  removeTempDir,
  runCommand,
  spawnManaged,
  waitFor,
} from "./proc.ts";

export interface ControlPlaneOptions {
  /** Run kube-controller-manager (turns StatefulSets/Jobs into Pods, creates ServiceAccounts). Default true. */
  controllerManager?: boolean;
  /** Extra kube-apiserver flags (`--feature-gates=...`). */
  apiserverArgs?: readonly string[];
  /** How long to wait for everything to be ready; default 60 s. */
  timeoutMs?: number;
  /** Serve a real node (see the header); the addresses come from test/helpers/node. */
  node?: NodeNetwork;
}

/** Where a real node's pods live: the API server listens on `address`, Services in `serviceCidr`. */
export interface NodeNetwork {
  /** The bridge gateway: the API server's bind and advertise address. */
  address: string;
  /** The Service range (a /24); its first address is the `kubernetes` Service. */
  serviceCidr: string;
  /** The Node's name (the kubelet's client certificate is for system:node:<name>). */
  nodeName: string;
}

/** A client certificate signed by the control plane's CA. */
export interface ClientCert {
  cert: string;
  key: string;
}

export interface ApiResponse<T = unknown> {
  status: number;
  body: T;
}

export interface ControlPlane {
  /** The temp dir holding certs, kubeconfigs, etcd data and logs (removed by stop()). */
  dir: string;
  /** https://127.0.0.1:port */
  server: string;
  /** Path of an admin kubeconfig (user in system:masters, token auth). */
  kubeconfig: string;
  adminToken: string;
  /** Path of the CA certificate that signed the apiserver's serving certificate. */
  caFile: string;
  /** Log files, for failure messages. */
  logs: { etcd: string; apiserver: string; controllerManager?: string; scheduler?: string };
  /** With `node`: the kubelet's and kube-proxy's client certificates. */
  nodeCerts?: { kubelet: ClientCert; kubeProxy: ClientCert };
  /** Writes a kubeconfig that authenticates with a client certificate; returns its path. */
  kubeconfigForCert(name: string, cert: ClientCert): string;
  /** A token for an existing ServiceAccount (TokenRequest API, 1 h). */
  tokenFor(namespace: string, name: string): Promise<string>;
  /** Writes a kubeconfig that authenticates with `token`; returns its path. */
  kubeconfigFor(token: string): Promise<string>;
  /** Runs the cached kubectl against this control plane as admin (throws on non-zero unless allowFailure). */
  kubectl(args: readonly string[], opts?: RunOptions): Promise<RunResult>;
  /** A JSON request to the apiserver as admin (or with `token`). Never throws on HTTP errors. */
  request<T = unknown>(method: string, path: string, body?: unknown, token?: string): Promise<ApiResponse<T>>;
  /** Stops every process and removes `dir`. Safe to call twice. */
  stop(): Promise<void>;
}

async function openssl(dir: string, args: string[]): Promise<void> {
  await runCommand("openssl", args, { cwd: dir, timeoutMs: 30_000 });
}

/** The first address of a /24 (or any IPv4 CIDR whose last octet is 0): 10.214.1.0/24 -> 10.214.1.1. */
function firstAddress(cidr: string): string {
  const [ip] = cidr.split("/");
  const parts = (ip ?? "").split(".").map(Number);
  parts[3] = (parts[3] ?? 0) + 1;
  return parts.join(".");
}

/** A client certificate (EC P-256) for `subj`, signed by the CA in `dir`. */
async function signClientCert(dir: string, name: string, subj: string): Promise<ClientCert> {
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  await openssl(dir, ["req", ...ec, "-keyout", `${name}.key`, "-out", `${name}.csr`, "-subj", subj]);
  writeFileSync(
    join(dir, `${name}.ext`),
    "extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature,keyEncipherment\n",
  );
  await openssl(dir, [
    "x509",
    "-req",
    "-in",
    `${name}.csr`,
    "-CA",
    "ca.crt",
    "-CAkey",
    "ca.key",
    "-CAcreateserial",
    "-out",
    `${name}.crt`,
    "-days",
    "30",
    "-extfile",
    `${name}.ext`,
  ]);
  return { cert: join(dir, `${name}.crt`), key: join(dir, `${name}.key`) };
}

/** CA, apiserver serving cert (SAN 127.0.0.1, localhost, extra IPs), service-account RSA key pair. */
async function makePki(dir: string, extraIps: readonly string[] = []): Promise<void> {
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  await openssl(
    dir,
    ["req", "-x509", ...ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "30"]
      .concat(["-subj", "/CN=walship-test-ca", "-addext", "basicConstraints=critical,CA:TRUE"])
      .concat(["-addext", "keyUsage=critical,keyCertSign,cRLSign"]),
  );
  await openssl(dir, [
    "req",
    ...ec,
    "-keyout",
    "apiserver.key",
    "-out",
    "apiserver.csr",
    "-subj",
    "/CN=kube-apiserver",
  ]);
  writeFileSync(
    join(dir, "apiserver.ext"),
    [
      `subjectAltName=IP:127.0.0.1,${extraIps.map((ip) => `IP:${ip},`).join("")}DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc`,
      "extendedKeyUsage=serverAuth",
      "keyUsage=critical,digitalSignature,keyEncipherment",
      "",
    ].join("\n"),
  );
  await openssl(dir, [
    "x509",
    "-req",
    "-in",
    "apiserver.csr",
    "-CA",
    "ca.crt",
    "-CAkey",
    "ca.key",
    "-CAcreateserial",
    "-out",
    "apiserver.crt",
    "-days",
    "30",
    "-extfile",
    "apiserver.ext",
  ]);
  await openssl(dir, ["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", "sa.key"]);
  await openssl(dir, ["pkey", "-in", "sa.key", "-pubout", "-out", "sa.pub"]);
}

function writeKubeconfig(path: string, server: string, caFile: string, user: string, token: string): void {
  // JSON is valid YAML; kubectl and @kubernetes/client-node both read it.
  const cfg = {
    apiVersion: "v1",
    kind: "Config",
    clusters: [{ name: "walship-test", cluster: { server, "certificate-authority": caFile } }],
    users: [{ name: user, user: { token } }],
    contexts: [{ name: "walship-test", context: { cluster: "walship-test", user, namespace: "default" } }],
    "current-context": "walship-test",
  };
  writeFileSync(path, `${JSON.stringify(cfg, null, 2)}\n`, { mode: 0o600 });
}

function httpGetStatus(url: string): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { timeout: 2_000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () =>
        resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString("utf8") }),
      );
    });
    req.on("timeout", () => req.destroy(new Error(`GET ${url}: timed out`)));
    req.on("error", reject);
    req.end();
  });
}

function apiRequest(
  server: string,
  ca: string,
  token: string,
  method: string,
  path: string,
  body?: unknown,
): Promise<{ status: number; text: string }> {
  const payload = body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      new URL(path, server),
      {
        method,
        ca,
        timeout: 10_000,
        headers: {
          authorization: `Bearer ${token}`,
          accept: "application/json",
          ...(payload === undefined
            ? {}
            : {
                "content-type": method === "PATCH" ? "application/merge-patch+json" : "application/json",
                "content-length": Buffer.byteLength(payload),
              }),
        },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () =>
          resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString("utf8") }),
        );
      },
    );
    req.on("timeout", () => req.destroy(new Error(`${method} ${path}: timed out`)));
    req.on("error", reject);
    req.end(payload);
  });
}

/** Starts etcd, kube-apiserver and (by default) kube-controller-manager; resolves when all are ready. */
export async function startControlPlane(opts: ControlPlaneOptions = {}): Promise<ControlPlane> {
  const withKcm = opts.controllerManager ?? true;
  const timeoutMs = opts.timeoutMs ?? 60_000;
  // Resolve binaries first: a missing one fails before anything starts.
  const etcdBin = binPath("etcd");
  const apiserverBin = binPath("kube-apiserver");
  const kcmBin = withKcm ? binPath("kube-controller-manager") : "";
  const kubectlBin = binPath("kubectl");
  const node = opts.node;
  const schedulerBin = node ? binPath("kube-scheduler") : "";
  const host = node?.address ?? "127.0.0.1";

  const dir = makeTempDir("controlplane");
  const logDir = join(dir, "logs");
  const procs: ManagedProcess[] = [];
  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    // Reverse start order: controller manager, apiserver, etcd.
    for (const p of [...procs].reverse()) await p.stop({ graceMs: 5_000 });
    removeTempDir(dir);
  };

  try {
    mkdirSync(logDir);
    mkdirSync(join(dir, "etcd"));
    await makePki(dir, node ? [node.address, firstAddress(node.serviceCidr)] : []);
    const nodeCerts = node
      ? {
          kubelet: await signClientCert(dir, "kubelet", `/O=system:nodes/CN=system:node:${node.nodeName}`),
          kubeProxy: await signClientCert(dir, "kube-proxy", "/CN=system:kube-proxy"),
          apiserverKubeletClient: await signClientCert(
            dir,
            "apiserver-kubelet-client",
            "/O=system:masters/CN=kube-apiserver-kubelet-client",
          ),
        }
      : undefined;
    const caFile = join(dir, "ca.crt");
    const ca = readFileSync(caFile, "utf8");
    const adminToken = `admin-${crypto.randomUUID()}`;
    writeFileSync(join(dir, "tokens.csv"), `${adminToken},admin,admin-uid,"system:masters"\n`, {
      mode: 0o600,
    });

    const [etcdPort, peerPort, apiPort] = [await freePort(), await freePort(), await freePort()];
    const server = `https://${host}:${apiPort}`;
    const kubeconfig = join(dir, "admin.kubeconfig");
    writeKubeconfig(kubeconfig, server, caFile, "admin", adminToken);

    const etcdUrl = `http://127.0.0.1:${etcdPort}`;
    const peerUrl = `http://127.0.0.1:${peerPort}`;
    const etcd = spawnManaged(
      etcdBin,
      [
        "--name=default",
        `--data-dir=${join(dir, "etcd")}`,
        `--listen-client-urls=${etcdUrl}`,
        `--advertise-client-urls=${etcdUrl}`,
        `--listen-peer-urls=${peerUrl}`,
        `--initial-advertise-peer-urls=${peerUrl}`,
        `--initial-cluster=default=${peerUrl}`,
        "--unsafe-no-fsync",
        "--log-level=warn",
      ],
      { name: "etcd", logDir },
    );
    procs.push(etcd);
    await waitFor(
      async () => {
        const r = await httpGetStatus(`${etcdUrl}/health`);
        return r.status === 200 && r.text.includes('"true"');
      },
      { what: "etcd /health", timeoutMs, processes: [etcd] },
    );

    const disabled = withKcm ? [] : ["--disable-admission-plugins=ServiceAccount"];
    const apiserver = spawnManaged(
      apiserverBin,
      [
        `--etcd-servers=${etcdUrl}`,
        `--bind-address=${host}`,
        // Set explicitly: offline machines may have no default route to derive it from. With a node, the
        // `kubernetes` Service's endpoint: pods reach the API server there.
        `--advertise-address=${host}`,
        `--secure-port=${apiPort}`,
        `--cert-dir=${dir}`,
        `--tls-cert-file=${join(dir, "apiserver.crt")}`,
        `--tls-private-key-file=${join(dir, "apiserver.key")}`,
        `--client-ca-file=${caFile}`,
        `--service-account-issuer=${server}`,
        `--service-account-key-file=${join(dir, "sa.pub")}`,
        `--service-account-signing-key-file=${join(dir, "sa.key")}`,
        `--service-cluster-ip-range=${node?.serviceCidr ?? "10.0.0.0/24"}`,
        ...(nodeCerts
          ? [
              "--authorization-mode=Node,RBAC",
              "--enable-admission-plugins=NodeRestriction",
              `--kubelet-client-certificate=${nodeCerts.apiserverKubeletClient.cert}`,
              `--kubelet-client-key=${nodeCerts.apiserverKubeletClient.key}`,
              // Dial the kubelet at its InternalIP, never its hostname (that would be a DNS lookup).
              "--kubelet-preferred-address-types=InternalIP",
            ]
          : ["--authorization-mode=RBAC"]),
        `--token-auth-file=${join(dir, "tokens.csv")}`,
        "--allow-privileged=true",
        "--profiling=false",
        ...disabled,
        ...(opts.apiserverArgs ?? []),
      ],
      { name: "kube-apiserver", logDir },
    );
    procs.push(apiserver);
    const api = (method: string, path: string, body?: unknown, token = adminToken) =>
      apiRequest(server, ca, token, method, path, body);
    await waitFor(
      async () => {
        const r = await api("GET", "/readyz");
        if (r.status !== 200) throw new Error(`/readyz ${r.status}: ${r.text.slice(0, 500)}`);
        return true;
      },
      { what: "kube-apiserver /readyz", timeoutMs, processes: [etcd, apiserver] },
    );

    let kcm: ManagedProcess | undefined;
    if (withKcm) {
      kcm = spawnManaged(
        kcmBin,
        [
          `--kubeconfig=${kubeconfig}`,
          "--leader-elect=false",
          "--bind-address=127.0.0.1",
          `--secure-port=${await freePort()}`,
          `--authentication-kubeconfig=${kubeconfig}`,
          `--authorization-kubeconfig=${kubeconfig}`,
          `--service-account-private-key-file=${join(dir, "sa.key")}`,
          `--root-ca-file=${caFile}`,
          "--use-service-account-credentials=true",
          // The default client QPS (20) makes startup take seconds: each controller gets its own token.
          "--kube-api-qps=1000",
          "--kube-api-burst=2000",
          `--cluster-signing-cert-file=${caFile}`,
          `--cluster-signing-key-file=${join(dir, "ca.key")}`,
          // The node lifecycle controller lifts the not-ready taint admission puts on every new Node;
          // without a node it has nothing to do.
          node
            ? "--controllers=*,-cloud-node-lifecycle,-nodeipam,-ttl"
            : "--controllers=*,-nodelifecycle,-cloud-node-lifecycle,-nodeipam,-ttl",
          "--profiling=false",
        ],
        { name: "kube-controller-manager", logDir },
      );
      procs.push(kcm);
      // The serviceaccount controller has run once the default namespace has its "default" SA;
      // pods need it (ServiceAccount admission).
      await waitFor(
        async () => (await api("GET", "/api/v1/namespaces/default/serviceaccounts/default")).status === 200,
        {
          what: "kube-controller-manager (default ServiceAccount)",
          timeoutMs,
          processes: [etcd, apiserver, kcm],
        },
      );
    }

    let scheduler: ManagedProcess | undefined;
    if (node) {
      scheduler = spawnManaged(
        schedulerBin,
        [
          `--kubeconfig=${kubeconfig}`,
          `--authentication-kubeconfig=${kubeconfig}`,
          `--authorization-kubeconfig=${kubeconfig}`,
          "--leader-elect=false",
          "--bind-address=127.0.0.1",
          `--secure-port=${await freePort()}`,
          "--profiling=false",
        ],
        { name: "kube-scheduler", logDir },
      );
      procs.push(scheduler);
    }

    const kubeconfigForCert = (name: string, cert: ClientCert): string => {
      const path = join(dir, `${name}.kubeconfig`);
      const cfg = {
        apiVersion: "v1",
        kind: "Config",
        clusters: [{ name: "walship-test", cluster: { server, "certificate-authority": caFile } }],
        users: [{ name, user: { "client-certificate": cert.cert, "client-key": cert.key } }],
        contexts: [{ name: "walship-test", context: { cluster: "walship-test", user: name } }],
        "current-context": "walship-test",
      };
      writeFileSync(path, `${JSON.stringify(cfg, null, 2)}\n`, { mode: 0o600 });
      return path;
    };

    let kubeconfigN = 0;
    const cp: ControlPlane = {
      dir,
      server,
      kubeconfig,
      adminToken,
      caFile,
      logs: {
        etcd: etcd.logFile,
        apiserver: apiserver.logFile,
        ...(kcm ? { controllerManager: kcm.logFile } : {}),
        ...(scheduler ? { scheduler: scheduler.logFile } : {}),
      },
      ...(nodeCerts ? { nodeCerts: { kubelet: nodeCerts.kubelet, kubeProxy: nodeCerts.kubeProxy } } : {}),
      kubeconfigForCert,
      async tokenFor(namespace, name) {
        const path = `/api/v1/namespaces/${encodeURIComponent(namespace)}/serviceaccounts/${encodeURIComponent(name)}/token`;
        const r = await api("POST", path, {
          apiVersion: "authentication.k8s.io/v1",
          kind: "TokenRequest",
          spec: { expirationSeconds: 3600 },
        });
        if (r.status !== 201 && r.status !== 200) {
          throw new InfraError(
            "INFRA_COMMAND_FAILED",
            `create token for ServiceAccount ${namespace}/${name}: HTTP ${r.status}: ${r.text.slice(0, 500)}`,
          );
        }
        const token = (JSON.parse(r.text) as { status?: { token?: string } }).status?.token;
        if (!token)
          throw new InfraError("INFRA_COMMAND_FAILED", `create token for ${namespace}/${name}: no token`);
        return token;
      },
      async kubeconfigFor(token) {
        kubeconfigN++;
        const path = join(dir, `user-${kubeconfigN}.kubeconfig`);
        writeKubeconfig(path, server, caFile, `user-${kubeconfigN}`, token);
        return path;
      },
      async kubectl(args, runOpts = {}) {
        const run = () => runCommand(kubectlBin, ["--kubeconfig", kubeconfig, ...args], runOpts);
        if (args[0] !== "wait") return run();
        // `kubectl wait --for=condition=...` on an object created a moment ago fails at once when its
        // status has no conditions yet ("error: .status.conditions accessor error: <nil> is of the type
        // <nil>", seen on a CRD in a make test run): that is "not yet", so ask again.
        for (let attempt = 1; ; attempt++) {
          try {
            return await run();
          } catch (err) {
            if (attempt >= 20 || !/\.status\.conditions accessor error/.test(String(err))) throw err;
            await new Promise((r) => setTimeout(r, 250));
          }
        }
      },
      async request<T = unknown>(method: string, path: string, body?: unknown, token?: string) {
        const r = await api(method, path, body, token ?? adminToken);
        let parsed: unknown = r.text;
        try {
          parsed = JSON.parse(r.text);
        } catch {
          // Not JSON (e.g. /healthz): keep the text.
        }
        return { status: r.status, body: parsed as T };
      },
      stop,
    };
    return cp;
  } catch (err) {
    await stop();
    const keep =
      process.env.WALSHIP_KEEP_TMP === "1"
        ? `logs kept in ${logDir}`
        : "set WALSHIP_KEEP_TMP=1 to keep the logs";
    const code = err instanceof InfraError ? err.code : "INFRA_PROCESS_EXITED";
    throw new InfraError(code, `start control plane: ${(err as Error).message}\n(${keep})`, { cause: err });
  }
}
