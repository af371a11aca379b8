/** Reading the replicator's /status: when does every destination hold everything the database has? */

import { type ReplicatorStatus, ReplicatorStatusSchema } from "../src/shared/protocol.ts";
import type { ManagedProcess } from "../test/helpers/proc.ts";

export async function readStatus(port: number): Promise<ReplicatorStatus | undefined> {
  try {
    const res = await fetch(`http://127.0.0.1:${port}/status`, { signal: AbortSignal.timeout(5_000) });
    if (!res.ok) return undefined;
    return ReplicatorStatusSchema.parse(await res.json());
  } catch {
    return undefined;
  }
}

/** The replicator's V8 heap in use and the memory V8 counts outside it (buffers), from its /metrics. */
export async function readJsMemory(
  port: number,
): Promise<{ heapMiB: number; heapTotalMiB: number; youngMiB: number; externalMiB: number } | undefined> {
  try {
    const res = await fetch(`http://127.0.0.1:${port}/metrics`, { signal: AbortSignal.timeout(5_000) });
    if (!res.ok) return undefined;
    const text = await res.text();
    const mib = (name: string) => {
      const m = new RegExp(`^${name} (\\S+)$`, "m").exec(text);
      return m ? Math.round((Number(m[1]) / 1048576) * 10) / 10 : Number.NaN;
    };
    return {
      heapMiB: mib("nodejs_heap_size_used_bytes"),
      // What V8 holds, used or not; the young generation (semi-spaces) is sized from the memory limit.
      heapTotalMiB: mib("nodejs_heap_size_total_bytes"),
      youngMiB: mib('nodejs_heap_space_size_total_bytes\\{space="new"\\}'),
      externalMiB: mib("nodejs_external_memory_bytes"),
    };
  } catch {
    return undefined;
  }
}

/** Whether every destination of every database is at the database's position, nothing pending. */
export function caughtUp(s: ReplicatorStatus): string | undefined {
  for (const db of s.databases) {
    const p = db.position;
    if (!p) return undefined;
    for (const r of db.replicas) {
      const q = r.position;
      if (!q || q.generation !== p.generation || q.index !== p.index || q.offset !== p.offset)
        return undefined;
      if (r.pendingTransactions > 0) return undefined;
    }
  }
  return s.databases.map((d) => JSON.stringify(d.position)).join(",");
}

/**
 * Waits until the destinations hold the database's position and it stays put for two polls (the
 * application has stopped). Undefined when done, else why not.
 */
export async function waitCaughtUp(
  port: number,
  rep: ManagedProcess,
  timeoutMs: number,
): Promise<string | undefined> {
  const deadline = Date.now() + timeoutMs;
  let prev: string | undefined;
  let last = "no /status answer";
  while (Date.now() < deadline) {
    if (rep.exitInfo)
      return `the replicator exited while catching up: ${JSON.stringify(rep.exitInfo)}; log ${rep.logFile}`;
    const s = await readStatus(port);
    const at = s ? caughtUp(s) : undefined;
    if (s)
      last = JSON.stringify(
        s.databases.map((d) => ({
          pos: d.position,
          replicas: d.replicas.map((r) => [r.position, r.pendingTransactions, r.lastError?.message]),
        })),
      );
    if (at !== undefined && at === prev) return undefined;
    prev = at;
    await new Promise((res) => setTimeout(res, 300));
  }
  return `the destinations did not catch up within ${timeoutMs / 1000} s: ${last}`;
}
