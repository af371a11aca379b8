/**
 * One OAuth 2.0 token request (a form POST answered with `access_token` and `expires_in`), as the
 * Azure workload-identity and Google service-account exchanges both make it. Errors are STORAGE,
 * name the endpoint and the principal, quote the server's `error`, and never the request's secrets.
 */
import { ErrorCodes, WalshipError } from "../../shared/errors.ts";

const TIMEOUT_MS = 30_000;

export async function requestToken(
  url: string,
  form: URLSearchParams,
  who: { what: string; principal: string },
  signal?: AbortSignal,
): Promise<{ token: string; expiresAt: number }> {
  const timeout = AbortSignal.timeout(TIMEOUT_MS);
  let res: Response;
  try {
    res = await fetch(url, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: form,
      signal: signal ? AbortSignal.any([signal, timeout]) : timeout,
    });
  } catch (err) {
    throw new WalshipError(
      ErrorCodes.STORAGE,
      `${who.what}: token request to ${url} failed: ${(err as Error).message}`,
      {
        cause: err,
        details: { tokenUrl: url },
      },
    );
  }
  const text = await res.text();
  let json: { access_token?: unknown; expires_in?: unknown; error?: unknown; error_description?: unknown } =
    {};
  try {
    json = JSON.parse(text);
  } catch {
    // reported below
  }
  if (!res.ok || typeof json.access_token !== "string") {
    const why =
      typeof json.error === "string"
        ? `${json.error}: ${String(json.error_description ?? "")}`
        : text.slice(0, 200);
    throw new WalshipError(
      ErrorCodes.STORAGE,
      `${who.what}: the token endpoint ${url} refused ${who.principal} (HTTP ${res.status}): ${why}`,
      { details: { tokenUrl: url, httpStatus: res.status } },
    );
  }
  const seconds = Number(json.expires_in);
  return {
    token: json.access_token,
    expiresAt: Date.now() + (Number.isFinite(seconds) && seconds > 0 ? seconds : 3600) * 1000,
  };
}
