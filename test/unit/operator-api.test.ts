/**
 * The walship.dev/v1alpha1 schemas: zod validation names the field, each CEL rule's zod twin rejects
 * the same example, and crds/ is exactly what the schemas generate (drift check).
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import { describe, it } from "node:test";
import { buildCrds, renderCrd, structural } from "../../src/api/v1alpha1/crd.ts";
import { describeIssues, SqliteReplicaSpec, SqliteRestoreSpec } from "../../src/api/v1alpha1/index.ts";

const CRDS = path.resolve(import.meta.dirname, "../../crds");

const minimal = {
  statefulSetName: "app",
  database: { path: "/data/app.db", volumeName: "data" },
  destinations: [
    {
      name: "minio",
      s3: {
        bucket: "backups",
        endpoint: "http://minio:9000",
        credentials: {
          accessKeyId: { name: "s3", key: "id" },
          secretAccessKey: { name: "s3", key: "secret" },
        },
      },
    },
  ],
};

function fieldOf(spec: unknown): { field: string; message: string } {
  const r = SqliteReplicaSpec.safeParse(spec);
  assert.equal(r.success, false, "expected the spec to be rejected");
  return describeIssues("spec", r.error!);
}

describe("SqliteReplica spec (zod)", () => {
  it("fills the defaults", () => {
    const spec = SqliteReplicaSpec.parse(minimal);
    assert.equal(spec.syncInterval, "1s");
    assert.equal(spec.retention, "24h");
    assert.equal(spec.restoreOnStart, "IfReplicaExists");
    assert.equal(spec.sidecar, undefined);
  });

  it("restoreOnStart: the three policies, nothing else", () => {
    for (const p of ["IfReplicaExists", "RefuseIfReplicaExists", "None"]) {
      assert.equal(SqliteReplicaSpec.parse({ ...minimal, restoreOnStart: p }).restoreOnStart, p);
    }
    assert.equal(fieldOf({ ...minimal, restoreOnStart: "Always" }).field, "spec.restoreOnStart");
  });

  it("names the field of a bad value", () => {
    const bad = structuredClone(minimal);
    bad.destinations[0]!.s3.bucket = "B";
    assert.equal(fieldOf(bad).field, "spec.destinations[0].s3.bucket");
    assert.equal(fieldOf({ ...minimal, syncInterval: "5x" }).field, "spec.syncInterval");
    assert.equal(
      fieldOf({ ...minimal, database: { path: "data/app.db", volumeName: "data" } }).field,
      "spec.database.path",
    );
    assert.equal(fieldOf({ ...minimal, destinations: [] }).field, "spec.destinations");
  });

  it("rejects '.', '..' and '//' in database.path (a path must not climb out of its volume)", () => {
    for (const p of ["/data/../etc/passwd", "/data/./app.db", "/data/..", "/data//app.db", "/../app.db"]) {
      const f = fieldOf({ ...minimal, database: { path: p, volumeName: "data" } });
      assert.equal(f.field, "spec.database.path", p);
    }
    for (const p of ["/data/..app.db", "/data/.app.db", "/data/a..b/app.db"]) {
      assert.ok(
        SqliteReplicaSpec.safeParse({ ...minimal, database: { path: p, volumeName: "data" } }).success,
        p,
      );
    }
  });

  it("rejects '$' in text that goes into the config file", () => {
    const bad = structuredClone(minimal);
    (bad.destinations[0]!.s3 as { path?: string }).path = "x/$HOME";
    assert.equal(fieldOf(bad).field, "spec.destinations[0].s3.path");
  });

  it("applies each cross-field rule (the CEL rules' twins)", () => {
    const both = structuredClone(minimal) as { destinations: Array<Record<string, unknown>> };
    both.destinations[0]!.file = { claimName: "backup" };
    assert.deepEqual(fieldOf(both), {
      field: "spec.destinations[0]",
      message: "set exactly one of s3, file, sftp, gcs or abs",
    });

    const neither = { ...minimal, destinations: [{ name: "x" }] };
    assert.equal(fieldOf(neither).message, "set exactly one of s3, file, sftp, gcs or abs");

    const halfKeys = structuredClone(minimal) as {
      destinations: Array<{ s3: { credentials: Record<string, unknown> } }>;
    };
    delete halfKeys.destinations[0]!.s3.credentials.secretAccessKey;
    assert.equal(fieldOf(halfKeys).field, "spec.destinations[0].s3.credentials");

    const keysAndSa = structuredClone(minimal) as {
      destinations: Array<{ s3: { credentials: Record<string, unknown> } }>;
    };
    keysAndSa.destinations[0]!.s3.credentials.fromServiceAccount = true;
    assert.equal(fieldOf(keysAndSa).field, "spec.destinations[0].s3.credentials");

    const sa = structuredClone(minimal) as { destinations: Array<{ s3: { credentials: unknown } }> };
    sa.destinations[0]!.s3.credentials = { fromServiceAccount: true };
    assert.equal(SqliteReplicaSpec.safeParse(sa).success, true);

    const dotdot = { ...minimal, destinations: [{ name: "f", file: { claimName: "c", path: "a/../b" } }] };
    assert.deepEqual(fieldOf(dotdot), {
      field: "spec.destinations[0].file.path",
      message: "path must not contain '..'",
    });
  });

  it("SqliteRestore: NewClaim needs newClaim, index needs generation", () => {
    const r1 = SqliteRestoreSpec.safeParse({ sqliteReplicaName: "db" });
    assert.equal(r1.success, false);
    assert.equal(describeIssues("spec", r1.error!).field, "spec.newClaim");
    const r2 = SqliteRestoreSpec.safeParse({
      sqliteReplicaName: "db",
      mode: "InPlace",
      target: { index: 3 },
    });
    assert.equal(describeIssues("spec", r2.error!).field, "spec.target.index");
  });
});

describe("structural rewrite", () => {
  it("inlines $ref, drops $schema and additionalProperties beside properties, int|string", () => {
    const got = structural(
      {
        $schema: "x",
        type: "object",
        properties: {
          a: { $ref: "#/$defs/A", description: "d" },
          q: {
            anyOf: [
              { type: "integer", minimum: 0 },
              { type: "string", pattern: "^1$", maxLength: 8 },
            ],
          },
          c: { const: "v" },
          n: { type: "integer", minimum: -9007199254740991, maximum: 10 },
        },
        additionalProperties: false,
        $defs: { A: { type: "string" } },
      },
      { A: { type: "string" } },
    );
    assert.deepEqual(got, {
      type: "object",
      properties: {
        a: { type: "string", description: "d" },
        // Each branch's value validations kept, on the node (they apply to values of their type only).
        q: { "x-kubernetes-int-or-string": true, minimum: 0, pattern: "^1$", maxLength: 8 },
        c: { enum: ["v"] },
        n: { type: "integer", maximum: 10 },
      },
    });
  });
});

describe("crds/ drift", () => {
  it("crds/ holds exactly what the schemas generate (make crds to refresh)", () => {
    for (const [file, crd] of Object.entries(buildCrds())) {
      const have = readFileSync(path.join(CRDS, file), "utf8");
      assert.equal(have, renderCrd(crd), `crds/${file} is out of date: run make crds`);
    }
  });

  it("has the printer columns, short names, status subresource", () => {
    const crd = buildCrds()["walship.dev_sqlitereplicas.yaml"] as {
      spec: { names: { shortNames: string[] }; versions: Array<Record<string, unknown>> };
    };
    assert.deepEqual(crd.spec.names.shortNames, ["sqlr"]);
    const v = crd.spec.versions[0]!;
    assert.deepEqual(v.subresources, { status: {} });
    assert.deepEqual(
      (v.additionalPrinterColumns as Array<{ name: string }>).map((c) => c.name),
      ["StatefulSet", "Workload", "Phase", "Generation", "Lag", "Last Sync", "Age"],
    );
    const text = JSON.stringify(crd);
    assert.equal(text.includes("$ref"), false);
    assert.equal(text.includes("$schema"), false);
    assert.equal(text.includes("propertyNames"), false);
  });
});
