/**
 * `kubectl walship`: the kubectl plugin (the `kubectl-walship` executable). Commands read and act on
 * SqliteReplicas and SqliteRestores with the user's kubeconfig; errors and exit codes are the CLI's
 * (0 success, 1 failure with a `[WALSHIP_ERR_...]` code, 2 usage).
 */
import { describeWorkload, PAUSED_ANNOTATION, type WorkloadRef, workloadOf } from "../api/v1alpha1/index.ts";
import { KubeClient } from "../operator/kube/client.ts";
import { describeError, ErrorCodes, WalshipError } from "../shared/errors.ts";
import { GLOBAL_OPTS, type OptSpec, oneName, optHelp, parseArgs, pickDatabase } from "./args.ts";
import { drillLine, requestDrill } from "./drill.ts";
import { PluginKube } from "./kube.ts";
import { collectListing, formatListing, type ListingKind } from "./listing.ts";
import { buildRestore, failureOf, follow } from "./restore.ts";
import { buildReport, collect, formatReport } from "./status.ts";
import { waitReplicated } from "./wait.ts";

type Values = Record<string, string | boolean | undefined>;

/** Where the plugin writes; tests pass their own. */
export interface Io {
  out(text: string): void;
  err(text: string): void;
  env: NodeJS.ProcessEnv;
  signal?: AbortSignal;
  now?: () => Date;
}

interface Command {
  summary: string;
  usage: string;
  description: string;
  opts: OptSpec[];
  run(kube: () => PluginKube, values: Values, args: string[], io: Io): Promise<number>;
}

const outputOpt: OptSpec = {
  name: "output",
  short: "o",
  type: "string",
  metavar: "text|json",
  help: "output format (default text)",
};
const podOpt: OptSpec = {
  name: "pod",
  type: "string",
  metavar: "POD",
  help: "only this pod (default: every pod)",
};
const databaseOpt: OptSpec = {
  name: "database",
  type: "string",
  metavar: "NAME",
  help: "the database, by its name in spec.databases (required when the SqliteReplica lists several)",
};
const destOpt: OptSpec = {
  name: "destination",
  type: "string",
  metavar: "NAME",
  help: "only this destination (default: every destination)",
};

const timeoutOpt: OptSpec = {
  name: "timeout",
  type: "string",
  metavar: "DURATION",
  help: "with --wait: give up waiting after this long (default 0: never)",
};

function outputFormat(values: Values): "text" | "json" {
  const o = values.output ?? "text";
  if (o === "text" || o === "json") return o;
  throw new WalshipError(ErrorCodes.USAGE, `--output: "${String(o)}" is not text or json`);
}

function json(io: Io, value: unknown): void {
  io.out(`${JSON.stringify(value, null, 2)}\n`);
}

/** A Go-style duration for --timeout (`90s`, `10m`, `1h30m`), in milliseconds; `0` waits for ever. */
export function parseTimeout(text: string): number {
  if (text === "0") return 0;
  const m = /^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$/.exec(text);
  if (!m || text === "")
    throw new WalshipError(ErrorCodes.USAGE, `--timeout: "${text}" is not a duration such as 10m or 1h30m`);
  return ((Number(m[1] ?? 0) * 60 + Number(m[2] ?? 0)) * 60 + Number(m[3] ?? 0)) * 1000;
}

const commands: Record<string, Command> = {
  status: {
    summary: "replication at a glance: pods, destinations, window, conditions, Events",
    usage: "kubectl walship status NAME [-o json]",
    description:
      "Per pod and destination: the generation, the position, the lag, the last sync and snapshot, the\n" +
      "recoverability window (what a restore can reach), and the SqliteReplica's conditions, recent Events\n" +
      "and SqliteRestores. The destinations come from each pod's sidecar through the API server's pod\n" +
      "proxy (get pods/proxy); without that right they are reported as not read.",
    opts: [outputOpt],
    async run(kube, values, args, io) {
      const name = oneName("status", args);
      const format = outputFormat(values);
      const report = buildReport(await collect(kube(), name));
      if (format === "json") json(io, report);
      else io.out(`${formatReport(report, io.now?.() ?? new Date())}\n`);
      return 0;
    },
  },
  restore: {
    summary: "restore the database: create a SqliteRestore, and with --wait follow it to the end",
    usage:
      "kubectl walship restore NAME --to TIME|latest (--in-place | --new-claim CLAIM) [--database NAME] [--wait]",
    description:
      "Creates a SqliteRestore of the SqliteReplica NAME. --in-place scales its StatefulSet or Deployment\n" +
      "to 0, restores onto its volume, verifies, swaps and scales back (the previous database is kept\n" +
      "beside it); --new-claim restores into a new PersistentVolumeClaim and leaves the app alone. Nothing\n" +
      "is scaled before a plan Job has checked that the target can be reached. With --wait, follows it\n" +
      "phase by phase: exit 0 when it succeeded, 1 when it failed (InPlace then has put the original back).",
    opts: [
      {
        name: "to",
        type: "string",
        metavar: "TIME|latest",
        help: "an RFC 3339 time (2026-05-01T10:15:00Z), or latest",
      },
      { name: "in-place", type: "boolean", help: "restore onto the app's own volume" },
      { name: "new-claim", type: "string", metavar: "CLAIM", help: "restore into a new claim of this name" },
      {
        name: "size",
        type: "string",
        metavar: "QUANTITY",
        help: "the new claim's size (default: the app's claim's)",
      },
      { name: "storage-class", type: "string", metavar: "NAME", help: "the new claim's StorageClass" },
      {
        name: "pod",
        type: "string",
        metavar: "POD",
        help: "whose replica (and, in place, volume): default the first pod; not for a Deployment",
      },
      {
        name: "database",
        type: "string",
        metavar: "NAME",
        help: "which database, by its name in spec.databases (required when there are several)",
      },
      {
        name: "destination",
        type: "string",
        metavar: "NAME",
        help: "restore from this destination (default the first)",
      },
      {
        name: "name",
        type: "string",
        metavar: "NAME",
        help: "the SqliteRestore's name (default NAME-<UTC time>)",
      },
      {
        name: "verify-sql",
        type: "string",
        metavar: "QUERY",
        help: "a query that must return a row on the restored file",
      },
      { name: "wait", type: "boolean", help: "follow the restore until it ends" },
      timeoutOpt,
      outputOpt,
    ],
    async run(kube, values, args, io) {
      const replica = oneName("restore", args);
      const format = outputFormat(values);
      if (typeof values.to !== "string") {
        throw new WalshipError(
          ErrorCodes.USAGE,
          "--to TIME|latest is required (see 'kubectl walship restore -h')",
        );
      }
      const timeoutMs = typeof values.timeout === "string" ? parseTimeout(values.timeout) : 0;
      const k = kube();
      const obj = buildRestore(
        {
          replica,
          namespace: k.namespace,
          to: values.to,
          inPlace: values["in-place"] === true,
          ...(typeof values["new-claim"] === "string" ? { newClaim: values["new-claim"] } : {}),
          ...(typeof values.size === "string" ? { size: values.size } : {}),
          ...(typeof values["storage-class"] === "string" ? { storageClass: values["storage-class"] } : {}),
          ...(typeof values.pod === "string" ? { pod: values.pod } : {}),
          ...(typeof values.destination === "string" ? { destination: values.destination } : {}),
          ...(typeof values.database === "string" ? { database: values.database } : {}),
          ...(typeof values.name === "string" ? { name: values.name } : {}),
          ...(typeof values["verify-sql"] === "string" ? { verifySql: values["verify-sql"] } : {}),
        },
        io.now?.() ?? new Date(),
      );
      const target = await k.getReplica(replica);
      refuseDeploymentPod(workloadOf(target.spec), values.pod);
      if (target.spec) pickDatabase(target.spec, replica, values.database);
      const created = await k.createRestore(obj);
      const name = created.metadata?.name ?? "";
      if (!values.wait) {
        if (format === "json") json(io, created);
        else
          io.out(
            `sqliterestore.walship.dev/${name} created\n` +
              `Follow it: kubectl walship status ${replica} -n ${k.namespace}, or kubectl get sqliterestore ${name} -n ${k.namespace} -w\n`,
          );
        return 0;
      }
      if (format === "text") io.out(`sqliterestore.walship.dev/${name} created; following it\n`);
      const final = await follow(k, created, (line) => format === "text" && io.out(`${line}\n`), {
        timeoutMs,
        ...(io.signal ? { signal: io.signal } : {}),
      });
      if (format === "json") json(io, final);
      if (final.status?.phase === "Failed") throw failureOf(final);
      return 0;
    },
  },
  drill: {
    summary: "run a restore drill now; with --wait, print each destination's result",
    usage: "kubectl walship drill NAME [--wait] [--timeout DURATION] [-o json]",
    description:
      "Sets the annotation walship.dev/drill-requested on the SqliteReplica NAME: the operator runs a drill\n" +
      "Job that restores each destination (as spec.drills says, else all, latest only) into scratch\n" +
      "space, never the app's volume, checks it and records the result in status.drills. With --wait,\n" +
      "prints each destination's result: exit 0 when all passed, 1 when one failed.",
    opts: [
      { name: "wait", type: "boolean", help: "wait for the drill and print its results" },
      timeoutOpt,
      outputOpt,
    ],
    async run(kube, values, args, io) {
      const name = oneName("drill", args);
      const format = outputFormat(values);
      const r = await requestDrill(kube(), name, io.now?.() ?? new Date(), {
        wait: values.wait === true,
        timeoutMs: typeof values.timeout === "string" ? parseTimeout(values.timeout) : 0,
        ...(io.signal ? { signal: io.signal } : {}),
      });
      if (format === "json") json(io, { request: r.request, ...(r.drills ? { drills: r.drills } : {}) });
      else if (!r.drills)
        io.out(
          `drill requested on sqlitereplica.walship.dev/${name} (walship.dev/drill-requested=${r.request}); ` +
            `follow it: kubectl walship status ${name}\n`,
        );
      else for (const d of r.drills) io.out(`${drillLine(d)}\n`);
      const failed = (r.drills ?? []).filter((d) => d.outcome === "Failed");
      if (failed.length > 0)
        throw new WalshipError(ErrorCodes.RESTORE, `drill ${name}: ${failed.length} destination(s) failed`);
      return 0;
    },
  },
  wait: {
    summary: "wait until everything committed so far is on every destination",
    usage: "kubectl walship wait NAME [--pod POD] [--database NAME] [--timeout DURATION]",
    description:
      "For each pod of the SqliteReplica NAME (or only --pod), reads its sidecar's /status through the API\n" +
      "server's pod proxy (get pods/proxy) and notes the sidecar's time; then waits until the sidecar has\n" +
      "read the WAL after that time and no destination has a transaction pending: every commit made\n" +
      "before the command started is then on every destination. Exit 0 then, 1 when --timeout passes\n" +
      "first (naming what is pending and why). Use it before maintenance, a failover or a migration.",
    opts: [
      podOpt,
      { ...databaseOpt, help: "only this database, by its name in spec.databases (default: every one)" },
      { ...timeoutOpt, help: "give up after this long (default 5m; 0: never)" },
    ],
    async run(kube, values, args, io) {
      const name = oneName("wait", args);
      const timeoutMs = typeof values.timeout === "string" ? parseTimeout(values.timeout) : 5 * 60_000;
      await waitReplicated(kube(), name, {
        ...(typeof values.pod === "string" ? { pod: values.pod } : {}),
        ...(typeof values.database === "string" ? { database: values.database } : {}),
        timeoutMs,
        ...(io.signal ? { signal: io.signal } : {}),
        progress: (line) => io.out(`${line}\n`),
      });
      return 0;
    },
  },
  snapshots: {
    summary: "the snapshots each destination holds, read by each pod's sidecar",
    usage: "kubectl walship snapshots NAME [--database NAME] [--pod POD] [--destination NAME] [-o json]",
    description:
      "Runs `walship snapshots` in each pod's walship container (pods/exec), with the pod's own\n" +
      "credentials: destination, generation, index, size and time of every snapshot.",
    opts: [databaseOpt, podOpt, destOpt, outputOpt],
    run: (kube, values, args, io) => runListing("snapshots", kube, values, args, io),
  },
  generations: {
    summary: "the generations each destination holds, with their time span",
    usage: "kubectl walship generations NAME [--database NAME] [--pod POD] [--destination NAME] [-o json]",
    description:
      "Runs `walship generations` in each pod's walship container (pods/exec), with the pod's own\n" +
      "credentials: every generation on each destination, its first and last time and its lag.",
    opts: [databaseOpt, podOpt, destOpt, outputOpt],
    run: (kube, values, args, io) => runListing("generations", kube, values, args, io),
  },
  pause: {
    summary: "pause replication: the operator removes the replicator from the StatefulSet or Deployment",
    usage: "kubectl walship pause NAME",
    description:
      `Sets the annotation ${PAUSED_ANNOTATION}: "true" on the SqliteReplica. The operator then removes the\n` +
      "replicator sidecar and the restore init container from the StatefulSet or Deployment, so its pods\n" +
      "roll once (the sidecar syncs a last time as it stops), and reports phase Paused. Nothing written\n" +
      "while paused is replicated until `kubectl walship resume`; restore-on-start is off too.",
    opts: [],
    run: (kube, _values, args, io) => setPaused(kube(), oneName("pause", args), true, io),
  },
  resume: {
    summary: "resume replication after pause (the pods roll once more)",
    usage: "kubectl walship resume NAME",
    description:
      `Removes the annotation ${PAUSED_ANNOTATION}: the operator injects the replicator again and the pods\n` +
      "roll; replication goes on from the database as it is (in a new generation when the WAL was\n" +
      "checkpointed meanwhile).",
    opts: [],
    run: (kube, _values, args, io) => setPaused(kube(), oneName("resume", args), false, io),
  },
};

/** `--pod` names one of a StatefulSet's pods; a Deployment's pods share one replica, so it is refused. */
function refuseDeploymentPod(ref: WorkloadRef | undefined, pod: unknown): void {
  if (ref?.kind === "Deployment" && typeof pod === "string") {
    throw new WalshipError(
      ErrorCodes.USAGE,
      `--pod: the pods of ${describeWorkload(ref)} share one replica, named after the Deployment; leave --pod unset`,
    );
  }
}

async function runListing(kind: ListingKind, kube: () => PluginKube, values: Values, args: string[], io: Io) {
  const name = oneName(kind, args);
  const format = outputFormat(values);
  const k = kube();
  const replica = await k.getReplica(name);
  const { ref, found, pods: all } = await k.readWorkload(replica);
  if (!ref)
    throw new WalshipError(
      ErrorCodes.CONFIG,
      `${kind}: SqliteReplica ${name} names no StatefulSet or Deployment`,
    );
  const what = describeWorkload(ref);
  if (!found)
    throw new WalshipError(ErrorCodes.NOT_FOUND, `${kind}: ${ref.kind} ${k.namespace}/${ref.name} not found`);
  let pods = all;
  if (typeof values.pod === "string") {
    pods = pods.filter((p) => p.metadata?.name === values.pod);
    if (pods.length === 0) {
      throw new WalshipError(ErrorCodes.NOT_FOUND, `${kind}: pod ${values.pod} is not a pod of ${what}`);
    }
  }
  if (pods.length === 0) throw new WalshipError(ErrorCodes.NOT_FOUND, `${kind}: ${what} has no pods`);
  const destination = typeof values.destination === "string" ? values.destination : undefined;
  const { rows, problems } = await collectListing(
    k,
    kind,
    pods,
    replica.spec ? pickDatabase(replica.spec, name, values.database).path : "",
    destination,
  );
  if (format === "json") json(io, { items: rows, problems });
  else io.out(`${formatListing(kind, rows, problems)}\n`);
  if (rows.length === 0 && problems.length > 0) {
    throw new WalshipError(
      ErrorCodes.KUBE,
      `${kind}: no pod could be read (${problems.map((p) => p.pod).join(", ")})`,
    );
  }
  return 0;
}

async function setPaused(kube: PluginKube, name: string, paused: boolean, io: Io): Promise<number> {
  const before = await kube.getReplica(name);
  const was = before.metadata?.annotations?.[PAUSED_ANNOTATION] === "true";
  await kube.annotateReplica(name, { [PAUSED_ANNOTATION]: paused ? "true" : null });
  const ref = workloadOf(before.spec);
  const what = ref ? describeWorkload(ref) : "its workload";
  if (paused) {
    io.out(
      was
        ? `sqlitereplica.walship.dev/${name} was already paused\n`
        : `sqlitereplica.walship.dev/${name} paused: the operator removes the replicator from ${what} ` +
            `(its pods roll); nothing is replicated until 'kubectl walship resume ${name}'\n`,
    );
  } else {
    io.out(
      was
        ? `sqlitereplica.walship.dev/${name} resumed: the operator injects the replicator into ${what} again (its pods roll)\n`
        : `sqlitereplica.walship.dev/${name} was not paused\n`,
    );
  }
  return 0;
}

export function usageText(): string {
  const width = Math.max(...Object.keys(commands).map((n) => n.length)) + 2;
  return [
    "kubectl walship: SqliteReplicas and SqliteRestores from the command line.",
    "",
    "Usage: kubectl walship COMMAND [flags]",
    "",
    "Commands:",
    ...Object.entries(commands).map(([n, c]) => `  ${n.padEnd(width)}${c.summary}`),
    `  ${"version".padEnd(width)}print the plugin's version`,
    "",
    "Flags every command takes:",
    optHelp(GLOBAL_OPTS),
    "",
    "Run 'kubectl walship COMMAND -h' for a command's flags. Exit codes: 0 success, 1 failure, 2 usage.",
  ].join("\n");
}

function commandHelp(cmd: Command): string {
  return [
    `Usage: ${cmd.usage}`,
    "",
    cmd.description,
    "",
    "Flags:",
    optHelp([...cmd.opts, ...GLOBAL_OPTS]),
  ].join("\n");
}

/** The client for the flags and environment: --kubeconfig, else KUBECONFIG; --context; -n. */
function connect(values: Values): PluginKube {
  const kubeconfig = typeof values.kubeconfig === "string" ? values.kubeconfig : undefined;
  const context = typeof values.context === "string" ? values.context : undefined;
  let client: KubeClient;
  try {
    client = KubeClient.load(kubeconfig, context);
  } catch (err) {
    if (err instanceof WalshipError) throw err;
    throw new WalshipError(
      ErrorCodes.CONFIG,
      `load kubeconfig${kubeconfig ? ` ${kubeconfig}` : ""}: ${describeError(err)}`,
      {
        cause: err,
      },
    );
  }
  const ns =
    typeof values.namespace === "string" && values.namespace !== ""
      ? values.namespace
      : client.defaultNamespace;
  return new PluginKube(client, ns);
}

/** Runs one command line (the arguments after `kubectl walship`); resolves with the exit code. */
export async function run(argv: string[], io: Io, version: string): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === "help" || name === "-h" || name === "--help") {
    io.out(`${usageText()}\n`);
    return name ? 0 : 2;
  }
  if (name === "version" || name === "--version") {
    io.out(`kubectl-walship ${version}\n`);
    return 0;
  }
  const cmd = commands[name];
  if (!cmd) {
    io.err(`kubectl walship: unknown command "${name}" [${ErrorCodes.USAGE}]\n\n${usageText()}\n`);
    return 2;
  }
  try {
    const { values, args } = parseArgs(name, [...cmd.opts, ...GLOBAL_OPTS], rest);
    let kube: PluginKube | undefined;
    return await cmd.run(() => (kube ??= connect(values)), values, args, io);
  } catch (err) {
    if (err instanceof WalshipError && err.code === ErrorCodes.USAGE && err.details.help) {
      io.out(`${commandHelp(cmd)}\n`);
      return 0;
    }
    const code = err instanceof WalshipError ? err.code : "WALSHIP_ERR_INTERNAL";
    io.err(`kubectl walship ${name}: ${describeError(err)} [${code}]\n`);
    return err instanceof WalshipError && err.code === ErrorCodes.USAGE ? 2 : 1;
  }
}
