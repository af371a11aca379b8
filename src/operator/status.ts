/**
 * Status changes go through `patchStatus(client, obj, ...transactions)` only: it re-reads the object,
 * applies the transactions to a copy of its status, derives `Ready`, skips the write when nothing
 * changed, and writes `/status` with the resourceVersion it read (optimistic lock), retrying on 409.
 * It returns the condition changes, from which the caller records Events.
 */
import { isDeepStrictEqual } from "node:util";
import type { Condition } from "../api/v1alpha1/index.ts";
import { isStatus, type KubeClient } from "./kube/client.ts";
import type { KubeObject } from "./kube/types.ts";

export interface StatusObject<S> extends KubeObject {
  status?: S;
}

export interface WithConditions {
  observedGeneration?: number;
  conditions?: Condition[];
}

export type Transaction<S> = (status: S) => void;

export interface ConditionChange {
  type: string;
  from?: Pick<Condition, "status" | "reason">;
  to: Condition;
}

/** Sets a condition; `lastTransitionTime` moves only when the status changes. */
export function setCondition(
  conditions: Condition[],
  c: Omit<Condition, "lastTransitionTime">,
  now = new Date(),
): Condition[] {
  const prev = conditions.find((x) => x.type === c.type);
  const next: Condition = {
    ...c,
    lastTransitionTime:
      prev && prev.status === c.status
        ? prev.lastTransitionTime
        : now.toISOString().replace(/\.\d{3}Z$/, "Z"),
  };
  return [...conditions.filter((x) => x.type !== c.type), next].sort((a, b) => a.type.localeCompare(b.type));
}

export function getCondition(conditions: Condition[] | undefined, type: string): Condition | undefined {
  return conditions?.find((c) => c.type === type);
}

/**
 * Ready, derived: True when Injected and Replicating are True and Degraded is not True; otherwise
 * False with the reason and message of the first condition that says why.
 */
export function deriveReady(
  conditions: Condition[],
  generation: number | undefined,
): Omit<Condition, "lastTransitionTime"> {
  const injected = getCondition(conditions, "Injected");
  const replicating = getCondition(conditions, "Replicating");
  const degraded = getCondition(conditions, "Degraded");
  const base = generation === undefined ? {} : { observedGeneration: generation };
  if (injected?.status !== "True") {
    return {
      ...base,
      type: "Ready",
      status: "False",
      reason: injected?.reason ?? "NotInjected",
      message: injected?.message ?? "",
    };
  }
  if (degraded?.status === "True") {
    return { ...base, type: "Ready", status: "False", reason: degraded.reason, message: degraded.message };
  }
  if (replicating?.status !== "True") {
    return {
      ...base,
      type: "Ready",
      status: "False",
      reason: replicating?.reason ?? "Waiting",
      message: replicating?.message ?? "",
    };
  }
  return { ...base, type: "Ready", status: "True", reason: "Replicating", message: replicating.message };
}

/** The condition changes between two lists (status or reason). */
export function conditionChanges(
  before: Condition[] | undefined,
  after: Condition[] | undefined,
): ConditionChange[] {
  const out: ConditionChange[] = [];
  for (const c of after ?? []) {
    const prev = getCondition(before, c.type);
    if (!prev || prev.status !== c.status || prev.reason !== c.reason) {
      out.push({
        type: c.type,
        ...(prev ? { from: { status: prev.status, reason: prev.reason } } : {}),
        to: c,
      });
    }
  }
  return out;
}

/**
 * Re-reads `obj` at `path`, applies the transactions to its status, derives Ready, and writes the
 * status when it changed. Returns the written object (or the fresh one when nothing changed) and the
 * condition changes.
 */
export function patchStatus<S extends WithConditions>(
  client: KubeClient,
  path: string,
  ...txs: Transaction<S>[]
): Promise<{ object: StatusObject<S>; changes: ConditionChange[]; written: boolean }> {
  return patchStatusFrom(client, path, undefined, ...txs);
}

/**
 * `patchStatus` starting from `current` (e.g. an informer's cached copy) instead of a read: no
 * request at all when the transactions change nothing; a write with `current`'s resourceVersion
 * otherwise, and on a 409 (the copy was stale) a re-read and another try.
 */
export async function patchStatusFrom<S extends WithConditions>(
  client: KubeClient,
  path: string,
  current: StatusObject<S> | undefined,
  ...txs: Transaction<S>[]
): Promise<{ object: StatusObject<S>; changes: ConditionChange[]; written: boolean }> {
  let base = current;
  for (let attempt = 0; ; attempt++) {
    const fresh = base ?? (await client.get<StatusObject<S>>(path));
    base = undefined;
    const before = (fresh.status ?? {}) as S;
    const next = structuredClone(before);
    for (const tx of txs) tx(next);
    next.conditions = setCondition(
      next.conditions ?? [],
      deriveReady(next.conditions ?? [], fresh.metadata?.generation),
    );
    if (isDeepStrictEqual(next, before)) return { object: fresh, changes: [], written: false };
    try {
      const written = await client.request<StatusObject<S>>("PUT", `${path}/status`, {
        body: { ...fresh, status: next },
      });
      return {
        object: written,
        changes: conditionChanges(before.conditions, next.conditions),
        written: true,
      };
    } catch (err) {
      if (isStatus(err, 409) && attempt < 5) continue;
      throw err;
    }
  }
}
