/**
 * What a command loads: `walship version` and a restore from a plaintext file replica load no cloud
 * SDK, no Kubernetes client and no age library (each costs hundreds of milliseconds of start-up:
 * docs/benchmarks.md "Start-up"); a restore from a replica URL loads neither zod nor yaml (a config
 * file loads yaml, not zod); a restore from an age replica does load the age library, which
 * shows the trace sees what it should. A restore init container's run over a database that is
 * already there (every later start of a pod) loads no SDK and no SQLite and asks no store; a restore,
 * listing or replicator on S3 with keys given loads no AWS SDK either (Walship's own requests), one
 * that needs the default credential chain does.
 * `replicate` loads neither zod nor prom-client without an address to serve, and no zod with one,
 * nor node:https or the restore's modules without fencing or validation (memory every sidecar
 * carries: docs/benchmarks.md, "The sidecar's floor"). The trace is a real module resolve hook
 * (node:module registerHooks) in the real CLI process, listing every module it resolves.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { generateX25519Identity, identityToRecipient } from "age-encryption";
import Database from "better-sqlite3";
import { freePort } from "../helpers/ports.ts";
import { ROOT, sleep, startReplicator, writeConfig } from "../helpers/walship.ts";

const dir = mkdtempSync(path.join(os.tmpdir(), "walship-startup-"));
after(() => rmSync(dir, { recursive: true, force: true }));

const HOOKS = path.join(dir, "trace-hooks.mjs");
writeFileSync(
  HOOKS,
  `import { registerHooks } from "node:module";
import { appendFileSync } from "node:fs";
registerHooks({
  resolve(specifier, context, next) {
    const r = next(specifier, context);
    appendFileSync(process.env.WALSHIP_TRACE_MODULES, r.url + "\\n");
    return r;
  },
});
`,
);
const node = spawnSync(path.join(ROOT, "scripts/ensure-node"), ["--no-install"], {
  encoding: "utf8",
}).stdout.trim();

/** The stderr of the last `packagesLoaded` run. */
let lastStderr = "";
/** Every URL the last `packagesLoaded` run resolved (builtins as `node:…`, our modules under dist/). */
let lastUrls: string[] = [];

/**
 * Runs `node dist/main.js ARGS` (as the image does) with the trace; returns the packages it loaded.
 * The command must exit with `status`. `env` is added to the environment.
 */
function packagesLoaded(args: string[], status = 0, env: NodeJS.ProcessEnv = {}): Set<string> {
  const trace = path.join(dir, `trace-${Math.random().toString(16).slice(2)}`);
  writeFileSync(trace, "");
  const r = spawnSync(node, ["--import", HOOKS, path.join(ROOT, "dist/main.js"), ...args], {
    encoding: "utf8",
    env: { ...process.env, WALSHIP_TRACE_MODULES: trace, AWS_EC2_METADATA_DISABLED: "true", ...env },
  });
  lastStderr = r.stderr;
  assert.equal(r.status, status, `walship ${args.join(" ")}: ${r.stderr}`);
  const out = new Set<string>();
  lastUrls = readFileSync(trace, "utf8").split("\n").filter(Boolean);
  for (const url of lastUrls) {
    const m = /node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(url);
    if (m) out.add(m[1]!);
  }
  return out;
}

const HEAVY =
  /^(@aws-sdk|@smithy|@kubernetes|@azure|@google-cloud|google-auth-library|ssh2|age-encryption|@noble)/;
const heavy = (pkgs: Set<string>) => [...pkgs].filter((p) => HEAVY.test(p)).sort();

/** A small database replicated to `replica` with `config` (a file destination), stopped cleanly. */
async function replicated(name: string, replicaKeys: string): Promise<string> {
  const db = path.join(dir, `${name}.db`);
  const d = new Database(db);
  d.pragma("journal_mode = WAL");
  d.exec("CREATE TABLE t(x); INSERT INTO t VALUES (1), (2), (3);");
  const cfg = writeConfig(
    dir,
    `dbs:\n  - path: ${db}\n    replicas:\n      - type: file\n        path: ${path.join(dir, `${name}-replica`)}\n        sync-interval: 100ms\n${replicaKeys}`,
    `${name}.yml`,
  );
  const rep = startReplicator(["-config", cfg]);
  await sleep(1500);
  assert.equal(await rep.stop(), 0, rep.output());
  d.close();
  return cfg;
}

describe("start-up: what each command loads (a real resolve hook in the real CLI)", () => {
  let plainCfg: string;
  let ageCfg: string;

  before(async () => {
    plainCfg = await replicated("plain", "");
    const identity = await generateX25519Identity();
    const recipient = await identityToRecipient(identity);
    ageCfg = await replicated(
      "sealed",
      `        age:\n          identities: ['${identity}']\n          recipients: ['${recipient}']\n`,
    );
  });

  it("version loads no SDK, no Kubernetes client, no age library", () => {
    assert.deepEqual(heavy(packagesLoaded(["version"])), []);
  });

  it("a restore from a plaintext file replica loads none of them either", () => {
    const pkgs = packagesLoaded([
      "restore",
      "-config",
      plainCfg,
      "-o",
      path.join(dir, "out-plain.db"),
      path.join(dir, "plain.db"),
    ]);
    assert.deepEqual(heavy(pkgs), []);
    assert.ok(pkgs.has("better-sqlite3"), "the trace sees the packages the restore does load");
    // The config file is parsed (yaml) and checked without a schema library (zod took about 40 ms).
    assert.ok(pkgs.has("yaml") && !pkgs.has("zod"), [...pkgs].join(" "));
  });

  it("a restore from a replica URL loads no YAML parser and no schema library either", () => {
    const pkgs = packagesLoaded([
      "restore",
      "-o",
      path.join(dir, "out-url.db"),
      `file://${path.join(dir, "plain-replica")}`,
    ]);
    assert.deepEqual(heavy(pkgs), []);
    assert.deepEqual(
      [...pkgs].filter((p) => p === "zod" || p === "yaml"),
      [],
    );
    // A config file does bring the YAML parser (the trace sees it), and still no schema library.
    const withConfig = packagesLoaded(["generations", "-config", plainCfg, path.join(dir, "plain.db")]);
    assert.ok(withConfig.has("yaml") && !withConfig.has("zod"), [...withConfig].join(" "));
  });

  it("a restore from an age replica loads the age library (the trace sees it)", () => {
    const pkgs = packagesLoaded([
      "restore",
      "-config",
      ageCfg,
      "-o",
      path.join(dir, "out-sealed.db"),
      path.join(dir, "sealed.db"),
    ]);
    assert.ok(pkgs.has("age-encryption"), [...pkgs].join(" "));
    assert.deepEqual(
      heavy(pkgs).filter((p) => !/^(age-encryption|@noble)/.test(p)),
      [],
    );
  });

  it("a restore init container's start over a database that is there loads no SDK and no SQLite, and asks no store", async () => {
    // An S3 destination on a loopback port nothing listens on: any request would fail the command.
    const port = await freePort();
    const db = path.join(dir, "plain.db");
    const cfg = writeConfig(
      dir,
      `access-key-id: AKIDSTARTUP\nsecret-access-key: startup-secret\ndbs:\n  - path: ${db}\n    replicas:\n      - type: s3\n        bucket: b\n        endpoint: http://127.0.0.1:${port}\n        region: us-east-1\n        force-path-style: true\n`,
      "s3-closed.yml",
    );
    // The operator's two modes (src/operator/specs/statefulset.ts), the database present.
    for (const mode of [["-if-db-not-exists", "-if-replica-exists"], ["-refuse-if-replica-exists"]]) {
      const loaded = packagesLoaded(["restore", ...mode, "-config", cfg, db]);
      assert.deepEqual(heavy(loaded), [], mode.join(" "));
      assert.deepEqual(pkgs(loaded, "better-sqlite3"), [], mode.join(" "));
    }
    // The control: with the database missing, the same command asks the store and fails on the
    // closed port (keys given: through Walship's own S3 requests, no SDK); with WALSHIP_S3_CLIENT=sdk
    // it loads the SDK and fails the same way (the trace and the exit both see it).
    const restoreMissing = [
      "restore",
      "-if-db-not-exists",
      "-config",
      cfg,
      "-o",
      path.join(dir, "absent.db"),
      db,
    ];
    const reader = packagesLoaded(restoreMissing, 1);
    assert.deepEqual(heavy(reader), [], [...reader].join(" "));
    assert.match(lastStderr, new RegExp(`ECONNREFUSED.*127\\.0\\.0\\.1:${port}`));
    const sdk = packagesLoaded(restoreMissing, 1, { WALSHIP_S3_CLIENT: "sdk" });
    assert.ok(heavy(sdk).includes("@aws-sdk/client-s3"), [...sdk].join(" "));
    assert.match(lastStderr, new RegExp(`ECONNREFUSED.*127\\.0\\.0\\.1:${port}`));
    // A broken destination is still reported with the database present: the config is read and
    // checked in full before the database is looked for.
    const broken = writeConfig(
      dir,
      `dbs:\n  - path: ${db}\n    replicas:\n      - type: sftp\n        host: 127.0.0.1:${port}\n        path: /x\n`,
      "sftp-nouser.yml",
    );
    const r = spawnSync(
      node,
      [path.join(ROOT, "dist/main.js"), "restore", "-if-db-not-exists", "-config", broken, db],
      {
        encoding: "utf8",
      },
    );
    assert.notEqual(r.status, 0, r.stderr);
    assert.match(r.stderr, /dbs\[0\]\.replicas\[0\]\.user: user required for sftp replica/);
  });

  it("restore, listings and replicate on S3 with keys load no AWS SDK; without keys (the default chain) they do", async () => {
    const port = await freePort();
    const db = path.join(dir, "s3.db");
    const s3 = `      - type: s3\n        bucket: b\n        endpoint: http://127.0.0.1:${port}\n        region: us-east-1\n`;
    const keyed = writeConfig(
      dir,
      `access-key-id: AKIDSTARTUP\nsecret-access-key: startup-secret\ndbs:\n  - path: ${db}\n    replicas:\n${s3}`,
      "s3-keys.yml",
    );
    for (const cmd of [
      ["restore", "-o", path.join(dir, "s3-out.db")],
      ["generations"],
      ["snapshots"],
      ["wal"],
    ]) {
      const loaded = packagesLoaded([...cmd, "-config", keyed, db], 1);
      assert.deepEqual(heavy(loaded), [], `${cmd[0]}: ${[...loaded].join(" ")}`);
      assert.match(lastStderr, /ECONNREFUSED/, cmd[0]);
    }
    // The replicator too (its -exec child's exit is its own; the store's port stays closed).
    const replicate = ["replicate", "-config", keyed, "-exec", `${node} -e 'setTimeout(() => {}, 1500)'`];
    const writer = packagesLoaded(replicate);
    assert.deepEqual(heavy(writer), [], [...writer].join(" "));
    const writerSdk = packagesLoaded(replicate, 0, { WALSHIP_S3_CLIENT: "sdk" });
    assert.ok(heavy(writerSdk).includes("@aws-sdk/client-s3"), [...writerSdk].join(" "));
    // No keys and no key files: the SDK's default chain is needed (IRSA, profiles, instance roles).
    const chain = writeConfig(dir, `dbs:\n  - path: ${db}\n    replicas:\n${s3}`, "s3-chain.yml");
    const loaded = packagesLoaded(["restore", "-o", path.join(dir, "s3-out.db"), "-config", chain, db], 1, {
      AWS_ACCESS_KEY_ID: "",
      AWS_SECRET_ACCESS_KEY: "",
      AWS_PROFILE: "walship-startup-none",
      AWS_CONFIG_FILE: path.join(dir, "none"),
      AWS_SHARED_CREDENTIALS_FILE: path.join(dir, "none"),
    });
    assert.ok(heavy(loaded).includes("@aws-sdk/client-s3"), [...loaded].join(" "));
  });

  it("replicate, serving its metrics and status or not, loads neither zod nor prom-client", async () => {
    const db = path.join(dir, "plain.db");
    const replica = path.join(dir, "plain-replica");
    // replicate exits with its -exec child's code: the child is the check.
    const run = (cfg: string, child: string) =>
      packagesLoaded(["replicate", "-config", cfg, "-exec", `${node} -e '${child}'`]);
    const without = run(
      writeConfig(dir, `dbs:\n  - path: ${db}\n    replicas:\n      - path: ${replica}\n`, "r.yml"),
      "setTimeout(() => {}, 1000)",
    );
    assert.ok(pkgs(without, "better-sqlite3").length === 1, [...without].join(" "));
    assert.deepEqual(pkgs(without, "zod", "prom-client"), []);
    // Nor, without fencing or validation, node:https (the lease's) or the restore's own modules.
    assert.ok(
      lastUrls.some((u) => u.endsWith("/dist/replicator/replica.js")),
      "the trace sees our modules",
    );
    assert.deepEqual(
      lastUrls.filter((u) => u === "node:https" || u === "https" || /\/dist\/replicator\/restore/.test(u)),
      [],
    );
    // With an address, the child reads /metrics and /status and exits 1 unless both answer in full.
    const port = await freePort();
    const served = run(
      writeConfig(
        dir,
        `addr: 127.0.0.1:${port}\ndbs:\n  - path: ${db}\n    replicas:\n      - path: ${replica}\n`,
        "ra.yml",
      ),
      `const get = async (p) => (await fetch("http://127.0.0.1:${port}" + p)).text();
       const m = await get("/metrics"), s = JSON.parse(await get("/status"));
       const ok = /^walship_build_info\\{version=/m.test(m) && /^process_resident_memory_bytes \\d+$/m.test(m) &&
         /^litestream_db_size\\{db=/m.test(m) && s.kind === "ReplicatorStatus";
       process.exit(ok ? 0 : 1);`,
    );
    assert.deepEqual(pkgs(served, "zod", "prom-client"), []);
  });
});

const pkgs = (loaded: Set<string>, ...names: string[]) => names.filter((n) => loaded.has(n));
