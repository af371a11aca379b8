/** Objects the operator's unit tests against the real kube-apiserver share. */

/**
 * SqliteReplica `db` in `namespace`: the StatefulSet `app`'s /data/app.db to one S3 destination `s3`
 * at `endpoint`, keys from Secret `creds` (keys `id`, `secret`); `spec` adds or replaces fields.
 */
export function s3Replica(namespace: string, endpoint: string, spec: Record<string, unknown> = {}) {
  return {
    apiVersion: "walship.dev/v1alpha1",
    kind: "SqliteReplica",
    metadata: { name: "db", namespace },
    spec: {
      statefulSetName: "app",
      database: { path: "/data/app.db", volumeName: "data" },
      destinations: [
        {
          name: "s3",
          s3: {
            bucket: "bucket",
            endpoint,
            credentials: {
              accessKeyId: { name: "creds", key: "id" },
              secretAccessKey: { name: "creds", key: "secret" },
            },
          },
        },
      ],
      ...spec,
    },
  };
}

/** The test app's StatefulSet (test/helpers/e2e.ts) scaled to 0: no pod until a test makes one. */
export function idleStatefulSet(
  appStatefulSet: (ns: string, mount: string) => Record<string, unknown>,
  namespace: string,
) {
  const sts = appStatefulSet(namespace, "/data");
  return { ...sts, spec: { ...(sts.spec as object), replicas: 0 } };
}
