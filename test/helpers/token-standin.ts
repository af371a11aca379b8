/**
 * FAKE token endpoints on 127.0.0.1, standing in for the cloud services no test may reach: the GCE
 * metadata server (GKE Workload Identity), Google's OAuth token URI (a service-account key's
 * `token_uri`) and Microsoft Entra's token endpoint (Azure Workload Identity's authority host). The
 * client libraries let each be pointed elsewhere (GCE_METADATA_HOST, the key file's token_uri,
 * AZURE_AUTHORITY_HOST); what they are sent is checked as the real services would check it:
 *
 * - metadata: the `Metadata-Flavor: Google` header;
 * - service-account JWT grant: the assertion's RS256 signature against the key's public half, its
 *   issuer, audience and scope;
 * - Entra client-assertion grant: the client id, the federated token's text, the Storage scope.
 *
 * Each hands out a distinct access token; Azure's is a JWT that Azurite's "basic" OAuth accepts
 * (issuer sts.windows.net, audience https://storage.azure.com, a lifetime). Every request is recorded.
 *
 * Also: `gateProxy`, a FAKE gate in front of a real server that answers some requests itself, and
 * `bearerProxy`, one that passes only requests carrying one bearer token (fake-gcs-server ignores
 * credentials, so without it a test could not fail).
 */
import { createVerify, generateKeyPairSync } from "node:crypto";
import { createServer, type IncomingMessage, request, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

export interface TokenStandIn {
  /** http://127.0.0.1:PORT */
  url: string;
  /** host:port, for GCE_METADATA_HOST. */
  host: string;
  /** Tokens handed out, by flow. */
  tokens: { metadata: string; serviceAccount: string; azure: string };
  /** A service-account key file's JSON whose token_uri is this stand-in. */
  serviceAccountKey(): Record<string, string>;
  /** What each flow was asked, in order ("metadata", "sa", "azure", or "refused: why"). */
  calls: string[];
  /** Azure: the client id and federated token text it accepts. */
  azure: { tenantId: string; clientId: string; federatedToken: string };
  close(): Promise<void>;
}

const b64url = (o: unknown) => Buffer.from(JSON.stringify(o)).toString("base64url");

/** `listenHost`: 127.0.0.1 by default; the node's bridge gateway for pods. */
export async function startTokenStandIn(listenHost = "127.0.0.1"): Promise<TokenStandIn> {
  const { privateKey, publicKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
  const pem = privateKey.export({ type: "pkcs8", format: "pem" }).toString();
  const clientEmail = "walship-test@walship-test.iam.gserviceaccount.com";
  const azure = {
    tenantId: "72f988bf-86f1-41af-91ab-2d7cd011db47",
    clientId: "0b5b9c7e-0000-4000-8000-000000000001",
    federatedToken: `federated-${Math.random().toString(36).slice(2)}`,
  };
  const now = () => Math.floor(Date.now() / 1000);
  const tokens = {
    metadata: `gke-wi-${Math.random().toString(36).slice(2)}`,
    serviceAccount: `sa-${Math.random().toString(36).slice(2)}`,
    azure: `${b64url({ typ: "JWT", alg: "RS256" })}.${b64url({
      aud: "https://storage.azure.com",
      iss: `https://sts.windows.net/${azure.tenantId}/`,
      iat: now() - 60,
      nbf: now() - 60,
      exp: now() + 3600,
      oid: "00000000-0000-0000-0000-000000000042",
      tid: azure.tenantId,
      appid: azure.clientId,
    })}.c2lnbmF0dXJlLW5vdC1jaGVja2Vk`,
  };
  const calls: string[] = [];
  let url = "";

  const json = (res: ServerResponse, status: number, body: unknown) => {
    res.writeHead(status, { "content-type": "application/json", "metadata-flavor": "Google" });
    res.end(JSON.stringify(body));
  };
  const refuse = (res: ServerResponse, why: string) => {
    calls.push(`refused: ${why}`);
    json(res, 400, { error: "invalid_grant", error_description: why });
  };

  const srv = createServer((req: IncomingMessage, res: ServerResponse) => {
    handle(req, res).catch((err: unknown) => {
      calls.push(`refused: ${String(err)}`);
      if (!res.headersSent) res.writeHead(500);
      res.end();
    });
  });
  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<unknown> => {
    const body = await readBody(req);
    const path = (req.url ?? "").split("?")[0] ?? "";
    if (path.startsWith("/computeMetadata/")) {
      if (req.headers["metadata-flavor"] !== "Google") return refuse(res, "metadata without Metadata-Flavor");
      if (path.endsWith("/service-accounts/default/token")) {
        calls.push("metadata");
        return json(res, 200, { access_token: tokens.metadata, expires_in: 3599, token_type: "Bearer" });
      }
      if (path.endsWith("/project/project-id")) {
        res.writeHead(200, { "metadata-flavor": "Google", "content-type": "text/plain" });
        return res.end("walship-test");
      }
      if (path.endsWith("/service-accounts/default/email")) {
        res.writeHead(200, { "metadata-flavor": "Google", "content-type": "text/plain" });
        return res.end(clientEmail);
      }
      res.writeHead(200, { "metadata-flavor": "Google", "content-type": "text/plain" });
      return res.end("");
    }
    const form = new URLSearchParams(body);
    if (path === "/token" && req.method === "POST") {
      const assertion = form.get("assertion") ?? "";
      const [h, p, sig] = assertion.split(".");
      if (form.get("grant_type") !== "urn:ietf:params:oauth:grant-type:jwt-bearer" || !h || !p || !sig) {
        return refuse(res, "not a JWT bearer grant");
      }
      const ok = createVerify("RSA-SHA256")
        .update(`${h}.${p}`)
        .verify(publicKey, Buffer.from(sig, "base64url"));
      const claims = JSON.parse(Buffer.from(p, "base64url").toString()) as Record<string, unknown>;
      if (!ok) return refuse(res, "bad signature");
      if (claims.iss !== clientEmail) return refuse(res, `issuer ${String(claims.iss)}`);
      if (claims.aud !== `${url}/token`) return refuse(res, `audience ${String(claims.aud)}`);
      calls.push("sa");
      return json(res, 200, { access_token: tokens.serviceAccount, expires_in: 3599, token_type: "Bearer" });
    }
    if (path === `/${azure.tenantId}/oauth2/v2.0/token` && req.method === "POST") {
      if (form.get("client_id") !== azure.clientId) return refuse(res, "unknown client");
      if (form.get("client_assertion") !== azure.federatedToken) return refuse(res, "bad federated token");
      if (form.get("client_assertion_type") !== "urn:ietf:params:oauth:client-assertion-type:jwt-bearer") {
        return refuse(res, "bad assertion type");
      }
      if (form.get("scope") !== "https://storage.azure.com/.default") return refuse(res, "bad scope");
      calls.push("azure");
      return json(res, 200, { access_token: tokens.azure, expires_in: 3599, token_type: "Bearer" });
    }
    refuse(res, `no route ${req.method} ${path}`);
  };
  await new Promise<void>((resolve) => srv.listen(0, listenHost, resolve));
  const { port } = srv.address() as AddressInfo;
  url = `http://${listenHost}:${port}`;
  return {
    url,
    host: `${listenHost}:${port}`,
    tokens,
    calls,
    azure,
    serviceAccountKey: () => ({
      type: "service_account",
      project_id: "walship-test",
      private_key_id: "0123456789abcdef",
      private_key: pem,
      client_email: clientEmail,
      client_id: "100000000000000000001",
      token_uri: `${url}/token`,
    }),
    close: () => closeServer(srv),
  };
}

/** FAKE: forwards to `target` only requests with `Authorization: Bearer <token>`; 401 otherwise. */
export function bearerProxy(
  target: string,
  token: () => string,
  listenHost = "127.0.0.1",
): Promise<GateProxy> {
  return gateProxy(
    target,
    (req) =>
      req.headers.authorization === `Bearer ${token()}`
        ? undefined
        : { status: 401, body: { error: { code: 401, message: "Invalid Credentials", errors: [] } } },
    listenHost,
  );
}

export interface GateProxy {
  url: string;
  /** Requests answered by the gate / passed to the target. */
  readonly refused: number;
  readonly passed: number;
  close(): Promise<void>;
}

/**
 * FAKE: an HTTP proxy in front of a real server that answers a request itself when `gate` returns an
 * answer (a JSON body with a status), and forwards it unchanged otherwise.
 */
export async function gateProxy(
  target: string,
  gate: (req: IncomingMessage) => { status: number; body: unknown } | undefined,
  listenHost = "127.0.0.1",
): Promise<GateProxy> {
  const t = new URL(target);
  const stats = { refused: 0, passed: 0 };
  const srv = createServer((req, res) => {
    const answer = gate(req);
    if (answer) {
      stats.refused++;
      req.resume();
      res.writeHead(answer.status, { "content-type": "application/json" });
      res.end(JSON.stringify(answer.body));
      return;
    }
    stats.passed++;
    const up = request(
      {
        host: t.hostname,
        port: t.port,
        method: req.method,
        path: req.url,
        headers: { ...req.headers, host: t.host },
      },
      (r) => {
        res.writeHead(r.statusCode ?? 502, r.headers);
        r.pipe(res);
      },
    );
    up.on("error", () => res.destroy());
    req.pipe(up);
  });
  await new Promise<void>((resolve) => srv.listen(0, listenHost, resolve));
  const { port } = srv.address() as AddressInfo;
  return {
    url: `http://${listenHost}:${port}`,
    get refused() {
      return stats.refused;
    },
    get passed() {
      return stats.passed;
    },
    close: () => closeServer(srv),
  };
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve) => {
    let s = "";
    req.on("data", (d: Buffer) => {
      s += d.toString();
    });
    req.on("end", () => resolve(s));
  });
}

function closeServer(srv: Server): Promise<void> {
  return new Promise((resolve) => {
    srv.closeAllConnections();
    srv.close(() => resolve());
  });
}
