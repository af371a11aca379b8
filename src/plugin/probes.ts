/**
 * The destination self-test in `kubectl walship status` (status.ts): each destination's last probe
 * (write, read back, list and delete a probe object with the pod's own credentials), as the sidecar
 * reports it in /status, or as the operator last read it when the sidecar cannot be read now; and
 * the `DestinationReachable` condition the operator derives from them. Pure.
 *
 * The text shows a SELF-TEST column in the destinations table only when some destination reports a
 * probe (a walship without the self-test, or `probe-interval: 0s`, reports none), then one block per
 * failure with the store's error and the hint in full: the hint is what the user acts on.
 */
import type { DestinationProbeStatus } from "../api/v1alpha1/index.ts";
import type { ReplicatorStatus } from "../shared/protocol.ts";
import { cell } from "./format.ts";

type SidecarProbe = NonNullable<ReplicatorStatus["databases"][number]["replicas"][number]["probe"]>;

/** One destination's last self-test in one pod, in `-o json`. */
export interface ProbeReport {
  outcome: "ok" | "failed";
  /** When it ran (the sidecar's view only). */
  at?: string;
  step?: string;
  message?: string;
  hint?: string;
}

export function probeReport(p: SidecarProbe | DestinationProbeStatus): ProbeReport {
  return {
    outcome: p.outcome,
    ...("at" in p && p.at ? { at: p.at } : {}),
    ...(p.step ? { step: p.step } : {}),
    ...(p.message ? { message: p.message } : {}),
    ...(p.hint ? { hint: p.hint } : {}),
  };
}

/** The SELF-TEST cell: `ok`, `failed at write`, or `-` before the first probe has finished. */
export function selfTestCell(p: ProbeReport | undefined): string {
  if (!p) return "-";
  return p.outcome === "ok" ? "ok" : `failed at ${p.step ?? "probe"}`;
}

interface PodProbes {
  name: string;
  destinations: Array<{ name: string; database?: string; probe?: ProbeReport }>;
  /** The operator's view, used for a pod whose sidecar could not be read. */
  probes?: DestinationProbeStatus[];
  sidecarError?: string;
}

/** Every failed self-test: from each pod's sidecar, else from the operator's last reading. */
export function failedProbes(
  pods: readonly PodProbes[],
): Array<{ pod: string; destination: string; database?: string; probe: ProbeReport; seenBy: string }> {
  return pods.flatMap((p) => {
    const fromSidecar = p.destinations
      .filter((d) => d.probe?.outcome === "failed")
      .map((d) => ({
        pod: p.name,
        destination: d.name,
        ...(d.database !== undefined ? { database: d.database } : {}),
        probe: d.probe as ProbeReport,
        seenBy: "sidecar",
      }));
    if (p.destinations.length > 0 || !p.sidecarError) return fromSidecar;
    return (p.probes ?? [])
      .filter((x) => x.outcome === "failed")
      .map((x) => ({
        pod: p.name,
        destination: x.destination,
        ...(x.database !== undefined ? { database: x.database } : {}),
        probe: probeReport(x),
        seenBy: "operator",
      }));
  });
}

/** The lines under the destinations table: one block per failed self-test; none when all passed. */
export function probeFailureLines(pods: readonly PodProbes[]): string[] {
  const failed = failedProbes(pods);
  if (failed.length === 0) return [];
  const out = ["", "Self-test failures (DestinationReachable):"];
  for (const f of failed) {
    const where =
      f.database !== undefined ? `${f.pod} ${f.database}/${f.destination}` : `${f.pod} ${f.destination}`;
    const seen = f.seenBy === "operator" ? " (as the operator last read it)" : "";
    out.push(`  ${where}: ${f.probe.step ?? "probe"} failed${seen}: ${cell(f.probe.message, 300)}`);
    if (f.probe.hint) out.push(`    hint: ${cell(f.probe.hint, 400)}`);
  }
  return out;
}
