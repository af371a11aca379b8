/**
 * Where a process's resident memory lives, from /proc/<pid>/smaps: the soak samples it to tell a
 * leak in V8's heap from one in native memory, and which kind of native memory.
 *
 * Kinds (Rss in MiB, and how many mappings):
 * - `brk`: glibc's main arena (`[heap]`), where the main thread's small allocations go.
 * - `arena`: glibc's thread arenas. Each is a region reserved at a 64 MiB boundary, written from its
 *   start (the part in use is read-write, the rest `---p`); the threads of libuv's pool and V8's
 *   workers allocate there.
 * - `anonSmall` / `anonLarge`: other anonymous mappings under and from 1 MiB: V8's heap pages
 *   (256 KiB each), its code space, and glibc's direct mmap of large blocks (buffers over the mmap
 *   threshold).
 * - `file`: file-backed mappings (the node binary, shared libraries, SQLite's shared memory).
 */
import { readFileSync } from "node:fs";

export interface MemoryKind {
  rssMiB: number;
  mappings: number;
}

export interface SmapsSummary {
  brk: MemoryKind;
  arena: MemoryKind;
  anonSmall: MemoryKind;
  anonLarge: MemoryKind;
  file: MemoryKind;
  /** The five largest anonymous mappings by Rss: address, size and Rss, to follow one across samples. */
  largest: { start: string; sizeKiB: number; rssKiB: number }[];
}

const ARENA = 64n * 1024n * 1024n;
const MIB = 1024;

interface Mapping {
  start: bigint;
  end: bigint;
  perms: string;
  name: string;
  rssKiB: number;
}

export function parseSmaps(text: string): Mapping[] {
  const out: Mapping[] = [];
  for (const line of text.split("\n")) {
    const head = /^([0-9a-f]+)-([0-9a-f]+) (\S{4}) \S+ \S+ \S+\s*(.*)$/.exec(line);
    if (head) {
      out.push({
        start: BigInt(`0x${head[1]}`),
        end: BigInt(`0x${head[2]}`),
        perms: head[3]!,
        name: head[4]!.trim(),
        rssKiB: 0,
      });
      continue;
    }
    const rss = /^Rss:\s+(\d+) kB/.exec(line);
    if (rss && out.length) out.at(-1)!.rssKiB = Number(rss[1]);
  }
  return out;
}

export function summariseSmaps(maps: Mapping[]): SmapsSummary {
  const kinds = {
    brk: { kib: 0, n: 0 },
    arena: { kib: 0, n: 0 },
    anonSmall: { kib: 0, n: 0 },
    anonLarge: { kib: 0, n: 0 },
    file: { kib: 0, n: 0 },
  };
  const add = (k: keyof typeof kinds, m: Mapping) => {
    kinds[k].kib += m.rssKiB;
    kinds[k].n++;
  };
  const anon: Mapping[] = [];
  for (let i = 0; i < maps.length; i++) {
    const m = maps[i]!;
    if (m.name === "[heap]") add("brk", m);
    else if (m.name.startsWith("/")) add("file", m);
    else if (m.name.startsWith("["))
      continue; // stack, vdso, vvar
    else if (m.perms === "---p")
      continue; // reserved, never resident: guard pages, an arena's tail
    else {
      // A thread arena: starts on a 64 MiB boundary and, with its unused `---p` tail, ends on the next.
      const next = maps[i + 1];
      const isArena =
        m.start % ARENA === 0n &&
        m.perms.startsWith("rw") &&
        (m.end - m.start === ARENA ||
          (next !== undefined &&
            next.start === m.end &&
            next.perms === "---p" &&
            next.end - m.start === ARENA));
      if (isArena) add("arena", m);
      else if (m.end - m.start < 1024n * 1024n) add("anonSmall", m);
      else add("anonLarge", m);
      if (m.rssKiB > 0) anon.push(m);
    }
  }
  const kind = (k: keyof typeof kinds): MemoryKind => ({
    rssMiB: Math.round((kinds[k].kib / MIB) * 10) / 10,
    mappings: kinds[k].n,
  });
  return {
    brk: kind("brk"),
    arena: kind("arena"),
    anonSmall: kind("anonSmall"),
    anonLarge: kind("anonLarge"),
    file: kind("file"),
    largest: anon
      .sort((a, b) => b.rssKiB - a.rssKiB)
      .slice(0, 5)
      .map((m) => ({
        start: m.start.toString(16),
        sizeKiB: Number((m.end - m.start) / 1024n),
        rssKiB: m.rssKiB,
      })),
  };
}

/** The summary for a live process, or undefined once it has gone. */
export function readSmaps(pid: number): SmapsSummary | undefined {
  try {
    return summariseSmaps(parseSmaps(readFileSync(`/proc/${pid}/smaps`, "utf8")));
  } catch {
    return undefined;
  }
}
