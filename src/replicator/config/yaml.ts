/**
 * YAML as gopkg.in/yaml.v2 gives it to Litestream: every scalar kept as its text, so that each setting
 * decides its own type (YAML 1.1 booleans, octal integers, "not set" for empty); aliases and merge
 * keys resolved. Pure.
 */
import { type Document, isAlias, isMap, isScalar, isSeq } from "yaml";
import type { Seg } from "./keypath.ts";

// Re-exported for callers that also parse YAML; code that must not load the parser imports keypath.ts.
export { formatKeyPath, parseYamlInt, type Seg, YAML_FALSE, YAML_TRUE } from "./keypath.ts";

export type Plain = string | null | Plain[] | { [key: string]: Plain };

const YAML_NULLS = new Set(["", "~", "null", "Null", "NULL"]);
const MAX_NODES = 100_000;

/**
 * Turns the YAML document into plain data where every scalar is its text (or null), so each setting
 * decides its own type the way yaml.v2 does for a Go field. Aliases are resolved and `<<` merge keys
 * applied (explicit keys win).
 */
export function toPlain(
  doc: Document,
  fail: (segs: Seg[], problem: string) => never,
  expand?: (value: string) => string,
): Plain {
  let count = 0;
  const walk = (node: unknown, segs: Seg[]): Plain => {
    if (++count > MAX_NODES) fail(segs, `document too large (more than ${MAX_NODES} nodes after aliases)`);
    if (node === null || node === undefined) return null;
    if (isAlias(node)) return walk(node.resolve(doc), segs);
    if (isScalar(node)) {
      const v = node.value;
      if (v === null || v === undefined) return null;
      const raw = String(v);
      const s = expand && raw.includes("$") ? expand(raw) : raw;
      return node.type === "PLAIN" && YAML_NULLS.has(s) ? null : s;
    }
    if (isSeq(node)) return node.items.map((item, i) => walk(item, [...segs, i]));
    if (isMap(node)) {
      const explicit: [string, Plain][] = [];
      const merged: [string, Plain][] = [];
      for (const pair of node.items) {
        const k = isAlias(pair.key) ? pair.key.resolve(doc) : pair.key;
        if (k !== null && k !== undefined && !isScalar(k)) fail(segs, "mapping keys must be plain strings");
        const key = k === null || k === undefined || k.value === null ? "" : String(k.value);
        if (key === "<<" && isScalar(k) && k.type === "PLAIN") {
          const src = walk(pair.value, [...segs, key]);
          const sources = Array.isArray(src) ? src : [src];
          for (const one of sources) {
            if (one === null || typeof one !== "object" || Array.isArray(one)) {
              fail([...segs, key], "a merge key (<<) takes a mapping or a list of mappings");
            }
            for (const e of Object.entries(one)) if (!merged.some(([mk]) => mk === e[0])) merged.push(e);
          }
          continue;
        }
        explicit.push([key, walk(pair.value, [...segs, key])]);
      }
      const keys = new Set(explicit.map(([k]) => k));
      return Object.fromEntries([...merged.filter(([k]) => !keys.has(k)), ...explicit]);
    }
    fail(segs, "unsupported YAML node");
  };
  return walk(doc.contents, []);
}
