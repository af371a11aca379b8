#!/usr/bin/env node
/**
 * The walship entry point: installs provisional signal handlers and sizes the I/O threadpool before
 * the CLI's modules load, so a SIGTERM during start-up is not lost.
 */
import "./shared/threadpool.ts";
import { installEarlySignalHandlers, takeEarlySignals } from "./shared/early-signals.ts";

installEarlySignalHandlers();
const { main } = await import("./cli.ts");
main(process.argv.slice(2)).then(
  (code) => {
    // A signal that came during start-up of a command that does not take signals over ends it now.
    if (takeEarlySignals().length > 0 && code === 0) process.exitCode = 143;
    else process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`walship: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  },
);
