/**
 * Run while the image is built (Dockerfile), once per uid it fills (1000 and root), with NODE_COMPILE_CACHE set:
 * loads every module a walship command can load, so that Node's compile cache holds their compiled
 * code and a command started in a pod reads it instead of compiling its modules again. A restore
 * init container starts a fresh process every time, and most of a small restore's time is loading
 * modules (the S3 client alone is hundreds of them); see docs/benchmarks.md, "Start-up".
 *
 * Imported: every module of dist/ but the entry points, whose import runs a command (main.js, which
 * is run as `version` instead, and the kubectl plugin, which the image does not run); the worker
 * threads' modules are started as workers.
 */
import { spawnSync } from "node:child_process";
import { readdirSync } from "node:fs";
import { flushCompileCache, getCompileCacheDir } from "node:module";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { Worker, type WorkerOptions } from "node:worker_threads";

const root = import.meta.dirname;
const self = path.basename(import.meta.filename);

/** The modules under `dir` the CLI may load, in a stable order. */
function loadableModules(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) {
      if (!(dir === root && e.name === "plugin")) out.push(...loadableModules(p));
    } else if (
      e.name.endsWith(".js") &&
      !e.name.endsWith("-worker.js") &&
      !(dir === root && (e.name === "main.js" || e.name === self))
    ) {
      out.push(p);
    }
  }
  return out;
}

/** Starts the worker `file`, waits for its answer to `request` (an error is an answer), stops it. */
async function probeWorker(file: string, opts: WorkerOptions, request: unknown): Promise<void> {
  const w = new Worker(pathToFileURL(path.join(root, file)), opts);
  try {
    await new Promise<void>((resolve, reject) => {
      w.once("message", () => resolve());
      w.once("error", reject);
      w.once("exit", (code) => reject(new Error(`warm-compile-cache: ${file} exited with code ${code}`)));
      w.postMessage(request);
    });
  } finally {
    await w.terminate();
  }
}

async function warm(): Promise<void> {
  const cacheDir = getCompileCacheDir();
  if (!cacheDir) {
    const why = process.env.NODE_COMPILE_CACHE
      ? `Node could not use NODE_COMPILE_CACHE=${process.env.NODE_COMPILE_CACHE} (is it writable by this user?)`
      : "NODE_COMPILE_CACHE is not set";
    throw new Error(`warm-compile-cache: ${why}`);
  }
  const modules = loadableModules(root);
  for (const m of modules) await import(pathToFileURL(m).href);
  // The worker threads' modules, loaded as they are at run time: each started, asked something it
  // answers with an error (a bad file descriptor, a missing database), and stopped.
  await probeWorker(
    "replicator/sqlite/file-writer-worker.js",
    { workerData: { fd: -1 } },
    { id: 1, op: "sync" },
  );
  await probeWorker(
    "replicator/backfill-worker.js",
    {},
    {
      id: 1,
      path: path.join(root, "no-such-database"),
      busyTimeoutMs: 0,
      tries: 1,
      retryMs: 0,
    },
  );
  flushCompileCache();
  // And the entry point itself, which only a command can load: `version`, with this process's flags.
  const cli = spawnSync(process.execPath, [...process.execArgv, path.join(root, "main.js"), "version"], {
    encoding: "utf8",
  });
  if (cli.status !== 0)
    throw new Error(`warm-compile-cache: walship version failed: ${cli.stderr || cli.error}`);
  process.stdout.write(
    `compile cache: ${modules.length} modules of dist/ and what they import, in ${cacheDir}\n`,
  );
}

if (process.argv[1] && path.resolve(process.argv[1]) === import.meta.filename) {
  warm().then(
    () => process.exit(0),
    (err: unknown) => {
      process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
      process.exit(1);
    },
  );
}
