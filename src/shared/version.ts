/** This build's version, from package.json (two levels up from src/shared/ and from dist/shared/). */
import { readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

/** `v<package.json version>`, or "(development build)" where package.json is not beside the build. */
export function packageVersion(): string {
  try {
    const here = path.dirname(fileURLToPath(import.meta.url));
    const pkg = JSON.parse(readFileSync(path.join(here, "..", "..", "package.json"), "utf8")) as {
      version: string;
    };
    return `v${pkg.version}`;
  } catch {
    return "(development build)";
  }
}
