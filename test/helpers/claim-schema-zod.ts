/**
 * TEST ORACLE, not product code: the zod schema of the claim document that src/replicator/claim.ts
 * replaced (zod cost every sidecar its load time and memory for this one document). As it was at
 * 777e863; test/unit/claim-schema.test.ts holds the hand-written checks to it.
 */
import { z } from "zod";

const PodSchema = z.object({ namespace: z.string(), name: z.string(), uid: z.string() });

const ClaimHolderSchema = z.object({
  pod: PodSchema.optional(),
  sqliteReplica: z.string().optional(),
  host: z.string(),
  pid: z.number().int(),
  bootId: z.string().optional(),
});

export const ClaimDocSchema = z.object({
  v: z.literal(1),
  holder: ClaimHolderSchema,
  token: z.string().min(1),
  renewedAt: z.iso.datetime({ offset: true }),
  expiresAt: z.iso.datetime({ offset: true }),
});
