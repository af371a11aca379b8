/**
 * The node's default StorageClass, as kind and k3s ship one: Rancher's local-path-provisioner (built
 * from the Go proxy by test/infra/install, run as a pod from a local image), provisioning a hostPath
 * volume per claim under `volumesDir`, whatever user the claiming pod runs as (the directories are
 * made 0777 by its helper pod). Facts (RBAC, config keys, helper pod contract) from its v0.0.30 manifests.
 */

const NS = "local-path-storage";
const SA = "local-path-provisioner-service-account";

export function storageManifests(volumesDir: string, helperImage: string): unknown[] {
  const helperPod = {
    apiVersion: "v1",
    kind: "Pod",
    metadata: { name: "helper-pod" },
    spec: {
      priorityClassName: "system-node-critical",
      tolerations: [{ key: "node.kubernetes.io/disk-pressure", operator: "Exists", effect: "NoSchedule" }],
      containers: [{ name: "helper-pod", image: helperImage, imagePullPolicy: "IfNotPresent" }],
    },
  };
  return [
    { apiVersion: "v1", kind: "Namespace", metadata: { name: NS } },
    { apiVersion: "v1", kind: "ServiceAccount", metadata: { name: SA, namespace: NS } },
    {
      apiVersion: "rbac.authorization.k8s.io/v1",
      kind: "Role",
      metadata: { name: "local-path-provisioner-role", namespace: NS },
      rules: [
        {
          apiGroups: [""],
          resources: ["pods"],
          verbs: ["get", "list", "watch", "create", "patch", "update", "delete"],
        },
      ],
    },
    {
      apiVersion: "rbac.authorization.k8s.io/v1",
      kind: "ClusterRole",
      metadata: { name: "local-path-provisioner-role" },
      rules: [
        {
          apiGroups: [""],
          resources: ["nodes", "persistentvolumeclaims", "configmaps", "pods", "pods/log"],
          verbs: ["get", "list", "watch"],
        },
        {
          apiGroups: [""],
          resources: ["persistentvolumes"],
          verbs: ["get", "list", "watch", "create", "patch", "update", "delete"],
        },
        { apiGroups: [""], resources: ["events"], verbs: ["create", "patch"] },
        { apiGroups: ["storage.k8s.io"], resources: ["storageclasses"], verbs: ["get", "list", "watch"] },
      ],
    },
    {
      apiVersion: "rbac.authorization.k8s.io/v1",
      kind: "RoleBinding",
      metadata: { name: "local-path-provisioner-bind", namespace: NS },
      roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "Role", name: "local-path-provisioner-role" },
      subjects: [{ kind: "ServiceAccount", name: SA, namespace: NS }],
    },
    {
      apiVersion: "rbac.authorization.k8s.io/v1",
      kind: "ClusterRoleBinding",
      metadata: { name: "local-path-provisioner-bind" },
      roleRef: {
        apiGroup: "rbac.authorization.k8s.io",
        kind: "ClusterRole",
        name: "local-path-provisioner-role",
      },
      subjects: [{ kind: "ServiceAccount", name: SA, namespace: NS }],
    },
    {
      apiVersion: "v1",
      kind: "ConfigMap",
      metadata: { name: "local-path-config", namespace: NS },
      data: {
        "config.json": JSON.stringify({
          nodePathMap: [{ node: "DEFAULT_PATH_FOR_NON_LISTED_NODES", paths: [volumesDir] }],
        }),
        setup: '#!/bin/sh\nset -eu\nmkdir -m 0777 -p "$VOL_DIR"\n',
        teardown: '#!/bin/sh\nset -eu\nrm -rf "$VOL_DIR"\n',
        "helperPod.yaml": JSON.stringify(helperPod),
      },
    },
    {
      apiVersion: "apps/v1",
      kind: "Deployment",
      metadata: { name: "local-path-provisioner", namespace: NS },
      spec: {
        replicas: 1,
        selector: { matchLabels: { app: "local-path-provisioner" } },
        template: {
          metadata: { labels: { app: "local-path-provisioner" } },
          spec: {
            serviceAccountName: SA,
            terminationGracePeriodSeconds: 1,
            containers: [
              {
                name: "local-path-provisioner",
                image: "walship-test/local-path-provisioner:v0.0.30",
                imagePullPolicy: "IfNotPresent",
                command: [
                  "/usr/bin/local-path-provisioner",
                  "--debug",
                  "start",
                  "--config",
                  "/etc/config/config.json",
                  "--helper-image",
                  helperImage,
                ],
                env: [
                  { name: "POD_NAMESPACE", valueFrom: { fieldRef: { fieldPath: "metadata.namespace" } } },
                  { name: "CONFIG_MOUNT_PATH", value: "/etc/config/" },
                ],
                volumeMounts: [{ name: "config-volume", mountPath: "/etc/config/" }],
              },
            ],
            volumes: [{ name: "config-volume", configMap: { name: "local-path-config" } }],
          },
        },
      },
    },
    {
      apiVersion: "storage.k8s.io/v1",
      kind: "StorageClass",
      metadata: {
        name: "local-path",
        annotations: { "storageclass.kubernetes.io/is-default-class": "true" },
      },
      provisioner: "rancher.io/local-path",
      volumeBindingMode: "WaitForFirstConsumer",
      reclaimPolicy: "Delete",
    },
  ];
}
