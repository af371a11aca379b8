/**
 * The one HTTP listener both roles serve their probes and metrics on (`walship replicate`'s `addr`,
 * `walship operator -addr`), on node:http: GET and HEAD only, a route per path, 404 for any other,
 * 500 naming the error when a route throws (logged), `Cache-Control: no-store` on every answer.
 */
import http from "node:http";
import type { AddressInfo } from "node:net";
import { describeError } from "./errors.ts";
import type { Logger } from "./log.ts";

// In its own module so that reading a config (build.ts) does not load node:http.
export { splitListenAddr } from "./listen-addr.ts";

export const TEXT_TYPE = "text/plain; charset=utf-8";
export const JSON_TYPE = "application/json; charset=utf-8";

/** A route answers one path; it throws to answer 500. */
export type Route = (res: http.ServerResponse) => Promise<void>;

export interface HttpServer {
  /** Where the server can be reached, e.g. `http://127.0.0.1:9090` (a wildcard address is given as loopback). */
  url: string;
  close(): Promise<void>;
}

export function send(res: http.ServerResponse, code: number, type: string, body: string): void {
  res.writeHead(code, { "Content-Type": type, "Cache-Control": "no-store" });
  res.end(body);
}

/** A route that answers 200 "ok" while the process serves requests. */
export const healthz: Route = async (res) => send(res, 200, TEXT_TYPE, "ok\n");

/** Listens on `host:port` and serves `routes`; rejects with the listen error (a port in use, ...). */
export async function serveHttp(
  where: { host: string | undefined; port: number },
  routes: Readonly<Record<string, Route>>,
  log: Logger,
): Promise<HttpServer> {
  const server = http.createServer((req, res) => {
    const pathname = new URL(req.url ?? "/", "http://localhost").pathname;
    const route = routes[pathname];
    if (!route) {
      send(res, 404, TEXT_TYPE, "not found\n");
      return;
    }
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.setHeader("Allow", "GET, HEAD");
      send(res, 405, TEXT_TYPE, "method not allowed\n");
      return;
    }
    route(res).catch((err: unknown) => {
      log.error({ path: pathname, err: describeError(err) }, "http request failed");
      if (!res.headersSent) send(res, 500, TEXT_TYPE, `${describeError(err)}\n`);
      else res.destroy();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen({ port: where.port, ...(where.host !== undefined ? { host: where.host } : {}) }, resolve);
  });
  const bound = server.address() as AddressInfo;
  return {
    url: `http://${urlHost(bound.address)}:${bound.port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

function urlHost(address: string): string {
  if (address === "::" || address === "0.0.0.0") return "127.0.0.1";
  return address.includes(":") ? `[${address}]` : address;
}
