/**
 * What the Jobs that read a SqliteReplica's destinations share (the SqliteRestore Jobs, the drill
 * Job), pure: the replicator config, file destination claims (read-only) and credentials the sidecar
 * mounts, and the app pod's identity and placement.
 */
import type { SqliteReplicaSpec } from "../../api/v1alpha1/index.ts";
import type { PodSpec, Volume, VolumeMount } from "../kube/types.ts";
import { CONFIG_DIR, CONFIG_VOLUME, configMapName, FILE_DESTINATIONS_DIR, fileVolumeName } from "./names.ts";
import { credentialMounts, credentialVolumes } from "./statefulset.ts";

/** The config of SqliteReplica `replicaName`, its file destinations' claims and its credentials. */
export function destinationAccess(
  spec: SqliteReplicaSpec,
  replicaName: string,
): { mounts: VolumeMount[]; volumes: Volume[] } {
  const mounts: VolumeMount[] = [{ name: CONFIG_VOLUME, mountPath: CONFIG_DIR, readOnly: true }];
  const volumes: Volume[] = [{ name: CONFIG_VOLUME, configMap: { name: configMapName(replicaName) } }];
  for (const d of spec.destinations) {
    if (!d.file) continue;
    mounts.push({
      name: fileVolumeName(d.name),
      mountPath: `${FILE_DESTINATIONS_DIR}/${d.name}`,
      readOnly: true,
    });
    volumes.push({ name: fileVolumeName(d.name), persistentVolumeClaim: { claimName: d.file.claimName } });
  }
  mounts.push(...credentialMounts(spec));
  volumes.push(...credentialVolumes(spec));
  return { mounts, volumes };
}

/**
 * As the app: same user, group and fsGroup (file ownership), identity (workload identity for the
 * bucket), pull secrets and placement.
 */
export function asAppPod(podSpec: PodSpec | undefined): Partial<PodSpec> {
  return {
    ...(podSpec?.securityContext ? { securityContext: podSpec.securityContext } : {}),
    ...(podSpec?.serviceAccountName ? { serviceAccountName: podSpec.serviceAccountName } : {}),
    ...(podSpec?.imagePullSecrets ? { imagePullSecrets: podSpec.imagePullSecrets } : {}),
    ...(podSpec?.nodeSelector ? { nodeSelector: podSpec.nodeSelector } : {}),
    ...(podSpec?.tolerations ? { tolerations: podSpec.tolerations } : {}),
  };
}
