/** Kubernetes Events (core/v1) about an object, as `kubectl describe` shows them. */
import type { KubeClient } from "./client.ts";
import type { KubeObject } from "./types.ts";

export const EVENT_SOURCE = "walship-operator";

export interface EventInput {
  type: "Normal" | "Warning";
  /** CamelCase, e.g. SecretMissing. */
  reason: string;
  message: string;
}

export class EventRecorder {
  readonly #client: KubeClient;
  readonly #host: string;

  constructor(client: KubeClient, host: string) {
    this.#client = client;
    this.#host = host;
  }

  /** Records one Event on `obj`. */
  async record(obj: KubeObject, ev: EventInput): Promise<void> {
    const ns = obj.metadata?.namespace ?? "default";
    const now = new Date().toISOString();
    await this.#client.request("POST", `/api/v1/namespaces/${ns}/events`, {
      body: {
        apiVersion: "v1",
        kind: "Event",
        metadata: { generateName: `${obj.metadata?.name ?? "object"}.`, namespace: ns },
        involvedObject: {
          apiVersion: obj.apiVersion,
          kind: obj.kind,
          name: obj.metadata?.name,
          namespace: ns,
          uid: obj.metadata?.uid,
          resourceVersion: obj.metadata?.resourceVersion,
        },
        type: ev.type,
        reason: ev.reason,
        message: ev.message.slice(0, 1024),
        source: { component: EVENT_SOURCE, host: this.#host },
        reportingComponent: EVENT_SOURCE,
        reportingInstance: this.#host,
        firstTimestamp: now,
        lastTimestamp: now,
        count: 1,
      },
    });
  }
}
