/**
 * SqliteReplica -> the replicator's config file (walship.yml, a litestream.yml that `walship
 * replicate` and `walship restore` read) and the ConfigMap that carries it. Pure.
 *
 * No secret goes into the file, nor through the environment: every credential a destination takes
 * from a Secret (credentials.ts: S3 keys, an SSH key, passphrase, password and host key, a GCS
 * service-account key, an Azure key or SAS) is named by its `*-file` key (`key-path` for the SSH key),
 * a file of a projected volume of the referenced Secrets, so no value of a Secret is ever part of the
 * text the replicator parses. Each pod replicates under its
 * own prefix, `<path>/${POD_NAME}`, so the pods of a StatefulSet never share a replica (the pod's
 * name is a DNS label from the downward API, expanded per value by the replicator).
 */
import { createHash } from "node:crypto";
import { Document, Scalar } from "yaml";
import { metricsPort, type SqliteReplicaSpec } from "../../api/v1alpha1/index.ts";
import type { ConfigMap } from "../kube/types.ts";
import { ownerReference } from "./common.ts";
import { credentialPath, destinationCredentials, setConfigKey } from "./credentials.ts";
import {
  CONFIG_KEY,
  configMapName,
  FILE_DESTINATIONS_DIR,
  MANAGED_BY_LABELS,
  SQLITE_REPLICA_LABEL,
} from "./names.ts";

/** A reference to the SqliteReplica, for labels and ownerReferences. */
export interface OwnerInfo {
  name: string;
  namespace: string;
  uid: string;
}

/** Expanded by the replicator from the env var the containers get from the downward API. */
const POD_NAME_REF = `${"$"}{POD_NAME}`;

function joinPrefix(prefix: string | undefined, leaf: string): string {
  const p = (prefix ?? "").replace(/\/+$/, "");
  return p === "" ? leaf : `${p}/${leaf}`;
}

/** The config file text. */
export function renderConfig(spec: SqliteReplicaSpec): string {
  const port = metricsPort(spec);
  const replicas = spec.destinations.map((d) => {
    const common: Record<string, unknown> = { name: d.name };
    if (d.s3) {
      const s3 = d.s3;
      Object.assign(common, { type: "s3", bucket: s3.bucket, path: joinPrefix(s3.path, POD_NAME_REF) });
      if (s3.endpoint !== undefined) common.endpoint = s3.endpoint;
      if (s3.region !== undefined) common.region = s3.region;
      if (s3.forcePathStyle !== undefined) common["force-path-style"] = s3.forcePathStyle;
      if (s3.skipVerify !== undefined) common["skip-verify"] = s3.skipVerify;
      const sse = s3.serverSideEncryption;
      if (sse?.mode === "SSE-S3") common["server-side-encryption"] = "AES256";
      if (sse?.mode === "SSE-KMS") {
        common["server-side-encryption"] = "aws:kms";
        if (sse.kmsKeyId !== undefined) common["sse-kms-key-id"] = sse.kmsKeyId;
      }
    } else if (d.sftp) {
      const sftp = d.sftp;
      Object.assign(common, {
        type: "sftp",
        host: sftp.host,
        user: sftp.user,
        path: joinPrefix(sftp.path, POD_NAME_REF),
      });
      if (sftp.insecureIgnoreHostKey === true) common["insecure-ignore-host-key"] = true;
    } else if (d.gcs) {
      const gcs = d.gcs;
      Object.assign(common, { type: "gcs", bucket: gcs.bucket, path: joinPrefix(gcs.path, POD_NAME_REF) });
      if (gcs.endpoint !== undefined) common.endpoint = gcs.endpoint;
    } else if (d.abs) {
      const abs = d.abs;
      Object.assign(common, {
        type: "abs",
        "account-name": abs.accountName,
        bucket: abs.container,
        path: joinPrefix(abs.path, POD_NAME_REF),
      });
      if (abs.endpoint !== undefined) common.endpoint = abs.endpoint;
    } else if (d.file) {
      Object.assign(common, {
        type: "file",
        path: joinPrefix(`${FILE_DESTINATIONS_DIR}/${d.name}/${d.file.path ?? ""}`, POD_NAME_REF),
      });
    }
    // Every credential is a file of the projected Secret volume, named by its config key.
    for (const c of destinationCredentials(d))
      setConfigKey(common, c.configKey, credentialPath(d.name, c.file));
    if (d.age?.allowPlaintextGenerations === true)
      setConfigKey(common, "age.allow-plaintext-generations", "true");
    common["sync-interval"] = spec.syncInterval;
    if (spec.snapshotInterval !== undefined) common["snapshot-interval"] = spec.snapshotInterval;
    common.retention = spec.retention;
    return common;
  });
  const config = {
    addr: `:${port}`,
    logging: { type: "json" },
    dbs: [{ path: spec.database.path, replicas }],
  };
  const doc = new Document(config);
  const quote = (node: unknown): void => {
    if (node instanceof Scalar && typeof node.value === "string") node.type = Scalar.QUOTE_SINGLE;
  };
  const walk = (n: unknown): void => {
    if (n && typeof n === "object" && "items" in n) {
      for (const item of (n as { items: unknown[] }).items) {
        if (item && typeof item === "object" && "value" in item && "key" in item)
          walk((item as { value: unknown }).value);
        else walk(item);
      }
    } else quote(n);
  };
  walk(doc.contents);
  return `# Generated by the walship operator from a SqliteReplica; edits are overwritten.\n${doc.toString({ lineWidth: 0 })}`;
}

/** The first 16 hex digits of the sha256 of the parts, for the pod-template annotation. */
export function configHash(parts: readonly string[]): string {
  const h = createHash("sha256");
  for (const p of parts) h.update(`${p.length}:${p}`);
  return h.digest("hex").slice(0, 16);
}

/** The owned ConfigMap holding the rendered config. */
export function buildConfigMap(owner: OwnerInfo, configText: string): ConfigMap {
  return {
    apiVersion: "v1",
    kind: "ConfigMap",
    metadata: {
      name: configMapName(owner.name),
      namespace: owner.namespace,
      labels: { ...MANAGED_BY_LABELS, [SQLITE_REPLICA_LABEL]: owner.name },
      ownerReferences: [ownerReference("SqliteReplica", owner)],
    },
    data: { [CONFIG_KEY]: configText },
  };
}
