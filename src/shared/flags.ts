/**
 * Go-style flags, as Litestream's CLI takes them: `-name value`, `-name=value`, `--name value`, and
 * booleans as `-name` (or `-name=false`). Parsing stops at the first positional argument, like Go's
 * flag package, except that a lone `--` also ends the flags.
 */
import { ErrorCodes, WalshipError } from "./errors.ts";

export interface FlagSpec {
  name: string;
  type: "string" | "boolean";
  help: string;
  /** Shown in help as `-name VALUE`. */
  metavar?: string;
  default?: string | boolean;
}

export interface ParsedFlags {
  values: Record<string, string | boolean | undefined>;
  args: string[];
}

export function parseFlags(command: string, specs: FlagSpec[], argv: string[]): ParsedFlags {
  const byName = new Map(specs.map((s) => [s.name, s]));
  const values: Record<string, string | boolean | undefined> = {};
  for (const s of specs) values[s.name] = s.default;
  let i = 0;
  for (; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === "--") {
      i++;
      break;
    }
    if (!a.startsWith("-") || a === "-") break;
    const body = a.replace(/^--?/, "");
    const eq = body.indexOf("=");
    const name = eq >= 0 ? body.slice(0, eq) : body;
    if (name === "h" || name === "help") {
      throw new WalshipError(ErrorCodes.USAGE, "help requested", { details: { help: true } });
    }
    const spec = byName.get(name);
    if (!spec) {
      throw new WalshipError(
        ErrorCodes.USAGE,
        `${command}: unknown flag -${name} (see 'walship ${command} -h')`,
      );
    }
    if (spec.type === "boolean") {
      if (eq >= 0) {
        const v = body.slice(eq + 1).toLowerCase();
        if (!["true", "false", "1", "0"].includes(v)) {
          throw new WalshipError(ErrorCodes.USAGE, `${command}: -${name} takes true or false, not "${v}"`);
        }
        values[name] = v === "true" || v === "1";
      } else {
        values[name] = true;
      }
      continue;
    }
    if (eq >= 0) {
      values[name] = body.slice(eq + 1);
    } else {
      const v = argv[i + 1];
      if (v === undefined) throw new WalshipError(ErrorCodes.USAGE, `${command}: -${name} needs a value`);
      values[name] = v;
      i++;
    }
  }
  return { values, args: argv.slice(i) };
}

export function flagHelp(specs: FlagSpec[]): string {
  const rows = specs.map((s) => {
    const left = s.type === "boolean" ? `-${s.name}` : `-${s.name} ${s.metavar ?? "VALUE"}`;
    return [left, s.help] as const;
  });
  const width = Math.max(...rows.map(([l]) => l.length)) + 2;
  return rows.map(([l, h]) => `  ${l.padEnd(width)}${h}`).join("\n");
}

/** Lays out rows as aligned columns (two spaces between), like Go's tabwriter with padding 2. */
export function table(header: string[], rows: string[][]): string {
  const all = [header, ...rows];
  // A loop, not Math.max(...column): a listing of 160,000 rows would overflow the stack as arguments.
  const widths = header.map(() => 0);
  for (const r of all) {
    for (let c = 0; c < widths.length; c++) widths[c] = Math.max(widths[c]!, (r[c] ?? "").length);
  }
  return all
    .map((r) => r.map((cell, c) => (c === r.length - 1 ? cell : cell.padEnd(widths[c]! + 2))).join(""))
    .join("\n");
}
