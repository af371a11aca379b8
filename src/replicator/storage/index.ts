/** Builds the storage client a destination's config asks for. */
import { ErrorCodes, WalshipError } from "../../shared/errors.ts";
import type { ReplicaConfig } from "../config.ts";
import type { ReplicaClient } from "./client.ts";
import { FileReplicaClient } from "./file.ts";

export function createReplicaClient(cfg: ReplicaConfig, where: string): ReplicaClient {
  switch (cfg.type) {
    case "file": {
      if (!cfg.file?.path) throw new WalshipError(ErrorCodes.CONFIG, `${where}: file replica needs a path`);
      return new FileReplicaClient(cfg.file.path);
    }
    default:
      throw new WalshipError(
        ErrorCodes.CONFIG,
        `${where}: replica type "${cfg.type}" is not supported by this build yet (supported: file)`,
        { details: { path: `${where}.type` } },
      );
  }
}
