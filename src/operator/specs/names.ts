/** Names, labels, paths and ports Walship puts into the user's objects; pure. */

export const FIELD_MANAGER = "walship";
export const FINALIZER = "walship.dev/finalizer";
export const CONFIG_HASH_ANNOTATION = "walship.dev/config-hash";
export const SQLITE_REPLICA_LABEL = "walship.dev/sqlitereplica";
export const MANAGED_BY_LABELS = { "app.kubernetes.io/managed-by": "walship" } as const;

/** The replicator sidecar (a native sidecar: init container with restartPolicy Always). */
export const SIDECAR_CONTAINER = "walship";
/** The init container that restores a missing database before the app starts. */
export const RESTORE_CONTAINER = "walship-restore";
/** The pod volume holding the rendered config (from the owned ConfigMap). */
export const CONFIG_VOLUME = "walship-config";
export const CONFIG_DIR = "/etc/walship";
export const CONFIG_KEY = "walship.yml";
export const CONFIG_PATH = `${CONFIG_DIR}/${CONFIG_KEY}`;
/** Where a file destination's claim is mounted in the sidecar and the restore container. */
export const FILE_DESTINATIONS_DIR = "/var/lib/walship/destinations";
/** The sidecar's named port (at most 15 characters). */
export const HTTP_PORT_NAME = "walship-http";
/** The image when neither the SqliteReplica nor the operator names one. */
export const DEFAULT_IMAGE = "ghcr.io/walship/walship:latest";

/** The ConfigMap that holds a SqliteReplica's replicator config. */
export function configMapName(sqliteReplicaName: string): string {
  return `${sqliteReplicaName}-walship`;
}

/** The pod volume of a file destination's claim. */
export function fileVolumeName(destinationName: string): string {
  return `walship-dest-${destinationName}`;
}

/** Where a destination's credentials are mounted (a projected volume of its Secrets), read-only. */
export const CREDENTIALS_DIR = "/var/run/walship/credentials";

/** The pod volume holding one destination's credentials. */
export function credentialsVolumeName(destinationName: string): string {
  return `walship-creds-${destinationName}`;
}
