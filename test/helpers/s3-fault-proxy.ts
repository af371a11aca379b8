/**
 * An HTTP proxy in front of MinIO that answers some requests with S3 errors or damages the answers:
 * the HTTP-level faults toxiproxy (TCP) cannot make. Written for the tests; the server behind it is
 * the real MinIO, and requests are forwarded unchanged (Host header included, so SigV4 still holds).
 *
 *   const fp = await startS3FaultProxy(minio.port);    // fp.endpoint: http://127.0.0.1:<port>
 *   fp.set({ kind: "status", status: 503, code: "SlowDown", share: 0.5 });
 *   fp.set({ kind: "truncate", share: 0.3 });          // a body (upload, else answer) cut half-way
 *   fp.set({ kind: "drop-response", share: 0.3 });     // forwarded, then no answer (socket closed)
 *   fp.set({ kind: "delay", ms: 300, share: 1 });      // forwarded, answered this much later
 *   fp.set(undefined);                                 // pass everything through
 *   fp.counts                                           // requests seen, faults injected by kind
 *   fp.seen                                             // with { record: true }: every request's
 *                                                       //   method, url, headers, arrival, answer
 *   await fp.close();
 */
import { createServer, type IncomingHttpHeaders, request } from "node:http";
import type { AddressInfo } from "node:net";

/** Which requests a fault hits: a share of them, only some methods, at most `times` in all. */
interface Selector {
  share: number;
  methods?: string[];
  times?: number;
}

export type HttpFault =
  /** Answer with this status and S3 error code (500 InternalError, 503 SlowDown, 429 SlowDown, ...) unforwarded. */
  | ({ kind: "status"; status: number; code: string } & Selector)
  /** An upload's body, or else the answer's, cut half-way, then the connection destroyed. */
  | ({ kind: "truncate" } & Selector)
  /** Forward (the store acts on it), then close the connection without an answer. */
  | ({ kind: "drop-response" } & Selector)
  /** Forward, then hold the store's answer this long before passing it on. */
  | ({ kind: "delay"; ms: number } & Selector);

export interface FaultCounts {
  requests: number;
  forwarded: number;
  injected: Record<string, number>;
}

/** A request as it reached the proxy, and when (performance.now() ms) it came and was answered. */
export interface SeenRequest {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  start: number;
  /** When the answer was sent (or the connection closed); undefined while open. */
  end?: number;
}

export interface S3FaultProxy {
  endpoint: string;
  port: number;
  counts: FaultCounts;
  seen: SeenRequest[];
  set(fault: HttpFault | undefined): void;
  close(): Promise<void>;
}

function s3ErrorXml(code: string, resource: string): string {
  return `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${code}</Code><Message>injected by the test proxy</Message><Resource>${resource}</Resource><RequestId>fault</RequestId></Error>`;
}

/** Starts the proxy on 127.0.0.1 (a free port) in front of 127.0.0.1:<upstreamPort>. */
export async function startS3FaultProxy(
  upstreamPort: number,
  opts: { seed?: number; record?: boolean } = {},
): Promise<S3FaultProxy> {
  let fault: HttpFault | undefined;
  const counts: FaultCounts = { requests: 0, forwarded: 0, injected: {} };
  // A seeded generator: a failing run can be repeated.
  let s = (opts.seed ?? 1) >>> 0 || 1;
  const random = () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 0x100000000;
  };
  let hits = 0;
  const hit = (method: string): HttpFault | undefined => {
    const f = fault;
    if (!f || (f.methods && !f.methods.includes(method))) return undefined;
    if (f.times !== undefined && hits >= f.times) return undefined;
    if (random() >= f.share) return undefined;
    hits++;
    return f;
  };
  const count = (k: string) => {
    counts.injected[k] = (counts.injected[k] ?? 0) + 1;
  };

  const seen: SeenRequest[] = [];
  const server = createServer((req, res) => {
    counts.requests++;
    const entry: SeenRequest = {
      method: req.method ?? "GET",
      url: req.url ?? "/",
      headers: req.headers,
      start: performance.now(),
    };
    if (opts.record) {
      seen.push(entry);
      res.on("close", () => {
        entry.end = performance.now();
      });
    }
    const f = hit(req.method ?? "GET");
    if (f?.kind === "status") {
      count(`${f.status} ${f.code}`);
      req.resume();
      req.on("end", () => {
        const body = s3ErrorXml(f.code, req.url ?? "/");
        res.writeHead(f.status, {
          "content-type": "application/xml",
          "content-length": Buffer.byteLength(body),
          ...(f.status === 503 || f.status === 429 ? { "retry-after": "1" } : {}),
        });
        res.end(body);
      });
      return;
    }
    counts.forwarded++;
    const up = request(
      {
        host: "127.0.0.1",
        port: upstreamPort,
        method: req.method,
        path: req.url,
        headers: req.headers,
      },
      (upRes) => {
        if (f?.kind === "drop-response") {
          count("drop-response");
          upRes.resume();
          req.socket.destroy();
          return;
        }
        const length = Number(upRes.headers["content-length"] ?? -1);
        // A known length is cut in half; a chunked body after half of its first chunk.
        if (f?.kind === "truncate" && length !== 0 && length !== 1) {
          count("truncate download");
          res.writeHead(upRes.statusCode ?? 502, upRes.headers);
          let sent = 0;
          let half = length > 1 ? Math.floor(length / 2) : -1;
          upRes.on("data", (chunk: Buffer) => {
            if (half < 0) half = Math.max(1, Math.floor(chunk.length / 2));
            if (sent >= half) return;
            const piece = chunk.subarray(0, half - sent);
            sent += piece.length;
            res.write(piece);
            if (sent >= half) {
              upRes.destroy();
              // Give the half body a moment to leave, then drop the connection mid-body.
              setTimeout(() => res.socket?.destroy(), 20);
            }
          });
          upRes.on("end", () => res.socket?.destroy());
          return;
        }
        if (f?.kind === "delay") {
          count("delay");
          setTimeout(() => {
            res.writeHead(upRes.statusCode ?? 502, upRes.headers);
            upRes.pipe(res);
          }, f.ms);
          return;
        }
        res.writeHead(upRes.statusCode ?? 502, upRes.headers);
        upRes.pipe(res);
      },
    );
    up.on("error", () => req.socket.destroy());
    const reqLength = Number(req.headers["content-length"] ?? 0);
    if (f?.kind === "truncate" && reqLength > 1) {
      // An upload that breaks off: half the body reaches the store, then both connections drop.
      count("truncate upload");
      const half = Math.floor(reqLength / 2);
      let sent = 0;
      req.on("data", (chunk: Buffer) => {
        if (sent >= half) return;
        const piece = chunk.subarray(0, half - sent);
        sent += piece.length;
        up.write(piece);
        if (sent >= half) {
          setTimeout(() => {
            up.destroy();
            req.socket.destroy();
          }, 20);
        }
      });
      return;
    }
    req.pipe(up);
  });
  server.keepAliveTimeout = 5000;
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    port,
    counts,
    seen,
    set(f) {
      fault = f;
      hits = 0;
    },
    close() {
      server.closeAllConnections();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}
