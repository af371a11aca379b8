/**
 * The stop / restart / close cycle shared by the test servers (sshd, fake-gcs-server, Azurite): one
 * managed process at a time, a restart on the same port and data, and a close that runs the
 * server's own cleanup once.
 */
import type { ManagedProcess } from "./proc.ts";

export interface Lifecycle {
  /** The running process; undefined while stopped. */
  readonly process: ManagedProcess | undefined;
  /** Starts the server (and waits until it is ready). */
  start(): Promise<void>;
  /** Stops the process (SIGTERM, SIGKILL after graceMs), keeping data and port. */
  stop(): Promise<void>;
  /** Starts it again on the same port and data (stopping it first if it runs). */
  restart(): Promise<void>;
  /** Stops it and runs the cleanup. Safe twice. */
  close(): Promise<void>;
}

export function lifecycle(
  what: string,
  /** Spawns the process, hands it to `track` at once (so a failed start still stops it), waits. */
  start: (track: (p: ManagedProcess) => void) => Promise<void>,
  cleanup: () => void | Promise<void>,
  graceMs = 10_000,
): Lifecycle {
  let proc: ManagedProcess | undefined;
  let closed = false;
  const track = (p: ManagedProcess) => {
    proc = p;
  };
  const stop = async () => {
    const p = proc;
    proc = undefined;
    await p?.stop({ graceMs });
  };
  return {
    get process() {
      return proc;
    },
    async start() {
      await start(track);
    },
    stop,
    async restart() {
      if (closed) throw new Error(`restart ${what}: it was closed`);
      await stop();
      await start(track);
    },
    async close() {
      if (closed) return;
      closed = true;
      await stop();
      await cleanup();
    },
  };
}
