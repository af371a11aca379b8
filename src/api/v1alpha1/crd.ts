/**
 * The CustomResourceDefinitions, built from the zod schemas (pure: no I/O). scripts/gen-crds.ts
 * writes them to crds/; test/unit/operator-api.test.ts regenerates them in memory and fails on drift.
 *
 * `z.toJSONSchema` gives JSON Schema 2020-12; Kubernetes wants a *structural* OpenAPI v3 schema. The
 * rewrite: inline every `$ref`, drop `$schema`/`$defs`/`propertyNames`, drop `additionalProperties`
 * beside `properties`, turn `const` into a one-value `enum`, turn an int|string `anyOf` into
 * `x-kubernetes-int-or-string`, drop zod's safe-integer bounds and the regex zod adds to `date-time`
 * strings (the format says it, and Go's RE2 cannot run it).
 */
import { stringify } from "yaml";
import { z } from "zod";
import { GROUP, VERSION } from "./common.ts";
import {
  SQLITE_REPLICA_KIND,
  SQLITE_REPLICA_PLURAL,
  SqliteReplicaSpec,
  SqliteReplicaStatus,
} from "./sqlitereplica.ts";
import {
  SQLITE_RESTORE_KIND,
  SQLITE_RESTORE_PLURAL,
  SqliteRestoreSpec,
  SqliteRestoreStatus,
} from "./sqliterestore.ts";

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
type Schema = { [k: string]: Json };

const MAX_SAFE = Number.MAX_SAFE_INTEGER;

/** The structural rewrite of one JSON Schema node (recursive). `defs` resolves `$ref`. */
export function structural(node: Schema, defs: Record<string, Schema> = {}): Schema {
  if (typeof node.$ref === "string") {
    const name = node.$ref.replace(/^#\/\$defs\//, "");
    const target = defs[name];
    if (!target) throw new Error(`build crd: unresolved $ref ${node.$ref}`);
    const { $ref: _r, ...rest } = node;
    return structural({ ...target, ...rest }, defs);
  }
  const out: Schema = {};
  for (const [k, v] of Object.entries(node)) {
    switch (k) {
      case "$schema":
      case "$defs":
      case "$id":
      case "id":
      case "propertyNames":
        continue;
      case "properties": {
        const props: Schema = {};
        for (const [pk, pv] of Object.entries(v as Schema)) props[pk] = structural(pv as Schema, defs);
        out.properties = props;
        continue;
      }
      case "items":
      case "additionalProperties":
        if (k === "additionalProperties" && node.properties !== undefined) continue;
        out[k] = typeof v === "object" && v !== null ? structural(v as Schema, defs) : v;
        continue;
      case "allOf":
      case "anyOf":
      case "oneOf":
        out[k] = (v as Schema[]).map((s) => structural(s, defs));
        continue;
      case "const":
        out.enum = [v];
        continue;
      case "minimum":
      case "maximum":
        if (Math.abs(v as number) === MAX_SAFE) continue;
        out[k] = v;
        continue;
      case "pattern":
        if (node.format === "date-time") continue;
        out[k] = v;
        continue;
      default:
        out[k] = v;
    }
  }
  // int | string: Kubernetes' int-or-string (quantities). Each branch's value validations move onto
  // the node, where they apply to the values of their type only (minimum to numbers, pattern and
  // maxLength to strings), as controller-gen emits them.
  const anyOf = out.anyOf as Schema[] | undefined;
  if (anyOf && anyOf.length === 2) {
    const types = anyOf.map((s) => s.type).sort();
    if (types[0] === "integer" && types[1] === "string") {
      delete out.anyOf;
      out["x-kubernetes-int-or-string"] = true;
      const int = anyOf.find((s) => s.type === "integer") ?? {};
      const str = anyOf.find((s) => s.type === "string") ?? {};
      if (typeof int.minimum === "number") out.minimum = int.minimum;
      if (typeof str.pattern === "string") out.pattern = str.pattern;
      if (typeof str.maxLength === "number") out.maxLength = str.maxLength;
    }
  }
  // Several string patterns from chained .regex(): zod emits allOf of {type, pattern}; structural
  // schemas allow value validations there but no types.
  if (Array.isArray(out.allOf)) {
    out.allOf = (out.allOf as Schema[]).map((s) => {
      const { type: _t, format: _f, ...rest } = s;
      return rest;
    });
  }
  return out;
}

/** The structural OpenAPI schema of a zod object schema, as admission sees it (defaults applied). */
export function openApiSchema(schema: z.ZodType): Schema {
  const js = z.toJSONSchema(schema, { io: "input", unrepresentable: "throw" }) as Schema;
  return structural(js, (js.$defs as Record<string, Schema> | undefined) ?? {});
}

interface PrinterColumn {
  name: string;
  type: "string" | "integer" | "number" | "boolean" | "date";
  jsonPath: string;
  description?: string;
  priority?: number;
}

interface CrdInput {
  kind: string;
  plural: string;
  shortName: string;
  description: string;
  spec: z.ZodType;
  status: z.ZodType;
  columns: PrinterColumn[];
}

function crd(input: CrdInput): Schema {
  const singular = input.kind.toLowerCase();
  return {
    apiVersion: "apiextensions.k8s.io/v1",
    kind: "CustomResourceDefinition",
    metadata: {
      name: `${input.plural}.${GROUP}`,
      labels: { "app.kubernetes.io/name": "walship", "app.kubernetes.io/component": "crd" },
    },
    spec: {
      group: GROUP,
      scope: "Namespaced",
      names: {
        kind: input.kind,
        listKind: `${input.kind}List`,
        plural: input.plural,
        singular,
        shortNames: [input.shortName],
        categories: ["walship"],
      },
      versions: [
        {
          name: VERSION,
          served: true,
          storage: true,
          subresources: { status: {} },
          additionalPrinterColumns: input.columns as unknown as Json,
          schema: {
            openAPIV3Schema: {
              description: input.description,
              type: "object",
              properties: {
                apiVersion: { type: "string" },
                kind: { type: "string" },
                metadata: { type: "object" },
                spec: openApiSchema(input.spec),
                status: openApiSchema(input.status),
              },
              required: ["spec"],
            },
          },
        },
      ],
    },
  };
}

/** Both CRDs, keyed by file name under crds/. */
export function buildCrds(): Record<string, Schema> {
  return {
    [`${GROUP}_${SQLITE_REPLICA_PLURAL}.yaml`]: crd({
      kind: SQLITE_REPLICA_KIND,
      plural: SQLITE_REPLICA_PLURAL,
      shortName: "sqlr",
      description:
        "SqliteReplica replicates one SQLite database of a StatefulSet's pods to object storage: the " +
        "operator injects the walship replicator as a native sidecar and a restore init container.",
      spec: SqliteReplicaSpec,
      status: SqliteReplicaStatus,
      columns: [
        { name: "StatefulSet", type: "string", jsonPath: ".spec.statefulSetName" },
        { name: "Workload", type: "string", jsonPath: ".spec.workloadRef.name", priority: 1 },
        { name: "Phase", type: "string", jsonPath: ".status.phase" },
        { name: "Generation", type: "string", jsonPath: ".status.generation" },
        { name: "Lag", type: "number", jsonPath: ".status.lagSeconds", description: "seconds" },
        { name: "Last Sync", type: "date", jsonPath: ".status.lastSyncTime" },
        { name: "Age", type: "date", jsonPath: ".metadata.creationTimestamp" },
      ],
    }),
    [`${GROUP}_${SQLITE_RESTORE_PLURAL}.yaml`]: crd({
      kind: SQLITE_RESTORE_KIND,
      plural: SQLITE_RESTORE_PLURAL,
      shortName: "sqlrestore",
      description:
        "SqliteRestore restores a SqliteReplica's database to the latest state or a point in time.",
      spec: SqliteRestoreSpec,
      status: SqliteRestoreStatus,
      columns: [
        { name: "Replica", type: "string", jsonPath: ".spec.sqliteReplicaName" },
        { name: "Target", type: "string", jsonPath: ".status.target" },
        { name: "Phase", type: "string", jsonPath: ".status.phase" },
        { name: "Restored To", type: "string", jsonPath: ".status.restored.position" },
        { name: "Mode", type: "string", jsonPath: ".spec.mode", priority: 1 },
        { name: "Age", type: "date", jsonPath: ".metadata.creationTimestamp" },
      ],
    }),
  };
}

/** The file text of a CRD, as committed under crds/. */
export function renderCrd(crdObject: Schema): string {
  return `# Generated by scripts/gen-crds.ts from src/api/v1alpha1; do not edit.\n${stringify(crdObject, {
    lineWidth: 0,
  })}`;
}
