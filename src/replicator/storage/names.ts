/**
 * Checks on the names a ReplicaClient is given, shared by every backend: a name that does not fit the
 * layout could escape the root, or be written where no listing would ever find it.
 */
import { ErrorCodes, WalshipError } from "../../shared/errors.ts";
import { isGenerationName, keys } from "../layout.ts";

/** Index and offset fields are 8 hex digits in object names. */
const MAX_NAME_FIELD = 0xffffffff;

export function checkGeneration(generation: string, verb: string): void {
  if (typeof generation !== "string" || !isGenerationName(generation)) {
    throw new WalshipError(
      ErrorCodes.STORAGE,
      `${verb}: generation must be 16 lowercase hex digits, got ${JSON.stringify(generation)}`,
      {
        details: { generation },
      },
    );
  }
}

/** An index or offset must fit the layout's 8 hex digits, or the object would be invisible to listings. */
export function checkField(value: number, verb: string, field: "index" | "offset"): void {
  if (!Number.isInteger(value) || value < 0 || value > MAX_NAME_FIELD) {
    throw new WalshipError(
      ErrorCodes.STORAGE,
      `${verb}: ${field} must be an integer from 0 to 0xffffffff, got ${value}`,
      {
        details: { [field]: value },
      },
    );
  }
}

/** Extra keys are relative "/"-joined paths that stay under the root. */
export function checkKey(key: string, verb: string): void {
  const parts = typeof key === "string" ? key.split("/") : [];
  if (
    typeof key !== "string" ||
    key === "" ||
    key.startsWith("/") ||
    key.includes("\0") ||
    parts.some((p) => p === "" || p === "." || p === "..")
  ) {
    throw new WalshipError(
      ErrorCodes.STORAGE,
      `${verb}: key must be a relative path without "." or ".." parts, got ${JSON.stringify(key)}`,
      {
        details: { key },
      },
    );
  }
}

/** A listing prefix: "" or a relative path whose last part may be partial or empty (a trailing "/"). */
export function checkPrefix(prefix: string, verb: string): void {
  if (prefix === "") return;
  const parts = typeof prefix === "string" ? prefix.split("/") : [];
  const last = parts.pop();
  if (
    typeof prefix !== "string" ||
    prefix.startsWith("/") ||
    prefix.includes("\0") ||
    last === ".." ||
    parts.some((p) => p === "" || p === "." || p === "..")
  ) {
    throw new WalshipError(
      ErrorCodes.STORAGE,
      `${verb}: prefix must be a relative path without "." or ".." parts, got ${JSON.stringify(prefix)}`,
      {
        details: { prefix },
      },
    );
  }
}

/** The name checks of a snapshot verb: a generation and an index the layout can hold. */
export function checkSnapshot(generation: string, index: number, verb: string): void {
  checkGeneration(generation, verb);
  checkField(index, verb, "index");
}

/** The name checks of a WAL segment verb: generation, index and offset. */
export function checkSegment(generation: string, index: number, offset: number, verb: string): void {
  checkSnapshot(generation, index, verb);
  checkField(offset, verb, "offset");
}

/** Checks every entry before any is used (so a bad one deletes nothing); their layout keys. */
export function segmentKeys(
  segments: ReadonlyArray<{ generation: string; index: number; offset: number }>,
  verb: string,
): string[] {
  for (const s of segments) checkSegment(s.generation, s.index, s.offset, verb);
  return segments.map((s) => keys.segment(s.generation, s.index, s.offset));
}
