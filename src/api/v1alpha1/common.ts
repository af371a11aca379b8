/**
 * Building blocks shared by the walship.dev/v1alpha1 schemas. Each one is a zod schema that is both
 * the reconcile-time validator and, through `z.toJSONSchema` plus crd.ts, the admission-time OpenAPI
 * schema. A rule that JSON Schema cannot say is written twice, side by side, with `cel()`: once as a
 * zod check, once as a CEL `x-kubernetes-validations` rule with the same message.
 */
import { z } from "zod";
import { tryParseGoDuration } from "../../shared/duration.ts";

export const GROUP = "walship.dev";
export const VERSION = "v1alpha1";
export const API_VERSION = `${GROUP}/${VERSION}`;

/** A Kubernetes object name in the DNS-1123 label form (containers, volumes, ports' owners). */
export const DnsLabel = z
  .string()
  .min(1)
  .max(63)
  .regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, "must be a DNS-1123 label: lowercase letters, digits and '-'");

/** A Kubernetes object name in the DNS-1123 subdomain form (StatefulSets, Secrets, claims). */
export const DnsSubdomain = z
  .string()
  .min(1)
  .max(253)
  .regex(
    /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/,
    "must be a DNS-1123 subdomain: lowercase letters, digits, '-' and '.'",
  );

/**
 * A Go duration as the replicator reads it ("500ms", "10s", "1h30m", and Walship's "d"). The pattern
 * is the whole check at admission; the replicator's parser (shared/duration.ts, also the range check
 * here) accepts every string it admits.
 */
export const Duration = z
  .string()
  .max(64)
  .regex(/^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h|d))+$/, 'must be a duration such as "500ms", "10s" or "1h30m"')
  .refine((v) => "ms" in tryParseGoDuration(v), "must be at most 2562047h (a Go duration's range)");

/**
 * Text that goes into the replicator's config file. The file gets `$VAR` expansion (that is how the
 * pod's name and the Secret values get in), so user text must not contain `$`.
 */
export const ConfigText = z
  .string()
  .regex(/^[^$\x00-\x1f\x7f]*$/, "must not contain '$', a newline or another control character");

/** A key in a Secret in the SqliteReplica's namespace. */
export const SecretKeyRef = z.object({
  /** The Secret's name. */
  name: DnsSubdomain.describe("The Secret's name, in the SqliteReplica's namespace."),
  /** The key in the Secret's data. */
  key: z
    .string()
    .min(1)
    .max(253)
    .regex(/^[-._a-zA-Z0-9]+$/, "must be a Secret key: letters, digits, '-', '_' and '.'")
    .describe("The key in the Secret's data."),
});

/**
 * A non-negative Kubernetes resource quantity ("100m", "128Mi", "1.5Gi", 1): Kubernetes' quantity
 * grammar without a sign.
 */
export const Quantity = z.union([
  z.int().min(0).max(Number.MAX_SAFE_INTEGER),
  z
    .string()
    .max(64)
    .regex(
      /^\+?([0-9]+(\.[0-9]*)?|\.[0-9]+)(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|[eE][+-]?[0-9]+)?$/,
      'must be a non-negative quantity such as "100m", "128Mi" or "1"',
    ),
]);

/** A resource name as Kubernetes spells them (`cpu`, `memory`, `example.com/gpu`). */
const ResourceName = z
  .string()
  .max(253)
  .regex(
    /^([a-z0-9]([-a-z0-9.]*[a-z0-9])?\/)?[a-zA-Z0-9]([-a-zA-Z0-9_.]*[a-zA-Z0-9])?$/,
    "must be a resource name such as cpu, memory or ephemeral-storage",
  );

const ResourceList = z
  .record(ResourceName, Quantity)
  .refine((r) => Object.keys(r).length <= 16, "must name at most 16 resources")
  .meta({ maxProperties: 16 });

/** Requests and limits of a container (at most 16 resources each). */
export const ResourceRequirements = z.object({
  requests: ResourceList.optional(),
  limits: ResourceList.optional(),
});

export interface CelRule {
  /** The CEL expression, evaluated on the object it is attached to (`self`). */
  rule: string;
  message: string;
  /** The field the message is about, relative to `self` (".s3"), for kubectl's error output. */
  fieldPath?: string;
}

/**
 * Attaches one cross-field rule to an object schema: `check` runs at reconcile (zod), `rule` at
 * admission (CEL). Both must say the same thing; test/unit/operator-api.test.ts feeds each rule's
 * failing example to zod.
 */
export function cel<T extends z.ZodObject>(
  schema: T,
  rules: ReadonlyArray<CelRule & { check: (v: z.output<T>) => boolean }>,
): T {
  let out = schema.meta({
    "x-kubernetes-validations": rules.map(({ rule, message, fieldPath }) => ({
      rule,
      message,
      ...(fieldPath ? { fieldPath } : {}),
    })),
  }) as T;
  out = out.superRefine((v, ctx) => {
    for (const r of rules) {
      if (!r.check(v as z.output<T>)) {
        const seg = r.fieldPath?.replace(/^\./, "");
        ctx.addIssue({ code: "custom", message: r.message, path: seg ? [seg] : [] });
      }
    }
  }) as T;
  return out;
}

/** A standard Kubernetes condition (metav1.Condition). */
export const Condition = z.object({
  type: z.string().min(1).max(316),
  status: z.enum(["True", "False", "Unknown"]),
  /** The .metadata.generation the condition was set from. */
  observedGeneration: z.int().min(0).optional(),
  lastTransitionTime: z.string().describe("When the status last changed (RFC 3339)."),
  /** CamelCase. */
  reason: z
    .string()
    .min(1)
    .max(1024)
    .regex(/^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$/),
  message: z.string().max(32768),
});
export type Condition = z.infer<typeof Condition>;

/**
 * How a zod failure is told: the field path in the CR (`spec.destinations[0].s3.bucket`) and the
 * problem. Used for the condition message and the Event.
 */
export function describeIssues(prefix: string, error: z.ZodError): { field: string; message: string } {
  const issue = error.issues[0];
  if (!issue) return { field: prefix, message: "invalid" };
  let field = prefix;
  for (const seg of issue.path) {
    field += typeof seg === "number" ? `[${seg}]` : `.${String(seg)}`;
  }
  return { field, message: issue.message };
}
