/** Fixtures shared by the end-to-end suites (operator, restore, chart). */

/**
 * The test app as a StatefulSet: one pod of the `walship-test/app:1` image serving its SQLite
 * database from a volumeClaimTemplate named `data` mounted at `mount`, ready once it serves /ready.
 */
export function appStatefulSet(namespace: string, mount: string): Record<string, unknown> {
  return {
    apiVersion: "apps/v1",
    kind: "StatefulSet",
    metadata: { name: "app", namespace },
    spec: {
      serviceName: "app",
      replicas: 1,
      selector: { matchLabels: { app: "app" } },
      template: {
        metadata: { labels: { app: "app" } },
        spec: {
          terminationGracePeriodSeconds: 10,
          containers: [
            {
              name: "app",
              image: "walship-test/app:1",
              args: ["serve"],
              env: [{ name: "DATA_DIR", value: mount }],
              volumeMounts: [{ name: "data", mountPath: mount }],
              readinessProbe: { httpGet: { path: "/ready", port: 8080 }, periodSeconds: 1 },
            },
          ],
        },
      },
      volumeClaimTemplates: [
        {
          metadata: { name: "data" },
          spec: { accessModes: ["ReadWriteOnce"], resources: { requests: { storage: "1Gi" } } },
        },
      ],
    },
  };
}
