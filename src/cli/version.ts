/** This build's version, from package.json (two levels up from src/cli/ and from dist/cli/). */

import { readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import type { Command } from "./common.ts";

export const VERSION = readVersion();

export const versionCommand: Command = {
  summary: "print the version",
  usage: "walship version",
  description: "Prints the version of this build.",
  flags: [],
  run: async () => {
    process.stdout.write(`${VERSION}\n`);
    return 0;
  },
};

function readVersion(): string {
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
