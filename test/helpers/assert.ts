/** The one assertion for Walship's error catalogue: tests assert codes (and details), never messages. */
import assert from "node:assert/strict";
import { type ErrorCode, WalshipError } from "../../src/shared/errors.ts";

/** What the error's `details` must hold: each key with this value, or just present (`true`). */
export type DetailsWanted = Readonly<Record<string, unknown>>;

function check(err: unknown, code: ErrorCode, details: DetailsWanted | undefined, what: string): true {
  assert.ok(err instanceof WalshipError, `${what}expected a WalshipError, got ${String(err)}`);
  assert.equal(err.code, code, `${what}wrong code for: ${err.message}`);
  for (const [k, v] of Object.entries(details ?? {})) {
    if (v === true) assert.ok(k in err.details, `${what}details lack ${k}`);
    else assert.deepEqual(err.details[k], v, `${what}details.${k}`);
  }
  return true;
}

/**
 * Asserts that `fn` throws (or the promise, or what `fn` returns, rejects with) a WalshipError of
 * `code`, whose details hold `details` (a value, or `true` for "present"). Await it for a promise.
 */
export function assertCode(
  p: PromiseLike<unknown> | (() => PromiseLike<unknown>),
  code: ErrorCode,
  details?: DetailsWanted,
  what?: string,
): Promise<void>;
export function assertCode(fn: () => unknown, code: ErrorCode, details?: DetailsWanted, what?: string): void;
export function assertCode(
  fnOrPromise: PromiseLike<unknown> | (() => unknown),
  code: ErrorCode,
  details?: DetailsWanted,
  what?: string,
): void | Promise<void> {
  const prefix = what ? `${what}: ` : "";
  if (typeof fnOrPromise !== "function") {
    return assert.rejects(Promise.resolve(fnOrPromise), (err: unknown) => check(err, code, details, prefix));
  }
  let result: unknown;
  try {
    result = fnOrPromise();
  } catch (err) {
    check(err, code, details, prefix);
    return;
  }
  if (result && typeof (result as PromiseLike<unknown>).then === "function") {
    return assert.rejects(Promise.resolve(result), (err: unknown) => check(err, code, details, prefix));
  }
  assert.fail(`${prefix}expected ${code}, but nothing was thrown`);
}
