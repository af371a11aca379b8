/**
 * `make demo-local`: the replicator's main job on this machine, no cloud account needed.
 * Creates a sample database, runs a write workload while `walship replicate` streams it to a local
 * directory, then restores the latest state and a point in time and shows that each copy matches.
 */
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import Database from "better-sqlite3";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const dir = path.join(root, ".demo");
const walship = path.join(root, "bin/walship");
const dbPath = path.join(dir, "shop.db");
const replica = path.join(dir, "replica");

function say(msg: string): void {
  process.stdout.write(`\n\x1b[1m== ${msg}\x1b[0m\n`);
}

function run(args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(walship, args, { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    child.stdout.on("data", (d: Buffer) => {
      out += d.toString();
    });
    child.stderr.on("data", (d: Buffer) => {
      err += d.toString();
    });
    child.on("exit", (code) =>
      code === 0 ? resolve(out) : reject(new Error(`walship ${args[0]} exited ${code}\n${err}`)),
    );
  });
}

function hash(file: string): { rows: number; sha: string } {
  const db = new Database(file, { readonly: true });
  const rows = db.prepare("SELECT id, customer, total FROM orders ORDER BY id").raw().all();
  db.close();
  return {
    rows: rows.length,
    sha: createHash("sha256").update(JSON.stringify(rows)).digest("hex").slice(0, 16),
  };
}

async function main(): Promise<void> {
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const config = path.join(dir, "walship.yml");
  writeFileSync(
    config,
    `# The same keys litestream.yml takes.
dbs:
  - path: ${dbPath}
    monitor-interval: 200ms
    min-checkpoint-page-count: 100
    replicas:
      - name: local
        url: file://${replica}
        sync-interval: 200ms
        snapshot-interval: 2s
`,
  );
  say(`config ${path.relative(root, config)}`);
  process.stdout.write(await run(["databases", "-config", config]));

  const app = new Database(dbPath);
  app.pragma("journal_mode = wal");
  app.pragma("busy_timeout = 5000");
  app.exec("CREATE TABLE orders (id INTEGER PRIMARY KEY, customer TEXT, total REAL, note TEXT)");

  say("walship replicate (in the background)");
  const rep = spawn(walship, ["replicate", "-config", config, "-log-format", "text"], {
    stdio: ["ignore", "inherit", "inherit"],
  });
  await new Promise((r) => setTimeout(r, 1000));

  say("writing orders for 6 seconds");
  const insert = app.prepare("INSERT INTO orders (customer, total, note) VALUES (?, ?, ?)");
  let n = 0;
  let midpoint: { at: Date; expect: ReturnType<typeof hash> } | undefined;
  const start = Date.now();
  while (Date.now() - start < 6000) {
    app.transaction(() => {
      for (let i = 0; i < 50; i++) insert.run(`customer-${n % 97}`, (n * 7.31) % 500, "x".repeat(200));
      n += 50;
    })();
    if (!midpoint && Date.now() - start > 3000) {
      await new Promise((r) => setTimeout(r, 300));
      midpoint = { at: new Date(), expect: hash(dbPath) };
      await new Promise((r) => setTimeout(r, 300));
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  const expectLatest = hash(dbPath);
  process.stdout.write(`wrote ${n} orders\n`);
  await new Promise((r) => setTimeout(r, 1000));

  say("stopping the replicator (SIGTERM: one final sync, then exit 0)");
  rep.kill("SIGTERM");
  const code = await new Promise<number | null>((r) => rep.on("exit", r));
  process.stdout.write(`replicator exited ${code}\n`);
  app.close();

  say("what is in the replica");
  process.stdout.write(await run(["generations", "-config", config, dbPath]));
  process.stdout.write(await run(["snapshots", "-config", config, dbPath]));

  say("restore latest");
  const latest = path.join(dir, "restored-latest.db");
  await run(["restore", "-config", config, "-o", latest, "-log-format", "text", dbPath]);
  const gotLatest = hash(latest);

  say(`restore to ${midpoint!.at.toISOString()}`);
  const pitr = path.join(dir, "restored-pitr.db");
  await run([
    "restore",
    "-config",
    config,
    "-o",
    pitr,
    "-timestamp",
    midpoint!.at.toISOString(),
    "-log-format",
    "text",
    dbPath,
  ]);
  const gotPitr = hash(pitr);

  say("results");
  const row = (name: string, want: ReturnType<typeof hash>, got: ReturnType<typeof hash>) =>
    `${name.padEnd(16)} source ${String(want.rows).padStart(6)} rows ${want.sha}   restored ${String(got.rows).padStart(6)} rows ${got.sha}   ${want.sha === got.sha ? "MATCH" : "DIFFERENT"}\n`;
  process.stdout.write(row("latest", expectLatest, gotLatest));
  process.stdout.write(row("point in time", midpoint!.expect, gotPitr));
  process.stdout.write(
    `\nfiles are in ${path.relative(root, dir)}/; 'make demo-local' starts afresh each time.\n`,
  );
  if (gotLatest.sha !== expectLatest.sha || gotPitr.sha !== midpoint!.expect.sha || code !== 0)
    process.exitCode = 1;
}

main().catch((err: unknown) => {
  process.stderr.write(`demo failed: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 1;
});
