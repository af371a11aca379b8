/**
 * SSH host-key checks for the sftp destination, as pure functions over text: a pinned public key
 * (`host-key: ssh-ed25519 AAAA...`) or OpenSSH known_hosts files. Litestream v0.3.13 checks nothing
 * (InsecureIgnoreHostKey); Walship refuses an unknown or changed key unless told to skip the check.
 *
 * known_hosts lines: `[@marker] patterns keytype base64 [comment]`. Patterns are comma-separated host
 * names with `*` and `?`, `!` negation, and hashed names (`|1|salt|hmac-sha1`). A server on a port
 * other than 22 is looked up as `[host]:port`, as ssh does. `@revoked` keys are refused;
 * `@cert-authority` lines are skipped (certificates are not supported).
 */
import { createHash, createHmac } from "node:crypto";
import { readFile } from "node:fs/promises";

export interface HostKey {
  /** The key's algorithm name as stored in the blob (ssh-ed25519, ecdsa-sha2-nistp256, ssh-rsa). */
  type: string;
  /** The raw public key blob (what the server sends). */
  blob: Buffer;
}

/** The host-key algorithms that can prove each stored key type, in preference order. */
const ALGORITHMS_OF: Record<string, string[]> = {
  "ssh-ed25519": ["ssh-ed25519"],
  "ecdsa-sha2-nistp256": ["ecdsa-sha2-nistp256"],
  "ecdsa-sha2-nistp384": ["ecdsa-sha2-nistp384"],
  "ecdsa-sha2-nistp521": ["ecdsa-sha2-nistp521"],
  "ssh-rsa": ["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"],
  "ssh-dss": ["ssh-dss"],
};

/**
 * Parses `keytype base64 [comment]` (a .pub file's line, or `ssh-keyscan` output without the host).
 * Returns undefined when it is not a public key line or the blob does not name its own type.
 */
export function parsePublicKey(line: string): HostKey | undefined {
  const [type, b64] = line.trim().split(/\s+/);
  if (!type || !b64 || !(type in ALGORITHMS_OF) || !/^[A-Za-z0-9+/]+=*$/.test(b64)) return undefined;
  const blob = Buffer.from(b64, "base64");
  // The blob starts with its own type name (uint32 length + bytes).
  if (blob.length < 4) return undefined;
  const n = blob.readUInt32BE(0);
  if (blob.subarray(4, 4 + n).toString("latin1") !== type) return undefined;
  return { type, blob };
}

/** The name ssh looks a server up by: `host`, or `[host]:port` off port 22. */
export function knownHostsName(host: string, port: number): string {
  return port === 22 ? host : `[${host}]:${port}`;
}

/** Whether one known_hosts pattern list (`a,b,!c,|1|...`) names the host. */
export function hostMatches(patterns: string, name: string): boolean {
  let matched = false;
  for (const raw of patterns.split(",")) {
    const negated = raw.startsWith("!");
    const p = negated ? raw.slice(1) : raw;
    const hit = p.startsWith("|1|")
      ? hashedMatches(p, name)
      : globMatches(p.toLowerCase(), name.toLowerCase());
    if (hit && negated) return false;
    if (hit) matched = true;
  }
  return matched;
}

function hashedMatches(entry: string, name: string): boolean {
  const [, , salt, hash] = entry.split("|");
  if (!salt || !hash) return false;
  const mac = createHmac("sha1", Buffer.from(salt, "base64")).update(name).digest("base64");
  return mac === hash;
}

function globMatches(pattern: string, name: string): boolean {
  const re = new RegExp(
    `^${pattern
      .replace(/[.+^${}()|[\]\\]/g, "\\$&")
      .replace(/\*/g, ".*")
      .replace(/\?/g, ".")}$`,
  );
  return re.test(name);
}

/** The keys a known_hosts text lists for a server, and the ones it revokes. */
export function knownHostKeys(
  text: string,
  host: string,
  port: number,
): { keys: HostKey[]; revoked: HostKey[] } {
  const name = knownHostsName(host, port);
  const keys: HostKey[] = [];
  const revoked: HostKey[] = [];
  for (const rawLine of text.split("\n")) {
    const line = rawLine.trim();
    if (line === "" || line.startsWith("#")) continue;
    const fields = line.split(/\s+/);
    let marker: string | undefined;
    if (fields[0]?.startsWith("@")) marker = fields.shift();
    const [patterns, type, b64] = fields;
    if (!patterns || !type || !b64 || marker === "@cert-authority") continue;
    if (!hostMatches(patterns, name)) continue;
    const key = parsePublicKey(`${type} ${b64}`);
    if (!key) continue;
    if (marker === "@revoked") revoked.push(key);
    else keys.push(key);
  }
  return { keys, revoked };
}

/** The host-key algorithms to offer so that the server proves one of these keys; most preferred first. */
export function hostKeyAlgorithms(keys: readonly HostKey[]): string[] {
  const out: string[] = [];
  for (const k of keys) for (const a of ALGORITHMS_OF[k.type] ?? []) if (!out.includes(a)) out.push(a);
  return out;
}

/** OpenSSH's fingerprint: `SHA256:` + unpadded base64 of the blob's SHA-256. */
export function fingerprint(blob: Buffer): string {
  return `SHA256:${createHash("sha256").update(blob).digest("base64").replace(/=+$/, "")}`;
}

/** The key type named inside a blob ("" if unreadable). */
export function blobType(blob: Buffer): string {
  if (blob.length < 4) return "";
  const n = blob.readUInt32BE(0);
  return blob.subarray(4, 4 + n).toString("latin1");
}

export type HostKeyVerdict = { ok: true } | { ok: false; reason: "revoked" | "unknown" | "mismatch" };

/** Whether a presented key is acceptable: listed and not revoked. */
export function verifyHostKey(
  presented: Buffer,
  known: { keys: readonly HostKey[]; revoked: readonly HostKey[] },
): HostKeyVerdict {
  if (known.revoked.some((k) => k.blob.equals(presented))) return { ok: false, reason: "revoked" };
  if (known.keys.some((k) => k.blob.equals(presented))) return { ok: true };
  return { ok: false, reason: known.keys.length === 0 ? "unknown" : "mismatch" };
}

/** Pinned keys from `host-key` lines and a host-key file's text (`#` comments and blanks skipped). */
export function pinnedHostKeys(
  lines: readonly string[],
  fileText: string | undefined,
): HostKey[] | "bad-line" {
  const out: HostKey[] = [];
  for (const raw of [...lines, ...(fileText ?? "").split("\n")]) {
    const l = raw.trim();
    if (l === "" || l.startsWith("#")) continue;
    const key = parsePublicKey(l);
    if (!key) return "bad-line";
    out.push(key);
  }
  return out;
}

/** What known_hosts files list for a server; a missing file lists nothing. */
export async function readKnownHosts(
  files: readonly string[],
  host: string,
  port: number,
): Promise<{ keys: HostKey[]; revoked: HostKey[] }> {
  const keys: HostKey[] = [];
  const revoked: HostKey[] = [];
  for (const f of files) {
    let text: string;
    try {
      text = await readFile(f, "utf8");
    } catch {
      continue;
    }
    const found = knownHostKeys(text, host, port);
    keys.push(...found.keys);
    revoked.push(...found.revoked);
  }
  return { keys, revoked };
}

/** Why a presented key was refused, with its fingerprint and how to trust it. */
export function explainHostKey(
  presented: Buffer,
  reason: "revoked" | "unknown" | "mismatch",
  host: string,
  port: number,
  pinned: boolean,
): string {
  const name = knownHostsName(host, port);
  const fp = `${blobType(presented)} ${fingerprint(presented)}`;
  const line = `${blobType(presented)} ${presented.toString("base64")}`;
  const source = pinned ? "the pinned host-key" : "known_hosts";
  switch (reason) {
    case "revoked":
      return `the server's host key ${fp} is marked @revoked in known_hosts`;
    case "mismatch":
      return (
        `HOST KEY MISMATCH for ${name}: the server presented ${fp}, which is not ${source}; if the ` +
        `server's key really changed, update ${source}`
      );
    default:
      return (
        `the server's host key is not known: ${fp}; verify it, then pin it with host-key: "${line}" ` +
        `(or add "${name} ${line}" to known_hosts, e.g. by connecting once with sftp), or set ` +
        "insecure-ignore-host-key: true to skip the check as Litestream v0.3.13 does"
      );
  }
}
