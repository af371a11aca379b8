/**
 * A small REST client for the Kubernetes API. @kubernetes/client-node supplies only the kubeconfig
 * handling (files, in-cluster service account, TLS and token options); requests are plain node:https
 * so that server-side apply, merge patches, status writes and watches are all under our control.
 */
import { request as httpRequest, type RequestOptions } from "node:http";
import { request as httpsRequest } from "node:https";
import { createInterface } from "node:readline";
import { KubeConfig } from "@kubernetes/client-node";
import { ErrorCodes, WalshipError } from "../../shared/errors.ts";

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

export interface WatchEvent<T> {
  type: "ADDED" | "MODIFIED" | "DELETED" | "BOOKMARK" | "ERROR";
  object: T;
}

export class KubeClient {
  readonly #kc: KubeConfig;
  readonly #server: URL;

  constructor(kc: KubeConfig) {
    const cluster = kc.getCurrentCluster();
    if (!cluster) throw new Error("load kubeconfig: no current cluster");
    this.#kc = kc;
    this.#server = new URL(cluster.server);
  }

  /** From a kubeconfig file, else $KUBECONFIG / ~/.kube/config / the in-cluster service account. */
  static load(kubeconfigPath?: string): KubeClient {
    const kc = new KubeConfig();
    if (kubeconfigPath) kc.loadFromFile(kubeconfigPath);
    else kc.loadFromDefault();
    return new KubeClient(kc);
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
    opts.headers.accept = "application/json";
    return { url, opts };
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
    return new Promise<T>((resolve, reject) => {
      const req = this.#send(url, opts);
      req.on("response", (res) => {
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
      req.on("error", reject);
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
    const res = await new Promise<import("node:http").IncomingMessage>((resolve, reject) => {
      const req = this.#send(url, opts);
      req.on("response", resolve);
      req.on("error", reject);
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
