#!/usr/bin/env node
/**
 * The longest functions in a source tree: every function declaration, method, constructor,
 * accessor, function expression and arrow function, measured in lines from its first line to its
 * last (a nested function counts in its parent too, and on its own). Files marked generated are skipped.
 *
 *   node scripts/longest-functions.ts [--top N] [--json] [DIR]   (DIR defaults to src)
 *
 * Used for the code-health figures (issue 15): the same script over two checkouts gives the before
 * and after lists.
 */
import { readdirSync, readFileSync } from "node:fs";
import { stripTypeScriptTypes } from "node:module";
import path from "node:path";
import { parse } from "acorn";

// TypeScript 7 (the project's compiler) has no JavaScript API: the types are stripped with Node's own
// stripTypeScriptTypes, which blanks them out in place (every line and column stays where it was),
// and the JavaScript left is parsed with acorn.

interface Fn {
  name: string;
  file: string;
  line: number;
  lines: number;
}

// biome-ignore lint/suspicious/noExplicitAny: a generic walk over acorn's ESTree nodes
type Node = any;

const GENERATED = /^\/\/ (Code generated|@generated)|DO NOT EDIT/m;

function walk(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...walk(p));
    else if (e.name.endsWith(".ts") && !e.name.endsWith(".d.ts")) out.push(p);
  }
  return out.sort();
}

function keyName(key: Node, src: string): string {
  if (key.type === "Identifier") return key.name;
  if (key.type === "PrivateIdentifier") return `#${key.name}`;
  return src.slice(key.start, key.end);
}

function nameOf(node: Node, parent: Node, cls: string, src: string): string {
  const owner = cls ? `${cls}.` : "";
  if (node.type === "MethodDefinition") {
    const kind = node.kind === "get" || node.kind === "set" ? `${node.kind} ` : "";
    return node.kind === "constructor" ? `${owner}constructor` : `${kind}${owner}${keyName(node.key, src)}`;
  }
  if (node.id?.name) return node.id.name;
  // Function expressions and arrows: named after what they are assigned to.
  if (parent?.type === "VariableDeclarator") return keyName(parent.id, src);
  if (parent?.type === "Property") return `${keyName(parent.key, src)} (property)`;
  if (parent?.type === "PropertyDefinition") return `${owner}${keyName(parent.key, src)}`;
  if (parent?.type === "CallExpression" || parent?.type === "NewExpression") {
    return `<arrow in ${src.slice(parent.callee.start, parent.callee.end).split("\n")[0]!.slice(0, 40)}(...)>`;
  }
  return "<anonymous>";
}

export function longestFunctions(root: string): Fn[] {
  const fns: Fn[] = [];
  for (const file of walk(root)) {
    const ts = readFileSync(file, "utf8");
    if (GENERATED.test(ts.slice(0, 500))) continue;
    const src = stripTypeScriptTypes(ts, { mode: "strip" });
    const ast = parse(src, { ecmaVersion: "latest", sourceType: "module", locations: true });
    const visit = (node: Node, parent: Node, cls: string) => {
      if (node.type === "ClassDeclaration" || node.type === "ClassExpression") cls = node.id?.name ?? cls;
      const isFn =
        node.type === "MethodDefinition" ||
        ((node.type === "FunctionDeclaration" ||
          node.type === "FunctionExpression" ||
          node.type === "ArrowFunctionExpression") &&
          parent?.type !== "MethodDefinition");
      if (isFn) {
        fns.push({
          name: nameOf(node, parent, cls, src),
          file: path.relative(path.dirname(root), file),
          line: node.loc.start.line,
          lines: node.loc.end.line - node.loc.start.line + 1,
        });
      }
      for (const v of Object.values(node)) {
        if (Array.isArray(v)) {
          for (const c of v) if (c && typeof c.type === "string") visit(c, node, cls);
        } else if (v && typeof v === "object" && typeof (v as Node).type === "string") {
          visit(v, node, cls);
        }
      }
    };
    visit(ast, undefined, "");
  }
  return fns.sort((a, b) => b.lines - a.lines || a.file.localeCompare(b.file) || a.line - b.line);
}

if (import.meta.main) {
  const args = process.argv.slice(2);
  let top = 15;
  let json = false;
  let dir = "src";
  for (let i = 0; i < args.length; i++) {
    if (args[i] === "--top") top = Number(args[++i]);
    else if (args[i] === "--json") json = true;
    else dir = args[i]!;
  }
  const list = longestFunctions(path.resolve(dir)).slice(0, top);
  if (json) {
    process.stdout.write(`${JSON.stringify(list, null, 2)}\n`);
  } else {
    process.stdout.write("| # | lines | function | file:line |\n|---|---|---|---|\n");
    list.forEach((f, i) => {
      process.stdout.write(`| ${i + 1} | ${f.lines} | \`${f.name}\` | ${f.file}:${f.line} |\n`);
    });
  }
}
