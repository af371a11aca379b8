/** Small file-system helpers the replicator's modules share. */
import { constants as fsConstants } from "node:fs";
import fs from "node:fs/promises";

/** True when something exists at `p` (a file, a directory, anything `stat` finds). */
export async function exists(p: string): Promise<boolean> {
  return fs.stat(p).then(
    () => true,
    () => false,
  );
}

/** Makes a rename in `dir` durable. Some file systems refuse fsync on a directory; that is not fatal. */
export async function syncDir(dir: string): Promise<void> {
  const fh = await fs.open(dir, fsConstants.O_RDONLY);
  try {
    await fh.sync();
  } catch (err) {
    const code = (err as NodeJS.ErrnoException | undefined)?.code;
    if (code !== "EINVAL" && code !== "ENOTSUP") throw err;
  } finally {
    await fh.close();
  }
}
