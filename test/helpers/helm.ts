/** Helm 3 (built by test/infra/install, with .Capabilities.KubeVersion set to the test apiserver's minor). */
import { binPath } from "./cache.ts";
import { makeTempDir, type RunOptions, type RunResult, runCommand } from "./proc.ts";

let helmHome: string | undefined;

/** Absolute path of the cached helm binary (throws INFRA_MISSING_BINARY if not built). */
export function helmBin(): string {
  return binPath("helm");
}

/**
 * Runs `helm <args>` to completion (throws INFRA_COMMAND_FAILED on non-zero unless allowFailure).
 * Helm's cache, config and data dirs point at a temp dir, so nothing is read from or written to $HOME.
 */
export function helm(args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  const bin = helmBin();
  helmHome ??= makeTempDir("helm-home");
  return runCommand(bin, args, {
    ...opts,
    env: {
      HELM_CACHE_HOME: `${helmHome}/cache`,
      HELM_CONFIG_HOME: `${helmHome}/config`,
      HELM_DATA_HOME: `${helmHome}/data`,
      ...opts.env,
    },
  });
}
