/**
 * The replica clients a command opened, closed when it ends (an SSH connection would keep the
 * process up). Its own module, without the clients themselves, so that cli.ts can close them without
 * loading any command's modules.
 */
import type { ReplicaClient } from "../replicator/storage/client.ts";

export const opened: ReplicaClient[] = [];

export function closeClients(): void {
  for (const c of opened.splice(0)) c.close?.();
}
