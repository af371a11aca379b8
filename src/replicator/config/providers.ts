/**
 * S3-compatible providers known by their host: the bucket, region and endpoint an `s3://` URL host
 * implies, and the region an endpoint host implies. Pure.
 */

/** Used for S3 when an endpoint is set but no region is, and no provider host says otherwise. */
export const DEFAULT_S3_REGION = "us-east-1";

export interface S3HostParts {
  bucket: string;
  region?: string;
  endpoint?: string;
  forcePathStyle: boolean;
}

/** Provider host patterns: bucket in group 1 (optional), the rest decides region and endpoint. */
const S3_PROVIDERS: ReadonlyArray<{
  re: RegExp;
  region: (m: RegExpExecArray) => string | undefined;
  host: (m: RegExpExecArray) => string;
  scheme?: string;
}> = [
  { re: /^(?:(.+)\.)?localhost$/, region: () => "us-east-1", host: () => "localhost", scheme: "http" },
  {
    re: /^(?:(.+)\.)?s3\.([^.]+)\.backblazeb2\.com$/,
    region: (m) => m[2],
    host: (m) => `s3.${m[2]}.backblazeb2.com`,
  },
  { re: /^(?:(.+)\.)?s3\.filebase\.com$/, region: () => undefined, host: () => "s3.filebase.com" },
  {
    re: /^(?:(.+)\.)?([^.]+)\.digitaloceanspaces\.com$/,
    region: (m) => m[2],
    host: (m) => `${m[2]}.digitaloceanspaces.com`,
  },
  { re: /^(?:(.+)\.)?s3\.([^.]+)\.scw\.cloud$/, region: (m) => m[2], host: (m) => `s3.${m[2]}.scw.cloud` },
  {
    re: /^(?:(.+)\.)?([^.]+)\.linodeobjects\.com$/,
    region: (m) => m[2],
    host: (m) => `${m[2]}.linodeobjects.com`,
  },
  // Walship additions (v0.3.13 would take the whole host as a bucket name, which cannot work).
  {
    re: /^(?:(.+)\.)?([^.]+)\.your-objectstorage\.com$/,
    region: (m) => m[2],
    host: (m) => `${m[2]}.your-objectstorage.com`,
  },
  {
    re: /^(?:(.+)\.)?([0-9a-f]{32})((?:\.eu|\.fedramp)?)\.r2\.cloudflarestorage\.com$/,
    region: () => "auto",
    host: (m) => `${m[2]}${m[3]}.r2.cloudflarestorage.com`,
  },
];

/**
 * Splits an `s3://` URL host into bucket, region and endpoint, recognising provider host patterns
 * (those use path-style requests); any other host is the bucket name, virtual-host style, on AWS.
 */
export function parseS3Host(hostWithPort: string): S3HostParts {
  const m = /^(.+):(\d+)$/.exec(hostWithPort);
  const host = m ? m[1]! : hostWithPort;
  const port = m?.[2];
  for (const p of S3_PROVIDERS) {
    const hit = p.re.exec(host);
    if (!hit) continue;
    const endpoint = `${p.scheme ?? "https"}://${p.host(hit)}${port ? `:${port}` : ""}`;
    const parts: S3HostParts = { bucket: hit[1] ?? "", endpoint, forcePathStyle: true };
    const region = p.region(hit);
    if (region !== undefined) parts.region = region;
    return parts;
  }
  return { bucket: host, forcePathStyle: false };
}

/** The region a known provider's endpoint host implies, for an endpoint set without a region. */
export function regionFromEndpointHost(host: string): string | undefined {
  const aws = /^(?:.+\.)?s3[.-]([a-z0-9-]+)\.amazonaws\.com$/.exec(host);
  if (aws) return aws[1];
  for (const p of S3_PROVIDERS.slice(1)) {
    const hit = p.re.exec(host);
    if (hit) return p.region(hit);
  }
  return undefined;
}
