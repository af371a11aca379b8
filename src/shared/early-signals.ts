/**
 * Signals that arrive while the CLI is still loading. The entry module (main.ts) installs these
 * handlers before the heavy modules load; a command that handles signals itself takes them over.
 */
const received: NodeJS.Signals[] = [];
const record = (sig: NodeJS.Signals) => {
  received.push(sig);
};

export function installEarlySignalHandlers(): void {
  process.on("SIGTERM", record);
  process.on("SIGINT", record);
}

/** Removes the provisional handlers and returns the signals received so far. */
export function takeEarlySignals(): NodeJS.Signals[] {
  process.off("SIGTERM", record);
  process.off("SIGINT", record);
  return received.splice(0);
}
