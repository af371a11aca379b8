// The soak's memory map (torture/smaps.ts): each mapping lands in the right kind, on a recorded
// layout and on this test's own process.
import assert from "node:assert/strict";
import { test } from "node:test";
import { parseSmaps, readSmaps, summariseSmaps } from "../../torture/smaps.ts";

const entry = (range: string, perms: string, name: string, rssKiB: number) =>
  `${range} ${perms} 00000000 00:00 0          ${name}\nSize:    4 kB\nRss:     ${rssKiB} kB\nPss:     ${rssKiB} kB\n`;

// Shapes as Node on glibc lays them out: the node binary, the brk heap, a thread arena (a 64 MiB
// reservation, 3 MiB of it in use), V8 pages of 256 KiB, a 4 MiB direct mmap, the stack.
const LAYOUT = [
  entry("55d0c0000000-55d0c2000000", "r-xp", "/usr/local/bin/node", 30_000),
  entry("55d0c4000000-55d0c6000000", "rw-p", "[heap]", 20_000),
  entry("7f1c24000000-7f1c24300000", "rw-p", "", 2_500),
  entry("7f1c24300000-7f1c28000000", "---p", "", 0),
  entry("7f1c30000000-7f1c30040000", "rw-p", "", 256),
  entry("7f1c30040000-7f1c30080000", "rw-p", "", 200),
  entry("7f1c31000000-7f1c31400000", "rw-p", "", 4_096),
  entry("7ffd10000000-7ffd10021000", "rw-p", "[stack]", 100),
].join("");

test("each mapping is counted under its kind", () => {
  const s = summariseSmaps(parseSmaps(LAYOUT));
  assert.deepEqual(s.file, { rssMiB: 29.3, mappings: 1 });
  assert.deepEqual(s.brk, { rssMiB: 19.5, mappings: 1 });
  assert.deepEqual(s.arena, { rssMiB: 2.4, mappings: 1 });
  assert.deepEqual(s.anonSmall, { rssMiB: 0.4, mappings: 2 }, "the two V8 pages");
  assert.deepEqual(
    s.anonLarge,
    { rssMiB: 4, mappings: 1 },
    "the direct mmap; the arena's reserved tail is not counted",
  );
  assert.deepEqual(s.largest[0], { start: "7f1c31000000", sizeKiB: 4096, rssKiB: 4096 });
  assert.equal(s.largest.length, 4, "mappings with nothing resident are left out");
});

test("an rw mapping on a 64 MiB boundary without the reserved tail is not an arena", () => {
  const s = summariseSmaps(parseSmaps(entry("7f1c24000000-7f1c24300000", "rw-p", "", 1024)));
  assert.equal(s.arena.mappings, 0);
  assert.equal(s.anonLarge.mappings, 1);
});

test("this process's own memory adds up to about its RSS", () => {
  const s = readSmaps(process.pid);
  assert.ok(s, "smaps read");
  const total = s.brk.rssMiB + s.arena.rssMiB + s.anonSmall.rssMiB + s.anonLarge.rssMiB + s.file.rssMiB;
  const rss = process.memoryUsage().rss / 1048576;
  assert.ok(Math.abs(total - rss) < rss * 0.2 + 4, `kinds ${total} MiB against RSS ${rss} MiB`);
  assert.ok(s.file.rssMiB > 10, "the node binary is file-backed");
  assert.equal(readSmaps(2 ** 22 + 12345), undefined, "a process that is not there");
});
