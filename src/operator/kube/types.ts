/**
 * The Kubernetes object types the operator uses, re-exported so that only src/operator/kube/ imports
 * @kubernetes/client-node (type-only here; erased at run time).
 */
export type {
  CoreV1Event as Event,
  V1ConfigMap as ConfigMap,
  V1Container as Container,
  V1Deployment as Deployment,
  V1EnvVar as EnvVar,
  V1LabelSelector as LabelSelector,
  V1Lease as Lease,
  V1ObjectMeta as ObjectMeta,
  V1OwnerReference as OwnerReference,
  V1Pod as Pod,
  V1PodSpec as PodSpec,
  V1Secret as Secret,
  V1SecurityContext as SecurityContext,
  V1StatefulSet as StatefulSet,
  V1Volume as Volume,
  V1VolumeMount as VolumeMount,
} from "@kubernetes/client-node";

/** Any object with Kubernetes metadata. */
export interface KubeObject {
  apiVersion?: string;
  kind?: string;
  metadata?: {
    name?: string;
    namespace?: string;
    uid?: string;
    resourceVersion?: string;
    generation?: number;
    creationTimestamp?: Date | string;
    deletionTimestamp?: Date | string;
    finalizers?: string[];
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    ownerReferences?: Array<{
      apiVersion: string;
      kind: string;
      name: string;
      uid: string;
      controller?: boolean;
    }>;
  };
}
