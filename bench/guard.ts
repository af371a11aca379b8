/**
 * Bench passes that are not lost to one failure or one pause of the machine, and the point-in-time
 * restore's target.
 *
 * One phase of a bench pass, run so that its failure does not end the run (bench/run.ts): an hour of
 * figures is not lost to one writer error or one tool that exits. The failure is returned for the
 * pass's JSON and the run's exit status, and `cleanUp` stops what the phase left running.
 */
export interface PhaseFailure<P extends string> {
  phase: P;
  error: string;
}

export async function guardPhase<P extends string>(
  phase: P,
  fn: () => Promise<void>,
  cleanUp: (phase: P, err: unknown) => Promise<void>,
): Promise<PhaseFailure<P> | undefined> {
  try {
    await fn();
    return undefined;
  } catch (err) {
    await cleanUp(phase, err);
    return { phase, error: err instanceof Error ? err.message : String(err) };
  }
}

/** The failures of every pass, one line each, or undefined if there were none. */
export function failureReport<P extends string>(
  passes: ReadonlyArray<{ index: number; failures?: ReadonlyArray<PhaseFailure<P>> }>,
): string | undefined {
  const lines = passes.flatMap((r) =>
    (r.failures ?? []).map((f) => `pass ${r.index} ${f.phase}: ${f.error}`),
  );
  if (lines.length === 0) return undefined;
  return `${lines.length} phase(s) failed; their figures are the medians of the passes that finished (null in the JSON's "all"):\n  ${lines.join("\n  ")}`;
}

/**
 * The point-in-time restore's target among commits whose wall-clock times (Date.now() read after
 * each returned, `commitWall[i]` for sequence `firstSeq + i`) are given: the millisecond before the
 * middle commit's, so the commit before it is well inside and the middle one is out however its
 * millisecond is counted; and the last sequence number at or before it. Wall-clock times, as the
 * tools stamp commits: the monotonic clock falls behind the wall clock when the machine is paused
 * (a pass of the 2026-12-05 night run expected 509 transactions and both tools restored 120 and 115).
 */
export function pointInTimeTarget(
  firstSeq: number,
  commitWall: ArrayLike<number>,
): { tsMs: number; expectedSeq: number } {
  if (commitWall.length === 0) throw new Error("point-in-time target: no commits");
  const tsMs = commitWall[Math.floor(commitWall.length / 2)]! - 1;
  let expectedSeq = firstSeq - 1;
  for (let i = 0; i < commitWall.length && commitWall[i]! <= tsMs; i++) expectedSeq = firstSeq + i;
  return { tsMs, expectedSeq };
}
