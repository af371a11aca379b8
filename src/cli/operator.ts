/** `walship operator`: the operator role, loaded only when asked for. */

import { takeEarlySignals } from "../shared/early-signals.ts";
import { describeError, ErrorCodes, WalshipError } from "../shared/errors.ts";
import { flagHelp } from "../shared/flags.ts";

/** The operator role: loaded only when asked for, so the replicator never loads the Kubernetes client. */
export async function runOperatorCommand(argv: string[]): Promise<number> {
  if (argv.some((a) => a === "-h" || a === "--help" || a === "-help")) {
    const { OPERATOR_FLAGS } = await import("../operator/options.ts");
    process.stdout.write(
      `Usage: walship operator [flags]\n\nWatches SqliteReplica and SqliteRestore resources and wires the replicator into\nStatefulSets. Runs until SIGTERM or SIGINT. See docs/operator.md.\n\nFlags:\n${flagHelp(OPERATOR_FLAGS)}\n`,
    );
    return 0;
  }
  const op = await import("../operator/main.ts");
  if (takeEarlySignals().length > 0) return 0;
  try {
    return await op.runOperator(argv);
  } catch (err) {
    const code = err instanceof WalshipError ? err.code : "WALSHIP_ERR_INTERNAL";
    process.stderr.write(`walship operator: ${describeError(err)} [${code}]\n`);
    return err instanceof WalshipError && err.code === ErrorCodes.USAGE ? 2 : 1;
  }
}
