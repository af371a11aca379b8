/** Builds the storage client a destination's config asks for. */
import { ErrorCodes, WalshipError } from "../../shared/errors.ts";
import type { ReplicaConfig } from "../config.ts";
import type { ReplicaClient } from "./client.ts";
import { FileReplicaClient } from "./file.ts";
import { S3ReplicaClient } from "./s3.ts";

export function createReplicaClient(cfg: ReplicaConfig, where: string): ReplicaClient {
  switch (cfg.type) {
    case "file": {
      if (!cfg.file?.path) throw new WalshipError(ErrorCodes.CONFIG, `${where}: file replica needs a path`);
      return new FileReplicaClient(cfg.file.path);
    }
    case "s3": {
      if (!cfg.s3?.bucket) {
        throw new WalshipError(ErrorCodes.CONFIG, `${where}: s3 replica needs a bucket`, {
          details: { path: `${where}.bucket` },
        });
      }
      return new S3ReplicaClient(cfg.s3);
    }
    default:
      throw new WalshipError(
        ErrorCodes.CONFIG,
        `${where}: replica type "${cfg.type}" is not supported by this build yet (supported: file, s3)`,
        { details: { path: `${where}.type` } },
      );
  }
}
