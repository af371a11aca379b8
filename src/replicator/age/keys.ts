/**
 * age keys for client-side encryption, read as Litestream v0.3.13 reads its `age:` block
 * (filippo.io/age v1.1.1 `ParseIdentities` / `ParseRecipients`): each string is a whole file, one key
 * per line, `#` comments and blank lines skipped, a trailing `\r` dropped, nothing else trimmed.
 *
 * Rules kept here:
 * - Only X25519 keys (`AGE-SECRET-KEY-1…`, `age1…`): the only kind Litestream v0.3.13 can read.
 *   Post-quantum, tag, SSH and passphrase keys are refused with the line that holds them.
 * - A message names where the key came from (the config key or the file) and its line, never the
 *   key: an identity is a secret, and a recipient pasted in the wrong list may be one too.
 * - Fail closed where Litestream fails open (destinations-v03.md §4.3): no identities is an error
 *   (Litestream stalls after a restart); a replicator without recipients is an error (Litestream
 *   writes plaintext); and a replicator must hold the identity of at least one recipient, or it could
 *   not read back the position it wrote. Extra recipients without identities (an offline escrow key)
 *   are fine.
 * - Keys named by file (`identity-files`, `recipient-files`, how the operator hands over a Secret)
 *   are read again at most every `refreshMs`, so a rotated Secret reaches a running replicator.
 */
import { readFile } from "node:fs/promises";
import { Decrypter, Encrypter, identityToRecipient } from "age-encryption";
import { ErrorCodes, WalshipError } from "../../shared/errors.ts";

/** How long keys read from files are used before the files are read again. */
export const DEFAULT_AGE_KEY_REFRESH_MS = 10_000;

/** A replica's `age:` block, as the config gives it. */
export interface AgeSettings {
  /** Litestream's `identities`: each string a whole identity file. */
  identities: string[];
  /** Litestream's `recipients`: each string a whole recipients file. */
  recipients: string[];
  /** Walship: files holding identities (a projected Secret), read like `identities` strings. */
  identityFiles: string[];
  /** Walship: files holding recipients. */
  recipientFiles: string[];
  /**
   * Walship: start encrypting on a path that already holds plaintext generations (they stay readable
   * only without `age:`). Off by default: mixed replicas cannot be restored by Litestream.
   */
  allowPlaintextGenerations: boolean;
}

/** The keys in force for one replica: what new objects are encrypted to, and what opens them. */
export interface AgeKeyring {
  recipients: readonly string[];
  identities: readonly string[];
  /** The recipients of `identities`, to check that what is written can be read back. */
  identityRecipients: readonly string[];
}

function keyError(where: string, message: string): WalshipError {
  return new WalshipError(ErrorCodes.CONFIG, `${where}: ${message}`, { details: { path: where } });
}

/** The key lines of one file's text: `[lineNumber, line]`, comments and blank lines skipped. */
function keyLines(text: string): Array<[number, string]> {
  const out: Array<[number, string]> = [];
  text.split("\n").forEach((raw, i) => {
    const line = raw.endsWith("\r") ? raw.slice(0, -1) : raw;
    if (line === "" || line.startsWith("#")) return;
    out.push([i + 1, line]);
  });
  return out;
}

/** What kind of key a line holds when it is not one we accept, for the message. */
function foreignKind(line: string): string | undefined {
  if (line.startsWith("AGE-SECRET-KEY-PQ-1") || line.startsWith("age1pq1"))
    return "a post-quantum age key, which Litestream v0.3.13 cannot read";
  if (line.startsWith("age1tag"))
    return "an age tag (hardware) recipient, which Litestream v0.3.13 cannot read";
  if (line.startsWith("AGE-PLUGIN-")) return "an age plugin identity, which Litestream v0.3.13 cannot use";
  // bech32 data never holds a "1": one after "age1" means a longer prefix (age1yubikey1…, a plugin).
  if (line.startsWith("age1") && line.slice(4).includes("1"))
    return "an age plugin recipient, which Litestream v0.3.13 cannot use";
  if (/^(ssh-|ecdsa-|sk-)/.test(line)) return "an SSH key; only X25519 age keys are supported";
  if (line.startsWith("-----BEGIN")) return "a PEM key; only X25519 age keys are supported";
  return undefined;
}

/** What one list holds, for `parseKeys`. */
const KINDS = {
  identity: {
    prefix: "AGE-SECRET-KEY-1",
    wrongList: ["age1", "a recipient (public key), not an identity (AGE-SECRET-KEY-1…)"],
    name: "age identity",
    check: (line: string) => new Decrypter().addIdentity(line),
  },
  recipient: {
    prefix: "age1",
    wrongList: ["AGE-SECRET-KEY-", "an identity (a secret key), not a recipient (age1…)"],
    name: "age recipient",
    check: (line: string) => new Encrypter().addRecipient(line),
  },
} as const;

function parseKeys(text: string, where: string, kind: keyof typeof KINDS): string[] {
  const k = KINDS[kind];
  const out: string[] = [];
  for (const [n, line] of keyLines(text)) {
    const foreign = foreignKind(line);
    if (foreign) throw keyError(where, `line ${n} is ${foreign}`);
    if (line.startsWith(k.wrongList[0])) throw keyError(where, `line ${n} is ${k.wrongList[1]}`);
    if (!line.startsWith(k.prefix))
      throw keyError(where, `line ${n} is not an X25519 ${k.name} (${k.prefix}…)`);
    try {
      k.check(line);
    } catch {
      throw keyError(where, `line ${n} is a malformed ${k.name}`);
    }
    out.push(line);
  }
  if (out.length === 0) throw keyError(where, `no ${k.name} found (an empty value or only comments)`);
  return out;
}

/** Parses one identities file (a config string or a file's text). Pure. */
export function parseIdentities(text: string, where: string): string[] {
  return parseKeys(text, where, "identity");
}

/** Parses one recipients file. Pure. */
export function parseRecipients(text: string, where: string): string[] {
  return parseKeys(text, where, "recipient");
}

async function readKeyFile(file: string, where: string): Promise<string> {
  try {
    return await readFile(file, "utf8");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? "error";
    throw new WalshipError(ErrorCodes.CONFIG, `${where}: read ${file}: ${code}`, {
      details: { path: where, file },
    });
  }
}

/**
 * Reads and checks a replica's keys. `writing`: the replicator, which must encrypt (recipients) and
 * read back its own position (an identity of one of them); restores and listings need identities only.
 */
export async function loadAgeKeys(
  s: AgeSettings,
  where: string,
  opts: { writing: boolean },
): Promise<AgeKeyring> {
  const identities: string[] = [];
  const recipients: string[] = [];
  s.identities.forEach((text, i) => {
    identities.push(...parseIdentities(text, `${where}.identities[${i}]`));
  });
  s.recipients.forEach((text, i) => {
    recipients.push(...parseRecipients(text, `${where}.recipients[${i}]`));
  });
  for (const [i, file] of s.identityFiles.entries()) {
    const at = `${where}.identity-files[${i}]`;
    identities.push(...parseIdentities(await readKeyFile(file, at), `${at} (${file})`));
  }
  for (const [i, file] of s.recipientFiles.entries()) {
    const at = `${where}.recipient-files[${i}]`;
    recipients.push(...parseRecipients(await readKeyFile(file, at), `${at} (${file})`));
  }
  return checkKeyring(
    { recipients, identities, identityRecipients: await Promise.all(identities.map(identityToRecipient)) },
    where,
    opts,
  );
}

/** The rules between the two lists (see the head of this file). Pure. */
export function checkKeyring(k: AgeKeyring, where: string, opts: { writing: boolean }): AgeKeyring {
  if (k.identities.length === 0) {
    throw keyError(
      where,
      k.recipients.length > 0
        ? "recipients without identities: Walship could not read back what it writes (Litestream stalls after a restart); add the identity of at least one recipient"
        : "no identities and no recipients",
    );
  }
  if (!opts.writing) return k;
  if (k.recipients.length === 0) {
    throw keyError(
      where,
      "identities without recipients: the replica would be written in plaintext (as Litestream does); add recipients (the public keys, `age-keygen -y`)",
    );
  }
  if (!k.recipients.some((r) => k.identityRecipients.includes(r))) {
    throw keyError(
      where,
      "no recipient matches an identity: Walship could not read back what it writes; recipients must include the public key of at least one identity",
    );
  }
  return k;
}

/**
 * The keyring of a replica, read again from its files at most every `refreshMs` (inline keys only:
 * read once). A file that turns bad after the start fails the read that needs it, naming the file.
 */
export function ageKeySource(
  s: AgeSettings,
  where: string,
  opts: { writing: boolean; refreshMs?: number },
): () => Promise<AgeKeyring> {
  const refreshMs = opts.refreshMs ?? DEFAULT_AGE_KEY_REFRESH_MS;
  const fromFiles = s.identityFiles.length > 0 || s.recipientFiles.length > 0;
  let cached: { keys: AgeKeyring; at: number } | undefined;
  let pending: Promise<AgeKeyring> | undefined;
  return async () => {
    if (!cached || (fromFiles && Date.now() - cached.at >= refreshMs)) {
      pending ??= loadAgeKeys(s, where, opts).finally(() => {
        pending = undefined;
      });
      cached = { keys: await pending, at: Date.now() };
    }
    return cached.keys;
  };
}
