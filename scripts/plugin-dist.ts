/**
 * The kubectl plugin's release files (make plugin-dist), into dist/release/:
 *
 *   kubectl-walship_<version>.tar.gz   one file, kubectl-walship: src/plugin bundled by esbuild with
 *                                      every dependency, run by the Node.js on the PATH (>= 22)
 *   kubectl-walship_<version>.tar.gz.sha256
 *   walship.yaml                       the krew manifest (deploy/krew/walship.yaml filled in)
 *
 * The archive is reproducible (sorted names, owner 0, mtime 0, gzip without a name or time), so its
 * sha256 in the manifest can be recomputed from the tag. One archive serves every platform krew
 * lists: the bundle is JavaScript.
 *
 *   node scripts/plugin-dist.ts [--version v1.2.3] [--base-url URL] [--out DIR]
 */
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { chmodSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { parseArgs } from "node:util";
import { build } from "esbuild";

const ROOT = path.resolve(import.meta.dirname, "..");
export const KREW_TEMPLATE = path.join(ROOT, "deploy/krew/walship.yaml");
/** Where the release workflow attaches the archive: the GitHub release of the tag. */
export const RELEASES = "https://github.com/walship/walship/releases/download";

export interface PluginDist {
  archive: string;
  sha256: string;
  manifest: string;
  bundle: string;
}

/** The krew manifest for one release: the template with its three placeholders filled in. */
export function renderKrewManifest(template: string, version: string, uri: string, sha256: string): string {
  const out = template
    .replaceAll("{{VERSION}}", version)
    .replaceAll("{{URI}}", uri)
    .replaceAll("{{SHA256}}", sha256);
  const left = /\{\{[A-Z0-9_]+\}\}/.exec(out);
  if (left) throw new Error(`render ${KREW_TEMPLATE}: unknown placeholder ${left[0]}`);
  return out;
}

export async function pluginDist(opts: {
  version: string;
  baseUrl?: string;
  out: string;
}): Promise<PluginDist> {
  if (!/^v\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?$/.test(opts.version)) {
    throw new Error(`--version: "${opts.version}" is not a version tag such as v1.2.3`);
  }
  const stage = path.join(opts.out, "stage");
  rmSync(stage, { recursive: true, force: true });
  mkdirSync(stage, { recursive: true });
  const bundle = path.join(stage, "kubectl-walship");
  await build({
    entryPoints: [path.join(ROOT, "src/plugin/main.ts")],
    outfile: bundle,
    bundle: true,
    platform: "node",
    target: "node22",
    format: "esm",
    minify: true,
    legalComments: "eof",
    define: { WALSHIP_PLUGIN_VERSION: JSON.stringify(opts.version) },
    // The source's own `#!/usr/bin/env node` line stays first; CommonJS dependencies need `require`.
    banner: {
      js: "import { createRequire as __walshipCreateRequire } from 'node:module'; const require = __walshipCreateRequire(import.meta.url);",
    },
    logLevel: "warning",
  });
  chmodSync(bundle, 0o755);
  const name = `kubectl-walship_${opts.version}.tar.gz`;
  const archive = path.join(opts.out, name);
  const tar = execFileSync(
    "tar",
    [
      "--sort=name",
      "--owner=0",
      "--group=0",
      "--numeric-owner",
      "--mtime=@0",
      "-C",
      stage,
      "-cf",
      "-",
      "kubectl-walship",
    ],
    { maxBuffer: 256 * 1024 * 1024 },
  );
  writeFileSync(archive, execFileSync("gzip", ["-n", "-9"], { input: tar, maxBuffer: 256 * 1024 * 1024 }));
  const sha256 = createHash("sha256").update(readFileSync(archive)).digest("hex");
  writeFileSync(`${archive}.sha256`, `${sha256}  ${name}\n`);
  const uri = `${opts.baseUrl ?? `${RELEASES}/${opts.version}`}/${name}`;
  const manifest = path.join(opts.out, "walship.yaml");
  writeFileSync(manifest, renderKrewManifest(readFileSync(KREW_TEMPLATE, "utf8"), opts.version, uri, sha256));
  return { archive, sha256, manifest, bundle };
}

if (import.meta.main) {
  const { values } = parseArgs({
    options: {
      version: { type: "string" },
      "base-url": { type: "string" },
      out: { type: "string", default: path.join(ROOT, "dist/release") },
    },
  });
  const pkg = JSON.parse(readFileSync(path.join(ROOT, "package.json"), "utf8")) as { version: string };
  const r = await pluginDist({
    version: values.version ?? `v${pkg.version}`,
    out: path.resolve(values.out),
    ...(values["base-url"] ? { baseUrl: values["base-url"] } : {}),
  });
  process.stdout.write(`${r.archive}\n${r.archive}.sha256\n${r.manifest}\n`);
}
