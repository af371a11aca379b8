/** `walship version`: this build's version, from package.json. */
import { packageVersion } from "../shared/version.ts";
import type { Command } from "./common.ts";

export const VERSION = packageVersion();

export const versionCommand: Command = {
  usage: "walship version",
  description: "Prints the version of this build.",
  flags: [],
  run: async () => {
    process.stdout.write(`${VERSION}\n`);
    return 0;
  },
};
