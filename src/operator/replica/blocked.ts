/**
 * A step that stops a SqliteReplica's reconcile: Injected=False with this reason and message (the
 * phase Failed), and when to look again (`retryMs`; undefined: only when something changes). Thrown
 * by the ensure steps, caught by the reconcile shell, which writes it into the status.
 */
export class Blocked extends Error {
  readonly reason: string;
  readonly retryMs: number | undefined;

  constructor(reason: string, message: string, retryMs?: number) {
    super(message);
    this.name = "Blocked";
    this.reason = reason;
    this.retryMs = retryMs;
  }
}

/** How soon a step blocked by something nothing here watches (a Secret, a container) is tried again. */
export const RETRY_BLOCKED_MS = 30_000;
