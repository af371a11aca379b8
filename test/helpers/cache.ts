/**
 * Where test/infra/install puts the real components: $WALSHIP_CACHE/bin, by default
 * ${XDG_CACHE_HOME:-$HOME/.cache}/walship/bin (outside the checkout, so fresh clones reuse it).
 */
import { accessSync, constants } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { InfraError } from "./proc.ts";

/** The binaries test/infra/install provides, by component. */
export const COMPONENT_OF = {
  minio: "minio",
  litestream: "litestream",
  etcd: "etcd",
  helm: "helm",
  "kube-apiserver": "kubernetes",
  "kube-controller-manager": "kubernetes",
  "kube-scheduler": "kubernetes",
  kubelet: "kubernetes",
  "kube-proxy": "kubernetes",
  kubectl: "kubernetes",
  crictl: "crictl",
  "local-path-provisioner": "local-path-provisioner",
  "fake-gcs-server": "fake-gcs-server",
  "toxiproxy-server": "toxiproxy",
  promtool: "promtool",
  actionlint: "actionlint",
  "kubectl-krew": "krew",
} as const;

export type BinaryName = keyof typeof COMPONENT_OF;

/** The component cache directory. */
export function cacheDir(): string {
  const explicit = process.env.WALSHIP_CACHE;
  if (explicit) return explicit;
  const xdg = process.env.XDG_CACHE_HOME;
  return join(xdg ? xdg : join(homedir(), ".cache"), "walship");
}

/** The directory holding the built binaries. */
export function binDir(): string {
  return join(cacheDir(), "bin");
}

/**
 * The absolute path of a cached binary. Throws INFRA_MISSING_BINARY, naming the install command,
 * when it has not been built.
 */
export function binPath(name: BinaryName): string {
  const path = join(binDir(), name);
  try {
    accessSync(path, constants.X_OK);
  } catch {
    const component = COMPONENT_OF[name];
    throw new InfraError(
      "INFRA_MISSING_BINARY",
      `find binary ${name}: ${path} is missing; build it with \`test/infra/install ${component}\` ` +
        "(or `make infra`; `make test` does this first)",
    );
  }
  return path;
}
