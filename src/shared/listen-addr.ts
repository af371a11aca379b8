/** Listen addresses as `addr:` and `-addr` take them. Pure. */

/** `:9090`, `host:9090` or `[::1]:9090`. */
const LISTEN_ADDR_RE = /^(\[[^\]]*\]|[^:[\]]*):(\d{1,5})$/;

/**
 * Splits a listen address into host and port; undefined when it is not one (each caller names its
 * own setting in the error). An empty host means every interface.
 */
export function splitListenAddr(addr: string): { host: string | undefined; port: number } | undefined {
  const m = LISTEN_ADDR_RE.exec(addr);
  const port = m ? Number(m[2]) : Number.NaN;
  if (!m || port > 65535) return undefined;
  const host = m[1]!.replace(/^\[(.*)\]$/, "$1");
  return { host: host === "" ? undefined : host, port };
}
