/**
 * `kubectl walship snapshots|generations NAME`: what each destination holds, read by the pod's own
 * sidecar with the pod's own credentials: `walship snapshots -config /etc/walship/walship.yml -json
 * DB` run in the `walship` container through pods/exec (needs create pods/exec). No credential
 * leaves the pod; the plugin sees only the listing. `parseListing` and `formatListing` are pure.
 */
import { CONFIG_PATH, SIDECAR_CONTAINER } from "../operator/specs/names.ts";
import { ErrorCodes, WalshipError } from "../shared/errors.ts";
import { bytes, cell, indentTable } from "./format.ts";
import type { PluginKube, Pod } from "./kube.ts";

export type ListingKind = "snapshots" | "generations";

/** One row of `walship snapshots -json`, with the pod it came from. */
export interface SnapshotRow {
  pod: string;
  replica: string;
  generation: string;
  index: number;
  size: number;
  created: string;
}

/** One row of `walship generations -json`, with the pod it came from. */
export interface GenerationRow {
  pod: string;
  name: string;
  generation: string;
  lag: string;
  start: string;
  end: string;
}

export type ListingRow = SnapshotRow | GenerationRow;

/** A pod whose listing could not be read, and why. */
export interface ListingProblem {
  pod: string;
  error: string;
}

/** The command run in the sidecar. */
export function listingCommand(kind: ListingKind, dbPath: string, destination?: string): string[] {
  return [
    "walship",
    kind,
    "-config",
    CONFIG_PATH,
    "-json",
    ...(destination ? ["-replica", destination] : []),
    dbPath,
  ];
}

/** The sidecar's JSON rows, each tagged with the pod; WALSHIP_ERR_KUBE when it is not that JSON. */
export function parseListing(kind: ListingKind, pod: string, stdout: string): ListingRow[] {
  let rows: unknown;
  try {
    rows = JSON.parse(stdout);
  } catch (cause) {
    throw new WalshipError(
      ErrorCodes.KUBE,
      `read ${kind} from pod ${pod}: the sidecar's answer is not JSON`,
      {
        cause,
      },
    );
  }
  if (!Array.isArray(rows)) {
    throw new WalshipError(
      ErrorCodes.KUBE,
      `read ${kind} from pod ${pod}: the sidecar's answer is not a list`,
    );
  }
  return rows.map((r) => ({ pod, ...(r as object) }) as ListingRow);
}

export function formatListing(kind: ListingKind, rows: ListingRow[], problems: ListingProblem[]): string {
  const out: string[] = [];
  if (kind === "snapshots") {
    const rs = rows as SnapshotRow[];
    out.push(
      rs.length === 0
        ? "No snapshots."
        : indentTable(
            ["POD", "DESTINATION", "GENERATION", "INDEX", "SIZE", "CREATED"],
            rs.map((r) => [
              r.pod,
              r.replica,
              r.generation,
              r.index.toString(16).padStart(8, "0"),
              bytes(r.size),
              r.created,
            ]),
            0,
          ),
    );
  } else {
    const rs = rows as GenerationRow[];
    out.push(
      rs.length === 0
        ? "No generations."
        : indentTable(
            ["POD", "DESTINATION", "GENERATION", "LAG", "START", "END"],
            rs.map((r) => [r.pod, r.name, r.generation, r.lag, r.start, r.end]),
            0,
          ),
    );
  }
  for (const p of problems) out.push(`pod ${p.pod}: not read: ${cell(p.error, 200)}`);
  return out.join("\n");
}

/**
 * Runs the listing in each chosen pod's sidecar. A pod that is not running the sidecar, or whose
 * command fails, becomes a problem (the others are still listed); no pod at all is an error.
 */
export async function collectListing(
  kube: PluginKube,
  kind: ListingKind,
  pods: Pod[],
  dbPath: string,
  destination?: string,
): Promise<{ rows: ListingRow[]; problems: ListingProblem[] }> {
  const rows: ListingRow[] = [];
  const problems: ListingProblem[] = [];
  const results = await Promise.all(
    pods.map(async (p) => {
      const name = p.metadata?.name ?? "";
      const sidecar = (p.status?.initContainerStatuses ?? []).find((c) => c.name === SIDECAR_CONTAINER);
      if (!sidecar?.state?.running) {
        return { name, error: `the ${SIDECAR_CONTAINER} container is not running` };
      }
      try {
        const r = await kube.exec(name, SIDECAR_CONTAINER, listingCommand(kind, dbPath, destination));
        if (r.exitCode !== 0) {
          return {
            name,
            error: `walship ${kind} exited ${r.exitCode}: ${r.stderr.trim() || r.stdout.trim()}`,
          };
        }
        return { name, rows: parseListing(kind, name, r.stdout) };
      } catch (err) {
        return { name, error: err instanceof Error ? err.message : String(err) };
      }
    }),
  );
  for (const r of results) {
    if ("rows" in r && r.rows) rows.push(...r.rows);
    else problems.push({ pod: r.name, error: r.error ?? "" });
  }
  return { rows, problems };
}
