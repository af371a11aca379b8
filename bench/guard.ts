/**
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
