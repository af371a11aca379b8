/** Replica URLs and paths as Litestream reads them (Go's url.Parse and path.Clean). Pure. */
import path from "node:path";
import { redactUrlPasswords } from "./env.ts";

/** `^\w+://`, Litestream's test for "this argument is a URL". */
export function isUrl(s: string): boolean {
  return /^\w+:\/\//.test(s);
}

/** `~` and `~/x` become the home directory; the result is absolute (relative to `cwd`). */
export function expandPath(p: string, cwd: string, homedir: string): string {
  if (p === "~") return homedir;
  if (p.startsWith("~/")) return path.join(homedir, p.slice(2));
  return path.resolve(cwd, p);
}

/** Go's `path.Clean`: no `.`/`..` segments, no doubled or trailing slashes; "" becomes ".". */
export function cleanPath(p: string): string {
  const n = path.posix.normalize(p === "" ? "." : p);
  return n.length > 1 && n.endsWith("/") ? n.slice(0, -1) : n;
}

/** A URL path as Litestream keeps it for object stores: cleaned, no leading `/`, bucket root = "". */
export function objectPrefixFromUrlPath(p: string): string {
  const c = cleanPath(p).replace(/^\/+/, "");
  return c === "." ? "" : c;
}

export interface UrlParts {
  scheme: string;
  /** Host with port, as written. */
  host: string;
  username?: string;
  password?: string;
  /** Decoded path, verbatim (not cleaned). */
  path: string;
  /** Query parameters (gcs, abs and sftp URLs take their Walship keys there). */
  query: URLSearchParams;
}

export function parseUrl(s: string): UrlParts | { problem: string } {
  const shown = JSON.stringify(redactUrlPasswords(s));
  if (!isUrl(s)) return { problem: `replica url needs a scheme (s3://, file://, ...): ${shown}` };
  let u: URL;
  try {
    u = new URL(s);
  } catch {
    return { problem: `invalid url ${shown}` };
  }
  try {
    const parts: UrlParts = {
      scheme: u.protocol.replace(/:$/, "").toLowerCase(),
      host: u.host,
      path: decodeURIComponent(u.pathname),
      query: u.searchParams,
    };
    if (u.username !== "") parts.username = decodeURIComponent(u.username);
    if (u.password !== "") parts.password = decodeURIComponent(u.password);
    return parts;
  } catch {
    return { problem: `invalid url ${shown}: bad percent-encoding` };
  }
}
