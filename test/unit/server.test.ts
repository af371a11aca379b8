/**
 * The HTTP endpoint of `walship replicate` against real replication: a real SQLite database in a temp
 * directory, real Db and Replica objects from startReplication, and two real file destinations, one
 * of which fails (its path runs under a regular file, so mkdir fails) until the file is removed.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import Database from "better-sqlite3";
import { parseConfig } from "../../src/replicator/config.ts";
import { snapshotMetaKey } from "../../src/replicator/extras.ts";
import { FencedClient } from "../../src/replicator/fence.ts";
import { keys } from "../../src/replicator/layout.ts";
import { restore } from "../../src/replicator/restore.ts";
import { type Replication, startReplication } from "../../src/replicator/run.ts";
import { parseListenAddr, type ReplicatorServer, startServer } from "../../src/replicator/server.ts";
import { FileReplicaClient } from "../../src/replicator/storage/file.ts";
import { SealedReplicaClient } from "../../src/replicator/storage/sealed.ts";
import { ErrorCodes } from "../../src/shared/errors.ts";
import { nullLogger } from "../../src/shared/log.ts";
import {
  type DestinationStatus,
  type Position,
  ReadinessSchema,
  type ReplicatorStatus,
  ReplicatorStatusSchema,
} from "../../src/shared/protocol.ts";
import { assertCode } from "../helpers/assert.ts";

const VERSION = "0.0.0-test";

interface Series {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Parses Prometheus text format samples (enough for our own output: no timestamps, no exemplars). */
function parseProm(text: string): Series[] {
  const out: Series[] = [];
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    assert.ok(m, `not a sample line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = l[2]!;
    out.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return out;
}

/** The value of the one series with this name and these labels (at least). */
function value(series: Series[], name: string, labels: Record<string, string> = {}): number {
  const found = series.filter(
    (s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v),
  );
  assert.equal(found.length, 1, `${name}${JSON.stringify(labels)}: ${found.length} series`);
  return found[0]!.value;
}

function has(series: Series[], name: string, labels: Record<string, string> = {}): boolean {
  return series.some((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
}

async function until<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}${last ? `: ${String(last)}` : ""}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe("parseListenAddr", () => {
  it("accepts :port, host:port and [v6]:port", () => {
    assert.deepEqual(parseListenAddr(":9090"), { host: undefined, port: 9090 });
    assert.deepEqual(parseListenAddr("127.0.0.1:0"), { host: "127.0.0.1", port: 0 });
    assert.deepEqual(parseListenAddr("[::1]:9090"), { host: "::1", port: 9090 });
  });
  it("rejects anything else with a CONFIG error", () => {
    for (const bad of ["9090", "host", ":99999", "a:b:9090", ""]) {
      assertCode(() => parseListenAddr(bad), ErrorCodes.CONFIG, undefined, bad);
    }
  });
});

describe("replicator HTTP endpoint", () => {
  let dir = "";
  let dbPath = "";
  let blocker = "";
  let replication: Replication;
  let server: ReplicatorServer;
  let app: Database.Database | undefined;
  /** When the failing destination was first seen failing (the time of its error then). */
  let badFailingSince = 0;

  const get = (p: string, init?: RequestInit) => fetch(`${server.url}${p}`, init);
  const status = async (): Promise<ReplicatorStatus> => {
    const res = await get("/status");
    assert.equal(res.status, 200);
    assert.match(res.headers.get("content-type") ?? "", /^application\/json/);
    // The operator's parse: must succeed on every document we serve.
    return ReplicatorStatusSchema.parse(await res.json());
  };
  const scrape = async (): Promise<Series[]> => {
    const res = await get("/metrics");
    assert.equal(res.status, 200);
    assert.match(res.headers.get("content-type") ?? "", /^text\/plain; version=0\.0\.4/);
    return parseProm(await res.text());
  };
  const dest = (s: ReplicatorStatus, name: string): DestinationStatus => {
    const d = s.databases[0]?.replicas.find((r) => r.name === name);
    assert.ok(d, `destination ${name} in /status`);
    return d;
  };
  const write = (rows: number) => {
    const insert = app!.prepare("INSERT INTO t (v) VALUES (?)");
    app!.transaction(() => {
      for (let i = 0; i < rows; i++) insert.run(Buffer.alloc(500, i % 251).toString("hex"));
    })();
  };

  before(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), "walship-server-"));
    dbPath = path.join(dir, "app.db");
    blocker = path.join(dir, "blocker");
    writeFileSync(blocker, "a regular file: nothing can be created under it\n");
    const config = parseConfig(
      `addr: "127.0.0.1:0"
dbs:
  - path: ${dbPath}
    monitor-interval: 50ms
    replicas:
      - name: good
        url: file://${dir}/replica
        sync-interval: 50ms
      - name: bad
        url: file://${blocker}/replica
        sync-interval: 50ms
`,
      { env: {} },
    );
    // The database does not exist yet: nothing can be ready before it does.
    replication = await startReplication(config, nullLogger());
    server = await startServer(config.addr!, replication, { log: nullLogger(), version: VERSION });
  });

  after(async () => {
    await server?.close();
    await replication?.stop({ finalSyncTimeoutMs: 2000 });
    app?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("uses real file destinations", () => {
    assert.equal(replication.replicas.length, 2);
    for (const r of replication.replicas) {
      // Every destination sits in its single-writer fence, around the sealing layer (plain here),
      // around the real client.
      assert.ok(r.client instanceof FencedClient);
      assert.ok(r.fence);
      const sealed = r.client.inner;
      assert.ok(sealed instanceof SealedReplicaClient);
      assert.equal(sealed.sealing.mode, "plain");
      assert.ok(sealed.inner instanceof FileReplicaClient);
    }
    assert.match(server.url, /^http:\/\/127\.0\.0\.1:\d+$/);
  });

  it("/healthz answers 200 ok", async () => {
    const res = await get("/healthz");
    assert.equal(res.status, 200);
    assert.equal(await res.text(), "ok\n");
  });

  it("answers 404 for unknown paths and 405 for other methods", async () => {
    assert.equal((await get("/nope")).status, 404);
    assert.equal((await get("/")).status, 404);
    const post = await get("/status", { method: "POST", body: "{}" });
    assert.equal(post.status, 405);
    assert.equal(post.headers.get("allow"), "GET, HEAD");
    assert.equal((await get("/metrics", { method: "DELETE" })).status, 405);
    // A query string does not change the route.
    assert.equal((await get("/healthz?verbose=1")).status, 200);
  });

  it("/readyz is 503 before the database has a generation, and /status says so", async () => {
    const res = await get("/readyz");
    assert.equal(res.status, 503);
    const body = ReadinessSchema.parse(await res.json());
    assert.equal(body.ready, false);
    assert.ok(body.notReady.some((n) => n.db === dbPath && n.replica === undefined));
    const s = await status();
    assert.equal(s.apiVersion, "walship.dev/v1alpha1");
    assert.equal(s.kind, "ReplicatorStatus");
    assert.equal(s.version, VERSION);
    assert.equal(s.ready, false);
    assert.equal(s.databases.length, 1);
    assert.equal(s.databases[0]!.path, dbPath);
    assert.equal(s.databases[0]!.generation, undefined);
    assert.equal(s.databases[0]!.ready, false);
  });

  it("shows a generation, positions, a failing destination and its error once the database exists", async () => {
    app = new Database(dbPath);
    app.pragma("journal_mode = wal");
    app.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)");
    write(50);

    const s = await until("good synced, bad failing", async () => {
      const s = await status();
      const good = dest(s, "good");
      const bad = dest(s, "bad");
      if (!s.databases[0]!.generation || !good.position || !good.lastSyncAt || !bad.lastError)
        return undefined;
      // The first upload has finished: a position at the very start may be mid-sync.
      return good.position.index > 0 || good.position.offset > 0 ? s : undefined;
    });
    const db = s.databases[0]!;
    assert.match(db.generation!, /^[0-9a-f]{16}$/);
    assert.equal(db.position!.generation, db.generation);
    assert.equal(db.pageSize, 4096);
    assert.ok(db.sizeBytes > 0);
    const good = dest(s, "good");
    assert.equal(good.type, "file");
    assert.equal(good.location, path.join(dir, "replica"));
    assert.equal(good.generation, db.generation);
    assert.equal(good.lastError, undefined);
    assert.ok(good.lastSnapshot, "the first sync of a generation takes a snapshot");
    const bad = dest(s, "bad");
    assert.equal(bad.ready, false);
    assert.ok(bad.lastError!.at, "the error carries its time");
    badFailingSince = Date.parse(bad.lastError!.at!);
    assert.ok(bad.syncErrorCount > 0);
    assert.ok(bad.pendingTransactions > 0, "the commits it could not upload are pending");
    assert.ok(bad.pendingBytes > 0);

    // /readyz names the failing destination, and only it.
    const res = await get("/readyz");
    assert.equal(res.status, 503);
    const body = ReadinessSchema.parse(await res.json());
    assert.deepEqual(
      body.notReady.map((n) => [n.db, n.replica]),
      [[dbPath, "bad"]],
    );
  });

  it("/metrics has Litestream's names and labels and the walship ones", async () => {
    const text = await (await get("/metrics")).text();
    const m = parseProm(text);
    const db = { db: dbPath };
    for (const name of [
      "litestream_db_size",
      "litestream_wal_size",
      "litestream_shadow_wal_index",
      "litestream_shadow_wal_size",
      "litestream_total_wal_bytes",
      "litestream_sync_count",
      "litestream_sync_error_count",
      "litestream_sync_seconds",
    ]) {
      assert.ok(has(m, name, db), name);
      assert.deepEqual(Object.keys(m.find((s) => s.name === name)!.labels), ["db"], name);
    }
    for (const name of [
      "litestream_checkpoint_count",
      "litestream_checkpoint_error_count",
      "litestream_checkpoint_seconds",
    ]) {
      for (const mode of ["PASSIVE", "RESTART", "TRUNCATE"]) assert.ok(has(m, name, { ...db, mode }), name);
    }
    // Litestream's counters keep their names: no _total added.
    assert.match(text, /^# TYPE litestream_sync_count counter$/m);
    assert.match(text, /^# TYPE litestream_db_size gauge$/m);
    assert.doesNotMatch(text, /litestream_sync_count_total/);
    assert.ok(value(m, "litestream_db_size", db) > 0);
    assert.ok(value(m, "litestream_sync_count", db) > 0);

    for (const name of ["good", "bad"]) {
      const rl = { db: dbPath, name };
      assert.ok(has(m, "litestream_replica_wal_bytes", rl));
      for (const st of ["ok", "error"]) {
        assert.equal(value(m, "litestream_replica_validation_total", { ...rl, status: st }), 0);
      }
      for (const w of [
        "walship_replica_lag_seconds",
        "walship_replica_pending_transactions",
        "walship_replica_pending_bytes",
        "walship_replica_last_sync_timestamp_seconds",
        "walship_replica_errors_total",
        "walship_replica_up",
      ]) {
        assert.ok(has(m, w, rl), `${w} ${name}`);
      }
    }
    const good = { db: dbPath, name: "good" };
    const bad = { db: dbPath, name: "bad" };
    assert.ok(value(m, "litestream_replica_wal_bytes", good) > 0);
    // Past the start of the stream (offset 0 of a later index is where a destination stands after
    // moving on to a new shadow file).
    assert.ok(
      value(m, "litestream_replica_wal_index", good) > 0 ||
        value(m, "litestream_replica_wal_offset", good) > 0,
    );
    assert.equal(value(m, "walship_replica_up", good), 1);
    assert.equal(value(m, "walship_replica_up", bad), 0);
    assert.ok(value(m, "walship_replica_errors_total", bad) > 0);
    assert.equal(value(m, "walship_replica_errors_total", good), 0);
    // Its last success was a no-op sync before the database had a generation (those succeed until
    // then, which may be a little after the file exists); none since it started failing.
    assert.ok(value(m, "walship_replica_last_sync_timestamp_seconds", bad) * 1000 <= badFailingSince);
    assert.ok(
      Math.abs(value(m, "walship_replica_last_sync_timestamp_seconds", good) - Date.now() / 1000) < 60,
    );
    assert.ok(value(m, "walship_replica_pending_transactions", bad) > 0);
    assert.ok(value(m, "walship_replica_pending_bytes", bad) > 0);
    assert.ok(has(m, "walship_replica_snapshot_age_seconds", good));
    assert.equal(value(m, "walship_build_info", { version: VERSION }), 1);
    // The dedicated registry carries Node's process and runtime metrics too.
    assert.ok(has(m, "process_cpu_user_seconds_total"));
    assert.ok(m.some((s) => s.name.startsWith("nodejs_")));
  });

  it("values move with writes: WAL bytes grow, positions advance, lag grows on the failing destination", async () => {
    const s1 = await status();
    const m1 = await scrape();
    const good1 = dest(s1, "good").position!;
    const db1 = s1.databases[0]!.position!;
    const lag1 = value(m1, "walship_replica_lag_seconds", { db: dbPath, name: "bad" });
    assert.ok(lag1 > 0, "lag while the destination fails");

    write(200);
    const after = (a: Position, b: Position) =>
      a.index > b.index || (a.index === b.index && a.offset > b.offset);
    const s2 = await until("the database and the good destination to advance", async () => {
      const s = await status();
      const db = s.databases[0]!.position!;
      const good = dest(s, "good").position!;
      return after(db, db1) && after(good, good1) ? s : undefined;
    });
    assert.equal(s2.databases[0]!.position!.generation, db1.generation);
    const m2 = await scrape();
    const db = { db: dbPath };
    const good = { db: dbPath, name: "good" };
    const bad = { db: dbPath, name: "bad" };
    assert.ok(value(m2, "litestream_total_wal_bytes", db) > value(m1, "litestream_total_wal_bytes", db));
    assert.ok(
      value(m2, "litestream_replica_wal_bytes", good) > value(m1, "litestream_replica_wal_bytes", good),
    );
    assert.ok(value(m2, "walship_replica_lag_seconds", bad) > lag1, "lag grows during the failure");
    assert.ok(
      value(m2, "walship_replica_pending_bytes", bad) > value(m1, "walship_replica_pending_bytes", bad),
      "unsent bytes grow during the failure",
    );
    assert.ok(
      value(m2, "walship_replica_pending_transactions", bad) >
        value(m1, "walship_replica_pending_transactions", bad),
    );
    const bad2 = dest(s2, "bad");
    assert.ok(bad2.lagSeconds > 0);
    assert.ok(bad2.lastError);
  });

  it("walReadAt: commits made before it are on a destination with nothing pending, and pending on a failing one", async () => {
    write(30);
    const want = app!.prepare("SELECT count(*) FROM t").pluck().get() as number;
    // docs/metrics.md's recipe: the time of a document read after the last commit (the replicator's
    // clock), then a document whose walReadAt is later, with nothing pending.
    const t = Date.parse((await status()).time);
    const s = await until("a read of the WAL after the writes, nothing pending on good", async () => {
      const s = await status();
      const readAt = s.databases[0]!.walReadAt;
      return readAt && Date.parse(readAt) > t && dest(s, "good").pendingTransactions === 0 ? s : undefined;
    });
    const readAt = Date.parse(s.databases[0]!.walReadAt!);
    assert.ok(readAt <= Date.parse(s.time), "a read before the document was made");
    assert.ok(dest(s, "bad").pendingTransactions > 0, "the failing destination still has them pending");
    // What the document promises: every commit made before t is on good now.
    const out = path.join(dir, "read-at.db");
    await restore([{ name: "good", client: new FileReplicaClient(path.join(dir, "replica")) }], {
      outputPath: out,
    });
    const restored = new Database(out, { readonly: true });
    try {
      assert.equal(restored.prepare("SELECT count(*) FROM t").pluck().get(), want);
    } finally {
      restored.close();
    }
  });

  it("reports the recoverability window of a destination that holds a snapshot", async () => {
    const s = await until("the window of the good destination", async () => {
      const s = await status();
      const w = dest(s, "good").window;
      return w.oldest && w.newest ? s : undefined;
    });
    const w = dest(s, "good").window;
    const oldest = Date.parse(w.oldest!);
    const newest = Date.parse(w.newest!);
    assert.ok(oldest <= newest, `${w.oldest} <= ${w.newest}`);
    assert.ok(newest <= Date.now());
    assert.deepEqual(dest(s, "bad").window.oldest, undefined, "nothing is restorable from the failing one");
    const m = await scrape();
    const good = { db: dbPath, name: "good" };
    assert.equal(value(m, "walship_replica_window_oldest_timestamp_seconds", good), oldest / 1000);
    assert.ok(has(m, "walship_replica_window_newest_timestamp_seconds", good));
    assert.ok(!has(m, "walship_replica_window_oldest_timestamp_seconds", { db: dbPath, name: "bad" }));
  });

  it("recovers when the destination can be written again: /readyz 200, up 1, no error, no lag", async () => {
    rmSync(blocker);
    const res = await until(
      "/readyz 200",
      async () => {
        const r = await get("/readyz");
        return r.status === 200 ? r : undefined;
      },
      40_000,
    );
    assert.deepEqual(ReadinessSchema.parse(await res.json()), { ready: true, notReady: [] });
    const s = await until("the recovered destination to catch up", async () => {
      const s = await status();
      const b = dest(s, "bad");
      return b.pendingTransactions === 0 && b.lagSeconds === 0 && b.pendingBytes === 0 ? s : undefined;
    });
    assert.equal(s.ready, true);
    const bad = dest(s, "bad");
    assert.equal(bad.ready, true);
    assert.equal(bad.lastError, undefined);
    assert.equal(bad.generation, s.databases[0]!.generation);
    const m = await scrape();
    assert.equal(value(m, "walship_replica_up", { db: dbPath, name: "bad" }), 1);
    assert.equal(value(m, "walship_replica_lag_seconds", { db: dbPath, name: "bad" }), 0);
  });
});

describe("recoverability window cache", () => {
  let dir = "";
  let replication: Replication;
  let server: ReplicatorServer;
  let app: Database.Database | undefined;
  const REFRESH_MS = 1500;

  before(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), "walship-window-"));
    app = new Database(path.join(dir, "app.db"));
    app.pragma("journal_mode = wal");
    app.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)");
    app.prepare("INSERT INTO t (v) VALUES ('a')").run();
    const config = parseConfig(
      `dbs:
  - path: ${dir}/app.db
    monitor-interval: 50ms
    replicas:
      - name: only
        url: file://${dir}/replica
        sync-interval: 50ms
`,
      { env: {} },
    );
    replication = await startReplication(config, nullLogger());
    server = await startServer("127.0.0.1:0", replication, {
      log: nullLogger(),
      version: VERSION,
      windowRefreshMs: REFRESH_MS,
    });
  });

  after(async () => {
    await server?.close();
    await replication?.stop({ finalSyncTimeoutMs: 2000 });
    app?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const window = async () => {
    const s = ReplicatorStatusSchema.parse(await (await fetch(`${server.url}/status`)).json());
    return s.databases[0]!.replicas[0]!.window;
  };

  it("serves the cached oldest snapshot until a refresh, and refreshes after a snapshot", async () => {
    const first = await until("a window", async () => ((await window()).oldest ? window() : undefined));
    const replica = replication.replicas[0]!;
    const gen = replication.dbs[0]!.generation!;
    // Move to shadow index 1 and snapshot there: the new snapshot refreshes the window at once, and the
    // oldest snapshot (index 0) is still the oldest.
    await replication.dbs[0]!.checkpoint("RESTART");
    app!.prepare("INSERT INTO t (v) VALUES ('b')").run();
    await replication.dbs[0]!.sync();
    const snap = await replica.snapshot();
    assert.ok(snap.index > 0, `snapshot at index ${snap.index}`);
    const afterSnap = await window();
    assert.equal(afterSnap.oldest, first.oldest);
    assert.ok(Date.parse(afterSnap.newest!) >= Date.parse(afterSnap.oldest!));

    // Delete the oldest snapshot behind the replicator's back (as another process's retention would).
    const removedAt = Date.now();
    rmSync(path.join(dir, "replica", keys.snapshot(gen, 0)));
    rmSync(path.join(dir, "replica", snapshotMetaKey(gen, 0)), { force: true });
    // Until the refresh interval has passed, the listing is not repeated: the cached answer stands.
    const cached = await window();
    if (Date.now() - removedAt < REFRESH_MS - 200) assert.equal(cached.oldest, first.oldest);
    // After it, the window starts at the remaining snapshot.
    const refreshed = await until(
      "the refreshed window",
      async () => {
        const w = await window();
        return w.oldest !== first.oldest ? w : undefined;
      },
      REFRESH_MS + 5000,
    );
    assert.ok(Date.parse(refreshed.oldest!) > Date.parse(first.oldest!));
    assert.ok(Date.now() - removedAt >= REFRESH_MS - 1000, "refreshed by the timer, not on every request");
  });
});
