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
 * The point-in-time restore's target among commits whose wall-clock times are given
 * (`startWall[i]`, Date.now() read before the transaction of sequence `firstSeq + i` began, and
 * `commitWall[i]`, read after it returned): the millisecond before the start of a transaction near
 * the middle that has a whole millisecond free before it. That transaction commits after the target
 * however a millisecond is counted, and the one before it committed in an earlier millisecond, so
 * the expected last sequence is not in doubt. (Aiming a millisecond before the middle commit's
 * `commitWall` was not enough: under load the reading after a transaction returns can come a
 * millisecond or more after its commit was published, and a tool that stamps commits as it sees
 * them rightly included it.) Wall-clock times, as the tools stamp commits: the monotonic clock falls
 * behind the wall clock when the machine is paused (a pass of the 2026-12-05 night run expected 509
 * transactions and both tools restored 120 and 115).
 */
export function pointInTimeTarget(
  firstSeq: number,
  startWall: ArrayLike<number>,
  commitWall: ArrayLike<number>,
): { tsMs: number; expectedSeq: number } {
  const n = commitWall.length;
  if (n === 0) throw new Error("point-in-time target: no commits");
  if (startWall.length !== n)
    throw new Error("point-in-time target: start and commit times differ in number");
  const free = (m: number) => m >= 1 && m < n && commitWall[m - 1]! < startWall[m]! - 1;
  const mid = Math.floor(n / 2);
  let m = -1;
  for (let d = 0; d < n && m < 0; d++) {
    if (free(mid + d)) m = mid + d;
    else if (free(mid - d)) m = mid - d;
  }
  if (m < 0) throw new Error("point-in-time target: no transaction with a whole millisecond free before it");
  return { tsMs: startWall[m]! - 1, expectedSeq: firstSeq + m - 1 };
}
