/**
 * Status changes go through `patchStatusFrom(client, path, object, transactions)` only: it applies the
 * transactions to a copy of the object's status, derives what follows from them (the SqliteReplica's
 * `Ready`), skips the write when nothing changed, and writes `/status` with the resourceVersion it
 * started from (optimistic lock), re-reading and retrying on 409. It returns the condition changes,
 * from which the caller records Events.
 */
import { isDeepStrictEqual } from "node:util";
import type { Condition } from "../api/v1alpha1/index.ts";
import { isoSeconds } from "../shared/format.ts";
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
    lastTransitionTime: prev && prev.status === c.status ? prev.lastTransitionTime : isoSeconds(now),
  };
  return [...conditions.filter((x) => x.type !== c.type), next].sort((a, b) => a.type.localeCompare(b.type));
}

export function getCondition(
  conditions: readonly Condition[] | undefined,
  type: string,
): Condition | undefined {
  return conditions?.find((c) => c.type === type);
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

export interface PatchOptions<S> {
  /**
   * Runs after the transactions, on the status about to be written, with the object's
   * `.metadata.generation`: what is derived from the rest (the SqliteReplica's Ready condition).
   */
  derive?: (status: S, generation: number | undefined) => void;
  /**
   * How many times a 409 (the copy was stale) re-reads the object and applies the transactions again
   * (default 5). 0: the 409 is thrown, for transactions decided from the copy they were given.
   */
  conflictRetries?: number;
}

/**
 * Applies the transactions to the status of `current` (e.g. an informer's cached copy; read from
 * `path` when undefined), derives what follows (`opts.derive`), and writes `/status` when it changed,
 * with the resourceVersion it started from (an optimistic lock); on a 409 re-reads and tries again
 * (`opts.conflictRetries`). No request at all when a given copy's status would not change. Returns
 * the written object (or the one read, when nothing changed) and the condition changes.
 */
export async function patchStatusFrom<S extends WithConditions>(
  client: KubeClient,
  path: string,
  current: StatusObject<S> | undefined,
  txs: readonly Transaction<S>[],
  opts: PatchOptions<S> = {},
): Promise<{ object: StatusObject<S>; changes: ConditionChange[]; written: boolean }> {
  const retries = opts.conflictRetries ?? 5;
  let base = current;
  for (let attempt = 0; ; attempt++) {
    const fresh = base ?? (await client.get<StatusObject<S>>(path));
    base = undefined;
    const before = (fresh.status ?? {}) as S;
    const next = structuredClone(before);
    for (const tx of txs) tx(next);
    opts.derive?.(next, fresh.metadata?.generation);
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
      if (isStatus(err, 409) && attempt < retries) continue;
      throw err;
    }
  }
}
