/**
 * Admission of SqliteReplica specs by a real kube-apiserver (the CRD's schema and CEL rules), as a
 * server-side dry run. Call `destinationAdmission(base)` inside a `describe`: it starts a control
 * plane with the CRDs before the suite and stops it after (`specAdmission()` for whole specs).
 *
 *   const admit = destinationAdmission({ statefulSetName: "app", database: { ... } });
 *   const r = await admit({ name: "d", s3: { ... } });   // r.code 0 when admitted
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { after, before } from "node:test";
import { stringify } from "yaml";
import { type ControlPlane, startControlPlane } from "./controlplane.ts";
import { ROOT } from "./e2e.ts";
import type { RunResult } from "./proc.ts";

/** Admission of whole specs: `admit(spec)` dry-runs a SqliteReplica with that spec. */
export function specAdmission(): (spec: unknown) => Promise<RunResult> {
  let cp: ControlPlane;
  before(async () => {
    cp = await startControlPlane({ controllerManager: false });
    await cp.kubectl(["apply", "-f", path.join(ROOT, "crds")]);
    await cp.kubectl(["wait", "--for=condition=Established", "crd", "--all", "--timeout=60s"]);
    await cp.kubectl(["create", "namespace", "adm"]);
  });
  after(async () => {
    await cp?.stop();
  });
  return async (spec) => {
    const file = path.join(cp.dir, `r-${Math.random().toString(16).slice(2)}.yaml`);
    fs.writeFileSync(
      file,
      stringify({
        apiVersion: "walship.dev/v1alpha1",
        kind: "SqliteReplica",
        metadata: { name: "r", namespace: "adm" },
        spec,
      }),
    );
    return cp.kubectl(["apply", "--dry-run=server", "-f", file], { allowFailure: true });
  };
}

/** Admission of one destination at a time over `base` (the rest of the spec). */
export function destinationAdmission(
  base: Record<string, unknown>,
): (destination: unknown) => Promise<RunResult> {
  const admit = specAdmission();
  return (destination) => admit({ ...base, destinations: [destination] });
}
