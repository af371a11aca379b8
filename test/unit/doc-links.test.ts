/**
 * Every link between the project's own Markdown files resolves: a relative path names a file or
 * directory of the checkout, and a `#fragment` names a heading of the file it points into, by the
 * anchors GitHub gives headings (lower case; punctuation other than `-` and `_` dropped; spaces
 * become `-`; a repeated heading gets `-1`, `-2`, ...). docs/benchmarks.md alone cross-references
 * its own sections more than a hundred times, and sections get renamed and moved as runs replace
 * each other; a link that lands nowhere sends the reader to the top of the page.
 */
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { describe, it } from "node:test";

const ROOT = path.resolve(import.meta.dirname, "../..");
/** Not the project's own prose, or generated. */
const SKIP_DIRS = new Set([".git", "node_modules", "dist", ".demo", ".fuzz", "results", "corpus"]);

function markdownFiles(dir: string, out: string[] = []): string[] {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    if (e.isDirectory()) {
      if (!SKIP_DIRS.has(e.name)) markdownFiles(path.join(dir, e.name), out);
    } else if (e.name.endsWith(".md")) {
      out.push(path.join(dir, e.name));
    }
  }
  return out;
}

/** The text without fenced code blocks (a `#` line there is a comment, not a heading). */
function withoutFences(text: string): string {
  // Each block becomes as many empty lines, so that line numbers stay the file's.
  return text.replace(/^[ \t]*(```|~~~)[^\n]*\n[\s\S]*?^[ \t]*\1[^\n]*$/gm, (block) =>
    block.replace(/[^\n]/g, ""),
  );
}

/** The text without fenced code blocks and inline code spans (links there are examples). */
export function proseOf(text: string): string {
  return withoutFences(text).replace(/`[^`\n]*`/g, "");
}

/** GitHub's anchor for a heading's text. */
export function slug(heading: string): string {
  return heading
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{N}\p{M}_\- ]/gu, "")
    .replace(/ /g, "-");
}

/** Every heading anchor of a Markdown text, repeated headings numbered as GitHub numbers them. */
export function anchorsOf(text: string): Set<string> {
  const seen = new Map<string, number>();
  const anchors = new Set<string>();
  for (const m of withoutFences(text).matchAll(/^#{1,6}[ \t]+(.+?)[ \t#]*$/gm)) {
    const base = slug(m[1]!.replace(/`/g, ""));
    const n = seen.get(base);
    seen.set(base, (n ?? -1) + 1);
    anchors.add(n === undefined ? base : `${base}-${n + 1}`);
  }
  return anchors;
}

/** The `(target)` of each inline link or image in the prose, with its line number. */
export function linksOf(text: string): Array<{ target: string; line: number }> {
  const out: Array<{ target: string; line: number }> = [];
  // The whole text is searched at once, so that a link text broken over two lines is still found;
  // a link's line is the one its target is on.
  const joined = proseOf(text);
  for (const m of joined.matchAll(/\]\(([^)\s]+)(?:\s+"[^"]*")?\)/g)) {
    const line = joined.slice(0, m.index + m[0].length).split("\n").length;
    out.push({ target: m[1]!, line });
  }
  return out;
}

describe("links between the project's Markdown files", () => {
  it("finds anchors and links the way GitHub renders them", () => {
    const text = [
      "# Snapshots: each block's buffer freed at once (2026-12-07 evening)",
      "## Restores: the `O_DIRECT` path",
      "## Restores: the `O_DIRECT` path",
      "```sh",
      "# not a heading",
      "see [x](#not-a-link)",
      "```",
      "A [link over",
      "two lines](other.md#a-b) and `[code](#nope)`.",
    ].join("\n");
    assert.deepEqual(
      [...anchorsOf(text)],
      [
        "snapshots-each-blocks-buffer-freed-at-once-2026-12-07-evening",
        "restores-the-o_direct-path",
        "restores-the-o_direct-path-1",
      ],
    );
    assert.deepEqual(linksOf(text), [{ target: "other.md#a-b", line: 9 }]);
  });

  it("resolve: every relative file exists and every #fragment names a heading there", () => {
    const files = markdownFiles(ROOT);
    assert.ok(files.length >= 20, `only ${files.length} Markdown files found under ${ROOT}`);
    const anchors = new Map<string, Set<string>>();
    const anchorsFor = (file: string): Set<string> => {
      let a = anchors.get(file);
      if (!a) {
        a = anchorsOf(readFileSync(file, "utf8"));
        anchors.set(file, a);
      }
      return a;
    };
    const broken: string[] = [];
    let checked = 0;
    for (const file of files) {
      for (const { target, line } of linksOf(readFileSync(file, "utf8"))) {
        if (/^[a-z][a-z0-9+.-]*:/i.test(target)) continue; // https:, mailto:, ...
        const [rel = "", fragment] = target.split("#", 2);
        const into = rel ? path.resolve(path.dirname(file), decodeURIComponent(rel)) : file;
        const where = `${path.relative(ROOT, file)}:${line}: ${target}`;
        checked++;
        if (rel && !existsSync(into)) {
          broken.push(`${where} (no such file)`);
        } else if (fragment && into.endsWith(".md") && !anchorsFor(into).has(fragment)) {
          broken.push(`${where} (no heading with that anchor)`);
        }
      }
    }
    assert.ok(checked >= 100, `only ${checked} links checked`);
    assert.deepEqual(broken, []);
  });
});
