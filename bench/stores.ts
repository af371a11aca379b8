/**
 * The benchmark's own view of a replica's store, apart from either tool's code: list the keys under
 * a prefix (with StartAfter, as ListObjectsV2 takes it), read one object whole, delete a prefix. One
 * reader per kind of destination:
 *
 * - `s3`: the AWS SDK against the bench's MinIO;
 * - `gcs`: the JSON API of fake-gcs-server, by plain `fetch`;
 * - `abs`: `@azure/storage-blob` against Azurite, with the account key;
 * - `dir`: an SFTP server's chroot on this machine, read straight from the disk (what the server
 *   stores is what a client would list; no SSH session is spent on watching).
 *
 * A spec is plain data, so the decoder worker (bench/decoder.ts) opens its own reader from it.
 */
import { readdirSync, readFileSync, readlinkSync, rmSync, statSync } from "node:fs";
import { Agent as HttpsAgent } from "node:https";
import path from "node:path";
import { DeleteObjectsCommand, GetObjectCommand, ListObjectsV2Command, S3Client } from "@aws-sdk/client-s3";

export interface S3Access {
  endpoint: string;
  region: string;
  accessKeyId: string;
  secretAccessKey: string;
  /** With BENCH_TLS: the certificate of the store (PEM file) to trust. */
  caFile?: string;
}

export type StoreSpec =
  | { kind: "s3"; access: S3Access; bucket: string }
  | { kind: "gcs"; endpoint: string; bucket: string }
  | { kind: "abs"; endpoint: string; account: string; key: string; container: string }
  | { kind: "dir"; root: string };

export interface Listing {
  contents: Array<{ key: string; size: number }>;
  /** With a delimiter: the "directories" one level down, each ending in the delimiter. */
  common: string[];
}

export interface StoreReader {
  /** Keys under `prefix` after `startAfter` (exclusive), in key order. */
  list(prefix: string, startAfter?: string, delimiter?: "/"): Promise<Listing>;
  get(key: string): Promise<Buffer>;
  deletePrefix(prefix: string): Promise<void>;
  close(): void;
}

/** A reader for `spec`. */
export async function openStore(spec: StoreSpec): Promise<StoreReader> {
  switch (spec.kind) {
    case "s3":
      return s3Reader(spec.access, spec.bucket);
    case "gcs":
      return gcsReader(spec.endpoint, spec.bucket);
    case "abs":
      return absReader(spec);
    case "dir":
      return dirReader(spec.root);
  }
}

/** An SDK client for the bench's MinIO (path-style, its keys, its certificate with BENCH_TLS). */
export function s3Client(access: S3Access): S3Client {
  return new S3Client({
    endpoint: access.endpoint,
    region: access.region,
    forcePathStyle: true,
    credentials: { accessKeyId: access.accessKeyId, secretAccessKey: access.secretAccessKey },
    ...(access.caFile
      ? { requestHandler: { httpsAgent: new HttpsAgent({ ca: readFileSync(access.caFile) }) } }
      : {}),
  });
}

function s3Reader(access: S3Access, bucket: string): StoreReader {
  const client = s3Client(access);
  const reader: StoreReader = {
    async list(prefix, startAfter, delimiter) {
      const out: Listing = { contents: [], common: [] };
      let token: string | undefined;
      do {
        const res = await client.send(
          new ListObjectsV2Command({
            Bucket: bucket,
            Prefix: prefix,
            StartAfter: token === undefined ? startAfter : undefined,
            ContinuationToken: token,
            Delimiter: delimiter,
          }),
        );
        for (const c of res.Contents ?? []) out.contents.push({ key: c.Key!, size: c.Size ?? 0 });
        for (const p of res.CommonPrefixes ?? []) out.common.push(p.Prefix!);
        token = res.IsTruncated ? res.NextContinuationToken : undefined;
      } while (token !== undefined);
      return out;
    },
    async get(key) {
      const res = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
      return Buffer.from(await res.Body!.transformToByteArray());
    },
    async deletePrefix(prefix) {
      const { contents } = await reader.list(prefix);
      for (let i = 0; i < contents.length; i += 1000) {
        const Objects = contents.slice(i, i + 1000).map((c) => ({ Key: c.key }));
        await client.send(new DeleteObjectsCommand({ Bucket: bucket, Delete: { Objects } }));
      }
    },
    close() {
      client.destroy();
    },
  };
  return reader;
}

/** fake-gcs-server's JSON API: `GET /storage/v1/b/B/o`, `?alt=media`, `DELETE`. */
function gcsReader(endpoint: string, bucket: string): StoreReader {
  const objects = `${endpoint}/storage/v1/b/${encodeURIComponent(bucket)}/o`;
  const checked = async (res: Response, what: string): Promise<Response> => {
    if (!res.ok) throw new Error(`gcs ${what}: HTTP ${res.status} ${(await res.text()).slice(0, 200)}`);
    return res;
  };
  const reader: StoreReader = {
    async list(prefix, startAfter, delimiter) {
      const out: Listing = { contents: [], common: [] };
      let token: string | undefined;
      do {
        const q = new URLSearchParams({ prefix });
        if (delimiter) q.set("delimiter", delimiter);
        // startOffset is inclusive: the key itself is dropped below.
        if (startAfter) q.set("startOffset", startAfter);
        if (token) q.set("pageToken", token);
        const res = await checked(await fetch(`${objects}?${q}`), `list ${prefix}`);
        const body = (await res.json()) as {
          items?: Array<{ name: string; size: string }>;
          prefixes?: string[];
          nextPageToken?: string;
        };
        for (const o of body.items ?? []) {
          if (startAfter === undefined || o.name > startAfter) {
            out.contents.push({ key: o.name, size: Number(o.size) });
          }
        }
        out.common.push(...(body.prefixes ?? []));
        token = body.nextPageToken || undefined;
      } while (token !== undefined);
      out.contents.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
      return out;
    },
    async get(key) {
      const res = await checked(await fetch(`${objects}/${encodeURIComponent(key)}?alt=media`), `get ${key}`);
      return Buffer.from(await res.arrayBuffer());
    },
    async deletePrefix(prefix) {
      for (const c of (await reader.list(prefix)).contents) {
        const res = await fetch(`${objects}/${encodeURIComponent(c.key)}`, { method: "DELETE" });
        if (!res.ok && res.status !== 404) await checked(res, `delete ${c.key}`);
      }
    },
    close() {},
  };
  return reader;
}

async function absReader(spec: Extract<StoreSpec, { kind: "abs" }>): Promise<StoreReader> {
  const { BlobServiceClient, StorageSharedKeyCredential } = await import("@azure/storage-blob");
  const service = new BlobServiceClient(
    spec.endpoint,
    new StorageSharedKeyCredential(spec.account, spec.key),
  );
  const container = service.getContainerClient(spec.container);
  const reader: StoreReader = {
    async list(prefix, startAfter, delimiter) {
      // Blob listings have no StartAfter: the keys up to it are dropped here.
      const out: Listing = { contents: [], common: [] };
      const after = (k: string) => startAfter === undefined || k > startAfter;
      if (delimiter) {
        for await (const item of container.listBlobsByHierarchy(delimiter, { prefix })) {
          if (item.kind === "prefix") out.common.push(item.name);
          else if (after(item.name))
            out.contents.push({ key: item.name, size: item.properties.contentLength ?? 0 });
        }
      } else {
        for await (const b of container.listBlobsFlat({ prefix })) {
          if (after(b.name)) out.contents.push({ key: b.name, size: b.properties.contentLength ?? 0 });
        }
      }
      return out;
    },
    async get(key) {
      return container.getBlobClient(key).downloadToBuffer();
    },
    async deletePrefix(prefix) {
      for (const c of (await reader.list(prefix)).contents) {
        await container.getBlobClient(c.key).deleteIfExists();
      }
    },
    close() {},
  };
  return reader;
}

/**
 * The files an SSH server process (sshd and its sessions, which run `internal-sftp`, or an
 * `sftp-server`) holds open: an object still being written. Litestream v0.3.13 writes its SFTP
 * objects in place, so a file listed while open is not yet stored.
 */
function openBySshServer(): Set<string> {
  const open = new Set<string>();
  for (const pid of readdirSync("/proc")) {
    if (!/^\d+$/.test(pid)) continue;
    try {
      const comm = readFileSync(`/proc/${pid}/comm`, "utf8").trim();
      if (!comm.startsWith("sshd") && !comm.startsWith("sftp")) continue;
      for (const fd of readdirSync(`/proc/${pid}/fd`)) {
        try {
          open.add(readlinkSync(`/proc/${pid}/fd/${fd}`));
        } catch {
          // closed meanwhile
        }
      }
    } catch {
      // exited meanwhile
    }
  }
  return open;
}

/**
 * A directory tree as a store: keys are paths below `root` joined by `/`. Names ending in `.tmp`
 * (Walship's SFTP uploads before their rename) are left out, as Litestream's listing leaves them,
 * and so are files the SSH server still holds open (see openBySshServer).
 */
function dirReader(root: string): StoreReader {
  const under = (prefix: string): string => path.join(root, prefix.slice(0, prefix.lastIndexOf("/") + 1));
  const walk = (dir: string, rel: string, out: Listing["contents"]): void => {
    let names: string[];
    try {
      names = readdirSync(dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return;
      throw err;
    }
    for (const name of names) {
      const full = path.join(dir, name);
      let st: ReturnType<typeof statSync>;
      try {
        st = statSync(full);
      } catch {
        continue; // renamed or removed since the readdir
      }
      if (st.isDirectory()) walk(full, `${rel}${name}/`, out);
      else if (!name.endsWith(".tmp")) out.push({ key: `${rel}${name}`, size: st.size });
    }
  };
  const reader: StoreReader = {
    async list(prefix, startAfter, delimiter) {
      const out: Listing = { contents: [], common: [] };
      const base = prefix.slice(0, prefix.lastIndexOf("/") + 1);
      const dir = under(prefix);
      if (delimiter) {
        let names: string[] = [];
        try {
          names = readdirSync(dir);
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
        }
        for (const name of names) {
          const key = `${base}${name}`;
          if (!key.startsWith(prefix)) continue;
          let st: ReturnType<typeof statSync>;
          try {
            st = statSync(path.join(dir, name));
          } catch {
            continue;
          }
          if (st.isDirectory()) out.common.push(`${key}/`);
          else if (!name.endsWith(".tmp") && (startAfter === undefined || key > startAfter)) {
            out.contents.push({ key, size: st.size });
          }
        }
      } else {
        const all: Listing["contents"] = [];
        walk(dir, base, all);
        const fresh = all
          .filter((c) => c.key.startsWith(prefix) && (startAfter === undefined || c.key > startAfter))
          .sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
        // /proc is read only when there is something new to list (this runs every 20 ms).
        const open = fresh.length ? openBySshServer() : new Set<string>();
        for (const c of fresh) {
          // Listed in key order and consumed in order: nothing after a file still open is listed.
          if (open.has(path.join(root, c.key))) break;
          out.contents.push(c);
        }
      }
      out.contents.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
      out.common.sort();
      return out;
    },
    async get(key) {
      return readFileSync(path.join(root, key));
    },
    async deletePrefix(prefix) {
      if (!prefix.replace(/\/+$/, ""))
        throw new Error("delete prefix: an empty prefix would delete the whole store");
      rmSync(path.join(root, prefix), { recursive: true, force: true });
    },
    close() {},
  };
  return reader;
}
