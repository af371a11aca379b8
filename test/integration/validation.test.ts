/**
 * Validation (validation-interval): no false alarms while the application writes and checkpoints run,
 * and a real mismatch is caught when a destination holds altered data whose checksums all still pass.
 */
import assert from "node:assert/strict";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, describe, it } from "node:test";
import { Db } from "../../src/replicator/db.ts";
import { lz4DecodeFrame, lz4EncodeFrame } from "../../src/replicator/lz4.ts";
import { Replica } from "../../src/replicator/replica.ts";
import { parseWalHeader, WAL_HEADER_SIZE, walChecksum } from "../../src/replicator/sqlite/wal.ts";
import { FileReplicaClient } from "../../src/replicator/storage/file.ts";
import { ReplicatorStatusSchema } from "../../src/shared/protocol.ts";
import { freePort } from "../helpers/ports.ts";
import { openWorkload } from "../helpers/sqlite.ts";
import { fileReplicaConfig, replicate, sleep } from "../helpers/walship.ts";

const dir = mkdtempSync(path.join(os.tmpdir(), "walship-validate-"));
after(() => rmSync(dir, { recursive: true, force: true }));

describe("validation", () => {
  it("reports ok, repeatedly, while the app writes and the WAL is checkpointed", async () => {
    const port = await freePort();
    const app = openWorkload(path.join(dir, "app.db"), 71);
    const { rep } = replicate(
      dir,
      fileReplicaConfig(`${dir}/app.db`, `${dir}/replica`, {
        top: `addr: 127.0.0.1:${port}`,
        dbKeys: { "monitor-interval": "50ms", "min-checkpoint-page-count": 32 },
        replicaKeys: { "sync-interval": "50ms", "snapshot-interval": "2s", "validation-interval": "700ms" },
      }),
    );
    let writing = true;
    const writer = (async () => {
      while (writing) {
        app.step();
        await sleep(20);
      }
    })();
    try {
      // Poll until three validations have run; not one may report an error on the way.
      let v:
        | NonNullable<
            ReturnType<
              typeof ReplicatorStatusSchema.parse
            >["databases"][number]["replicas"][number]["validation"]
          >
        | undefined;
      const deadline = Date.now() + 60_000;
      while (Date.now() < deadline) {
        await sleep(500);
        const res = await fetch(`http://127.0.0.1:${port}/status`).catch(() => undefined);
        if (!res) continue; // still starting
        const doc = ReplicatorStatusSchema.parse(await res.json());
        v = doc.databases[0]!.replicas[0]!.validation;
        if (v) assert.equal(v.errorCount, 0, `no false alarm: ${v.message ?? ""}`);
        if (v && v.okCount >= 3) break;
      }
      assert.ok(v, "validation appears in /status");
      assert.ok(v.okCount >= 3, `several validations ran: ${v.okCount}`);
      assert.equal(v.outcome, "ok");
      const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      assert.match(metrics, /^litestream_replica_validation_total\{[^}]*status="ok"[^}]*\} [3-9]\d*$/m);
      assert.match(metrics, /^litestream_replica_validation_total\{[^}]*status="error"[^}]*\} 0$/m);
      assert.ok(
        Number(/litestream_checkpoint_count\{[^}]*mode="PASSIVE"\} (\d+)/.exec(metrics)?.[1]) > 0,
        "checkpoints ran meanwhile",
      );
    } finally {
      writing = false;
      await writer;
      assert.equal(await rep.stop(), 0, rep.output().slice(-2000));
      app.close();
    }
  });

  it("catches a destination whose data was altered with every checksum recomputed", async () => {
    const d = mkdtempSync(path.join(dir, "tamper-"));
    const dbPath = path.join(d, "app.db");
    const app = openWorkload(dbPath, 72, { vacuum: false });
    for (let i = 0; i < 10; i++) app.step();
    const root = path.join(d, "replica");
    const db = new Db(dbPath, { watch: false });
    await db.init();
    const replica = new Replica(db, new FileReplicaClient(root), { name: "r" });
    await db.sync();
    await replica.sync();
    app.db.prepare("INSERT INTO items (name, qty) VALUES ('needle-in-the-haystack', 1)").run();
    await db.sync();
    await replica.sync();
    assert.equal((await replica.validate()).outcome, "ok", "the untouched destination validates");
    // Stopped by shutdown (its signal aborted): not a failure, so no error is counted and the last
    // finished validation stays the one reported.
    const stopped = await replica.validate({ signal: AbortSignal.abort() });
    assert.notEqual(stopped.outcome, "ok");
    assert.equal(replica.metrics.validationError, 0);
    assert.equal(replica.status().lastValidation?.outcome, "ok");

    // Alter one byte of the row's text in the newest WAL index, then recompute the whole checksum chain
    // of that index and re-split it at the same offsets: every LZ4 and WAL check still passes.
    const gen = readdirSync(path.join(root, "generations"))[0]!;
    const walDir = path.join(root, "generations", gen, "wal");
    const names = readdirSync(walDir).sort();
    const lastIndex = names.at(-1)!.slice(0, 8);
    const parts = names.filter((n) => n.startsWith(lastIndex));
    const bodies = parts.map((n) => lz4DecodeFrame(readFileSync(path.join(walDir, n))));
    const wal = Buffer.concat(bodies);
    const at = wal.indexOf("needle-in-the-haystack");
    assert.ok(at > 0, "the row is in the newest index");
    wal[at] = "N".charCodeAt(0);
    const hdr = parseWalHeader(wal.subarray(0, WAL_HEADER_SIZE));
    const F = 24 + hdr.pageSize;
    let sum: [number, number] = [hdr.checksum1, hdr.checksum2];
    for (let off = WAL_HEADER_SIZE; off + F <= wal.length; off += F) {
      sum = walChecksum(hdr.bigEndianChecksums, wal.subarray(off, off + 8), sum[0], sum[1]);
      sum = walChecksum(hdr.bigEndianChecksums, wal.subarray(off + 24, off + F), sum[0], sum[1]);
      wal.writeUInt32BE(sum[0], off + 16);
      wal.writeUInt32BE(sum[1], off + 20);
    }
    let pos = 0;
    parts.forEach((n, i) => {
      const len = bodies[i]!.length;
      writeFileSync(path.join(walDir, n), lz4EncodeFrame(wal.subarray(pos, pos + len)));
      pos += len;
    });

    const result = await replica.validate();
    assert.equal(result.outcome, "mismatch", result.message);
    assert.notEqual(result.source, result.restored);
    assert.equal(replica.metrics.validationError, 1);
    assert.equal(replica.status().lastValidation?.outcome, "mismatch");
    replica.close();
    await db.close();
    app.close();
  });
});
