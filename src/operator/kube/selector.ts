/**
 * A workload's label selector as the `labelSelector` query of a list request, pure. Pods of a
 * StatefulSet or a Deployment are found by it, as the workload's own controller finds them.
 */
import type { LabelSelector } from "./types.ts";

/**
 * `matchLabels` as `k=v` and `matchExpressions` as `k in (a,b)`, `k notin (a,b)`, `k`, `!k`, joined
 * by commas; "" for a selector that sets neither (which the callers take as "no pods", never "every
 * pod": a workload without a selector is refused by the API server anyway).
 */
export function selectorQuery(sel: LabelSelector | undefined): string {
  const parts = Object.entries(sel?.matchLabels ?? {}).map(([k, v]) => `${k}=${v}`);
  for (const e of sel?.matchExpressions ?? []) {
    const values = `(${(e.values ?? []).join(",")})`;
    if (e.operator === "In") parts.push(`${e.key} in ${values}`);
    else if (e.operator === "NotIn") parts.push(`${e.key} notin ${values}`);
    else if (e.operator === "Exists") parts.push(e.key);
    else if (e.operator === "DoesNotExist") parts.push(`!${e.key}`);
  }
  return parts.join(",");
}
