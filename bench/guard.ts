/**
 * Bench passes that are not lost to one failure or one pause of the machine, and the point-in-time
 * restore's target.
 *
 * One phase of a bench pass, run so that its failure does not end the run (bench/run.ts): an hour of
 * figures is not lost to one writer error or one tool that exits. The failure is returned for the
 * pass's JSON and the run's exit status, and `cleanUp` stops what the phase left running. A pause of
 * the machine during the phase is returned too, so that its figures are named as suspect.
 */
export interface PhaseFailure<P extends string> {
  phase: P;
  error: string;
}

/** A move of the wall clock against the monotonic one beyond this is a pause of the machine. */
export const CLOCK_JUMP_MS = 250;

/** What became of one guarded phase: its failure, and how far the wall clock jumped, if it did. */
export interface PhaseOutcome<P extends string> {
  failure?: PhaseFailure<P>;
  /**
   * Set when the wall clock moved more than CLOCK_JUMP_MS against the monotonic one during the
   * phase: the machine was paused (a virtual machine's snapshot), and the phase's lag and times
   * include the pause.
   */
  clockJumpMs?: number;
}

/** The two clocks a phase is timed against; tests pass their own. */
export interface Clocks {
  wall(): number;
  monotonic(): number;
}

const SYSTEM_CLOCKS: Clocks = { wall: () => Date.now(), monotonic: () => performance.now() };

export async function guardPhase<P extends string>(
  phase: P,
  fn: () => Promise<void>,
  cleanUp: (err: unknown) => Promise<void>,
  clocks: Clocks = SYSTEM_CLOCKS,
): Promise<PhaseOutcome<P>> {
  const offset = (): number => clocks.wall() - clocks.monotonic();
  const before = offset();
  const out: PhaseOutcome<P> = {};
  try {
    await fn();
  } catch (err) {
    await cleanUp(err);
    out.failure = { phase, error: err instanceof Error ? err.message : String(err) };
  }
  const jump = Math.round(offset() - before);
  if (Math.abs(jump) > CLOCK_JUMP_MS) out.clockJumpMs = jump;
  return out;
}

interface PassRecord<P extends string> {
  index: number;
  failures?: ReadonlyArray<PhaseFailure<P>>;
  clockJumps?: ReadonlyArray<{ phase: P; ms: number }>;
}

/** The failures of every pass, one line each, or undefined if there were none. */
export function failureReport<P extends string>(passes: ReadonlyArray<PassRecord<P>>): string | undefined {
  const lines = passes.flatMap((r) =>
    (r.failures ?? []).map((f) => `pass ${r.index} ${f.phase}: ${f.error}`),
  );
  if (lines.length === 0) return undefined;
  return `${lines.length} phase(s) failed; their figures are the medians of the passes that finished (null in the JSON's "all"):\n  ${lines.join("\n  ")}`;
}

/** The phases during which the machine was paused, on one line, or undefined if none was. */
export function clockJumpReport<P extends string>(passes: ReadonlyArray<PassRecord<P>>): string | undefined {
  const jumps = passes.flatMap((r) =>
    (r.clockJumps ?? []).map((j) => `pass ${r.index} ${j.phase} (${j.ms} ms)`),
  );
  if (jumps.length === 0) return undefined;
  return `the wall clock jumped during ${jumps.join(", ")}: those passes' figures are suspect`;
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
