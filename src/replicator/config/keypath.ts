/**
 * Key paths (`dbs[0].replicas[1].url`) and YAML 1.1 scalars as gopkg.in/yaml.v2 reads them, with no
 * YAML parser: the URL forms of a replica (args.ts) use them without loading one. Pure.
 */

export type Seg = string | number;

export const YAML_TRUE = new Set(["y", "Y", "yes", "Yes", "YES", "on", "On", "ON", "true", "True", "TRUE"]);
export const YAML_FALSE = new Set([
  "n",
  "N",
  "no",
  "No",
  "NO",
  "off",
  "Off",
  "OFF",
  "false",
  "False",
  "FALSE",
]);

export function parseYamlInt(v: string): number | undefined {
  const m = /^([-+]?)(0x[0-9a-fA-F_]+|0o[0-7_]+|0b[01_]+|[0-9][0-9_]*)$/.exec(v);
  if (!m) return undefined;
  const digits = m[2]!.replace(/_/g, "");
  let n: number;
  if (digits.startsWith("0x")) n = Number.parseInt(digits.slice(2), 16);
  else if (digits.startsWith("0o")) n = Number.parseInt(digits.slice(2), 8);
  else if (digits.startsWith("0b")) n = Number.parseInt(digits.slice(2), 2);
  else if (digits.length > 1 && digits.startsWith("0")) {
    // YAML 1.1 octal, as yaml.v2 reads it
    if (!/^[0-7]+$/.test(digits)) return undefined;
    n = Number.parseInt(digits, 8);
  } else n = Number(digits);
  if (m[1] === "-") n = -n;
  return Number.isSafeInteger(n) ? n : undefined;
}

export function formatKeyPath(segs: readonly Seg[]): string {
  let out = "";
  for (const s of segs) out += typeof s === "number" ? `[${s}]` : out === "" ? s : `.${s}`;
  return out === "" ? "(root)" : out;
}
