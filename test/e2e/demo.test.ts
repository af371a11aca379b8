/**
 * `make demo` (scripts/demo-cluster.ts) from start to teardown, as a user runs it: the control plane,
 * MinIO and a real node (test/helpers/node), `helm install` of charts/walship, the example app replicating, and a
 * point-in-time SqliteRestore through the operator. The script itself checks that the app comes
 * back with exactly the rows at or before the target; this test checks that it exits 0, shows what
 * the README promises, and leaves nothing behind.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import path from "node:path";
import { describe, it } from "node:test";

const ROOT = path.resolve(import.meta.dirname, "../..");

describe("make demo (scripts/demo-cluster.ts)", { timeout: 600_000 }, () => {
  it("installs the chart, replicates, restores to a point in time through the operator, and cleans up", async () => {
    const child = spawn(process.execPath, [path.join(ROOT, "scripts/demo-cluster.ts")], {
      cwd: ROOT,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    child.stdout.on("data", (b: Buffer) => {
      out += b.toString();
    });
    child.stderr.on("data", (b: Buffer) => {
      out += b.toString();
    });
    const code = await new Promise<number | null>((resolve) => child.on("exit", resolve));
    assert.equal(code, 0, `the demo failed:\n${out.slice(-6000)}`);
    // `kubectl get sqlitereplicas` with a live generation and lag.
    assert.match(out, /NAME\s+STATEFULSET\s+PHASE\s+GENERATION\s+LAG\s+LAST SYNC\s+AGE/);
    const gens = [...out.matchAll(/^app\s+app\s+Replicating\s+([0-9a-f]{16})\s+\d+/gm)].map((m) => m[1]);
    assert.ok(gens.length >= 2, "the replica table shows a generation and lag");
    assert.notEqual(
      gens[0],
      gens[gens.length - 1],
      "replication goes on in a new generation after the restore",
    );
    // The SqliteRestore went through the operator's phases to Succeeded.
    assert.match(out, /before-restart\s+app\s+\S+\s+Succeeded/);
    for (const reason of ["ScalingDown", "Restoring", "Swapping", "ScalingUp", "Succeeded"])
      assert.match(out, new RegExp(`Normal\\s+${reason}\\s`), `Event ${reason}`);
    assert.match(out, /the row written after \S+ is gone/);
    // The second row was in the bucket before the restore, by the plugin's wait.
    assert.match(
      out,
      /^\$ kubectl walship wait app -n shop\napp-0: every commit made before \S+ is on every destination$/m,
    );
    assert.ok(!existsSync(path.join(ROOT, ".demo/cluster")), "the demo removed .demo/cluster");
  });
});
