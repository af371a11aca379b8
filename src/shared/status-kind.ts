/**
 * The apiVersion and kind of the status document (src/shared/protocol.ts), apart from its zod schema:
 * the replicator writes the document and needs only these, and zod would cost every sidecar its load
 * time and memory (docs/benchmarks.md). The operator, which parses the document, loads the schema.
 */
export const STATUS_API_VERSION = "walship.dev/v1alpha1";
export const STATUS_KIND = "ReplicatorStatus";
