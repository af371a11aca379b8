/**
 * What a SqliteReplica reconciler remembers between reconciles, to skip work that would change
 * nothing: what it last applied (AppliedMemory), and the SqliteReplica versions it wrote itself
 * (OwnWrites). Losing it all (a restart) costs one apply and one read each, never a wrong result.
 */
import { createHash } from "node:crypto";
import { keyOf } from "../kube/informer.ts";
import type { KubeObject } from "../kube/types.ts";
import { isInjected } from "../specs/statefulset.ts";
import type { WorkloadObject } from "../specs/workload.ts";

/** What this process last applied for one SqliteReplica, to know when applying again changes nothing. */
interface Applied {
  crUid: string;
  stsUid: string;
  /** The hash of the ConfigMap and StatefulSet apply configurations. */
  hash: string;
  /** The StatefulSet's generation and pod template (hashed) that the apply returned. */
  stsGeneration: number | undefined;
  stsTemplateHash: string;
  at: number;
}

function templateHash(sts: WorkloadObject | undefined): string {
  return createHash("sha256")
    .update(JSON.stringify(sts?.spec?.template ?? null))
    .digest("hex");
}

export class AppliedMemory {
  /** Per SqliteReplica key: what was last applied. */
  readonly #applied = new Map<string, Applied>();
  /** Per StatefulSet key: the resourceVersion our last apply returned (its watch event is ours). */
  readonly #ownStsVersions = new Map<string, string>();

  forget(key: string): void {
    this.#applied.delete(key);
  }

  /**
   * Records a successful apply of `applyHash` to `sts` (cache key `stsKey`), which the apply returned
   * as `written`.
   */
  record(
    key: string,
    cr: KubeObject,
    sts: WorkloadObject,
    stsKey: string,
    applyHash: string,
    written: WorkloadObject | undefined,
  ): void {
    this.#applied.set(key, {
      crUid: cr.metadata?.uid ?? "",
      stsUid: sts.metadata?.uid ?? "",
      hash: applyHash,
      stsGeneration: written?.metadata?.generation,
      stsTemplateHash: templateHash(written),
      at: Date.now(),
    });
    const rv = written?.metadata?.resourceVersion;
    if (rv) this.#ownStsVersions.set(stsKey, rv);
  }

  /** True when `sts` is exactly the version our own apply wrote: its watch event brings nothing new. */
  isOwnWrite(sts: WorkloadObject): boolean {
    const rv = sts.metadata?.resourceVersion;
    return rv !== undefined && this.#ownStsVersions.get(keyOf(sts)) === rv;
  }

  /**
   * Whether the apply steps must run: never applied, something else to apply, another object of the
   * same name, the last apply older than `everyMs`, or a pod template that is not the one our apply
   * left (or no longer carries the injection of config `hash`).
   */
  mustApply(
    key: string,
    cr: KubeObject,
    sts: WorkloadObject,
    hash: string,
    applyHash: string,
    everyMs: number,
  ): boolean {
    const last = this.#applied.get(key);
    if (!last) return true;
    if (last.hash !== applyHash || last.crUid !== cr.metadata?.uid || last.stsUid !== sts.metadata?.uid) {
      return true;
    }
    if (Date.now() - last.at >= everyMs) return true;
    // A cache that has not seen our apply yet holds an older generation; otherwise the pod template
    // must be the one our apply left (a scale changes the generation, not the template).
    const gen = sts.metadata?.generation;
    if (last.stsGeneration !== undefined && gen !== undefined && gen < last.stsGeneration) return false;
    return templateHash(sts) !== last.stsTemplateHash || !isInjected(sts, hash);
  }
}

/**
 * The SqliteReplica versions this process wrote: per key, the object our last write returned and the
 * resourceVersions it supersedes (a cache still holding one of those has not seen our write yet).
 */
export class OwnWrites<T extends KubeObject> {
  readonly #written = new Map<string, { object: T; superseded: Set<string> }>();

  forget(key: string): void {
    this.#written.delete(key);
  }

  /** True when `cr` is a version this process wrote (or read before writing over it): nothing new. */
  isOwn(cr: T): boolean {
    const mine = this.#written.get(keyOf(cr));
    const rv = cr.metadata?.resourceVersion;
    if (!mine || rv === undefined || mine.object.metadata?.uid !== cr.metadata?.uid) return false;
    return mine.object.metadata?.resourceVersion === rv || mine.superseded.has(rv);
  }

  /** The freshest of `cached` and our own later write of it. */
  freshest(key: string, cached: T): T {
    const mine = this.#written.get(key);
    if (mine && mine.object.metadata?.uid === cached.metadata?.uid) {
      if (mine.superseded.has(cached.metadata?.resourceVersion ?? "")) return mine.object;
    }
    this.#written.delete(key);
    return cached;
  }

  /** Records that we wrote `before` over, and got `after` back. */
  remember(key: string, before: T, after: T): void {
    const prev = this.#written.get(key);
    const superseded =
      prev && prev.object.metadata?.uid === after.metadata?.uid ? prev.superseded : new Set<string>();
    const rv = before.metadata?.resourceVersion;
    if (rv) superseded.add(rv);
    this.#written.set(key, { object: after, superseded });
  }
}
