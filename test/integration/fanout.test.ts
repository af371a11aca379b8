/** Several destinations per database, each with its own position: one failing does not hold back the other. */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, describe, it } from "node:test";
import { integrityCheck, logicalHash, logicalHashOf, openWorkload } from "../helpers/sqlite.ts";
import { sleep, startReplicator, walship } from "../helpers/walship.ts";

const dir = mkdtempSync(path.join(os.tmpdir(), "walship-fanout-"));
after(() => rmSync(dir, { recursive: true, force: true }));

describe("several destinations", () => {
  it("replicates to each independently and both restore to the source", async () => {
    const cfg = path.join(dir, "walship.yml");
    // "b" starts broken: its directory's parent is a regular file, so every write fails.
    writeFileSync(path.join(dir, "blocked"), "not a directory");
    writeFileSync(
      cfg,
      `dbs:
  - path: ${dir}/app.db
    monitor-interval: 50ms
    min-checkpoint-page-count: 64
    replicas:
      - name: a
        url: file://${dir}/replica-a
        sync-interval: 50ms
      - name: b
        path: ${dir}/blocked/replica-b
        sync-interval: 50ms
`,
    );
    const app = openWorkload(path.join(dir, "app.db"), 5, { vacuum: false });
    const rep = startReplicator(["-config", cfg]);
    for (let i = 0; i < 40; i++) {
      app.step();
      await sleep(20);
    }
    await sleep(500);
    const midHash = logicalHashOf(app.db);
    // While b fails, a is complete.
    const outA = path.join(dir, "a-mid.db");
    const ra = await walship([
      "restore",
      "-config",
      cfg,
      "-replica",
      "a",
      "-o",
      outA,
      path.join(dir, "app.db"),
    ]);
    assert.equal(ra.code, 0, ra.stderr);
    assert.equal(logicalHash(outA), midHash);
    assert.match(
      rep.output(),
      /"replica":"b"[^\n]*"replica sync failed"|"replica sync failed"[^\n]*"replica":"b"/,
    );

    // Repair b: it catches up from its own position (a fresh snapshot of the current generation).
    rmSync(path.join(dir, "blocked"));
    for (let i = 0; i < 20; i++) {
      app.step();
      await sleep(20);
    }
    await sleep(2500);
    assert.equal(await rep.stop(), 0);
    const want = logicalHashOf(app.db);
    app.close();
    for (const name of ["a", "b"]) {
      const out = path.join(dir, `${name}.db`);
      const r = await walship([
        "restore",
        "-config",
        cfg,
        "-replica",
        name,
        "-o",
        out,
        path.join(dir, "app.db"),
      ]);
      assert.equal(r.code, 0, `${name}: ${r.stderr}`);
      assert.equal(integrityCheck(out), "ok");
      assert.equal(logicalHash(out), want, `destination ${name} differs`);
    }
  });
});
