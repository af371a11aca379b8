/**
 * `kubectl exec` without kubectl: the pods/exec subresource over a WebSocket, by
 * @kubernetes/client-node's Exec (it speaks the channel protocols v5/v4 and takes the kubeconfig's
 * TLS and credentials). Only the output is collected: no stdin, no terminal.
 */
import { Writable } from "node:stream";
import { Exec, type KubeConfig, type V1Status } from "@kubernetes/client-node";
import { ErrorCodes, WalshipError } from "../../shared/errors.ts";

export interface ExecOptions {
  signal?: AbortSignal;
  /** Gives up (WALSHIP_ERR_KUBE) after this long; default 60 s. */
  timeoutMs?: number;
  /** At most this many bytes of stdout are kept (the rest is dropped and `truncated` set); 16 MiB. */
  maxOutputBytes?: number;
}

export interface ExecResult {
  stdout: string;
  stderr: string;
  /** The command's exit code (0 on success). */
  exitCode: number;
  truncated: boolean;
}

const DEFAULT_TIMEOUT_MS = 60_000;
const DEFAULT_MAX_OUTPUT = 16 * 1024 * 1024;

/** The exit code a pods/exec status reports: 0 on Success, the ExitCode cause otherwise. */
export function exitCodeOf(status: V1Status | undefined): number | undefined {
  if (!status) return undefined;
  if (status.status === "Success") return 0;
  const cause = status.details?.causes?.find((c) => c.reason === "ExitCode");
  const n = Number(cause?.message);
  return Number.isInteger(n) ? n : undefined;
}

function sink(limit: number, state: { truncated: boolean }): { stream: Writable; text(): string } {
  const chunks: Buffer[] = [];
  let size = 0;
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      if (size + chunk.length > limit) {
        state.truncated = true;
        chunks.push(chunk.subarray(0, Math.max(0, limit - size)));
        size = limit;
      } else {
        chunks.push(chunk);
        size += chunk.length;
      }
      done();
    },
  });
  return { stream, text: () => Buffer.concat(chunks).toString("utf8") };
}

export async function execIn(
  kc: KubeConfig,
  where: { ns: string; pod: string; container: string; command: string[] },
  opts: ExecOptions = {},
): Promise<ExecResult> {
  const what = `exec in ${where.ns}/${where.pod} container ${where.container}`;
  const state = { truncated: false };
  const out = sink(opts.maxOutputBytes ?? DEFAULT_MAX_OUTPUT, state);
  const err = sink(64 * 1024, { truncated: false });
  let status: V1Status | undefined;
  let ws: Awaited<ReturnType<Exec["exec"]>>;
  try {
    ws = await new Exec(kc).exec(
      where.ns,
      where.pod,
      where.container,
      where.command,
      out.stream,
      err.stream,
      null,
      false,
      (s) => {
        status = s;
      },
    );
  } catch (cause) {
    const message = cause instanceof Error ? cause.message : String(cause);
    throw new WalshipError(ErrorCodes.KUBE, `${what}: ${message}`, { cause });
  }
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      ws.close();
      reject(
        new WalshipError(
          ErrorCodes.KUBE,
          `${what}: no answer within ${opts.timeoutMs ?? DEFAULT_TIMEOUT_MS} ms`,
        ),
      );
    }, opts.timeoutMs ?? DEFAULT_TIMEOUT_MS);
    const onAbort = () => {
      ws.close();
      reject(new WalshipError(ErrorCodes.ABORTED, `${what}: cancelled`));
    };
    opts.signal?.addEventListener("abort", onAbort, { once: true });
    ws.on("close", () => {
      clearTimeout(timer);
      opts.signal?.removeEventListener("abort", onAbort);
      resolve();
    });
    ws.on("error", (e: Error) => {
      clearTimeout(timer);
      reject(new WalshipError(ErrorCodes.KUBE, `${what}: ${e.message}`, { cause: e }));
    });
  });
  const exitCode = exitCodeOf(status);
  if (exitCode === undefined) {
    const why = status?.message ?? "the connection closed without an exit status";
    throw new WalshipError(ErrorCodes.KUBE, `${what}: ${why}`);
  }
  return { stdout: out.text(), stderr: err.text(), exitCode, truncated: state.truncated };
}
