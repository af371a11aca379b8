/**
 * The images test/infra/images builds, outside the node: their config, and a container of one run by
 * `buildah run` (runc, no network) for tests of the image itself.
 */
import { join } from "node:path";
import { cacheDir } from "../cache.ts";
import { type RunResult, runCommand } from "../proc.ts";

/** buildah on the project's store (the one test/infra/images builds into). */
export function buildah(args: readonly string[], opts: { allowFailure?: boolean; timeoutMs?: number } = {}) {
  return runCommand(
    "buildah",
    [
      "--root",
      join(cacheDir(), "buildah/storage"),
      "--runroot",
      "/run/walship-buildah",
      "--storage-driver",
      "overlay",
      ...args,
    ],
    { timeoutMs: opts.timeoutMs ?? 300_000, ...(opts.allowFailure ? { allowFailure: true } : {}) },
  );
}

export interface ImageConfig {
  User?: string;
  Entrypoint?: string[];
  Cmd?: string[];
  Env?: string[];
  WorkingDir?: string;
}

export async function imageConfig(ref: string): Promise<ImageConfig> {
  const r = await buildah(["inspect", "--type", "image", ref]);
  return (JSON.parse(r.stdout) as { OCIv1: { config: ImageConfig } }).OCIv1.config;
}

export interface ImageContainer {
  /** Runs a command in the container (its own process, like `kubectl exec`); never throws on exit codes. */
  run(cmd: readonly string[], opts?: { user?: string }): Promise<RunResult>;
  /** Paths under /app whose size or mtime changed since the container was made, or that are new. */
  changedPaths(): Promise<string[]>;
  remove(): Promise<void>;
}

/** A working container of `ref` with host directories bind-mounted (`[hostDir, containerDir]`). */
export async function startImageContainer(
  ref: string,
  opts: { mounts?: Array<[string, string]> } = {},
): Promise<ImageContainer> {
  const name = `walship-test-${process.pid}-${Date.now()}`;
  await buildah(["from", "--pull=never", "--name", name, ref]);
  const volumes = (opts.mounts ?? []).flatMap(([h, c]) => ["-v", `${h}:${c}`]);
  const run = (cmd: readonly string[], runOpts: { user?: string } = {}) =>
    buildah(
      [
        "run",
        "--network",
        "none",
        ...volumes,
        ...(runOpts.user ? ["--user", runOpts.user] : []),
        name,
        "--",
        ...cmd,
      ],
      { allowFailure: true },
    );
  const listing = async () =>
    (await run(["find", "/app", "-printf", "%p %s %T@\\n"], { user: "0:0" })).stdout;
  const before = new Set((await listing()).split("\n"));
  return {
    run,
    async changedPaths() {
      return (await listing())
        .split("\n")
        .filter((l) => l !== "" && !before.has(l))
        .map((l) => l.split(" ")[0] ?? l);
    },
    async remove() {
      await buildah(["rm", name], { allowFailure: true });
    },
  };
}
