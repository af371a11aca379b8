/**
 * The process and Node runtime families of the replicator's `/metrics` (`process_*`, `nodejs_*`), by
 * the names and meanings prom-client's default metrics give them, which docs/metrics.md lists and
 * dashboards use (charts/walship/files/dashboards). Read at each scrape from the process itself;
 * the event loop's delay and the GC pauses are watched from the moment RuntimeMetrics is made (the
 * server's start) until close().
 */
import { readdirSync, readFileSync } from "node:fs";
import { constants, monitorEventLoopDelay, PerformanceObserver } from "node:perf_hooks";
import { getHeapSpaceStatistics } from "node:v8";
import { type Family, Histogram, type Sample } from "./exposition.ts";

/** GC pause buckets, seconds. */
const GC_BUCKETS = [0.001, 0.01, 0.1, 1, 2, 5];
const GC_KINDS: Record<number, string> = {
  [constants.NODE_PERFORMANCE_GC_MINOR]: "minor",
  [constants.NODE_PERFORMANCE_GC_MAJOR]: "major",
  [constants.NODE_PERFORMANCE_GC_INCREMENTAL]: "incremental",
  [constants.NODE_PERFORMANCE_GC_WEAKCB]: "weakcb",
};

const gauge = (name: string, help: string, samples: () => Iterable<Sample>): Family => ({
  name,
  help,
  type: "gauge",
  samples,
});
const counter = (name: string, help: string, value: number): Family => ({
  name,
  help,
  type: "counter",
  samples: () => [{ value }],
});
const one = (value: number | undefined): Sample[] => (value === undefined ? [] : [{ value }]);

/** `VmRSS`, `VmSize`, `VmData` of /proc/self/status in bytes; empty where there is no /proc. */
function procStatus(): Map<string, number> {
  const out = new Map<string, number>();
  try {
    for (const line of readFileSync("/proc/self/status", "utf8").split("\n")) {
      const m = /^(VmRSS|VmSize|VmData):\s+(\d+) kB$/.exec(line);
      if (m) out.set(m[1] as string, Number(m[2]) * 1024);
    }
  } catch {
    // Not Linux: these gauges are left out.
  }
  return out;
}

function openFds(): number | undefined {
  try {
    // Less the descriptor reading the directory holds.
    return readdirSync("/proc/self/fd").length - 1;
  } catch {
    return undefined;
  }
}

function maxFds(): number | undefined {
  try {
    const m = /^Max open files\s+(\d+)/m.exec(readFileSync("/proc/self/limits", "utf8"));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

function countBy(names: readonly string[]): Sample[] {
  const counts = new Map<string, number>();
  for (const n of names) counts.set(n, (counts.get(n) ?? 0) + 1);
  return [...counts].map(([type, value]) => ({ labels: { type }, value }));
}

const typeName = (o: unknown): string =>
  (o as { constructor?: { name?: string } })?.constructor?.name ?? "Object";

/** The process and runtime families; `lagSeconds` is the event loop's delay measured at this scrape. */
export class RuntimeMetrics {
  readonly #delay: ReturnType<typeof monitorEventLoopDelay>;
  readonly #gc = new Histogram(GC_BUCKETS);
  readonly #observer: PerformanceObserver;
  readonly #startSeconds = Math.round(Date.now() / 1000 - process.uptime());

  constructor() {
    this.#delay = monitorEventLoopDelay({ resolution: 10 });
    this.#delay.enable();
    this.#observer = new PerformanceObserver((list) => {
      for (const e of list.getEntries()) {
        const kind = GC_KINDS[(e as { detail?: { kind?: number } }).detail?.kind ?? 0];
        if (kind) this.#gc.observe({ kind }, e.duration / 1000);
      }
    });
    this.#observer.observe({ entryTypes: ["gc"] });
  }

  /** How long a callback queued now waits for the event loop, in seconds. */
  static measureLag(): Promise<number> {
    const start = process.hrtime.bigint();
    return new Promise((resolve) =>
      setImmediate(() => resolve(Number(process.hrtime.bigint() - start) / 1e9)),
    );
  }

  /** The families, read now; the event loop's delay statistics start over after each read. */
  families(lagSeconds: number): Family[] {
    const cpu = process.cpuUsage();
    const status = procStatus();
    const mem = process.memoryUsage();
    const d = this.#delay;
    // The event loop's delay since the last scrape, in seconds (the monitor counts nanoseconds).
    const delays: Array<[string, number]> = [
      ["min", d.min],
      ["max", d.max],
      ["mean", d.mean],
      ["stddev", d.stddev],
      ["p50", d.percentile(50)],
      ["p90", d.percentile(90)],
      ["p99", d.percentile(99)],
    ];
    d.reset();
    const spaces = getHeapSpaceStatistics();
    const space = (pick: (s: (typeof spaces)[number]) => number) => () =>
      spaces.map((s) => ({ labels: { space: s.space_name.replace(/_space$/, "") }, value: pick(s) }));
    const resources = process.getActiveResourcesInfo();
    const internals = process as unknown as {
      _getActiveHandles?: () => unknown[];
      _getActiveRequests?: () => unknown[];
    };
    const handles = (internals._getActiveHandles?.() ?? []).map(typeName);
    const requests = (internals._getActiveRequests?.() ?? []).map(typeName);
    const [major, minor, patch] = process.versions.node.split(".");
    const value = (v: number | undefined) => () => one(v);
    const gauges: Array<[string, string, () => Iterable<Sample>]> = [
      ["process_start_time_seconds", "When the process started, Unix seconds.", value(this.#startSeconds)],
      ["process_resident_memory_bytes", "Resident set size (VmRSS), bytes.", value(status.get("VmRSS"))],
      ["process_virtual_memory_bytes", "Virtual memory size (VmSize), bytes.", value(status.get("VmSize"))],
      ["process_heap_bytes", "Data segment size (VmData), bytes.", value(status.get("VmData"))],
      ["process_open_fds", "File descriptors open.", value(openFds())],
      ["process_max_fds", "Most file descriptors the process may open (soft limit).", value(maxFds())],
      [
        "nodejs_eventloop_lag_seconds",
        "How long a callback queued at this scrape waited, seconds.",
        value(lagSeconds),
      ],
      ...delays.map(([stat, ns]): [string, string, () => Iterable<Sample>] => [
        `nodejs_eventloop_lag_${stat}_seconds`,
        `Event loop delay since the last scrape, ${stat}, seconds.`,
        value(ns / 1e9),
      ]),
      [
        "nodejs_active_resources",
        "Resources keeping the event loop alive, by type.",
        () => countBy(resources),
      ],
      ["nodejs_active_resources_total", "Resources keeping the event loop alive.", value(resources.length)],
      ["nodejs_active_handles", "Active libuv handles, by class.", () => countBy(handles)],
      ["nodejs_active_handles_total", "Active libuv handles.", value(handles.length)],
      ["nodejs_active_requests", "Active libuv requests, by class.", () => countBy(requests)],
      ["nodejs_active_requests_total", "Active libuv requests.", value(requests.length)],
      ["nodejs_heap_size_total_bytes", "V8 heap size, bytes.", value(mem.heapTotal)],
      ["nodejs_heap_size_used_bytes", "V8 heap in use, bytes.", value(mem.heapUsed)],
      [
        "nodejs_external_memory_bytes",
        "Memory held outside the V8 heap by its objects (buffers), bytes.",
        value(mem.external),
      ],
      ["nodejs_heap_space_size_total_bytes", "V8 heap space size, bytes.", space((s) => s.space_size)],
      ["nodejs_heap_space_size_used_bytes", "V8 heap space in use, bytes.", space((s) => s.space_used_size)],
      [
        "nodejs_heap_space_size_available_bytes",
        "V8 heap space still available, bytes.",
        space((s) => s.space_available_size),
      ],
      [
        "nodejs_version_info",
        "Always 1; the Node.js version is in the labels.",
        () => [
          {
            labels: { version: process.version, major: major ?? "", minor: minor ?? "", patch: patch ?? "" },
            value: 1,
          },
        ],
      ],
    ];
    return [
      counter("process_cpu_user_seconds_total", "User CPU time, seconds.", cpu.user / 1e6),
      counter("process_cpu_system_seconds_total", "System CPU time, seconds.", cpu.system / 1e6),
      counter(
        "process_cpu_seconds_total",
        "User and system CPU time, seconds.",
        (cpu.user + cpu.system) / 1e6,
      ),
      ...gauges.map(([name, help, samples]) => gauge(name, help, samples)),
      {
        name: "nodejs_gc_duration_seconds",
        help: "Garbage collection pauses by kind (major, minor, incremental, weakcb), seconds.",
        type: "histogram",
        samples: () => this.#gc.samples(),
      },
    ];
  }

  /** Stops watching the event loop and the collector. */
  close(): void {
    this.#delay.disable();
    this.#observer.disconnect();
  }
}
