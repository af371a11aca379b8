/** walship.dev/v1alpha1: the zod schemas of SqliteReplica and SqliteRestore, and their CRDs. */
export * from "./common.ts";
export * from "./sqlitereplica.ts";
export * from "./sqliterestore.ts";
