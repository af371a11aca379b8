/** Runs `walship operator` directly (`node src/operator/entry.ts [flags]`), until cli.ts wires it. */
import { runOperator } from "./main.ts";

process.exitCode = await runOperator(process.argv.slice(2));
