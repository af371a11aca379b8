#!/usr/bin/env -S node --max-semi-space-size=2
/**
 * The walship entry point: installs provisional signal handlers and sizes the I/O threadpool before
 * the CLI's modules load, so a SIGTERM during start-up is not lost.
 *
 * V8's young generation is capped at 2 MiB per semi-space (bin/walship passes the same flag). The
 * replicator and restore make garbage mostly as short-lived buffers and their wrappers; collected
 * sooner, they hold less: a 1 GiB restore peaked at 253-258 MiB against 302-303, a 400 MiB snapshot
 * at 176 against 214 MiB, and took no longer (docs/benchmarks.md). The flag must be on the command
 * line: V8 sizes the heap when it starts, before any code could set it.
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
