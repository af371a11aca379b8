/**
 * A small REST client for the Kubernetes API. @kubernetes/client-node supplies only the kubeconfig
 * handling (files, in-cluster service account, TLS and token options); requests are plain node:https
 * so that server-side apply, merge patches, status writes and watches are all under our control.
 */
import { Agent as HttpAgent, request as httpRequest, type RequestOptions } from "node:http";
import {
  Agent as HttpsAgent,
  type RequestOptions as HttpsRequestOptions,
  request as httpsRequest,
} from "node:https";
import { createInterface } from "node:readline";
import { KubeConfig } from "@kubernetes/client-node";
import { ErrorCodes, WalshipError } from "../../shared/errors.ts";
import { type ExecOptions, execIn } from "./exec.ts";

/**
 * An HTTP error from the API server (code WALSHIP_ERR_KUBE): `status` and the Status object's
 * `reason` (e.g. "Conflict"), also in `details`.
 */
export class KubeApiError extends WalshipError {
  readonly status: number;
  readonly reason: string;
  constructor(message: string, status: number, reason: string) {
    super(ErrorCodes.KUBE, message, { details: { status, reason } });
    this.name = "KubeApiError";
    this.status = status;
    this.reason = reason;
  }
}

export function isStatus(err: unknown, status: number): boolean {
  return err instanceof KubeApiError && err.status === status;
}

export type ContentType =
  | "application/json"
  | "application/merge-patch+json"
  | "application/json-patch+json"
  | "application/apply-patch+yaml";

export interface RequestOpts {
  body?: unknown;
  contentType?: ContentType;
  query?: Record<string, string | number | boolean | undefined>;
  signal?: AbortSignal;
  timeoutMs?: number;
}

/**
 * Called once per request the client sends, when its answer (or its failure) is known: the
 * Kubernetes verb (`get`, `list`, `watch`, `create`, `update`, `patch`, `apply`, `delete`), the
 * resource (`pods`, `sqlitereplicas/status`, ...), and the HTTP status code, or `error` when no
 * answer came (connection failure, timeout, abort).
 */
export type RequestObserver = (verb: string, resource: string, code: string) => void;

const observers = new Set<RequestObserver>();

/** Observes every request of every KubeClient in this process; returns the function that stops it. */
export function observeRequests(fn: RequestObserver): () => void {
  observers.add(fn);
  return () => observers.delete(fn);
}

function notify(verb: string, resource: string, code: string): void {
  for (const fn of observers) fn(verb, resource, code);
}

/**
 * The verb and resource of a request, as the API server names them: `/api/v1/namespaces/x/pods` is
 * `list pods`, `.../pods/p/status` with PUT is `update pods/status`, a server-side apply is `apply`.
 */
export function describeRequest(
  method: string,
  path: string,
  contentType?: ContentType,
  watch = false,
): { verb: string; resource: string } {
  const parts = path.split("?")[0]!.split("/").filter(Boolean);
  // /api/v1/... or /apis/group/version/...
  let rest = parts[0] === "api" ? parts.slice(2) : parts[0] === "apis" ? parts.slice(3) : parts;
  if (rest[0] === "namespaces" && rest.length >= 3) rest = rest.slice(2);
  const [resource = "", name, sub] = rest;
  return {
    verb: watch ? "watch" : verbOf(method.toUpperCase(), name !== undefined, contentType),
    resource: sub ? `${resource}/${sub}` : resource,
  };
}

function verbOf(method: string, named: boolean, contentType?: ContentType): string {
  switch (method) {
    case "GET":
      return named ? "get" : "list";
    case "POST":
      return "create";
    case "PUT":
      return "update";
    case "PATCH":
      return contentType === "application/apply-patch+yaml" ? "apply" : "patch";
    case "DELETE":
      return named ? "delete" : "deletecollection";
    default:
      return method.toLowerCase();
  }
}

export interface WatchEvent<T> {
  type: "ADDED" | "MODIFIED" | "DELETED" | "BOOKMARK" | "ERROR";
  object: T;
}

export class KubeClient {
  readonly #kc: KubeConfig;
  readonly #server: URL;
  /** One keep-alive agent for the TLS settings last seen (a rotated certificate gets a new one). */
  #agent: { key: string; agent: HttpAgent } | undefined;

  constructor(kc: KubeConfig) {
    const cluster = kc.getCurrentCluster();
    if (!cluster) throw new Error("load kubeconfig: no current cluster");
    this.#kc = kc;
    this.#server = new URL(cluster.server);
  }

  /**
   * From a kubeconfig file, else $KUBECONFIG / ~/.kube/config / the in-cluster service account; with
   * `context`, that context of it instead of the current one (WALSHIP_ERR_CONFIG when it has none).
   */
  static load(kubeconfigPath?: string, context?: string): KubeClient {
    const kc = new KubeConfig();
    if (kubeconfigPath) kc.loadFromFile(kubeconfigPath);
    else kc.loadFromDefault();
    if (context !== undefined) {
      if (!kc.getContextObject(context)) {
        throw new WalshipError(ErrorCodes.CONFIG, `load kubeconfig: no context "${context}"`, {
          details: { context },
        });
      }
      kc.setCurrentContext(context);
    }
    return new KubeClient(kc);
  }

  /**
   * Runs `command` in a container (the pods/exec subresource, over a WebSocket) and collects its
   * output; see exec.ts.
   */
  exec(ns: string, pod: string, container: string, command: string[], opts: ExecOptions = {}) {
    return execIn(this.#kc, { ns, pod, container, command }, opts);
  }

  /** The namespace of the current context (or of the in-cluster service account). */
  get defaultNamespace(): string {
    return this.#kc.getContextObject(this.#kc.getCurrentContext())?.namespace ?? "default";
  }

  async #options(
    method: string,
    path: string,
    query: RequestOpts["query"],
  ): Promise<{ url: URL; opts: RequestOptions }> {
    const url = new URL(path, this.#server);
    for (const [k, v] of Object.entries(query ?? {})) if (v !== undefined) url.searchParams.set(k, String(v));
    const opts: RequestOptions & { headers: Record<string, string> } = { method, headers: {} };
    await this.#kc.applyToHTTPSOptions(opts as Parameters<KubeConfig["applyToHTTPSOptions"]>[0]);
    opts.agent = this.#keepAliveAgent(url, opts);
    opts.headers.accept = "application/json";
    return { url, opts };
  }

  /**
   * The kubeconfig's agent does not keep connections alive: every request would open a new TLS
   * connection (a handshake on both sides). This one does, with the same TLS settings.
   */
  #keepAliveAgent(url: URL, opts: HttpsRequestOptions): HttpAgent {
    const tls = {
      ca: opts.ca,
      cert: opts.cert,
      key: opts.key,
      rejectUnauthorized: opts.rejectUnauthorized,
      servername: opts.servername,
    };
    const key = JSON.stringify(Object.values(tls).map((v) => (v === undefined ? null : String(v))));
    if (this.#agent?.key !== key) {
      this.#agent?.agent.destroy();
      const agent =
        url.protocol === "http:"
          ? new HttpAgent({ keepAlive: true })
          : new HttpsAgent({ ...tls, keepAlive: true });
      this.#agent = { key, agent };
    }
    return this.#agent.agent;
  }

  #send(url: URL, opts: RequestOptions) {
    return url.protocol === "http:" ? httpRequest(url, opts) : httpsRequest(url, opts);
  }

  /** One request; resolves with the parsed JSON body, throws KubeApiError on a non-2xx answer. */
  async request<T>(method: string, path: string, ro: RequestOpts = {}): Promise<T> {
    const { url, opts } = await this.#options(method, path, ro.query);
    const payload =
      ro.body === undefined ? undefined : typeof ro.body === "string" ? ro.body : JSON.stringify(ro.body);
    if (payload !== undefined) {
      opts.headers = {
        ...opts.headers,
        "content-type": ro.contentType ?? "application/json",
        "content-length": String(Buffer.byteLength(payload)),
      };
    }
    opts.signal = ro.signal;
    opts.timeout = ro.timeoutMs ?? 30_000;
    const { verb, resource } = describeRequest(method, path, ro.contentType);
    return new Promise<T>((resolve, reject) => {
      const req = this.#send(url, opts);
      let answered = false;
      req.on("response", (res) => {
        answered = true;
        notify(verb, resource, String(res.statusCode ?? 0));
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("error", reject);
        res.on("end", () => {
          const text = Buffer.concat(chunks).toString("utf8");
          let body: unknown = text;
          try {
            body = text === "" ? undefined : JSON.parse(text);
          } catch {
            // not JSON: keep the text
          }
          const status = res.statusCode ?? 0;
          if (status >= 200 && status < 300) return resolve(body as T);
          const st = body as { message?: string; reason?: string } | undefined;
          reject(
            new KubeApiError(
              `${method} ${path}: HTTP ${status}: ${st?.message ?? String(text).slice(0, 300)}`,
              status,
              st?.reason ?? "",
            ),
          );
        });
      });
      req.on("timeout", () => req.destroy(new Error(`${method} ${path}: timed out`)));
      req.on("error", (err) => {
        if (!answered) notify(verb, resource, "error");
        reject(err);
      });
      req.end(payload);
    });
  }

  get<T>(path: string, signal?: AbortSignal): Promise<T> {
    return this.request<T>("GET", path, signal ? { signal } : {});
  }

  /** Server-side apply of `body` with `fieldManager`. */
  apply<T>(path: string, body: unknown, fieldManager: string, force: boolean): Promise<T> {
    return this.request<T>("PATCH", path, {
      body,
      contentType: "application/apply-patch+yaml",
      query: { fieldManager, force },
    });
  }

  /** Streams watch events until the server ends the watch, the signal fires, or a read fails. */
  async *watch<T>(
    path: string,
    query: RequestOpts["query"],
    signal: AbortSignal,
  ): AsyncGenerator<WatchEvent<T>> {
    const { url, opts } = await this.#options("GET", path, { ...query, watch: true });
    opts.signal = signal;
    const { verb, resource } = describeRequest("GET", path, undefined, true);
    const res = await new Promise<import("node:http").IncomingMessage>((resolve, reject) => {
      const req = this.#send(url, opts);
      let answered = false;
      req.on("response", (r) => {
        answered = true;
        notify(verb, resource, String(r.statusCode ?? 0));
        resolve(r);
      });
      req.on("error", (err) => {
        if (!answered) notify(verb, resource, "error");
        reject(err);
      });
      req.end();
    });
    if ((res.statusCode ?? 0) >= 300) {
      res.resume();
      throw new KubeApiError(`watch ${path}: HTTP ${res.statusCode}`, res.statusCode ?? 0, "");
    }
    const lines = createInterface({ input: res, crlfDelay: Number.POSITIVE_INFINITY });
    try {
      for await (const line of lines) {
        if (line.trim() === "") continue;
        yield JSON.parse(line) as WatchEvent<T>;
      }
    } finally {
      lines.close();
      res.destroy();
    }
  }
}
