/**
 * A container's environment and a pod's volumes, built from the pod spec and the ConfigMaps,
 * Secrets and service account tokens the API server holds.
 */
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import type {
  V1ConfigMap,
  V1Container,
  V1KeyToPath,
  V1ObjectFieldSelector,
  V1Pod,
  V1ResourceFieldSelector,
  V1Secret,
  V1Volume,
} from "@kubernetes/client-node";

/** Reads the objects a pod refers to; `undefined` means the object does not exist. */
export interface ObjectSource {
  configMap(namespace: string, name: string): Promise<V1ConfigMap | undefined>;
  secret(namespace: string, name: string): Promise<V1Secret | undefined>;
  token(pod: V1Pod, audience: string | undefined, expirationSeconds: number | undefined): Promise<string>;
}

/** A container cannot be configured yet (a missing ConfigMap, key or Secret): Kubernetes' CreateContainerConfigError. */
export class ConfigError extends Error {
  readonly reason: string;
  constructor(reason: string, message: string) {
    super(message);
    this.reason = reason;
  }
}

/** Node facts the downward API can show. */
export interface NodeFacts {
  nodeName: string;
  hostIP: string;
  cpu: string;
  memory: string;
}

/** Kubernetes' `$(VAR)` expansion: defined names are replaced, `$$` escapes, the rest stays. */
export function expandVars(s: string, env: Record<string, string>): string {
  return s.replace(/\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)/g, (m, name: string | undefined) => {
    if (m === "$$") return "$";
    return name !== undefined && Object.hasOwn(env, name) ? (env[name] as string) : m;
  });
}

const quantityUnits: Record<string, number> = {
  "": 1,
  m: 1e-3,
  k: 1e3,
  M: 1e6,
  G: 1e9,
  T: 1e12,
  P: 1e15,
  E: 1e18,
  Ki: 2 ** 10,
  Mi: 2 ** 20,
  Gi: 2 ** 30,
  Ti: 2 ** 40,
  Pi: 2 ** 50,
  Ei: 2 ** 60,
};

/** Parses a resource quantity ("500m", "2Gi", "1e3") into a number. */
export function parseQuantity(q: string): number {
  const m = /^([0-9.]+(?:[eE][-+]?[0-9]+)?)([a-zA-Z]*)$/.exec(q.trim());
  const unit = m === null ? undefined : quantityUnits[m[2] ?? ""];
  if (m === null || unit === undefined)
    throw new ConfigError("CreateContainerConfigError", `bad quantity ${q}`);
  return Number(m[1]) * unit;
}

function resourceValue(
  pod: V1Pod,
  sel: V1ResourceFieldSelector,
  fallback: V1Container | undefined,
  node: NodeFacts,
) {
  const c =
    sel.containerName !== undefined
      ? [...(pod.spec?.containers ?? []), ...(pod.spec?.initContainers ?? [])].find(
          (x) => x.name === sel.containerName,
        )
      : fallback;
  const [kind, res] = sel.resource.split(".", 2) as [string, string];
  const table = kind === "requests" ? c?.resources?.requests : c?.resources?.limits;
  let raw = table?.[res];
  if (raw === undefined) {
    if (kind === "requests") raw = "0";
    else raw = res === "cpu" ? node.cpu : res === "memory" ? node.memory : "0";
  }
  const divisor = parseQuantity(String(sel.divisor ?? "1"));
  return String(Math.ceil(parseQuantity(String(raw)) / divisor));
}

function fieldValue(pod: V1Pod, sel: V1ObjectFieldSelector, podIP: string, node: NodeFacts): string {
  const f = sel.fieldPath;
  const sub = /^metadata\.(labels|annotations)\['(.+)'\]$/.exec(f);
  if (sub !== null) {
    const table = sub[1] === "labels" ? pod.metadata?.labels : pod.metadata?.annotations;
    return table?.[sub[2] as string] ?? "";
  }
  switch (f) {
    case "metadata.name":
      return pod.metadata?.name ?? "";
    case "metadata.namespace":
      return pod.metadata?.namespace ?? "";
    case "metadata.uid":
      return pod.metadata?.uid ?? "";
    case "metadata.labels":
    case "metadata.annotations": {
      const table = (f === "metadata.labels" ? pod.metadata?.labels : pod.metadata?.annotations) ?? {};
      return Object.keys(table)
        .sort()
        .map((k) => `${k}=${JSON.stringify(table[k])}`)
        .join("\n");
    }
    case "spec.nodeName":
      return node.nodeName;
    case "spec.serviceAccountName":
      return pod.spec?.serviceAccountName ?? "default";
    case "status.hostIP":
    case "status.hostIPs":
      return node.hostIP;
    case "status.podIP":
    case "status.podIPs":
      return podIP;
    default:
      throw new ConfigError("CreateContainerConfigError", `unsupported fieldRef ${f}`);
  }
}

async function needConfigMap(src: ObjectSource, ns: string, name: string, optional: boolean | undefined) {
  const cm = await src.configMap(ns, name);
  if (cm === undefined && optional !== true) {
    throw new ConfigError("CreateContainerConfigError", `configmap "${name}" not found`);
  }
  return cm;
}

async function needSecret(src: ObjectSource, ns: string, name: string, optional: boolean | undefined) {
  const s = await src.secret(ns, name);
  if (s === undefined && optional !== true) {
    throw new ConfigError("CreateContainerConfigError", `secret "${name}" not found`);
  }
  return s;
}

function secretString(s: V1Secret, key: string): string | undefined {
  const v = s.data?.[key];
  return v === undefined ? undefined : Buffer.from(v, "base64").toString("utf8");
}

/**
 * The container's environment as Kubernetes builds it: image env, then envFrom (in order, with
 * prefixes), then env (in order, `$(VAR)` expanded against what came before).
 */
export async function containerEnv(
  pod: V1Pod,
  c: V1Container,
  base: Record<string, string>,
  podIP: string,
  node: NodeFacts,
  src: ObjectSource,
): Promise<Record<string, string>> {
  const ns = pod.metadata?.namespace ?? "default";
  const env: Record<string, string> = { ...base };
  for (const from of c.envFrom ?? []) {
    const prefix = from.prefix ?? "";
    if (from.configMapRef !== undefined) {
      const cm = await needConfigMap(src, ns, from.configMapRef.name ?? "", from.configMapRef.optional);
      for (const [k, v] of Object.entries(cm?.data ?? {})) env[prefix + k] = v;
    }
    if (from.secretRef !== undefined) {
      const s = await needSecret(src, ns, from.secretRef.name ?? "", from.secretRef.optional);
      for (const k of Object.keys(s?.data ?? {})) env[prefix + k] = secretString(s as V1Secret, k) ?? "";
    }
  }
  for (const e of c.env ?? []) {
    if (e.valueFrom === undefined) {
      env[e.name] = expandVars(e.value ?? "", env);
      continue;
    }
    const vf = e.valueFrom;
    if (vf.configMapKeyRef !== undefined) {
      const ref = vf.configMapKeyRef;
      const cm = await needConfigMap(src, ns, ref.name ?? "", ref.optional);
      const v = cm?.data?.[ref.key];
      if (v === undefined && cm !== undefined && ref.optional !== true) {
        throw new ConfigError(
          "CreateContainerConfigError",
          `key "${ref.key}" not in configmap "${ref.name}"`,
        );
      }
      if (v !== undefined) env[e.name] = v;
    } else if (vf.secretKeyRef !== undefined) {
      const ref = vf.secretKeyRef;
      const s = await needSecret(src, ns, ref.name ?? "", ref.optional);
      const v = s === undefined ? undefined : secretString(s, ref.key);
      if (v === undefined && s !== undefined && ref.optional !== true) {
        throw new ConfigError("CreateContainerConfigError", `key "${ref.key}" not in secret "${ref.name}"`);
      }
      if (v !== undefined) env[e.name] = v;
    } else if (vf.fieldRef !== undefined) {
      env[e.name] = fieldValue(pod, vf.fieldRef, podIP, node);
    } else if (vf.resourceFieldRef !== undefined) {
      env[e.name] = resourceValue(pod, vf.resourceFieldRef, c, node);
    }
  }
  return env;
}

/** A file a volume shows: relative path, content, permission bits. */
interface VolumeFile {
  path: string;
  data: Buffer;
  mode: number;
}

function keyFiles(
  entries: Record<string, Buffer>,
  items: V1KeyToPath[] | undefined,
  defaultMode: number,
  what: string,
  optional: boolean | undefined,
): VolumeFile[] {
  if (items === undefined || items.length === 0) {
    return Object.entries(entries).map(([k, data]) => ({ path: k, data, mode: defaultMode }));
  }
  const out: VolumeFile[] = [];
  for (const it of items) {
    const data = entries[it.key];
    if (data === undefined) {
      if (optional === true) continue;
      throw new ConfigError("FailedMount", `key "${it.key}" not in ${what}`);
    }
    out.push({ path: it.path, data, mode: it.mode ?? defaultMode });
  }
  return out;
}

function configMapEntries(cm: V1ConfigMap | undefined): Record<string, Buffer> {
  const out: Record<string, Buffer> = {};
  for (const [k, v] of Object.entries(cm?.data ?? {})) out[k] = Buffer.from(v, "utf8");
  for (const [k, v] of Object.entries(cm?.binaryData ?? {})) out[k] = Buffer.from(v, "base64");
  return out;
}

function secretEntries(s: V1Secret | undefined): Record<string, Buffer> {
  const out: Record<string, Buffer> = {};
  for (const [k, v] of Object.entries(s?.data ?? {})) out[k] = Buffer.from(v, "base64");
  return out;
}

/** The files of a configMap, secret, downwardAPI or projected volume. */
async function volumeFiles(
  pod: V1Pod,
  vol: V1Volume,
  podIP: string,
  node: NodeFacts,
  src: ObjectSource,
): Promise<VolumeFile[]> {
  const ns = pod.metadata?.namespace ?? "default";
  const downward = (
    items: {
      path: string;
      fieldRef?: V1ObjectFieldSelector;
      resourceFieldRef?: V1ResourceFieldSelector;
      mode?: number;
    }[],
    mode: number,
  ): VolumeFile[] =>
    items.map((it) => ({
      path: it.path,
      mode: it.mode ?? mode,
      data: Buffer.from(
        it.fieldRef !== undefined
          ? fieldValue(pod, it.fieldRef, podIP, node)
          : it.resourceFieldRef !== undefined
            ? resourceValue(pod, it.resourceFieldRef, undefined, node)
            : "",
      ),
    }));
  if (vol.configMap !== undefined) {
    const v = vol.configMap;
    const cm = await needConfigMap(src, ns, v.name ?? "", v.optional);
    return keyFiles(
      configMapEntries(cm),
      v.items,
      v.defaultMode ?? 0o644,
      `configmap "${v.name}"`,
      v.optional,
    );
  }
  if (vol.secret !== undefined) {
    const v = vol.secret;
    const s = await needSecret(src, ns, v.secretName ?? "", v.optional);
    return keyFiles(
      secretEntries(s),
      v.items,
      v.defaultMode ?? 0o644,
      `secret "${v.secretName}"`,
      v.optional,
    );
  }
  if (vol.downwardAPI !== undefined) {
    return downward(vol.downwardAPI.items ?? [], vol.downwardAPI.defaultMode ?? 0o644);
  }
  const p = vol.projected;
  if (p === undefined) return [];
  const mode = p.defaultMode ?? 0o644;
  const out: VolumeFile[] = [];
  for (const s of p.sources ?? []) {
    if (s.configMap !== undefined) {
      const cm = await needConfigMap(src, ns, s.configMap.name ?? "", s.configMap.optional);
      out.push(
        ...keyFiles(
          configMapEntries(cm),
          s.configMap.items,
          mode,
          `configmap "${s.configMap.name}"`,
          s.configMap.optional,
        ),
      );
    } else if (s.secret !== undefined) {
      const sec = await needSecret(src, ns, s.secret.name ?? "", s.secret.optional);
      out.push(
        ...keyFiles(secretEntries(sec), s.secret.items, mode, `secret "${s.secret.name}"`, s.secret.optional),
      );
    } else if (s.downwardAPI !== undefined) {
      out.push(...downward(s.downwardAPI.items ?? [], mode));
    } else if (s.serviceAccountToken !== undefined) {
      const t = s.serviceAccountToken;
      out.push({
        path: t.path,
        mode,
        data: Buffer.from(await src.token(pod, t.audience, t.expirationSeconds)),
      });
    }
  }
  return out;
}

/**
 * Writes a volume's files the way the kubelet does, so that readers never see half an update:
 * the files live in `..<stamp>/`, `..data` links to it, and each top-level name links into `..data`.
 * Returns false when the content did not change.
 */
function writeAtomic(dir: string, files: VolumeFile[], lastHash: Map<string, string>): boolean {
  const h = createHash("sha256");
  for (const f of [...files].sort((a, b) => a.path.localeCompare(b.path))) {
    h.update(`${f.path}\0${f.mode}\0`).update(f.data).update("\0");
  }
  const digest = h.digest("hex");
  if (lastHash.get(dir) === digest && fs.existsSync(path.join(dir, "..data"))) return false;
  fs.mkdirSync(dir, { recursive: true });
  const stamp = `..${new Date().toISOString().replace(/[:.]/g, "_")}.${digest.slice(0, 8)}`;
  const stampDir = path.join(dir, stamp);
  fs.rmSync(stampDir, { recursive: true, force: true });
  for (const f of files) {
    const p = path.join(stampDir, f.path);
    fs.mkdirSync(path.dirname(p), { recursive: true });
    fs.writeFileSync(p, f.data, { mode: f.mode });
    fs.chmodSync(p, f.mode);
  }
  fs.mkdirSync(stampDir, { recursive: true });
  const old = fs.existsSync(path.join(dir, "..data")) ? fs.readlinkSync(path.join(dir, "..data")) : undefined;
  fs.rmSync(path.join(dir, "..data_tmp"), { force: true });
  fs.symlinkSync(stamp, path.join(dir, "..data_tmp"));
  fs.renameSync(path.join(dir, "..data_tmp"), path.join(dir, "..data"));
  const tops = new Set(files.map((f) => f.path.split("/")[0] as string));
  for (const t of tops) {
    const link = path.join(dir, t);
    if (!fs.existsSync(link)) fs.symlinkSync(path.join("..data", t), link);
  }
  for (const e of fs.readdirSync(dir)) {
    if (!e.startsWith("..") && !tops.has(e)) fs.rmSync(path.join(dir, e), { recursive: true, force: true });
  }
  if (old !== undefined && old !== stamp) fs.rmSync(path.join(dir, old), { recursive: true, force: true });
  lastHash.set(dir, digest);
  return true;
}

/** Where a pod volume lives on the host. */
export interface VolumeSource {
  hostPath: string;
  /** The volume is read-only whatever the mount says (secret, configMap, projected, downwardAPI). */
  readOnly: boolean;
}

export interface VolumeContext {
  pod: V1Pod;
  podDir: string;
  podIP: string;
  node: NodeFacts;
  src: ObjectSource;
  /** The host directory of a PVC, created and bound by the kubelet. */
  claimDir(namespace: string, claimName: string): Promise<string>;
  /** Content hashes of written volumes, to skip rewriting unchanged files. */
  hashes: Map<string, string>;
}

/** Prepares (or refreshes) every volume of a pod; returns name to host path. */
export async function setupVolumes(ctx: VolumeContext): Promise<Map<string, VolumeSource>> {
  const out = new Map<string, VolumeSource>();
  const ns = ctx.pod.metadata?.namespace ?? "default";
  for (const vol of ctx.pod.spec?.volumes ?? []) {
    const dir = path.join(ctx.podDir, "volumes", vol.name);
    if (vol.emptyDir !== undefined) {
      fs.mkdirSync(dir, { recursive: true });
      out.set(vol.name, { hostPath: dir, readOnly: false });
    } else if (vol.persistentVolumeClaim !== undefined) {
      const hostPath = await ctx.claimDir(ns, vol.persistentVolumeClaim.claimName);
      out.set(vol.name, { hostPath, readOnly: vol.persistentVolumeClaim.readOnly === true });
    } else if (vol.ephemeral !== undefined) {
      const hostPath = await ctx.claimDir(ns, `${ctx.pod.metadata?.name}-${vol.name}`);
      out.set(vol.name, { hostPath, readOnly: false });
    } else if (vol.hostPath !== undefined) {
      const t = vol.hostPath.type ?? "";
      if (t === "DirectoryOrCreate") fs.mkdirSync(vol.hostPath.path, { recursive: true });
      if (t === "FileOrCreate" && !fs.existsSync(vol.hostPath.path)) fs.writeFileSync(vol.hostPath.path, "");
      if (!fs.existsSync(vol.hostPath.path)) {
        throw new ConfigError(
          "FailedMount",
          `hostPath ${vol.hostPath.path} of volume "${vol.name}" does not exist`,
        );
      }
      out.set(vol.name, { hostPath: vol.hostPath.path, readOnly: false });
    } else if (vol.configMap || vol.secret || vol.downwardAPI || vol.projected) {
      const files = await volumeFiles(ctx.pod, vol, ctx.podIP, ctx.node, ctx.src);
      writeAtomic(dir, files, ctx.hashes);
      out.set(vol.name, { hostPath: dir, readOnly: true });
    } else {
      throw new ConfigError(
        "FailedMount",
        `volume "${vol.name}" has a type the process kubelet does not support`,
      );
    }
  }
  return out;
}
