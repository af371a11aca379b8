/**
 * Keys read from files (`access-key-id-file`, `secret-access-key-file`): how the operator hands a
 * Kubernetes Secret to the replicator without putting it into the config text or the environment.
 * The files are read when a request is signed and at most every `refreshMs` after that, so a Secret
 * rotated in its mounted volume reaches a running replicator. A trailing newline is dropped. Errors
 * name the file, never its content.
 */
import { readFile } from "node:fs/promises";
import { ErrorCodes, WalshipError } from "../../shared/errors.ts";

/** How long keys read from files are used before the files are read again. */
export const DEFAULT_CREDENTIAL_REFRESH_MS = 10_000;

export interface KeyPair {
  accessKeyId: string;
  secretAccessKey: string;
}

async function readKey(file: string, key: string): Promise<string> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? "error";
    throw new WalshipError(ErrorCodes.CONFIG, `read ${key} ${file}: ${code}`, {
      details: { path: key, file },
    });
  }
  const value = text.replace(/[\r\n]+$/, "");
  if (value === "") {
    throw new WalshipError(ErrorCodes.CONFIG, `read ${key} ${file}: the file is empty`, {
      details: { path: key, file },
    });
  }
  return value;
}

/**
 * A provider of the key pair in two files, re-read once `refreshMs` have passed since the last read.
 * The pair it returns has an `expiration` of now, so the AWS SDK asks it again for every request.
 */
export function fileKeyProvider(
  files: { accessKeyIdFile: string; secretAccessKeyFile: string },
  refreshMs = DEFAULT_CREDENTIAL_REFRESH_MS,
): () => Promise<KeyPair & { expiration: Date }> {
  let cached: { pair: KeyPair; at: number } | undefined;
  let pending: Promise<KeyPair> | undefined;
  const read = async (): Promise<KeyPair> => {
    const [accessKeyId, secretAccessKey] = await Promise.all([
      readKey(files.accessKeyIdFile, "access-key-id-file"),
      readKey(files.secretAccessKeyFile, "secret-access-key-file"),
    ]);
    return { accessKeyId, secretAccessKey };
  };
  return async () => {
    if (!cached || Date.now() - cached.at >= refreshMs) {
      pending ??= read().finally(() => {
        pending = undefined;
      });
      cached = { pair: await pending, at: Date.now() };
    }
    return { ...cached.pair, expiration: new Date() };
  };
}
