/**
 * Writes crds/*.yaml from the zod schemas in src/api/v1alpha1 (make crds). With --check, writes
 * nothing and exits 1 when a committed file differs from what the schemas give (make test).
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { buildCrds, renderCrd } from "../src/api/v1alpha1/crd.ts";

const dir = path.resolve(import.meta.dirname, "../crds");
const check = process.argv.includes("--check");
let drift = 0;
mkdirSync(dir, { recursive: true });
for (const [file, crd] of Object.entries(buildCrds())) {
  const target = path.join(dir, file);
  const want = renderCrd(crd);
  const have = existsSync(target) ? readFileSync(target, "utf8") : undefined;
  if (have === want) continue;
  if (check) {
    process.stderr.write(`gen-crds: crds/${file} is out of date; run make crds\n`);
    drift++;
  } else {
    writeFileSync(target, want);
    process.stdout.write(`gen-crds: wrote crds/${file}\n`);
  }
}
process.exit(drift > 0 ? 1 : 0);
